//! Bucket operations: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation,
//! and the bucket's versioning status (PutBucketVersioning, GetBucketVersioning).

use super::convert::timestamp;
use crate::buckets;
use crate::error::GatewayError;
use crate::iam::Identity;
use crate::state::GatewayState;
use crate::versions;
use dmpstore_common::record::{BucketAccess, ObjectOwnership, Versioning};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

pub(super) async fn create_bucket(
    state: &Arc<GatewayState>,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let mut access = BucketAccess::new_bucket(signer(&req)?.name());
    let input = req.input;
    if let Some(o) = &input.object_ownership {
        access.ownership = match o.as_str() {
            "BucketOwnerPreferred" => ObjectOwnership::BucketOwnerPreferred,
            "ObjectWriter" => ObjectOwnership::ObjectWriter,
            _ => ObjectOwnership::BucketOwnerEnforced,
        };
    }
    let public_acl = input.acl.as_ref().is_some_and(|a| a.as_str() != "private");
    if public_acl && access.ownership == ObjectOwnership::BucketOwnerEnforced {
        return Err(GatewayError::InvalidBucketAclWithObjectOwnership.into());
    }
    let bucket = input.bucket;
    buckets::create(state, &bucket, access).await?;
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{bucket}")),
    }))
}

pub(super) async fn head_bucket(
    state: &Arc<GatewayState>,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    buckets::ensure_exists(state, &req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(state.config.region.clone()),
        ..Default::default()
    }))
}

pub(super) async fn delete_bucket(
    state: &Arc<GatewayState>,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    buckets::delete(state, &req.input.bucket).await?;
    Ok(S3Response::new(DeleteBucketOutput {}))
}

/// Who signed the request (authorization put it there); anonymous requests never get here.
fn signer<T>(req: &S3Request<T>) -> Result<&Identity, GatewayError> {
    req.extensions
        .get::<Identity>()
        .ok_or(GatewayError::AccessDenied)
}

/// ListBuckets: a user sees the buckets it owns (those its key's scope reaches), an
/// administrator every bucket.
pub(super) async fn list_buckets(
    state: &Arc<GatewayState>,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let who = signer(&req)?.clone();
    let buckets = buckets::list(state)
        .await?
        .into_iter()
        .filter(|(name, b)| buckets::listed_for(&who, name, b))
        .map(|(name, b)| Bucket {
            name: Some(name),
            creation_date: Some(timestamp(b.created_ms)),
            bucket_region: Some(state.config.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            display_name: Some(who.name().to_string()),
            id: Some(who.name().to_string()),
        }),
        ..Default::default()
    }))
}

pub(super) async fn get_bucket_location(
    state: &Arc<GatewayState>,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    buckets::ensure_exists(state, &req.input.bucket).await?;
    // S3 answers an empty constraint for us-east-1.
    let region = &state.config.region;
    let location_constraint =
        (region != "us-east-1").then(|| BucketLocationConstraint::from(region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint,
    }))
}

pub(super) async fn put_bucket_versioning(
    state: &Arc<GatewayState>,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let versioning = match input
        .versioning_configuration
        .status
        .as_ref()
        .map(|s| s.as_str())
    {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::IllegalVersioningConfigurationException,
                "the versioning status must be Enabled or Suspended",
            ))
        }
    };
    if input
        .versioning_configuration
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(GatewayError::NotImplemented("MFA delete").into());
    }
    versions::set_versioning(state, &input.bucket, versioning).await?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

pub(super) async fn get_bucket_versioning(
    state: &Arc<GatewayState>,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let b = buckets::ensure_exists(state, &req.input.bucket).await?;
    let status = match b.versioning {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::ENABLED,
        )),
        Versioning::Suspended => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::SUSPENDED,
        )),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        status,
        ..Default::default()
    }))
}
