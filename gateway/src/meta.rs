//! The gateway's view of metadata partitions (DESIGN 5): every read and write of a bucket or
//! object record goes through here, as typed [`MetaValue`]s, on top of the one metadata quorum
//! client ([`dmpstore_storage_node::meta_client`], shared with the storage nodes), where the
//! quorum, write-order and read write-back rules live. Also the per-key leases of conditional
//! writes.

use crate::error::GatewayError;
use crate::state::GatewayState;
use bytes::Bytes;
use dmpstore_common::ids::NodeId;
use dmpstore_common::limits::{CONDITIONAL_LEASE_TTL, CONDITIONAL_LOCK_PATIENCE};
use dmpstore_common::quorum::{quorum_of, MajorityOf};
use dmpstore_common::record::{MetaValue, Versioned};
use dmpstore_common::rpc::{Request, Response};
use dmpstore_storage_node::meta_client::MetaError;
use std::sync::{Arc, Mutex};

fn replicas(state: &GatewayState, partition: &str) -> MajorityOf {
    state.meta.replicas(partition)
}

impl From<MetaError> for GatewayError {
    fn from(e: MetaError) -> GatewayError {
        match e {
            MetaError::NoQuorum { .. }
            | MetaError::ClockOffset(_)
            | MetaError::Contended { .. }
            | MetaError::LeaseLost { .. } => GatewayError::Unavailable(e.to_string()),
            MetaError::Protocol { .. } | MetaError::RewritesExhausted { .. } => {
                GatewayError::Internal(e.to_string())
            }
        }
    }
}

fn decode(record: &Versioned) -> Result<MetaValue, GatewayError> {
    MetaValue::decode(&record.value)
        .map_err(|e| GatewayError::Internal(format!("decode record: {e}")))
}

/// Writes `value` to a majority of the partition's replicas, above every version they hold
/// (DESIGN 15). Returns the records it replaced (older versions whose data may now be dropped).
pub async fn put(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    value: &MetaValue,
) -> Result<Vec<Versioned>, GatewayError> {
    Ok(state
        .meta
        .put(partition, key, value.encode())
        .await?
        .replaced)
}

/// [`put`] made under `lease`, which must be the lease on this very key: the replicas apply it
/// only while the lease is still the holder's there (fenced where the write lands, ADR 0005).
pub async fn put_fenced(
    state: &Arc<GatewayState>,
    lease: &KeyLease,
    value: &MetaValue,
) -> Result<Vec<Versioned>, GatewayError> {
    Ok(state
        .meta
        .put_fenced(
            &lease.partition,
            &lease.key,
            value.encode(),
            Some((lease.token, lease.write_by.into_std())),
        )
        .await?
        .replaced)
}

/// [`put`], or [`put_fenced`] when the caller holds the key's lease.
pub async fn put_maybe_fenced(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    value: &MetaValue,
    lease: Option<&KeyLease>,
) -> Result<Vec<Versioned>, GatewayError> {
    match lease {
        Some(l) => {
            debug_assert!(
                l.partition == partition && l.key == key,
                "fenced by another key's lease"
            );
            put_fenced(state, l, value).await
        }
        None => put(state, partition, key, value).await,
    }
}

/// Reads the newest record of `key` from a majority of replicas; `None` if no replica has one.
/// Tombstones are returned as such: callers decide what a deletion means to them. A read of a
/// key whose lease another writer holds may wait for it (its write-back yields); a read by the
/// holder itself (inside [`with_lease`] or [`holding`]) writes back under its lease.
pub async fn get(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
) -> Result<Option<MetaValue>, GatewayError> {
    let holder = held_token(partition, key);
    match state.meta.get_holding(partition, key, holder).await? {
        Some(record) => decode(&record).map(Some),
        None => Ok(None),
    }
}

/// One page of a partition scan merged across a majority of replicas.
#[derive(Debug)]
pub struct ScanPage {
    /// Records in key order, newest version per key, tombstones included.
    pub entries: Vec<(String, MetaValue)>,
    /// Where the next page starts (exclusive), if the scan is not finished.
    pub next: Option<Vec<u8>>,
}

/// Whether a scan ships inline object bytes (listings never need them, DESIGN 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    With,
    Without,
}

/// Scans keys of `partition` starting with `prefix`, after `start_after`: one page, bounded
/// in bytes on every node, merged across a majority of replicas.
pub async fn scan(
    state: &Arc<GatewayState>,
    partition: &str,
    prefix: &str,
    start_after: &[u8],
    limit: u32,
    bodies: Bodies,
) -> Result<ScanPage, GatewayError> {
    let page = state
        .meta
        .scan(
            partition,
            prefix,
            start_after,
            limit,
            bodies == Bodies::With,
        )
        .await?;
    let mut entries = Vec::with_capacity(page.entries.len());
    for (k, v) in page.entries {
        entries.push((k, decode(&v)?));
    }
    Ok(ScanPage {
        entries,
        next: page.next,
    })
}

/// A majority of leases on one key, held by a conditional write while it checks its condition
/// and commits. Any two majorities share a replica, and a replica grants a key to one token at a
/// time, so two conditional writers can never decide the same key at once. Known limit: a
/// holder stalled for longer than the lease TTL loses that guarantee.
#[derive(Debug)]
pub struct KeyLease {
    partition: String,
    key: String,
    token: [u8; 16],
    /// The replicas that granted it, including those that answer after the majority did.
    grants: Arc<Mutex<Grants>>,
    /// The last moment a write fenced by this lease may draw its stamp: the TTL, counted from
    /// before the lease was asked for, less [`LEASE_WRITE_MARGIN`].
    write_by: tokio::time::Instant,
}

impl KeyLease {
    /// The last moment a write fenced by this lease may start.
    pub fn write_by(&self) -> tokio::time::Instant {
        self.write_by
    }
}

/// Who granted a lease so far, and whether it was released: a replica that grants after the
/// release (a slow or stopped node answering late) is sent its release at once.
#[derive(Debug, Default)]
struct Grants {
    nodes: Vec<NodeId>,
    released: bool,
}

/// The part of a lease no fenced write starts in: more than the clock offsets (twice the
/// 500 ms maximum) and a hybrid clock's lead over the wall clock can make up, so a stamp drawn
/// under the lease stays below every stamp of the next holder (ADR 0005).
pub const LEASE_WRITE_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes a majority of leases on `key`, retrying with jittered backoff while another writer
/// holds them; 409 ConditionalRequestConflict after [`CONDITIONAL_LOCK_PATIENCE`].
pub async fn lease(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
) -> Result<KeyLease, GatewayError> {
    lease_for(state, partition, key, CONDITIONAL_LEASE_TTL).await
}

/// [`lease`] for `ttl` instead of the conditional writes' TTL.
pub async fn lease_for(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    ttl: std::time::Duration,
) -> Result<KeyLease, GatewayError> {
    let token: [u8; 16] = rand::random();
    let request = Request::MetaLock {
        partition: partition.to_string(),
        key: key.to_string(),
        token,
        ttl_ms: ttl.as_millis() as u32,
    };
    let give_up = tokio::time::Instant::now() + CONDITIONAL_LOCK_PATIENCE;
    for attempt in 1u64.. {
        // Taken afresh each round: a stale-map refusal has refreshed the map meanwhile.
        let asked = tokio::time::Instant::now();
        let spec = replicas(state, partition);
        let lease = KeyLease {
            partition: partition.to_string(),
            key: key.to_string(),
            token,
            grants: Arc::default(),
            write_by: asked + ttl.saturating_sub(LEASE_WRITE_MARGIN),
        };
        // Each request is an owned task, so the lease is decided as soon as a majority
        // granted it (or cannot), without waiting out a stopped replica's deadline; a grant
        // that comes later still joins the lease, or is released if the lease already was.
        let calls = spec
            .nodes()
            .into_iter()
            .map(|node| {
                let (state, request, grants) =
                    (state.clone(), request.clone(), lease.grants.clone());
                let (partition, key) = (partition.to_string(), key.to_string());
                let task = state.clone().tasks.spawn(async move {
                    let answer = state.nodes.call(node, &request, Bytes::new()).await;
                    if !matches!(answer, Ok((Response::Lock { granted: true }, _))) {
                        return false;
                    }
                    let late = {
                        let mut g = grants.lock().expect("lease grants");
                        g.nodes.push(node);
                        g.released
                    };
                    if late {
                        unlock(&state, node, partition, key, token).await;
                    }
                    true
                });
                (node, async move {
                    match task.await {
                        Ok(true) => Ok(()),
                        _ => Err(()),
                    }
                })
            })
            .collect();
        if quorum_of(calls, &spec).await.met() {
            return Ok(lease);
        }
        release(state, lease).await;
        if tokio::time::Instant::now() >= give_up {
            break;
        }
        // Deliberate backoff: the holder needs a moment to finish; jitter breaks ties.
        let wait_ms = rand::random_range(10..50) * attempt.min(5);
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    }
    Err(GatewayError::ConditionalRequestConflict)
}

/// Runs `work` holding a majority of leases on `key`, and releases them whatever it returns.
/// `work` gets the lease to fence its writes of that key with ([`put_fenced`]).
pub async fn with_lease<T, F>(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    work: impl FnOnce(Arc<KeyLease>) -> F,
) -> Result<T, GatewayError>
where
    F: std::future::Future<Output = Result<T, GatewayError>>,
{
    with_lease_for(state, partition, key, CONDITIONAL_LEASE_TTL, work).await
}

/// [`with_lease`] with a lease of `ttl`.
pub async fn with_lease_for<T, F>(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    ttl: std::time::Duration,
    work: impl FnOnce(Arc<KeyLease>) -> F,
) -> Result<T, GatewayError>
where
    F: std::future::Future<Output = Result<T, GatewayError>>,
{
    let lease = Arc::new(lease_for(state, partition, key, ttl).await?);
    let result = holding(&lease, work(lease.clone())).await;
    match Arc::try_unwrap(lease) {
        Ok(lease) => release(state, lease).await,
        // Still shared by a task `work` left behind: the lease expires by itself.
        Err(_) => tracing::debug!(partition, key, "lease kept by a task; it will expire"),
    }
    result
}

tokio::task_local! {
    /// The leases the current request holds, as `(partition, key, token)`: its reads of those
    /// keys write back under them instead of waiting for them.
    static HELD: Vec<(String, String, [u8; 16])>;
}

/// Runs `work` as the holder of `lease`: [`get`]s of the leased key inside it are the
/// holder's reads.
pub async fn holding<F: std::future::Future>(lease: &KeyLease, work: F) -> F::Output {
    let mut held = HELD.try_with(Clone::clone).unwrap_or_default();
    held.push((lease.partition.clone(), lease.key.clone(), lease.token));
    HELD.scope(held, work).await
}

/// The token of this request's lease on `partition/key`, if it holds one.
fn held_token(partition: &str, key: &str) -> Option<[u8; 16]> {
    HELD.try_with(|held| {
        held.iter()
            .find(|(p, k, _)| p == partition && k == key)
            .map(|(_, _, t)| *t)
    })
    .ok()
    .flatten()
}

/// Releases the leases (best effort: an unreleased lease expires by itself); a replica that
/// grants it after this is released by its own request's task.
pub async fn release(state: &Arc<GatewayState>, lease: KeyLease) {
    let nodes = {
        let mut g = lease.grants.lock().expect("lease grants");
        g.released = true;
        std::mem::take(&mut g.nodes)
    };
    futures::future::join_all(nodes.into_iter().map(|node| {
        unlock(
            state,
            node,
            lease.partition.clone(),
            lease.key.clone(),
            lease.token,
        )
    }))
    .await;
}

async fn unlock(
    state: &Arc<GatewayState>,
    node: NodeId,
    partition: String,
    key: String,
    token: [u8; 16],
) {
    let request = Request::MetaUnlock {
        partition,
        key,
        token,
    };
    if let Err(e) = state.nodes.call(node, &request, Bytes::new()).await {
        tracing::debug!(%node, error = %e, "lease release failed; it will expire");
    }
}
