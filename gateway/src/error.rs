//! The gateway's error type, and the one place where errors become S3 error responses.

use s3s::{S3Error, S3ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the bucket does not exist")]
    NoSuchBucket,
    #[error("the key does not exist")]
    NoSuchKey,
    #[error("the specified version does not exist")]
    NoSuchVersion,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("you already own this bucket")]
    BucketAlreadyOwnedByYou,
    #[error("the bucket name is taken by another user; choose another name")]
    BucketAlreadyExists,
    #[error("access denied")]
    AccessDenied,
    #[error("{0}")]
    MalformedPolicy(String),
    #[error("the bucket policy does not exist")]
    NoSuchBucketPolicy,
    #[error("the bucket does not allow ACLs (Object Ownership is BucketOwnerEnforced)")]
    AccessControlListNotSupported,
    #[error("the ACL is not valid: {0}")]
    MalformedAcl(String),
    #[error("the bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting")]
    InvalidBucketAclWithObjectOwnership,
    #[error("the public access block configuration was not found")]
    NoSuchPublicAccessBlockConfiguration,
    #[error("the XML you provided was not well-formed or did not validate: {0}")]
    MalformedXml(String),
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    #[error("a conflicting operation is in progress on this bucket; retry")]
    OperationAborted,
    #[error("the requested range is not satisfiable for an object of {size_bytes} bytes")]
    InvalidRange { size_bytes: u64 },
    #[error("the Content-MD5 does not match the body")]
    BadDigest,
    #[error("Content-MD5 is not valid base64 of 16 bytes")]
    InvalidDigest,
    #[error("the body ended after {received} of {expected} bytes")]
    IncompleteBody { expected: u64, received: u64 },
    #[error("the body is larger than the {limit} bytes allowed")]
    EntityTooLarge { limit: u64 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidTag(String),
    #[error("{0} is not implemented")]
    NotImplemented(&'static str),
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
    #[error("a conflicting conditional operation is in progress on this key; retry")]
    ConditionalRequestConflict,
    #[error("not modified")]
    NotModified,
    #[error("the specified multipart upload does not exist")]
    NoSuchUpload,
    #[error("{0}")]
    InvalidPart(String),
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("part {part_number} is smaller than the minimum allowed object size")]
    EntityTooSmall { part_number: u32 },
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// Not enough nodes answered to meet a quorum or to rebuild data.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<GatewayError> for S3Error {
    fn from(e: GatewayError) -> S3Error {
        use GatewayError as G;
        let code = match &e {
            G::NoSuchBucket => S3ErrorCode::NoSuchBucket,
            G::NoSuchKey => S3ErrorCode::NoSuchKey,
            G::NoSuchVersion => S3ErrorCode::NoSuchVersion,
            G::MethodNotAllowed(_) => S3ErrorCode::MethodNotAllowed,
            G::BucketAlreadyOwnedByYou => S3ErrorCode::BucketAlreadyOwnedByYou,
            G::BucketAlreadyExists => S3ErrorCode::BucketAlreadyExists,
            G::AccessDenied => S3ErrorCode::AccessDenied,
            G::MalformedPolicy(_) => S3ErrorCode::MalformedPolicy,
            G::NoSuchBucketPolicy => S3ErrorCode::NoSuchBucketPolicy,
            G::AccessControlListNotSupported => S3ErrorCode::AccessControlListNotSupported,
            G::MalformedAcl(_) => S3ErrorCode::MalformedACLError,
            G::InvalidBucketAclWithObjectOwnership => {
                S3ErrorCode::InvalidBucketAclWithObjectOwnership
            }
            G::NoSuchPublicAccessBlockConfiguration => {
                S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into())
            }
            G::MalformedXml(_) => S3ErrorCode::MalformedXML,
            G::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
            G::OperationAborted => S3ErrorCode::OperationAborted,
            G::InvalidRange { .. } => S3ErrorCode::InvalidRange,
            G::BadDigest => S3ErrorCode::BadDigest,
            G::InvalidDigest => S3ErrorCode::InvalidDigest,
            G::IncompleteBody { .. } => S3ErrorCode::IncompleteBody,
            G::EntityTooLarge { .. } => S3ErrorCode::EntityTooLarge,
            G::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            G::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            G::InvalidTag(_) => S3ErrorCode::InvalidTag,
            G::NotImplemented(_) => S3ErrorCode::NotImplemented,
            G::PreconditionFailed => S3ErrorCode::PreconditionFailed,
            G::ConditionalRequestConflict => S3ErrorCode::ConditionalRequestConflict,
            G::NotModified => S3ErrorCode::NotModified,
            G::NoSuchUpload => S3ErrorCode::NoSuchUpload,
            G::InvalidPart(_) => S3ErrorCode::InvalidPart,
            G::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
            G::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
            G::Body(_) => S3ErrorCode::IncompleteBody,
            G::Unavailable(_) => S3ErrorCode::ServiceUnavailable,
            G::Internal(_) => S3ErrorCode::InternalError,
        };
        match &e {
            G::Unavailable(msg) => tracing::warn!(%msg, "request failed: cluster unavailable"),
            G::Internal(msg) => tracing::error!(%msg, "request failed: internal error"),
            _ => tracing::debug!(error = %e, "request failed"),
        }
        let mut error = S3Error::with_message(code, e.to_string());
        if matches!(e, G::NoSuchPublicAccessBlockConfiguration) {
            error.set_status_code(http::StatusCode::NOT_FOUND);
        }
        error
    }
}
