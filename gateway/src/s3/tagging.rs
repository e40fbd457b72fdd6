//! Object tagging operations: PutObjectTagging, GetObjectTagging and DeleteObjectTagging.

use crate::state::GatewayState;
use crate::tagging;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

pub(super) async fn put_object_tagging(
    state: &Arc<GatewayState>,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = input
        .tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    let version = input.version_id.as_deref();
    tagging::put_tags(state, &input.bucket, &input.key, version, tags).await?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: input.version_id,
    }))
}

pub(super) async fn get_object_tagging(
    state: &Arc<GatewayState>,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let version = input.version_id.as_deref();
    let tags = tagging::get_tags(state, &input.bucket, &input.key, version).await?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: tags
            .into_iter()
            .map(|(k, v)| Tag {
                key: Some(k),
                value: Some(v),
            })
            .collect(),
        version_id: input.version_id,
    }))
}

pub(super) async fn delete_object_tagging(
    state: &Arc<GatewayState>,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let version = input.version_id.as_deref();
    tagging::put_tags(state, &input.bucket, &input.key, version, Vec::new()).await?;
    Ok(S3Response::new(DeleteObjectTaggingOutput {
        version_id: input.version_id,
    }))
}
