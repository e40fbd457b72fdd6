//! Multipart uploads. An upload is a record in the bucket's uploads partition; each part is
//! stored like a small object (inline or erasure-coded, with its own chunks) and recorded in the
//! bucket's parts partition. Complete writes one object record that lists the parts in order:
//! no data is copied. Uploads live on the storage nodes, so any gateway can continue or
//! complete them.

use crate::buckets;
use crate::error::GatewayError;
use crate::list;
use crate::meta;
use crate::preconditions::WriteConditions;
use crate::put::{self, discard, Stored};
use crate::reclaim;
use crate::state::GatewayState;
use dmpstore_common::limits::{
    DELETE_OBJECTS_CONCURRENCY, MAX_PARTS, MAX_RECORD_BYTES, MAX_SCAN_ENTRIES,
};
use dmpstore_common::record::{
    part_sort_key, parts_partition, upload_sort_key, uploads_partition, MetaValue, ObjectData,
    ObjectRecord, PartData, PartRecord, UploadRecord, Versioning,
};
use futures::StreamExt;
use md5::{Digest, Md5};
use std::sync::Arc;

pub async fn create(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    content_type: Option<String>,
    user_metadata: Vec<(String, String)>,
    tags: Vec<(String, String)>,
) -> Result<String, GatewayError> {
    buckets::writable(state, bucket).await?;
    let upload_id = hex::encode(rand::random::<[u8; 16]>());
    let record = UploadRecord {
        key: key.to_string(),
        initiated_ms: GatewayState::now_ms(),
        content_type,
        user_metadata,
        tags,
    };
    meta::put(
        state,
        &uploads_partition(bucket),
        &upload_sort_key(key, &upload_id),
        &MetaValue::Upload(record),
    )
    .await?;
    buckets::confirm(state, bucket).await?;
    Ok(upload_id)
}

pub async fn get_upload(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<UploadRecord, GatewayError> {
    match meta::get(
        state,
        &uploads_partition(bucket),
        &upload_sort_key(key, upload_id),
    )
    .await?
    {
        Some(MetaValue::Upload(u)) => Ok(u),
        _ => Err(GatewayError::NoSuchUpload),
    }
}

pub fn check_part_number(n: i32) -> Result<u32, GatewayError> {
    if (1..=MAX_PARTS as i32).contains(&n) {
        Ok(n as u32)
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "part number must be an integer between 1 and {MAX_PARTS}"
        )))
    }
}

/// Records a stored part; a part uploaded again under the same number replaces the old one.
pub async fn record_part(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    stored: Stored,
) -> Result<String, GatewayError> {
    let upload = match get_upload(state, bucket, key, upload_id).await {
        Ok(u) => u,
        Err(e) => {
            discard(state, &stored.data);
            return Err(e);
        }
    };
    let etag = stored.etag.clone();
    let record = PartRecord {
        part_number,
        last_modified_ms: GatewayState::now_ms(),
        part: PartData {
            size_bytes: stored.size_bytes,
            etag: stored.etag,
            data: stored.data,
        },
    };
    let replaced = meta::put(
        state,
        &parts_partition(bucket),
        &part_sort_key(upload_id, part_number),
        &MetaValue::Part(record),
    )
    .await?;
    // The replaced part's data may already belong to the completed object (a part uploaded
    // again while its upload completes): it goes only if no record of the key uses it.
    reclaim::drop_replaced_data(state, bucket, &upload.key, replaced);
    buckets::confirm(state, bucket).await?;
    Ok(etag)
}

/// All recorded parts of an upload, by part number, starting after `marker`, at most `max`.
pub async fn parts(
    state: &Arc<GatewayState>,
    bucket: &str,
    upload_id: &str,
    marker: u32,
    max: usize,
) -> Result<(Vec<PartRecord>, bool), GatewayError> {
    let partition = parts_partition(bucket);
    let prefix = format!("{upload_id}\0");
    let mut cursor = if marker == 0 {
        Vec::new()
    } else {
        part_sort_key(upload_id, marker).into_bytes()
    };
    let mut out = Vec::new();
    loop {
        let page = meta::scan(
            state,
            &partition,
            &prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::With,
        )
        .await?;
        for (_, value) in page.entries {
            if let MetaValue::Part(p) = value {
                if out.len() == max {
                    return Ok((out, true));
                }
                out.push(p);
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok((out, false)),
        }
    }
}

/// CompleteMultipartUpload: checks the client's part list against the recorded parts, then
/// commits one object record listing them. Returns the ETag, `md5(part md5s)-N`.
pub async fn complete(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    upload_id: &str,
    requested: Vec<(u32, String)>,
    conditions: &WriteConditions,
) -> Result<(String, Option<String>), GatewayError> {
    let b = buckets::writable(state, bucket).await?;
    // One completion or abort of an upload at a time, through any gateways: a retried or
    // concurrent Complete finds the upload gone (NoSuchUpload) once one has committed, and an
    // Abort cannot free parts that a Complete is committing.
    let upload_key = upload_sort_key(key, upload_id);
    meta::with_lease(state, &uploads_partition(bucket), &upload_key, |lease| {
        complete_leased(
            state,
            (bucket, b.versioning, key),
            upload_id,
            requested,
            conditions,
            lease,
        )
    })
    .await
}

async fn complete_leased(
    state: &Arc<GatewayState>,
    (bucket, versioning, key): (&str, Versioning, &str),
    upload_id: &str,
    requested: Vec<(u32, String)>,
    conditions: &WriteConditions,
    lease: Arc<meta::KeyLease>,
) -> Result<(String, Option<String>), GatewayError> {
    let upload = get_upload(state, bucket, key, upload_id).await?;
    let (recorded, _) = parts(state, bucket, upload_id, 0, MAX_PARTS).await?;
    let chosen = choose_parts(&recorded, &requested, state.config.min_part_size_bytes)?;

    let etag = multipart_etag(chosen.iter().map(|p| p.part.etag.as_str()))?;
    let record = ObjectRecord {
        size_bytes: chosen.iter().map(|p| p.part.size_bytes).sum(),
        etag: etag.clone(),
        content_type: upload.content_type,
        user_metadata: upload.user_metadata,
        last_modified_ms: GatewayState::now_ms(),
        data: ObjectData::Multipart(chosen.iter().map(|p| p.part.clone()).collect()),
        checksum: None,
        tags: upload.tags,
        version_id: None,
    };
    let encoded = MetaValue::Object(record.clone()).encode().len();
    if encoded > MAX_RECORD_BYTES {
        return Err(GatewayError::InvalidRequest(format!(
            "the part list of this upload makes a record of {encoded} bytes, over the {MAX_RECORD_BYTES} allowed; use fewer or larger parts"
        )));
    }
    // A refused completion leaves the upload and its parts as they were, to retry or abort.
    let version_id = put::commit_object_if(state, (bucket, versioning, key), record, conditions)
        .await
        .map_err(|f| match f {
            put::CommitFailure::Refused(e, _) | put::CommitFailure::Failed(e) => e,
        })?;

    // The upload is over: its records go, and so does the data of parts left out.
    let used: Vec<u32> = chosen.iter().map(|p| p.part_number).collect();
    let unused: Vec<PartRecord> = recorded
        .into_iter()
        .filter(|p| !used.contains(&p.part_number))
        .collect();
    forget_upload(state, bucket, key, upload_id, &used, &unused, &lease).await?;
    Ok((etag, version_id))
}

/// Validates the requested list: ascending part numbers, each recorded with the same ETag,
/// every part but the last at least `min_part_size` (S3: [`dmpstore_common::limits::MIN_PART_SIZE_BYTES`]).
fn choose_parts(
    recorded: &[PartRecord],
    requested: &[(u32, String)],
    min_part_size: u64,
) -> Result<Vec<PartRecord>, GatewayError> {
    if requested.is_empty() {
        return Err(GatewayError::InvalidRequest(
            "You must specify at least one part".into(),
        ));
    }
    if requested.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(GatewayError::InvalidPartOrder);
    }
    let mut chosen = Vec::with_capacity(requested.len());
    for (number, etag) in requested {
        let part = recorded
            .iter()
            .find(|p| p.part_number == *number && p.part.etag == etag.trim_matches('"'))
            .ok_or_else(|| {
                GatewayError::InvalidPart(format!(
                    "part {number} with ETag {etag} was not uploaded"
                ))
            })?;
        chosen.push(part.clone());
    }
    for p in &chosen[..chosen.len() - 1] {
        if p.part.size_bytes < min_part_size {
            return Err(GatewayError::EntityTooSmall {
                part_number: p.part_number,
            });
        }
    }
    Ok(chosen)
}

/// `hex(md5(concat(md5 of each part)))-N`, the ETag S3 gives multipart objects.
pub fn multipart_etag<'a>(
    part_etags: impl Iterator<Item = &'a str>,
) -> Result<String, GatewayError> {
    let mut md5 = Md5::new();
    let mut n = 0;
    for e in part_etags {
        let raw = hex::decode(e)
            .map_err(|_| GatewayError::Internal(format!("part ETag {e} is not hex")))?;
        md5.update(&raw);
        n += 1;
    }
    Ok(format!("{}-{n}", hex::encode(md5.finalize())))
}

pub async fn abort(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), GatewayError> {
    buckets::ensure_exists(state, bucket).await?;
    // Under the upload's leases, as Complete.
    let upload_key = upload_sort_key(key, upload_id);
    meta::with_lease(
        state,
        &uploads_partition(bucket),
        &upload_key,
        |lease| async move {
            get_upload(state, bucket, key, upload_id).await?;
            let (recorded, _) = parts(state, bucket, upload_id, 0, MAX_PARTS).await?;
            forget_upload(state, bucket, key, upload_id, &[], &recorded, &lease).await
        },
    )
    .await
}

/// Tombstones the upload and its part records; drops the data of `unused` parts (the data of
/// `used` parts now belongs to an object).
async fn forget_upload(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    upload_id: &str,
    used: &[u32],
    unused: &[PartRecord],
    lease: &meta::KeyLease,
) -> Result<(), GatewayError> {
    let tombstone = MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    };
    // Fenced by the upload's lease (on this very record): a Complete or Abort that stalled
    // past its lease cannot end the upload after the next holder took over.
    meta::put_maybe_fenced(
        state,
        &uploads_partition(bucket),
        &upload_sort_key(key, upload_id),
        &tombstone,
        Some(lease),
    )
    .await?;
    let partition = parts_partition(bucket);
    let numbers: Vec<u32> = used
        .iter()
        .copied()
        .chain(unused.iter().map(|p| p.part_number))
        .collect();
    // Up to 10,000 records: a bounded number of tombstone writes in flight.
    let results: Vec<Result<_, GatewayError>> = futures::stream::iter(numbers)
        .map(|n| {
            let (partition, tombstone) = (&partition, &tombstone);
            async move { meta::put(state, partition, &part_sort_key(upload_id, n), tombstone).await }
        })
        .buffer_unordered(DELETE_OBJECTS_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    // After the grace and only if no record of the key uses it: a part freed here may be
    // one that a completion (through another gateway, its lease lost to a stall) committed.
    reclaim::drop_data_later(
        state,
        bucket,
        key,
        unused.iter().map(|p| p.part.data.clone()).collect(),
    );
    Ok(())
}

#[derive(Debug)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub record: UploadRecord,
}

/// Uploads in progress whose key starts with `prefix`, after the markers, in key order.
pub async fn list_uploads(
    state: &Arc<GatewayState>,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    key_marker: &str,
    upload_id_marker: &str,
    max: usize,
) -> Result<UploadListing, GatewayError> {
    buckets::ensure_exists(state, bucket).await?;
    let partition = uploads_partition(bucket);
    // A key marker that is a common prefix (a previous page's NextKeyMarker) continues past it.
    let marker_is_prefix = delimiter.is_some_and(|d| {
        !d.is_empty() && key_marker.starts_with(prefix) && key_marker[prefix.len()..].ends_with(d)
    });
    let mut cursor = match (key_marker, upload_id_marker) {
        ("", _) => Vec::new(),
        (k, _) if marker_is_prefix => list::past_prefix(k),
        (k, "") => {
            let mut c = format!("{k}\0").into_bytes();
            c.push(0xFF);
            c
        }
        (k, u) => upload_sort_key(k, u).into_bytes(),
    };
    let mut out = UploadListing::default();
    loop {
        let page = meta::scan(
            state,
            &partition,
            prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        let mut skip: Option<String> = None;
        for (sort_key, value) in page.entries {
            let MetaValue::Upload(record) = value else {
                continue;
            };
            if skip.as_deref().is_some_and(|p| record.key.starts_with(p)) {
                continue;
            }
            if out.uploads.len() + out.common_prefixes.len() == max {
                out.truncated = true;
                return Ok(out);
            }
            if let Some(cp) = list::rolled_up(&record.key, prefix, delimiter) {
                out.common_prefixes.push(cp.to_string());
                skip = Some(cp.to_string());
                continue;
            }
            let upload_id = sort_key.rsplit('\0').next().unwrap_or_default().to_string();
            out.uploads.push(UploadEntry {
                key: record.key.clone(),
                upload_id,
                record,
            });
        }
        match (page.next, skip) {
            (Some(next), Some(cp)) => cursor = next.max(list::past_prefix(&cp)),
            (Some(next), None) => cursor = next,
            (None, _) => return Ok(out),
        }
    }
}

#[derive(Debug, Default)]
pub struct UploadListing {
    pub uploads: Vec<UploadEntry>,
    /// With a delimiter: the key prefixes uploads were rolled up into.
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpstore_common::limits::MIN_PART_SIZE_BYTES;

    #[test]
    fn multipart_etag_is_md5_of_part_md5s_with_count() {
        // Two parts "a" and "b": md5("a") = 0cc175b9..., md5("b") = 92eb5ffe...
        let parts = [
            "0cc175b9c0f1b6a831c399e269772661",
            "92eb5ffee6ae2fec3ad71c777531578f",
        ];
        let mut concat = Vec::new();
        for p in parts {
            concat.extend(hex::decode(p).unwrap());
        }
        let expected = format!("{}-2", hex::encode(Md5::digest(&concat)));
        assert_eq!(multipart_etag(parts.into_iter()).unwrap(), expected);
    }

    fn part(n: u32, size: u64) -> PartRecord {
        PartRecord {
            part_number: n,
            last_modified_ms: 0,
            part: PartData {
                size_bytes: size,
                etag: format!("{n:032x}"),
                data: ObjectData::Inline(vec![]),
            },
        }
    }

    #[test]
    fn part_lists_are_checked_for_order_etags_and_sizes() {
        let big = MIN_PART_SIZE_BYTES;
        let recorded = [part(1, big), part(2, big), part(3, 10)];
        let req = |v: &[u32]| {
            v.iter()
                .map(|&n| (n, format!("\"{n:032x}\"")))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            choose_parts(&recorded, &req(&[1, 2, 3]), big)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            choose_parts(&recorded, &req(&[1, 3]), big).unwrap().len(),
            2
        );
        assert!(matches!(
            choose_parts(&recorded, &req(&[2, 1]), big),
            Err(GatewayError::InvalidPartOrder)
        ));
        assert!(matches!(
            choose_parts(&recorded, &req(&[1, 4]), big),
            Err(GatewayError::InvalidPart(_))
        ));
        assert!(matches!(
            choose_parts(&recorded, &req(&[3, 4]), big),
            Err(GatewayError::InvalidPart(_))
        ));
        assert!(matches!(
            choose_parts(&recorded, &[(1, "\"bad\"".into())], big),
            Err(GatewayError::InvalidPart(_))
        ));
        let small_first = [part(1, 10), part(2, big)];
        assert!(
            choose_parts(&small_first, &req(&[1, 2]), 10).is_ok(),
            "the minimum part size is the gateway's setting"
        );
        assert!(matches!(
            choose_parts(&small_first, &req(&[1, 2]), big),
            Err(GatewayError::EntityTooSmall { part_number: 1 })
        ));
        assert!(matches!(
            choose_parts(&recorded, &[], big),
            Err(GatewayError::InvalidRequest(_))
        ));
    }
}
