//! Copy operations: CopyObject and UploadPartCopy, with the `x-amz-copy-source` and
//! `x-amz-copy-source-range` headers they share.

use super::convert::{etag, sorted_metadata, timestamp};
use crate::copy::{self, CopyRequest};
use crate::error::GatewayError;
use crate::multipart;
use crate::preconditions::ReadConditions;
use crate::state::GatewayState;
use dmpstore_common::record::{part_sort_key, parts_partition};
use dmpstore_common::rpc::RecordRef;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

/// Bucket, key and version id of an `x-amz-copy-source`.
fn copy_source(src: &CopySource) -> Result<(String, String, Option<String>), GatewayError> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        )),
        _ => Err(GatewayError::NotImplemented("copy from an access point")),
    }
}

/// `x-amz-copy-source-range: bytes=first-last`, which (unlike a GET range) must lie wholly
/// inside the source.
fn copy_source_range(header: &str, size_bytes: u64) -> Result<std::ops::Range<u64>, GatewayError> {
    match Range::parse(header) {
        Ok(Range::Int {
            first,
            last: Some(last),
        }) if first <= last => {
            if last >= size_bytes {
                return Err(GatewayError::InvalidRange { size_bytes });
            }
            Ok(first..last + 1)
        }
        _ => Err(GatewayError::InvalidArgument(format!(
            "x-amz-copy-source-range must be bytes=first-last, got {header}"
        ))),
    }
}

pub(super) async fn copy_object(
    state: &Arc<GatewayState>,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    let (src_bucket, src_key, src_version_id) = copy_source(&input.copy_source)?;
    let replace_metadata = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(other) => {
            return Err(GatewayError::InvalidArgument(format!(
                "unknown metadata directive {other}"
            ))
            .into())
        }
    };
    let copied = copy::copy_object(
        state,
        CopyRequest {
            src_bucket,
            src_key,
            src_version_id,
            dst_bucket: input.bucket,
            dst_key: input.key,
            replace_metadata,
            content_type: input.content_type,
            user_metadata: sorted_metadata(input.metadata),
            source_conditions: ReadConditions {
                if_match: input.copy_source_if_match,
                if_none_match: input.copy_source_if_none_match,
                if_modified_since: input.copy_source_if_modified_since,
                if_unmodified_since: input.copy_source_if_unmodified_since,
            },
        },
    )
    .await?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&copied.record)),
            last_modified: Some(timestamp(copied.record.last_modified_ms)),
            ..Default::default()
        }),
        version_id: copied.version_id,
        copy_source_version_id: copied.source_version_id,
        ..Default::default()
    }))
}

pub(super) async fn upload_part_copy(
    state: &Arc<GatewayState>,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let part_number = multipart::check_part_number(input.part_number)?;
    let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
    let conditions = ReadConditions {
        if_match: input.copy_source_if_match,
        if_none_match: input.copy_source_if_none_match,
        if_modified_since: input.copy_source_if_modified_since,
        if_unmodified_since: input.copy_source_if_unmodified_since,
    };
    let src_at = (
        src_bucket.as_str(),
        src_key.as_str(),
        src_version.as_deref(),
    );
    let (src, copy_source_version_id) = copy::source(state, src_at, &conditions).await?;
    let range = match input.copy_source_range.as_deref() {
        None => 0..src.size_bytes,
        Some(r) => copy_source_range(r, src.size_bytes)?,
    };
    let part_ref = RecordRef {
        partition: parts_partition(&input.bucket),
        key: part_sort_key(&input.upload_id, part_number),
    };
    let stored = copy::copy_range(
        state,
        &src.data,
        src.size_bytes,
        range,
        &src.etag,
        &part_ref,
    )
    .await?;
    let etag = multipart::record_part(
        state,
        &input.bucket,
        &input.key,
        &input.upload_id,
        part_number,
        stored,
    )
    .await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(GatewayState::now_ms())),
            ..Default::default()
        }),
        copy_source_version_id,
        ..Default::default()
    }))
}
