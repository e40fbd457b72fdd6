//! Object operations: PutObject, GetObject, HeadObject, DeleteObject and DeleteObjects.

use super::convert::{
    content_length, empty_body, etag, requested_checksum, sorted_metadata, timestamp,
    user_metadata, ChecksumFields,
};
use crate::buckets;
use crate::checksum::{ChecksumCheck, HeaderChecksums};
use crate::error::GatewayError;
use crate::get;
use crate::policy::acl::Permission;
use crate::preconditions::{self, ReadConditions, WriteConditions};
use crate::put::{self, PutRequest};
use crate::state::GatewayState;
use crate::tagging;
use crate::versions;
use dmpstore_common::limits::{DELETE_OBJECTS_CONCURRENCY, MAX_DELETE_OBJECTS_KEYS};
use dmpstore_common::record::{version_sort_key, versions_partition};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

pub(super) async fn put_object(
    state: &Arc<GatewayState>,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let values = HeaderChecksums {
        crc32: input.checksum_crc32.clone(),
        crc32c: input.checksum_crc32c.clone(),
        crc64nvme: input.checksum_crc64nvme.clone(),
        sha1: input.checksum_sha1.clone(),
        sha256: input.checksum_sha256.clone(),
    };
    let checksum = ChecksumCheck::from_request(&headers, &values, trailing_headers)?;
    let tags = tagging::parse_header(input.tagging.as_deref())?;
    let content_length = content_length(input.content_length)?;
    let grant_headers = [
        (input.grant_full_control.as_deref(), Permission::FullControl),
        (input.grant_read.as_deref(), Permission::Read),
        (input.grant_read_acp.as_deref(), Permission::ReadAcp),
        (input.grant_write_acp.as_deref(), Permission::WriteAcp),
    ];
    let acl = super::access::requested_object_grants(
        state,
        &input.bucket,
        input.acl.as_ref().map(|a| a.as_str()),
        &grant_headers,
    )
    .await?;
    let (bucket, key) = (input.bucket.clone(), input.key.clone());
    let body = input.body.unwrap_or_else(empty_body);
    let result = put::put_object(
        state,
        PutRequest {
            bucket: input.bucket,
            key: input.key,
            body,
            content_length,
            content_md5: input.content_md5,
            content_type: input.content_type,
            user_metadata: sorted_metadata(input.metadata),
            conditions: WriteConditions {
                if_match: input.if_match,
                if_none_match: input.if_none_match,
            },
            checksum,
            tags,
        },
    )
    .await?;
    if let Some(grants) = acl.filter(|g| !g.is_empty()) {
        // After the commit: until then the new version is private, never more open.
        super::access::set_object_grants(state, &bucket, &key, &result.version_token, grants)
            .await?;
    }
    let sums = ChecksumFields::of(result.checksum.as_ref());
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(result.etag)),
        size: Some(result.size_bytes as i64),
        version_id: result.version_id,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    }))
}

pub(super) async fn get_object(
    state: &Arc<GatewayState>,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (record, version_id) = get::head_version(
        state,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
    )
    .await?;
    preconditions::check_read(
        &record,
        &ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        },
    )?;
    // A full-object checksum describes the whole body only: none on range responses.
    let whole = input.range.is_none();
    let sums = ChecksumFields::of(requested_checksum(
        &record,
        input.checksum_mode.as_ref(),
        whole,
    ));
    let size = record.size_bytes;
    let range = get::resolve_range(input.range.as_ref(), size)?;
    let content_range = range
        .as_ref()
        .map(|r| format!("bytes {}-{}/{size}", r.start, r.end - 1));
    let range = range.unwrap_or(0..size);
    let origin = read_origin(&input.bucket, &input.key, input.version_id.as_deref());
    let body = get::body(state, &record.data, size, range.clone(), origin);
    state.metrics.bytes_out.inc_by(range.end - range.start);
    Ok(S3Response::new(GetObjectOutput {
        body: Some(body),
        content_length: Some((range.end - range.start) as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag(&record)),
        last_modified: Some(timestamp(record.last_modified_ms)),
        content_type: record.content_type.clone(),
        metadata: user_metadata(&record),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        version_id,
        ..Default::default()
    }))
}

/// The record a GET of `version_id` read, as `(partition, sort key)`, for the read path's
/// repairs: the current version's record, a version record, or none for the null version.
fn read_origin(bucket: &str, key: &str, version_id: Option<&str>) -> Option<(String, String)> {
    match version_id {
        None => Some((bucket.to_string(), key.to_string())),
        Some(versions::NULL) => None,
        Some(id) => Some((versions_partition(bucket), version_sort_key(key, id))),
    }
}

pub(super) async fn head_object(
    state: &Arc<GatewayState>,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let (record, version_id) = get::head_version(
        state,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
    )
    .await?;
    let sums = ChecksumFields::of(requested_checksum(
        &record,
        input.checksum_mode.as_ref(),
        true,
    ));
    preconditions::check_read(
        &record,
        &ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        },
    )?;
    Ok(S3Response::new(HeadObjectOutput {
        content_length: Some(record.size_bytes as i64),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag(&record)),
        last_modified: Some(timestamp(record.last_modified_ms)),
        content_type: record.content_type.clone(),
        metadata: user_metadata(&record),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        version_id,
        ..Default::default()
    }))
}

pub(super) async fn delete_object(
    state: &Arc<GatewayState>,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let deleted = versions::delete(
        state,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
    )
    .await?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: deleted.delete_marker.then_some(true),
        version_id: deleted.version_id,
        ..Default::default()
    }))
}

/// One key of a DeleteObjects request: the key, the version id it asked for, and how it went.
type DeleteOutcome = (
    String,
    Option<String>,
    Result<versions::Deleted, GatewayError>,
);

pub(super) async fn delete_objects(
    state: &Arc<GatewayState>,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.len() > MAX_DELETE_OBJECTS_KEYS {
        return Err(GatewayError::InvalidRequest(format!(
            "at most {MAX_DELETE_OBJECTS_KEYS} keys per request"
        ))
        .into());
    }
    buckets::ensure_exists(state, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let bucket = &input.bucket;
    let results: Vec<DeleteOutcome> = futures::stream::iter(objects)
        .map(|o| async move {
            let result = versions::delete(state, bucket, &o.key, o.version_id.as_deref()).await;
            (o.key, o.version_id, result)
        })
        .buffered(DELETE_OBJECTS_CONCURRENCY)
        .collect()
        .await;
    let (deleted, errors) = delete_results(results, quiet);
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}

/// The `Deleted` entries (none when `quiet`) and the `Error` entries of a DeleteObjects
/// response, in request order.
fn delete_results(results: Vec<DeleteOutcome>, quiet: bool) -> (Vec<DeletedObject>, Vec<Error>) {
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (key, asked_version, result) in results {
        match result {
            Ok(_) if quiet => {}
            Ok(d) => deleted.push(if asked_version.is_some() {
                DeletedObject {
                    key: Some(key),
                    version_id: d.version_id,
                    delete_marker: d.delete_marker.then_some(true),
                    ..Default::default()
                }
            } else {
                DeletedObject {
                    key: Some(key),
                    delete_marker: d.delete_marker.then_some(true),
                    delete_marker_version_id: d.version_id.filter(|_| d.delete_marker),
                    ..Default::default()
                }
            }),
            Err(e) => {
                let s3 = s3s::S3Error::from(e);
                errors.push(Error {
                    code: Some(s3.code().as_str().to_string()),
                    message: s3.message().map(str::to_string),
                    key: Some(key),
                    version_id: asked_version,
                });
            }
        }
    }
    (deleted, errors)
}
