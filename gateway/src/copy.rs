//! CopyObject and UploadPartCopy. A copy gets chunks of its own (records never share chunks, so
//! deleting the source can never damage the copy), written through the same pipeline as a PUT.
//! A multipart source is copied part by part, so the copy keeps the source's ETag: sync tools
//! compare ETags, and one that changed on copy would make them copy everything again.

use crate::buckets;
use crate::error::GatewayError;
use crate::get;
use crate::preconditions::{self, ReadConditions};
use crate::put::{self, Stored};
use crate::state::GatewayState;
use dmpstore_common::record::{ObjectData, ObjectRecord, PartData};
use dmpstore_common::rpc::RecordRef;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug)]
pub struct CopyRequest {
    pub src_bucket: String,
    pub src_key: String,
    pub src_version_id: Option<String>,
    pub dst_bucket: String,
    pub dst_key: String,
    /// `x-amz-metadata-directive: REPLACE`: take content type and metadata from the request.
    pub replace_metadata: bool,
    pub content_type: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub source_conditions: ReadConditions,
}

/// The source's record (current, or the version asked for), checked against the
/// `x-amz-copy-source-if-*` conditions; with the source version id to report.
pub async fn source(
    state: &Arc<GatewayState>,
    (bucket, key, version_id): (&str, &str, Option<&str>),
    conditions: &ReadConditions,
) -> Result<(ObjectRecord, Option<String>), GatewayError> {
    let (record, shown) = get::head_version(state, bucket, key, version_id).await?;
    preconditions::check_copy_source(&record, conditions)?;
    Ok((record, shown))
}

/// What CopyObject reports.
#[derive(Debug)]
pub struct Copied {
    pub record: ObjectRecord,
    pub version_id: Option<String>,
    pub source_version_id: Option<String>,
}

/// CopyObject: the new record (its ETag is the source's) and the version ids.
pub async fn copy_object(
    state: &Arc<GatewayState>,
    req: CopyRequest,
) -> Result<Copied, GatewayError> {
    let src_at = (
        req.src_bucket.as_str(),
        req.src_key.as_str(),
        req.src_version_id.as_deref(),
    );
    let (src, source_version_id) = source(state, src_at, &req.source_conditions).await?;
    let same_object = req.src_bucket == req.dst_bucket
        && req.src_key == req.dst_key
        && req.src_version_id.is_none();
    if same_object && !req.replace_metadata {
        return Err(GatewayError::InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
        ));
    }
    let dst = buckets::writable(state, &req.dst_bucket).await?;
    let dst_ref = RecordRef {
        partition: req.dst_bucket.clone(),
        key: req.dst_key.clone(),
    };
    let data = copy_data(state, &src, &dst_ref).await?;
    let (content_type, user_metadata) = if req.replace_metadata {
        (req.content_type, req.user_metadata)
    } else {
        (src.content_type.clone(), src.user_metadata.clone())
    };
    let record = ObjectRecord {
        size_bytes: src.size_bytes,
        etag: src.etag.clone(),
        content_type,
        user_metadata,
        last_modified_ms: GatewayState::now_ms(),
        data,
        checksum: src.checksum.clone(),
        tags: crate::tagging::effective(state, &req.src_bucket, &req.src_key, &src).await?,
        version_id: None,
    };
    let target = (
        req.dst_bucket.as_str(),
        dst.versioning,
        req.dst_key.as_str(),
    );
    // As a PUT: in a Suspended bucket under the key's leases.
    let no_conditions = crate::preconditions::WriteConditions::default();
    let version_id =
        match put::commit_object_if(state, target, record.clone(), &no_conditions).await {
            Ok(v) => v,
            Err(put::CommitFailure::Refused(e, data)) => {
                crate::reclaim::discard(state, &data);
                return Err(e);
            }
            Err(put::CommitFailure::Failed(e)) => return Err(e),
        };
    Ok(Copied {
        record,
        version_id,
        source_version_id,
    })
}

/// Writes a copy of the source's bytes, keeping its part structure.
async fn copy_data(
    state: &Arc<GatewayState>,
    src: &ObjectRecord,
    record: &RecordRef,
) -> Result<ObjectData, GatewayError> {
    match &src.data {
        ObjectData::Inline(bytes) => Ok(ObjectData::Inline(bytes.clone())),
        ObjectData::Erasure(_) => Ok(copy_range(
            state,
            &src.data,
            src.size_bytes,
            0..src.size_bytes,
            &src.etag,
            record,
        )
        .await?
        .data),
        ObjectData::Multipart(parts) => {
            let mut copied: Vec<PartData> = Vec::with_capacity(parts.len());
            for part in parts {
                match copy_range(
                    state,
                    &part.data,
                    part.size_bytes,
                    0..part.size_bytes,
                    &part.etag,
                    record,
                )
                .await
                {
                    Ok(stored) => copied.push(PartData {
                        size_bytes: stored.size_bytes,
                        etag: part.etag.clone(),
                        data: stored.data,
                    }),
                    Err(e) => {
                        for done in &copied {
                            put::discard(state, &done.data);
                        }
                        return Err(e);
                    }
                }
            }
            Ok(ObjectData::Multipart(copied))
        }
    }
}

/// Stores `range` of the given data anew; when `expected_md5` is given for the whole range, the
/// copy's MD5 must equal it (the source's ETag), or the copy is dropped.
pub async fn copy_range(
    state: &Arc<GatewayState>,
    data: &ObjectData,
    size_bytes: u64,
    range: Range<u64>,
    expected_md5: &str,
    record: &RecordRef,
) -> Result<Stored, GatewayError> {
    let len = range.end - range.start;
    let whole = range.start == 0 && range.end == size_bytes;
    let body = get::body(state, data, size_bytes, range, None);
    let stored = put::store_body(state, body, Some(len), None, None, record).await?;
    if whole && stored.etag != expected_md5 {
        put::discard(state, &stored.data);
        return Err(GatewayError::Internal(format!(
            "copied bytes have MD5 {} but the source's is {expected_md5}",
            stored.etag
        )));
    }
    Ok(stored)
}
