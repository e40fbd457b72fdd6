//! Multipart upload operations: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts and ListMultipartUploads. UploadPartCopy is with the
//! copies (`copy.rs`).

use super::convert::{content_length, empty_body, sorted_metadata, timestamp, ChecksumFields};
use crate::buckets;
use crate::checksum::{ChecksumCheck, HeaderChecksums};
use crate::multipart;
use crate::preconditions::WriteConditions;
use crate::put;
use crate::state::GatewayState;
use crate::tagging;
use dmpstore_common::limits::MAX_PARTS;
use dmpstore_common::record::{part_sort_key, parts_partition};
use dmpstore_common::rpc::RecordRef;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

pub(super) async fn create_multipart_upload(
    state: &Arc<GatewayState>,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    let upload_id = multipart::create(
        state,
        &input.bucket,
        &input.key,
        input.content_type,
        sorted_metadata(input.metadata),
        tagging::parse_header(input.tagging.as_deref())?,
    )
    .await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        ..Default::default()
    }))
}

pub(super) async fn upload_part(
    state: &Arc<GatewayState>,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let part_number = multipart::check_part_number(input.part_number)?;
    let values = HeaderChecksums {
        crc32: input.checksum_crc32.clone(),
        crc32c: input.checksum_crc32c.clone(),
        crc64nvme: input.checksum_crc64nvme.clone(),
        sha1: input.checksum_sha1.clone(),
        sha256: input.checksum_sha256.clone(),
    };
    let checksum = ChecksumCheck::from_request(&headers, &values, trailing_headers)?;
    let body = input.body.unwrap_or_else(empty_body);
    let part_ref = RecordRef {
        partition: parts_partition(&input.bucket),
        key: part_sort_key(&input.upload_id, part_number),
    };
    let stored = put::store_body(
        state,
        body,
        content_length(input.content_length)?,
        input.content_md5.as_deref(),
        checksum,
        &part_ref,
    )
    .await?;
    let checksum = stored.checksum.clone();
    state.metrics.bytes_in.inc_by(stored.size_bytes);
    let etag = multipart::record_part(
        state,
        &input.bucket,
        &input.key,
        &input.upload_id,
        part_number,
        stored,
    )
    .await?;
    let sums = ChecksumFields::of(checksum.as_ref());
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    }))
}

pub(super) async fn complete_multipart_upload(
    state: &Arc<GatewayState>,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let mut requested = Vec::new();
    for p in input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
    {
        let number = multipart::check_part_number(p.part_number.unwrap_or(0))?;
        let etag = p.e_tag.map(|e| e.value().to_string()).unwrap_or_default();
        requested.push((number, etag));
    }
    let conditions = WriteConditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    let (etag, version_id) = multipart::complete(
        state,
        &input.bucket,
        &input.key,
        &input.upload_id,
        requested,
        &conditions,
    )
    .await?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id,
        ..Default::default()
    }))
}

pub(super) async fn abort_multipart_upload(
    state: &Arc<GatewayState>,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    multipart::abort(state, &input.bucket, &input.key, &input.upload_id).await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_parts(
    state: &Arc<GatewayState>,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = input
        .part_number_marker
        .unwrap_or(0)
        .clamp(0, MAX_PARTS as i32) as u32;
    buckets::ensure_exists(state, &input.bucket).await?;
    let (parts, truncated) =
        multipart::parts(state, &input.bucket, &input.upload_id, marker, max).await?;
    if parts.is_empty() && marker == 0 {
        // Distinguish an upload without parts from one that does not exist.
        multipart::get_upload(state, &input.bucket, &input.key, &input.upload_id).await?;
    }
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        is_truncated: Some(truncated),
        next_part_number_marker: parts.last().map(|p| p.part_number as i32),
        parts: Some(
            parts
                .iter()
                .map(|p| Part {
                    part_number: Some(p.part_number as i32),
                    e_tag: Some(ETag::Strong(p.part.etag.clone())),
                    size: Some(p.part.size_bytes as i64),
                    last_modified: Some(timestamp(p.last_modified_ms)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

pub(super) async fn list_multipart_uploads(
    state: &Arc<GatewayState>,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let prefix = input.prefix.clone().unwrap_or_default();
    let listing = multipart::list_uploads(
        state,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        input.key_marker.as_deref().unwrap_or(""),
        input.upload_id_marker.as_deref().unwrap_or(""),
        max,
    )
    .await?;
    // The page's last entry, an upload or a common prefix, is where the next one starts.
    let last_upload = listing
        .uploads
        .last()
        .map(|u| (u.key.clone(), Some(u.upload_id.clone())));
    let last_prefix = listing.common_prefixes.last().map(|p| (p.clone(), None));
    let last = last_upload
        .into_iter()
        .chain(last_prefix)
        .max_by(|a, b| a.0.cmp(&b.0));
    let (next_key_marker, next_upload_id_marker) = match (listing.truncated, last) {
        (true, Some((key, id))) => (Some(key), id),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        delimiter: input.delimiter,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(listing.truncated),
        next_key_marker,
        next_upload_id_marker,
        common_prefixes: Some(
            listing
                .common_prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect(),
        ),
        uploads: Some(
            listing
                .uploads
                .into_iter()
                .map(|u| MultipartUpload {
                    key: Some(u.key),
                    upload_id: Some(u.upload_id),
                    initiated: Some(timestamp(u.record.initiated_ms)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}
