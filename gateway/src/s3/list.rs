//! Listing operations: ListObjectsV2, ListObjects (V1) and ListObjectVersions, with S3's
//! `encoding-type=url` and the `max-keys` cap.

use super::convert::{etag, timestamp};
use crate::error::GatewayError;
use crate::list::{self, ListParams};
use crate::state::GatewayState;
use crate::versions::{self, VersionListParams};
use dmpstore_common::limits::MAX_LIST_KEYS;
use dmpstore_common::record::MetaValue;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

/// S3's `encoding-type=url`: keys are percent-encoded in the response (the aws cli asks for it).
fn encode_key(s: &str, url: bool) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    if url {
        percent_encoding::utf8_percent_encode(s, KEEP).to_string()
    } else {
        s.to_string()
    }
}

fn max_keys(requested: Option<i32>) -> Result<usize, GatewayError> {
    match requested {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(GatewayError::InvalidArgument(
            "max-keys must not be negative".into(),
        )),
        Some(n) => Ok((n as usize).min(MAX_LIST_KEYS)),
    }
}

fn listed_objects(listing: &list::Listing, url: bool) -> Vec<Object> {
    listing
        .objects
        .iter()
        .map(|(key, r)| Object {
            key: Some(encode_key(key, url)),
            size: Some(r.size_bytes as i64),
            e_tag: Some(etag(r)),
            last_modified: Some(timestamp(r.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn listed_prefixes(listing: &list::Listing, url: bool) -> Vec<CommonPrefix> {
    listing
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode_key(p, url)),
        })
        .collect()
}

fn wants_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

pub(super) async fn list_objects_v2(
    state: &Arc<GatewayState>,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let url = wants_url(&input.encoding_type);
    let start_after = match &input.continuation_token {
        Some(token) => hex::decode(token).map_err(|_| {
            GatewayError::InvalidArgument("the continuation token is not valid".into())
        })?,
        None => input.start_after.clone().unwrap_or_default().into_bytes(),
    };
    let params = ListParams {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after,
        max_keys: max_keys(input.max_keys)?,
    };
    let listing = list::list(state, &input.bucket, &params).await?;
    let contents = listed_objects(&listing, url);
    let prefixes = listed_prefixes(&listing, url);
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encode_key(&params.prefix, url)),
        delimiter: input.delimiter.map(|d| encode_key(&d, url)),
        max_keys: Some(params.max_keys as i32),
        key_count: Some((contents.len() + prefixes.len()) as i32),
        continuation_token: input.continuation_token,
        start_after: input.start_after.map(|s| encode_key(&s, url)),
        is_truncated: Some(listing.next_cursor.is_some()),
        next_continuation_token: listing.next_cursor.as_ref().map(hex::encode),
        contents: Some(contents),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub(super) async fn list_objects(
    state: &Arc<GatewayState>,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let url = wants_url(&input.encoding_type);
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.marker.clone().unwrap_or_default();
    // A marker that is a common prefix (V1's NextMarker with a delimiter) continues past it.
    let marker_is_prefix = input.delimiter.as_deref().is_some_and(|d| {
        !d.is_empty() && marker.starts_with(prefix.as_str()) && marker[prefix.len()..].ends_with(d)
    });
    let start_after = if marker_is_prefix {
        list::past_prefix(&marker)
    } else {
        marker.clone().into_bytes()
    };
    let params = ListParams {
        prefix: prefix.clone(),
        delimiter: input.delimiter.clone(),
        start_after,
        max_keys: max_keys(input.max_keys)?,
    };
    let listing = list::list(state, &input.bucket, &params).await?;
    let truncated = listing.next_cursor.is_some();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(encode_key(&prefix, url)),
        marker: Some(encode_key(&marker, url)),
        delimiter: input.delimiter.clone().map(|d| encode_key(&d, url)),
        max_keys: Some(params.max_keys as i32),
        is_truncated: Some(truncated),
        next_marker: if truncated {
            listing.last_item.as_deref().map(|k| encode_key(k, url))
        } else {
            None
        },
        contents: Some(listed_objects(&listing, url)),
        common_prefixes: Some(listed_prefixes(&listing, url)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub(super) async fn list_object_versions(
    state: &Arc<GatewayState>,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let url = wants_url(&input.encoding_type);
    let max = max_keys(input.max_keys)?;
    let params = VersionListParams {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        key_marker: input.key_marker.clone(),
        version_id_marker: input.version_id_marker.clone(),
        max_keys: max,
    };
    let listing = versions::list(state, &input.bucket, &params).await?;
    let (versions_out, markers) = listed_versions(listing.versions, url);
    let common_prefixes = listing
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode_key(p, url)),
        })
        .collect();
    let (next_key_marker, next_version_id_marker) = match listing.next.clone() {
        Some((k, v)) => (Some(encode_key(&k, url)), v),
        None => (None, None),
    };
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: input.prefix,
        delimiter: input.delimiter,
        encoding_type: input.encoding_type,
        key_marker: input.key_marker,
        version_id_marker: input.version_id_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(listing.next.is_some()),
        next_key_marker,
        next_version_id_marker,
        versions: Some(versions_out),
        delete_markers: Some(markers),
        common_prefixes: Some(common_prefixes),
        ..Default::default()
    }))
}

/// The `Version` and `DeleteMarker` entries of a ListObjectVersions page, in listing order.
fn listed_versions(
    listed: Vec<versions::ListedVersion>,
    url: bool,
) -> (Vec<ObjectVersion>, Vec<DeleteMarkerEntry>) {
    let owner = Owner {
        display_name: Some("dmpstore".into()),
        id: Some("dmpstore".into()),
    };
    let mut versions_out = Vec::new();
    let mut markers = Vec::new();
    for v in listed {
        let key = Some(encode_key(&v.key, url));
        match v.value {
            MetaValue::Object(r) => versions_out.push(ObjectVersion {
                e_tag: Some(etag(&r)),
                is_latest: Some(v.is_latest),
                key,
                last_modified: Some(timestamp(r.last_modified_ms)),
                owner: Some(owner.clone()),
                size: Some(r.size_bytes as i64),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some(versions::shown(r.version_id.as_deref())),
                ..Default::default()
            }),
            MetaValue::DeleteMarker(m) => markers.push(DeleteMarkerEntry {
                is_latest: Some(v.is_latest),
                key,
                last_modified: Some(timestamp(m.deleted_ms)),
                owner: Some(owner.clone()),
                version_id: Some(versions::shown(m.version_id.as_deref())),
            }),
            _ => {}
        }
    }
    (versions_out, markers)
}
