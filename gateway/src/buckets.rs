//! Bucket operations. Bucket records live in the [`BUCKETS_PARTITION`]; a bucket's objects in
//! the partitions named after it.
//!
//! A bucket's record goes Live -> Deleting -> gone (a tombstone), or from Deleting back to Live
//! when the bucket turned out not to be empty (ADR 0005). Every change of the record is made
//! under the record's leases and fenced by them, so two changes never interleave, and a
//! deletion whose gateway stalled past its lease cannot land after a rollback. Writers into a
//! bucket wait out a deletion twice: before they write (then proceed, or answer NoSuchBucket)
//! and after they commit (and acknowledge only a write that landed in a bucket that still
//! exists; otherwise 503). A deletion that finds the bucket empty therefore never leaves an
//! acknowledged object behind, and what an unacknowledged writer left in a deleted bucket is
//! swept when a bucket of that name is created again, before it is live.

use crate::error::GatewayError;
use crate::meta;
use crate::reclaim;
use crate::state::GatewayState;
use dmpstore_common::limits::{
    BUCKET_DELETE_PATIENCE, BUCKET_DELETE_TTL, DELETE_OBJECTS_CONCURRENCY, MAX_SCAN_ENTRIES,
};
use dmpstore_common::record::{
    acls_partition, key_of_version_sort_key, parts_partition, tags_partition, uploads_partition,
    versions_partition, BucketAccess, BucketRecord, DeletingBucket, MetaValue, Versioning,
    BUCKETS_PARTITION,
};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Margin a deletion keeps to its lease's end: it decides (and stamps its last write) only
/// while at least this much of the lease is left, so its writes are ordered before any
/// rollback by the next holder even with clocks off by the maximum offset.
const DELETE_MARGIN: Duration = Duration::from_secs(10);

/// What a bucket name's record says.
#[derive(Debug, Clone)]
enum Found {
    Live(BucketRecord),
    Deleting(DeletingBucket),
    Gone,
}

tokio::task_local! {
    /// The bucket record authorization read for the current request (ADR 0007): the request's
    /// readers ([`ensure_exists`]) reuse it instead of a second quorum read. Writers never do:
    /// they wait out deletions on fresh reads.
    static AUTHORIZED: std::cell::RefCell<Option<(String, Found)>>;
}

/// Runs one S3 request, letting its readers reuse the bucket record authorization read.
pub async fn request_scope<F: std::future::Future>(work: F) -> F::Output {
    AUTHORIZED.scope(std::cell::RefCell::new(None), work).await
}

fn authorized(bucket: &str) -> Option<Found> {
    AUTHORIZED
        .try_with(|m| match &*m.borrow() {
            Some((b, found)) if b == bucket => Some(found.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

async fn read(state: &Arc<GatewayState>, bucket: &str) -> Result<Found, GatewayError> {
    Ok(match meta::get(state, BUCKETS_PARTITION, bucket).await? {
        Some(MetaValue::Bucket(b)) => Found::Live(b),
        Some(MetaValue::DeletingBucket(d)) => Found::Deleting(d),
        _ => Found::Gone,
    })
}

/// The bucket's record for readers: a bucket being deleted still exists until it is gone.
pub async fn ensure_exists(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<BucketRecord, GatewayError> {
    let found = match authorized(bucket) {
        Some(found) => found,
        None => read(state, bucket).await?,
    };
    match found {
        Found::Live(b) => Ok(b),
        Found::Deleting(d) => Ok(d.bucket),
        Found::Gone => Err(GatewayError::NoSuchBucket),
    }
}

/// The bucket's record if it exists (a bucket being deleted still does), for authorization;
/// the request's readers reuse it.
pub async fn find(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<Option<BucketRecord>, GatewayError> {
    let found = read(state, bucket).await?;
    let _ = AUTHORIZED.try_with(|m| *m.borrow_mut() = Some((bucket.to_string(), found.clone())));
    match found {
        Found::Live(b) => Ok(Some(b)),
        Found::Deleting(d) => Ok(Some(d.bucket)),
        Found::Gone => Ok(None),
    }
}

/// The bucket's record for a writer, before it writes: waits out a deletion in progress.
pub async fn writable(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<BucketRecord, GatewayError> {
    settle(state, bucket)
        .await?
        .ok_or(GatewayError::NoSuchBucket)
}

/// After a writer committed into `bucket`: succeeds only if the bucket is still live, so the
/// write is acknowledged only where it landed in a bucket that exists. If the bucket was
/// deleted meanwhile, the write may have landed after the deletion's emptiness check: it is
/// not acknowledged (503, whose outcome a client must treat as unknown), and what it left is
/// swept if the name is created again.
pub async fn confirm(state: &Arc<GatewayState>, bucket: &str) -> Result<(), GatewayError> {
    match settle(state, bucket).await? {
        Some(_) => Ok(()),
        None => Err(GatewayError::Unavailable(format!(
            "bucket {bucket:?} was deleted while this write was in flight"
        ))),
    }
}

/// Reads the bucket's record until no deletion is in progress: `Some` if it is live, `None`
/// if it is gone. A deletion older than its lease (its gateway died) is rolled back.
async fn settle(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<Option<BucketRecord>, GatewayError> {
    let give_up = tokio::time::Instant::now() + BUCKET_DELETE_PATIENCE;
    let mut wait = Duration::from_millis(10);
    loop {
        match read(state, bucket).await? {
            Found::Live(b) => return Ok(Some(b)),
            Found::Gone => return Ok(None),
            Found::Deleting(d) => {
                let age_ms = GatewayState::now_ms().saturating_sub(d.since_ms);
                if age_ms > (BUCKET_DELETE_TTL + DELETE_MARGIN).as_millis() as u64 {
                    roll_back_stale(state, bucket, &d).await?;
                    continue;
                }
                if tokio::time::Instant::now() >= give_up {
                    return Err(GatewayError::Unavailable(format!(
                        "bucket {bucket:?} is being deleted; retry"
                    )));
                }
            }
        }
        // Deliberate backoff: a deletion takes one scan of the bucket to decide.
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// Rolls back a deletion whose gateway died: under the record's leases (which the dead
/// deletion's have outlived), and only if the record is still that deletion.
async fn roll_back_stale(
    state: &Arc<GatewayState>,
    bucket: &str,
    stale: &DeletingBucket,
) -> Result<(), GatewayError> {
    meta::with_lease(state, BUCKETS_PARTITION, bucket, |lease| async move {
        if let Found::Deleting(d) = read(state, bucket).await? {
            if d == *stale {
                tracing::warn!(
                    bucket,
                    since_ms = d.since_ms,
                    "rolling back a bucket deletion that never finished (its gateway stopped)"
                );
                meta::put_fenced(state, &lease, &MetaValue::Bucket(d.bucket)).await?;
            }
        }
        Ok(())
    })
    .await
}

/// CreateBucket with its access settings; their owner controls the bucket (ADR 0007).
pub async fn create(
    state: &Arc<GatewayState>,
    bucket: &str,
    access: BucketAccess,
) -> Result<(), GatewayError> {
    let access = &access;
    meta::with_lease(state, BUCKETS_PARTITION, bucket, |lease| async move {
        match read(state, bucket).await? {
            Found::Live(b) | Found::Deleting(DeletingBucket { bucket: b, .. }) => {
                return Err(if b.access.owner == access.owner {
                    GatewayError::BucketAlreadyOwnedByYou
                } else {
                    GatewayError::BucketAlreadyExists
                });
            }
            Found::Gone => {}
        }
        let swept = sweep(state, bucket).await?;
        if swept > 0 {
            tracing::info!(
                bucket,
                swept,
                "removed records that unacknowledged writes left in a deleted bucket of this name"
            );
        }
        let record = MetaValue::Bucket(BucketRecord {
            created_ms: GatewayState::now_ms(),
            versioning: Versioning::Unversioned,
            access: access.clone(),
        });
        meta::put_fenced(state, &lease, &record).await?;
        Ok(())
    })
    .await
    .map_err(conflict_as_aborted)
}

/// Changes the bucket's access settings with `change` (which may refuse), under its leases.
pub async fn change_access<F>(
    state: &Arc<GatewayState>,
    bucket: &str,
    change: F,
) -> Result<(), GatewayError>
where
    F: FnOnce(&mut BucketAccess) -> Result<(), GatewayError>,
{
    let from = writable(state, bucket).await?;
    let mut to = from.clone();
    change(&mut to.access)?;
    if to == from {
        return Ok(());
    }
    if update(state, bucket, &from, to).await? {
        Ok(())
    } else {
        Err(GatewayError::OperationAborted)
    }
}

/// Changes the bucket's record from `from` to `to` under its leases (PutBucketVersioning).
/// `Ok(false)` if the record was no longer `from`.
pub async fn update(
    state: &Arc<GatewayState>,
    bucket: &str,
    from: &BucketRecord,
    to: BucketRecord,
) -> Result<bool, GatewayError> {
    meta::with_lease(state, BUCKETS_PARTITION, bucket, |lease| async move {
        match read(state, bucket).await? {
            Found::Live(b) if b == *from => {
                meta::put_fenced(state, &lease, &MetaValue::Bucket(to)).await?;
                Ok(true)
            }
            Found::Live(_) => Ok(false),
            Found::Deleting(_) => Err(GatewayError::Unavailable(format!(
                "bucket {bucket:?} is being deleted; retry"
            ))),
            Found::Gone => Err(GatewayError::NoSuchBucket),
        }
    })
    .await
    .map_err(conflict_as_aborted)
}

/// DeleteBucket: marks the bucket Deleting, checks that it holds no object version, aborts
/// its multipart uploads (as S3 does), then removes it; rolls back to Live if it is not
/// empty or the deletion could not finish within its lease.
pub async fn delete(state: &Arc<GatewayState>, bucket: &str) -> Result<(), GatewayError> {
    let started = tokio::time::Instant::now();
    let decide_by = started + BUCKET_DELETE_TTL - DELETE_MARGIN;
    let work = |lease: Arc<meta::KeyLease>| async move {
        let b: BucketRecord = match read(state, bucket).await? {
            Found::Live(b) => b,
            // A deletion that never finished: this one takes over.
            Found::Deleting(d) => d.bucket,
            Found::Gone => return Err(GatewayError::NoSuchBucket),
        };
        let deleting = MetaValue::DeletingBucket(DeletingBucket {
            bucket: b.clone(),
            since_ms: GatewayState::now_ms(),
        });
        meta::put_fenced(state, &lease, &deleting).await?;
        let outcome = empty_out(state, bucket, decide_by).await;
        if outcome.is_ok() && tokio::time::Instant::now() < decide_by {
            let tombstone = MetaValue::Tombstone {
                deleted_ms: GatewayState::now_ms(),
            };
            meta::put_fenced(state, &lease, &tombstone).await?;
            tracing::info!(bucket, "bucket deleted");
            return Ok(());
        }
        // Not empty, failed, or out of time: live again. If even this fails, writers roll the
        // deletion back once its lease is over.
        meta::put_fenced(state, &lease, &MetaValue::Bucket(b)).await?;
        match outcome {
            Ok(()) => Err(GatewayError::Unavailable(format!(
                "deleting bucket {bucket:?} took longer than {} s; retry",
                (BUCKET_DELETE_TTL - DELETE_MARGIN).as_secs()
            ))),
            Err(e) => Err::<(), GatewayError>(e),
        }
    };
    meta::with_lease_for(state, BUCKETS_PARTITION, bucket, BUCKET_DELETE_TTL, work)
        .await
        .map_err(conflict_as_aborted)
}

/// Two bucket-level operations on one name at once: S3's 409 OperationAborted.
fn conflict_as_aborted(e: GatewayError) -> GatewayError {
    match e {
        GatewayError::ConditionalRequestConflict => GatewayError::OperationAborted,
        e => e,
    }
}

/// With the bucket marked Deleting: fails with BucketNotEmpty if any object version is live,
/// then aborts every multipart upload in progress.
async fn empty_out(
    state: &Arc<GatewayState>,
    bucket: &str,
    decide_by: tokio::time::Instant,
) -> Result<(), GatewayError> {
    if has_live_objects(state, bucket).await?
        || crate::versions::has_versions(state, bucket).await?
    {
        return Err(GatewayError::BucketNotEmpty);
    }
    let mut cursor = Vec::new();
    let partition = uploads_partition(bucket);
    loop {
        if tokio::time::Instant::now() >= decide_by {
            return Ok(());
        }
        let page = meta::scan(
            state,
            &partition,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        let uploads: Vec<(String, String)> = page
            .entries
            .into_iter()
            .filter_map(|(sort_key, v)| match v {
                MetaValue::Upload(u) => {
                    let id = sort_key.rsplit('\0').next().unwrap_or_default().to_string();
                    Some((u.key, id))
                }
                _ => None,
            })
            .collect();
        for (key, upload_id) in uploads {
            match crate::multipart::abort(state, bucket, &key, &upload_id).await {
                Ok(()) | Err(GatewayError::NoSuchUpload) => {}
                Err(e) => return Err(e),
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

/// Whether any object of the bucket is live, judged on the merged (newest) record of each key,
/// never on one replica's view.
async fn has_live_objects(state: &Arc<GatewayState>, bucket: &str) -> Result<bool, GatewayError> {
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            bucket,
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

/// Before a bucket name is live again: removes every record still live in the partitions of
/// an earlier bucket of that name (left by writes that raced its deletion and were not
/// acknowledged), and frees their data after the grace. Returns how many it removed. Usually
/// a few empty scans.
async fn sweep(state: &Arc<GatewayState>, bucket: &str) -> Result<u64, GatewayError> {
    let mut removed = 0;
    let partitions = [
        bucket.to_string(),
        versions_partition(bucket),
        uploads_partition(bucket),
        parts_partition(bucket),
        tags_partition(bucket),
        acls_partition(bucket),
    ];
    for (i, partition) in partitions.iter().enumerate() {
        // The key whose records the reclaim re-check reads: a version's key in the versions
        // partition, the sort key elsewhere (for parts, uploads and tags of a deleted bucket no
        // record can use their data any more).
        let is_versions = i == 1;
        let mut cursor = Vec::new();
        loop {
            let page = meta::scan(
                state,
                partition,
                "",
                &cursor,
                MAX_SCAN_ENTRIES,
                meta::Bodies::Without,
            )
            .await?;
            let live: Vec<String> = page
                .entries
                .into_iter()
                .filter(|(_, v)| !matches!(v, MetaValue::Tombstone { .. }))
                .map(|(k, _)| k)
                .collect();
            let results: Vec<Result<(), GatewayError>> = futures::stream::iter(live)
                .map(|sort_key| async move {
                    let tombstone = MetaValue::Tombstone {
                        deleted_ms: GatewayState::now_ms(),
                    };
                    let replaced = meta::put(state, partition, &sort_key, &tombstone).await?;
                    let key = if is_versions {
                        key_of_version_sort_key(&sort_key).to_string()
                    } else {
                        sort_key.clone()
                    };
                    reclaim::drop_replaced_data(state, bucket, &key, replaced);
                    Ok(())
                })
                .buffer_unordered(DELETE_OBJECTS_CONCURRENCY)
                .collect()
                .await;
            for r in results {
                r?;
                removed += 1;
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
    }
    Ok(removed)
}

/// All live buckets with their creation time, in name order (a bucket being deleted included).
pub async fn list(state: &Arc<GatewayState>) -> Result<Vec<(String, BucketRecord)>, GatewayError> {
    let mut out = Vec::new();
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            BUCKETS_PARTITION,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        for (name, value) in page.entries {
            match value {
                MetaValue::Bucket(b) => out.push((name, b)),
                MetaValue::DeletingBucket(d) => out.push((name, d.bucket)),
                _ => {}
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
}

/// Whether ListBuckets shows bucket `name` to `who`: an administrator sees every bucket, a user
/// the buckets it owns that its key's scope reaches.
pub fn listed_for(who: &crate::iam::Identity, name: &str, b: &BucketRecord) -> bool {
    match who {
        crate::iam::Identity::Admin { .. } => true,
        crate::iam::Identity::User { name: user, scope } => {
            *user == b.access.owner
                && (scope.prefixes.is_empty()
                    || scope
                        .prefixes
                        .iter()
                        .any(|p| p.split('/').next() == Some(name)))
        }
    }
}
