//! Bucket versioning (ADR 0002): version ids, delete markers, reads and deletes by version id,
//! and ListObjectVersions.
//!
//! The bucket's own partition keeps one *current* record per key, so GET, HEAD and LIST of the
//! latest version cost what they cost without versioning. Once versioning is on, every version
//! (object or delete marker) also has a record in the bucket's versions partition, keyed
//! `key \0 stamp...` with the stamp an inverted clock, so the versions of a key are adjacent and
//! newest first, and ListObjectVersions is one ordered scan.
//!
//! A write in a versioned bucket writes the version record first, then the current record; only
//! deleting a version by id (or replacing the null version while suspended) drops data.

use crate::buckets;
use crate::error::GatewayError;
use crate::list::{past_prefix, rolled_up};
use crate::meta;
use crate::reclaim::{drop_data_later, drop_replaced_data};
use crate::state::GatewayState;
use dmpstore_common::ids::Hlc;
use dmpstore_common::limits::MAX_SCAN_ENTRIES;
use dmpstore_common::record::{
    is_valid_version_id, key_of_version_sort_key, new_version_id, null_version_sort_key,
    version_sort_key, versions_of_key_prefix, versions_partition, BucketRecord, DeleteMarker,
    MetaValue, ObjectData, ObjectRecord, Versioned, Versioning, NULL_VERSION_ID,
};
use std::sync::Arc;

/// The version id of the null version.
pub const NULL: &str = NULL_VERSION_ID;

/// The version id a client sees for a record's version id (`None` is the null version).
pub fn shown(version_id: Option<&str>) -> String {
    version_id.unwrap_or(NULL_VERSION_ID).to_string()
}

/// The version id to report for a record of a bucket: none while versioning was never on.
pub fn reported(bucket: &BucketRecord, version_id: Option<&str>) -> Option<String> {
    (bucket.versioning != Versioning::Unversioned).then(|| shown(version_id))
}

fn check_version_id(id: &str) -> Result<(), GatewayError> {
    if is_valid_version_id(id) {
        Ok(())
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "invalid version id specified: {id:?}"
        )))
    }
}

fn set_version_id(value: &mut MetaValue, id: Option<String>) {
    match value {
        MetaValue::Object(r) => r.version_id = id,
        MetaValue::DeleteMarker(m) => m.version_id = id,
        _ => {}
    }
}

/// Where a null version sits among the versions of its key: at its own time, so writing the
/// same null version twice (see [`keep_null_predecessor`]) lands on the same record.
fn null_sort_key(key: &str, value: &MetaValue) -> String {
    let ms = match value {
        MetaValue::Object(r) => r.last_modified_ms,
        MetaValue::DeleteMarker(m) => m.deleted_ms,
        _ => 0,
    };
    null_version_sort_key(key, Hlc::from_parts(ms, 0))
}

fn data_of(value: &MetaValue) -> Option<ObjectData> {
    match value {
        MetaValue::Object(r) => Some(r.data.clone()),
        _ => None,
    }
}

/// The newest of the records a write replaced: the version that was current before it (a
/// majority write always meets the last committed record on at least one replica).
fn newest_replaced(replaced: &[Versioned]) -> Option<MetaValue> {
    let newest = replaced
        .iter()
        .fold(None::<&Versioned>, |best, v| match best {
            Some(b) if !v.supersedes(b) => Some(b),
            _ => Some(v),
        })?;
    MetaValue::decode(&newest.value).ok()
}

/// Commits `value` (an object record or a delete marker) as the newest version of `key` and
/// returns the version id to report. Unversioned buckets keep one version per key and drop the
/// replaced data; Enabled buckets give every version its own id and drop nothing; Suspended
/// buckets write the null version, replacing (and dropping) the previous null version only.
pub async fn commit(
    state: &Arc<GatewayState>,
    bucket: &str,
    versioning: Versioning,
    key: &str,
    mut value: MetaValue,
    lease: Option<&meta::KeyLease>,
) -> Result<Option<String>, GatewayError> {
    let makes_version = value.is_version();
    let id = commit_records(state, bucket, versioning, key, &mut value, lease).await?;
    if makes_version {
        // Acknowledged only if it landed in a bucket that still exists (ADR 0005).
        buckets::confirm(state, bucket).await?;
    }
    Ok(id)
}

async fn commit_records(
    state: &Arc<GatewayState>,
    bucket: &str,
    versioning: Versioning,
    key: &str,
    value: &mut MetaValue,
    lease: Option<&meta::KeyLease>,
) -> Result<Option<String>, GatewayError> {
    let vp = versions_partition(bucket);
    // The key's current record, fenced by the key's lease when the caller holds it.
    let put_current = |value: MetaValue| async move {
        meta::put_maybe_fenced(state, bucket, key, &value, lease).await
    };
    match versioning {
        Versioning::Unversioned => {
            set_version_id(value, None);
            let replaced = put_current(value.clone()).await?;
            if replaced
                .iter()
                .any(|r| MetaValue::decode(&r.value).is_ok_and(|v| v.version_id().is_some()))
            {
                // Versioning was turned on while this write was in flight: the replaced record
                // is a version that must stay.
                tracing::info!(
                    bucket,
                    key,
                    "write raced with enabling versioning; nothing dropped"
                );
            } else {
                drop_replaced_data(state, bucket, key, replaced);
            }
            Ok(None)
        }
        Versioning::Enabled => {
            // The version id orders versions, so it must come from a stamp above the key's
            // current version, whatever this gateway's clock says: reading the current
            // record moves the clock past it (DESIGN 15).
            meta::get(state, bucket, key).await?;
            let id = new_version_id(state.next_hlc(), rand::random());
            set_version_id(value, Some(id.clone()));
            meta::put(state, &vp, &version_sort_key(key, &id), value).await?;
            let replaced = put_current(value.clone()).await?;
            keep_null_predecessor(state, bucket, key, &replaced).await?;
            Ok(Some(id))
        }
        Versioning::Suspended => {
            set_version_id(value, None);
            let sort_key = null_sort_key(key, value);
            let replaced_version = meta::put(state, &vp, &sort_key, value).await?;
            drop_replaced_data(state, bucket, key, replaced_version);
            let replaced = put_current(value.clone()).await?;
            let mut dropped = drop_null_versions(state, bucket, key, Some(&sort_key)).await?;
            // A null version from before versioning was turned on may exist only as the
            // current record.
            if let Some(prev) = newest_replaced(&replaced) {
                if prev.version_id().is_none() {
                    dropped.extend(data_of(&prev));
                }
            }
            drop_data_later(state, bucket, key, dropped);
            Ok(Some(NULL_VERSION_ID.to_string()))
        }
    }
}

/// Enabled bucket: if the version just replaced as current was a null version, makes sure it
/// is kept among the versions (it may predate versioning and exist only as a current record).
async fn keep_null_predecessor(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    replaced: &[Versioned],
) -> Result<(), GatewayError> {
    let Some(prev) = newest_replaced(replaced) else {
        return Ok(());
    };
    if prev.is_version() && prev.version_id().is_none() {
        let vp = versions_partition(bucket);
        meta::put(state, &vp, &null_sort_key(key, &prev), &prev).await?;
    }
    Ok(())
}

/// Every version record of `key`, newest first, tombstones (deleted versions) left out.
async fn versions_of_key(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    first_only: bool,
) -> Result<Vec<(String, MetaValue)>, GatewayError> {
    let vp = versions_partition(bucket);
    let prefix = versions_of_key_prefix(key);
    let mut out = Vec::new();
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            &vp,
            &prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::With,
        )
        .await?;
        for (sort_key, value) in page.entries {
            if value.is_version() {
                out.push((sort_key, value));
                if first_only {
                    return Ok(out);
                }
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
}

/// Removes the null version records of `key` (but `keep`) and returns their data, to drop.
async fn drop_null_versions(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    keep: Option<&str>,
) -> Result<Vec<ObjectData>, GatewayError> {
    let vp = versions_partition(bucket);
    let mut dropped = Vec::new();
    for (sort_key, value) in versions_of_key(state, bucket, key, false).await? {
        if value.version_id().is_none() && Some(sort_key.as_str()) != keep {
            meta::put(state, &vp, &sort_key, &tombstone()).await?;
            dropped.extend(data_of(&value));
        }
    }
    Ok(dropped)
}

fn tombstone() -> MetaValue {
    MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    }
}

/// One version of `key`: an object version or a delete marker.
pub async fn get_version(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<(BucketRecord, MetaValue), GatewayError> {
    check_version_id(version_id)?;
    let b = buckets::ensure_exists(state, bucket).await?;
    let found = if version_id == NULL_VERSION_ID {
        match versions_of_key(state, bucket, key, false)
            .await?
            .into_iter()
            .find(|(_, v)| v.version_id().is_none())
        {
            Some((_, v)) => Some(v),
            // A null version from before versioning, never replaced: only the current record.
            None => meta::get(state, bucket, key)
                .await?
                .filter(|v| v.is_version() && v.version_id().is_none()),
        }
    } else {
        let vp = versions_partition(bucket);
        meta::get(state, &vp, &version_sort_key(key, version_id)).await?
    };
    match found {
        Some(v) if v.is_version() => Ok((b, v)),
        _ => Err(GatewayError::NoSuchVersion),
    }
}

/// An object version by id for GET, HEAD and copy: a delete marker is 405 MethodNotAllowed.
pub async fn get_object_version(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<(BucketRecord, ObjectRecord), GatewayError> {
    match get_version(state, bucket, key, version_id).await? {
        (b, MetaValue::Object(r)) => Ok((b, r)),
        _ => Err(GatewayError::MethodNotAllowed(
            "the specified version is a delete marker".into(),
        )),
    }
}

/// What DeleteObject reports.
#[derive(Debug, Default)]
pub struct Deleted {
    pub version_id: Option<String>,
    pub delete_marker: bool,
}

/// DeleteObject, with or without a version id.
pub async fn delete(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Deleted, GatewayError> {
    if let Some(id) = version_id {
        check_version_id(id)?;
    }
    let b = buckets::ensure_exists(state, bucket).await?;
    match (version_id, b.versioning) {
        (None, Versioning::Unversioned) => {
            commit(state, bucket, b.versioning, key, tombstone(), None).await?;
            Ok(Deleted::default())
        }
        (None, versioning) => {
            let marker = MetaValue::DeleteMarker(DeleteMarker {
                version_id: None,
                deleted_ms: GatewayState::now_ms(),
            });
            let id = if versioning == Versioning::Suspended {
                // The null version is two records: writers of one key take turns (as PUTs do).
                meta::with_lease(state, bucket, key, |lease| async move {
                    commit(state, bucket, versioning, key, marker, Some(&lease)).await
                })
                .await?
            } else {
                commit(state, bucket, versioning, key, marker, None).await?
            };
            Ok(Deleted {
                version_id: id,
                delete_marker: true,
            })
        }
        (Some(id), _) => {
            // Under the key's leases, so two deletes of versions of one key cannot both decide
            // which version becomes current.
            meta::with_lease(state, bucket, key, |lease| async move {
                delete_version(state, bucket, key, id, &lease).await
            })
            .await
        }
    }
}

/// Removes one version; if it was the current one, the newest remaining version (or nothing)
/// becomes current. Deleting a version that does not exist succeeds, as in S3.
async fn delete_version(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    id: &str,
    lease: &meta::KeyLease,
) -> Result<Deleted, GatewayError> {
    let vp = versions_partition(bucket);
    let current = meta::get(state, bucket, key).await?;
    let wanted = |v: &MetaValue| v.is_version() && v.version_id().unwrap_or(NULL_VERSION_ID) == id;
    let targets: Vec<(String, MetaValue)> = if id == NULL_VERSION_ID {
        versions_of_key(state, bucket, key, false)
            .await?
            .into_iter()
            .filter(|(_, v)| v.version_id().is_none())
            .collect()
    } else {
        let sort_key = version_sort_key(key, id);
        meta::get(state, &vp, &sort_key)
            .await?
            .filter(|v| v.is_version())
            .map(|v| vec![(sort_key, v)])
            .unwrap_or_default()
    };
    let current_is_target = current.as_ref().is_some_and(wanted);
    let was_marker = targets
        .iter()
        .map(|(_, v)| v)
        .chain(current.iter().filter(|v| wanted(v)))
        .any(|v| matches!(v, MetaValue::DeleteMarker(_)));
    let mut dropped: Vec<ObjectData> = Vec::new();
    for (sort_key, value) in &targets {
        meta::put(state, &vp, sort_key, &tombstone()).await?;
        dropped.extend(data_of(value));
    }
    if current_is_target {
        let next = versions_of_key(state, bucket, key, true).await?;
        let value = next.into_iter().next().map_or_else(tombstone, |(_, v)| v);
        meta::put_maybe_fenced(state, bucket, key, &value, Some(lease)).await?;
        dropped.extend(current.as_ref().and_then(data_of));
    }
    drop_data_later(state, bucket, key, dropped);
    Ok(Deleted {
        version_id: Some(id.to_string()),
        delete_marker: was_marker,
    })
}

/// PutBucketVersioning. Turning versioning on for the first time records every existing object
/// as its null version, so ListObjectVersions and reads by `versionId=null` see it.
pub async fn set_versioning(
    state: &Arc<GatewayState>,
    bucket: &str,
    versioning: Versioning,
) -> Result<(), GatewayError> {
    let b = buckets::writable(state, bucket).await?;
    if b.versioning == versioning {
        return Ok(());
    }
    let to = BucketRecord {
        versioning,
        ..b.clone()
    };
    if !buckets::update(state, bucket, &b, to).await? {
        return Err(GatewayError::OperationAborted);
    }
    if b.versioning == Versioning::Unversioned {
        record_existing_as_null_versions(state, bucket).await?;
    }
    tracing::info!(bucket, ?versioning, "bucket versioning changed");
    Ok(())
}

async fn record_existing_as_null_versions(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<(), GatewayError> {
    let vp = versions_partition(bucket);
    let mut cursor = Vec::new();
    let mut recorded = 0u64;
    loop {
        let page = meta::scan(
            state,
            bucket,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::With,
        )
        .await?;
        for (key, value) in &page.entries {
            if value.is_version() && value.version_id().is_none() {
                meta::put(state, &vp, &null_sort_key(key, value), value).await?;
                recorded += 1;
                if recorded.is_multiple_of(1000) {
                    tracing::info!(
                        bucket,
                        recorded,
                        "recording existing objects as null versions"
                    );
                }
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    tracing::info!(
        bucket,
        recorded,
        "existing objects recorded as null versions"
    );
    Ok(())
}

/// Whether the bucket holds any version (object or delete marker) at all.
pub async fn has_versions(state: &Arc<GatewayState>, bucket: &str) -> Result<bool, GatewayError> {
    let vp = versions_partition(bucket);
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            &vp,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        if page.entries.iter().any(|(_, v)| v.is_version()) {
            return Ok(true);
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(false),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug)]
pub struct ListedVersion {
    pub key: String,
    /// An object version or a delete marker.
    pub value: MetaValue,
    pub is_latest: bool,
}

#[derive(Debug, Default)]
pub struct VersionListing {
    pub versions: Vec<ListedVersion>,
    pub common_prefixes: Vec<String>,
    /// Set when truncated: NextKeyMarker and NextVersionIdMarker.
    pub next: Option<(String, Option<String>)>,
}

/// ListObjectVersions: versions newest first within each key, keys in order, common prefixes
/// rolled up (and skipped over) as in ListObjects.
pub async fn list(
    state: &Arc<GatewayState>,
    bucket: &str,
    params: &VersionListParams,
) -> Result<VersionListing, GatewayError> {
    let b = buckets::ensure_exists(state, bucket).await?;
    if b.versioning == Versioning::Unversioned {
        return list_unversioned(state, bucket, params).await;
    }
    let vp = versions_partition(bucket);
    let mut out = VersionListing::default();
    if params.max_keys == 0 {
        return Ok(out);
    }
    let delimiter = params.delimiter.as_deref();
    // Where to start, and the key whose latest version was already listed on an earlier page.
    let mut last_key: Option<String> = None;
    let mut cursor: Vec<u8> = Vec::new();
    if let Some(marker) = params.key_marker.as_deref().filter(|m| !m.is_empty()) {
        match params
            .version_id_marker
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            Some(vid) => {
                check_version_id(vid)?;
                cursor = marker_sort_key(state, bucket, marker, vid)
                    .await?
                    .into_bytes();
                last_key = Some(marker.to_string());
            }
            None if rolled_up(marker, &params.prefix, delimiter) == Some(marker) => {
                cursor = past_prefix(marker);
            }
            None => {
                cursor = versions_of_key_prefix(marker).into_bytes();
                cursor.push(0xFF);
            }
        }
    }
    let mut count = 0usize;
    loop {
        let page = meta::scan(
            state,
            &vp,
            &params.prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        let mut skip: Option<String> = None;
        for (sort_key, value) in page.entries {
            let key = key_of_version_sort_key(&sort_key).to_string();
            if skip.as_deref().is_some_and(|p| key.starts_with(p)) || !value.is_version() {
                continue;
            }
            if count == params.max_keys {
                return Ok(out); // more follow: truncated at `next`
            }
            count += 1;
            match rolled_up(&key, &params.prefix, delimiter) {
                Some(cp) => {
                    let cp = cp.to_string();
                    out.next = Some((cp.clone(), None));
                    out.common_prefixes.push(cp.clone());
                    skip = Some(cp);
                }
                None => {
                    let is_latest = last_key.as_deref() != Some(key.as_str());
                    last_key = Some(key.clone());
                    out.next = Some((key.clone(), Some(shown(value.version_id()))));
                    out.versions.push(ListedVersion {
                        key,
                        value,
                        is_latest,
                    });
                }
            }
        }
        let Some(next) = page.next else { break };
        cursor = match skip {
            Some(cp) => next.max(past_prefix(&cp)),
            None => next,
        };
    }
    out.next = None;
    Ok(out)
}

/// The sort key a (key, version id) marker stands for.
async fn marker_sort_key(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<String, GatewayError> {
    if version_id != NULL_VERSION_ID {
        return Ok(version_sort_key(key, version_id));
    }
    let nulls = versions_of_key(state, bucket, key, false).await?;
    Ok(nulls
        .into_iter()
        .find(|(_, v)| v.version_id().is_none())
        .map_or_else(
            || {
                let mut past = versions_of_key_prefix(key);
                past.push('\u{7f}');
                past
            },
            |(sort_key, _)| sort_key,
        ))
}

/// A bucket that never had versioning on: each object is its own null version.
async fn list_unversioned(
    state: &Arc<GatewayState>,
    bucket: &str,
    params: &VersionListParams,
) -> Result<VersionListing, GatewayError> {
    let marker = params.key_marker.clone().unwrap_or_default();
    let start_after = match rolled_up(&marker, &params.prefix, params.delimiter.as_deref()) {
        Some(cp) if cp == marker => past_prefix(&marker),
        _ => marker.into_bytes(),
    };
    let listing = crate::list::list(
        state,
        bucket,
        &crate::list::ListParams {
            prefix: params.prefix.clone(),
            delimiter: params.delimiter.clone(),
            start_after,
            max_keys: params.max_keys,
        },
    )
    .await?;
    let next = listing.next_cursor.as_ref().and(listing.last_item.clone());
    let next_is_prefix = next
        .as_ref()
        .is_some_and(|n| listing.common_prefixes.contains(n));
    Ok(VersionListing {
        versions: listing
            .objects
            .into_iter()
            .map(|(key, r)| ListedVersion {
                key,
                value: MetaValue::Object(r),
                is_latest: true,
            })
            .collect(),
        common_prefixes: listing.common_prefixes,
        next: next.map(|n| {
            let vid = (!next_is_prefix).then(|| NULL_VERSION_ID.to_string());
            (n, vid)
        }),
    })
}

/// Whether `a` and `b` are the same version of a key: the same write, whatever the scan that
/// found one of them left out (inline bodies).
pub fn same_version(a: &MetaValue, b: &MetaValue) -> bool {
    match (a, b) {
        (MetaValue::Object(x), MetaValue::Object(y)) => {
            x.version_id == y.version_id && x.version_token() == y.version_token()
        }
        (MetaValue::DeleteMarker(x), MetaValue::DeleteMarker(y)) => x == y,
        _ => false,
    }
}

/// Lifecycle expiration of `key`'s current version, if it is still `expected` when the key's
/// leases are held (a write that landed meanwhile is never expired in its place): deleted in an
/// unversioned bucket, hidden under a delete marker in a versioned one. `true` if it acted.
pub async fn expire_current(
    state: &Arc<GatewayState>,
    (bucket, versioning): (&str, Versioning),
    key: &str,
    expected: &MetaValue,
) -> Result<bool, GatewayError> {
    meta::with_lease(state, bucket, key, |lease| async move {
        let current = meta::get(state, bucket, key).await?;
        if !current.as_ref().is_some_and(|c| same_version(c, expected)) {
            return Ok(false);
        }
        let value = match versioning {
            Versioning::Unversioned => tombstone(),
            _ => MetaValue::DeleteMarker(DeleteMarker {
                version_id: None,
                deleted_ms: GatewayState::now_ms(),
            }),
        };
        commit(state, bucket, versioning, key, value, Some(&lease)).await?;
        Ok(true)
    })
    .await
}

/// Lifecycle removal of version `id` of `key`: a noncurrent version (`lone_marker` false: only
/// while it is not the current one), or a delete marker that is the key's only version
/// (`lone_marker` true: only while it still is). Checked under the key's leases. `true` if it
/// acted.
pub async fn expire_version(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    id: &str,
    lone_marker: bool,
) -> Result<bool, GatewayError> {
    meta::with_lease(state, bucket, key, |lease| async move {
        let versions = versions_of_key(state, bucket, key, false).await?;
        let is_id = |v: &MetaValue| v.version_id().unwrap_or(NULL_VERSION_ID) == id;
        let still = if lone_marker {
            matches!(versions.as_slice(), [(_, v @ MetaValue::DeleteMarker(_))] if is_id(v))
        } else {
            let current = meta::get(state, bucket, key).await?;
            versions.iter().skip(1).any(|(_, v)| is_id(v))
                && !current.as_ref().is_some_and(|c| c.is_version() && is_id(c))
        };
        if !still {
            return Ok(false);
        }
        delete_version(state, bucket, key, id, &lease).await?;
        Ok(true)
    })
    .await
}

/// Every version of `key` (object versions and delete markers), newest first.
pub async fn all_versions(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
) -> Result<Vec<MetaValue>, GatewayError> {
    Ok(versions_of_key(state, bucket, key, false)
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}
