//! Which IAM action each S3 operation needs, after AWS's "Required permissions for Amazon S3
//! API operations" and "Actions, resources, and condition keys for Amazon S3".
//!
//! Operations that need more than one permission get their main one here; the caller checks
//! the others: CopyObject and UploadPartCopy also need `s3:GetObject` (or
//! `s3:GetObjectVersion`) on the source, which is `action_for("GetObject", source_has_version)`;
//! DeleteObjects needs `s3:DeleteObject` (or `s3:DeleteObjectVersion`) on each key, which is
//! `action_for("DeleteObject", key_has_version)`. ListBuckets (`s3:ListAllMyBuckets`) is on
//! no bucket, so no bucket policy governs it.

/// The IAM action an operation needs, and whether its resource is an object
/// (`arn:aws:s3:::bucket/key`) or the bucket (`arn:aws:s3:::bucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub name: &'static str,
    pub on_object: bool,
}

/// The action for the s3s operation name (`S3Operation::name()`), given whether the request
/// names a version; `None` for an operation not listed here.
pub fn action_for(op_name: &str, has_version_id: bool) -> Option<Action> {
    if let Some((plain, versioned)) = object_action(op_name) {
        let name = if has_version_id { versioned } else { plain };
        return Some(Action {
            name,
            on_object: true,
        });
    }
    bucket_action(op_name).map(|name| Action {
        name,
        on_object: false,
    })
}

/// Object operations: (action, action when a version id is given).
fn object_action(op_name: &str) -> Option<(&'static str, &'static str)> {
    Some(match op_name {
        "GetObject" | "HeadObject" | "SelectObjectContent" => {
            ("s3:GetObject", "s3:GetObjectVersion")
        }
        "GetObjectAttributes" => ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
        "GetObjectTorrent" => ("s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"),
        "PutObject"
        | "PostObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => ("s3:PutObject", "s3:PutObject"),
        "AbortMultipartUpload" => ("s3:AbortMultipartUpload", "s3:AbortMultipartUpload"),
        "ListParts" => ("s3:ListMultipartUploadParts", "s3:ListMultipartUploadParts"),
        "DeleteObject" | "DeleteObjects" => ("s3:DeleteObject", "s3:DeleteObjectVersion"),
        "GetObjectTagging" => ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
        "PutObjectTagging" => ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
        "DeleteObjectTagging" => ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
        "GetObjectAcl" => ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
        "PutObjectAcl" => ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
        "RestoreObject" => ("s3:RestoreObject", "s3:RestoreObject"),
        "GetObjectRetention" => ("s3:GetObjectRetention", "s3:GetObjectRetention"),
        "PutObjectRetention" => ("s3:PutObjectRetention", "s3:PutObjectRetention"),
        "GetObjectLegalHold" => ("s3:GetObjectLegalHold", "s3:GetObjectLegalHold"),
        "PutObjectLegalHold" => ("s3:PutObjectLegalHold", "s3:PutObjectLegalHold"),
        _ => return None,
    })
}

/// Bucket operations. Several Delete operations need the Put action, as AWS documents.
fn bucket_action(op_name: &str) -> Option<&'static str> {
    bucket_data_action(op_name).or_else(|| bucket_config_action(op_name))
}

fn bucket_data_action(op_name: &str) -> Option<&'static str> {
    Some(match op_name {
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "CreateBucket" => "s3:CreateBucket",
        "DeleteBucket" => "s3:DeleteBucket",
        "GetBucketLocation" => "s3:GetBucketLocation",
        "GetBucketPolicy" => "s3:GetBucketPolicy",
        "PutBucketPolicy" => "s3:PutBucketPolicy",
        "DeleteBucketPolicy" => "s3:DeleteBucketPolicy",
        "GetBucketPolicyStatus" => "s3:GetBucketPolicyStatus",
        "GetBucketAcl" => "s3:GetBucketAcl",
        "PutBucketAcl" => "s3:PutBucketAcl",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "PutBucketVersioning" => "s3:PutBucketVersioning",
        "GetBucketOwnershipControls" => "s3:GetBucketOwnershipControls",
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            "s3:PutBucketOwnershipControls"
        }
        "GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        "GetBucketTagging" => "s3:GetBucketTagging",
        "PutBucketTagging" | "DeleteBucketTagging" => "s3:PutBucketTagging",
        _ => return None,
    })
}

fn bucket_config_action(op_name: &str) -> Option<&'static str> {
    Some(match op_name {
        "GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            "s3:PutLifecycleConfiguration"
        }
        "GetBucketCors" => "s3:GetBucketCORS",
        "PutBucketCors" | "DeleteBucketCors" => "s3:PutBucketCORS",
        "GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "s3:PutEncryptionConfiguration",
        "GetBucketWebsite" => "s3:GetBucketWebsite",
        "PutBucketWebsite" => "s3:PutBucketWebsite",
        "DeleteBucketWebsite" => "s3:DeleteBucketWebsite",
        "GetBucketNotificationConfiguration" => "s3:GetBucketNotification",
        "PutBucketNotificationConfiguration" => "s3:PutBucketNotification",
        "GetBucketLogging" => "s3:GetBucketLogging",
        "PutBucketLogging" => "s3:PutBucketLogging",
        "GetObjectLockConfiguration" => "s3:GetBucketObjectLockConfiguration",
        "PutObjectLockConfiguration" => "s3:PutBucketObjectLockConfiguration",
        "GetBucketReplication" => "s3:GetReplicationConfiguration",
        "PutBucketReplication" | "DeleteBucketReplication" => "s3:PutReplicationConfiguration",
        "GetBucketRequestPayment" => "s3:GetBucketRequestPayment",
        "PutBucketRequestPayment" => "s3:PutBucketRequestPayment",
        "GetBucketAccelerateConfiguration" => "s3:GetAccelerateConfiguration",
        "PutBucketAccelerateConfiguration" => "s3:PutAccelerateConfiguration",
        _ => return None,
    })
}
