//! The gateway's error type, and the one place where errors become S3 error responses
//! (including the ones the listener gives before a request reaches s3s: [`slow_down`]).
//!
//! Messages S3 clients see never name nodes, partitions, versions or stripes: the failures
//! that carry such detail (`Unavailable`, `Internal`, `Body`) are logged with it and answered
//! with a generic message.

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
    #[error("the lifecycle configuration does not exist")]
    NoSuchLifecycleConfiguration,
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
    /// The client sent no body bytes for the body idle timeout.
    #[error("the request body sent nothing for too long")]
    RequestTimeout,
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
            G::NoSuchLifecycleConfiguration => S3ErrorCode::NoSuchLifecycleConfiguration,
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
            G::RequestTimeout => S3ErrorCode::RequestTimeout,
            G::Unavailable(_) => S3ErrorCode::ServiceUnavailable,
            G::Internal(_) => S3ErrorCode::InternalError,
        };
        let message = match &e {
            G::Unavailable(msg) => {
                tracing::warn!(%msg, "request failed: cluster unavailable");
                "The service cannot handle this request right now; please retry.".to_string()
            }
            G::Internal(msg) => {
                tracing::error!(%msg, "request failed: internal error");
                "We encountered an internal error. Please try again.".to_string()
            }
            G::Body(msg) => {
                tracing::debug!(%msg, "request failed: body unreadable");
                "The request body could not be read completely.".to_string()
            }
            G::RequestTimeout => {
                tracing::debug!("request failed: body idle timeout");
                REQUEST_TIMEOUT_MESSAGE.to_string()
            }
            _ => {
                tracing::debug!(error = %e, "request failed");
                e.to_string()
            }
        };
        let mut error = S3Error::with_message(code, message);
        if matches!(e, G::NoSuchPublicAccessBlockConfiguration) {
            error.set_status_code(http::StatusCode::NOT_FOUND);
        }
        error
    }
}

/// S3's own message for RequestTimeout.
const REQUEST_TIMEOUT_MESSAGE: &str = "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.";

impl GatewayError {
    /// The error for a failed read of a request body: RequestTimeout when the listener cut off
    /// a body that stalled (its error may arrive wrapped by s3s' aws-chunked decoder, which
    /// keeps only the message), else the failure itself.
    pub fn from_body(e: &(dyn std::error::Error + 'static)) -> GatewayError {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if c.is::<crate::http_limits::BodyIdleTimeout>() {
                return GatewayError::RequestTimeout;
            }
            cause = c.source();
        }
        if e.to_string()
            .contains(crate::http_limits::BodyIdleTimeout::MESSAGE)
        {
            return GatewayError::RequestTimeout;
        }
        GatewayError::Body(e.to_string())
    }
}

/// 503 SlowDown with S3's XML error body: the answer to a request refused because the
/// gateway already has its limit of requests in flight.
pub fn slow_down() -> http::Response<s3s::Body> {
    const BODY: &str = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    );
    let mut r = http::Response::new(s3s::Body::from(BODY.to_string()));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}
