//! Quorum access to metadata partitions (DESIGN 5): every read and write of a bucket or object
//! record goes through here.
//!
//! A partition's replicas are fixed by rendezvous hashing of its name over the cluster map's
//! metadata nodes. A write succeeds once a majority stored it durably; a read asks a majority
//! and takes the newest record, then writes it back to the replicas that answered with an older
//! one (read repair). During a metadata membership change "a majority" means a majority under
//! both the old and the new set; a node refuses a gateway whose map predates the change, and
//! the gateway retries with the new map.
//! Writes run as owned tasks, so replicas that answer after the quorum still get the record.

use crate::error::GatewayError;
use crate::nodes::RpcError;
use crate::state::GatewayState;
use bytes::Bytes;
use dmpstore_common::ids::NodeId;
use dmpstore_common::limits::{CONDITIONAL_LEASE_TTL, CONDITIONAL_LOCK_PATIENCE};
use dmpstore_common::placement::partition_quorum;
use dmpstore_common::quorum::{quorum_of, MajorityOf};
use dmpstore_common::record::{MetaValue, Versioned};
use dmpstore_common::rpc::{ErrorKind, Request, Response};
use std::collections::BTreeMap;
use std::sync::Arc;

fn replicas(state: &GatewayState, partition: &str) -> MajorityOf {
    partition_quorum(&state.nodes.map(), partition, state.n_meta_replicas())
}

/// Whether a call failed because this gateway's map predates a metadata membership change
/// (the client has fetched the new map by then: the call is worth one retry).
fn stale_map(failures: &[(NodeId, RpcError)]) -> bool {
    failures.iter().any(|(_, e)| {
        matches!(
            e,
            RpcError::Remote {
                kind: ErrorKind::StaleMap,
                ..
            }
        )
    })
}

/// Attempts of a metadata call: a second one after a stale-map refusal.
const META_ATTEMPTS: usize = 2;

fn unavailable(
    what: &str,
    partition: &str,
    failures: &[(NodeId, impl std::fmt::Display)],
) -> GatewayError {
    let detail: Vec<String> = failures.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    GatewayError::Unavailable(format!(
        "{what} in partition {partition:?} did not reach a quorum ({})",
        detail.join("; ")
    ))
}

fn unexpected(node: NodeId, r: &Response) -> String {
    format!("node {node} answered with an unexpected {r:?}")
}

/// Sends `request` to the partition's replicas and returns the answers of a majority (the
/// slower rest are dropped), or 503 if a majority cannot answer.
async fn ask_majority(
    state: &Arc<GatewayState>,
    partition: &str,
    request: &Request,
    what: &str,
) -> Result<Vec<(NodeId, Response)>, GatewayError> {
    for attempt in 1..=META_ATTEMPTS {
        let spec = replicas(state, partition);
        let calls = spec
            .nodes()
            .into_iter()
            .map(|node| {
                (node, async move {
                    state.nodes.call(node, request, Bytes::new()).await
                })
            })
            .collect();
        let outcome = quorum_of(calls, &spec).await;
        if !outcome.met() {
            if attempt < META_ATTEMPTS && stale_map(&outcome.failures) {
                continue;
            }
            return Err(unavailable(what, partition, &outcome.failures));
        }
        return Ok(outcome
            .successes
            .into_iter()
            .map(|(node, (response, _))| (node, response))
            .collect());
    }
    unreachable!("the last attempt returns")
}

fn decode(record: &Versioned) -> Result<MetaValue, GatewayError> {
    MetaValue::decode(&record.value)
        .map_err(|e| GatewayError::Internal(format!("decode record: {e}")))
}

/// Writes `value` with a fresh clock to a majority of the partition's replicas. Returns the
/// records it replaced (older versions whose data may now be dropped).
pub async fn put(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    value: &MetaValue,
) -> Result<Vec<Versioned>, GatewayError> {
    let record = Versioned {
        hlc: state.next_hlc(),
        value: value.encode(),
    };
    put_record(state, partition, key, record).await
}

async fn put_record(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    record: Versioned,
) -> Result<Vec<Versioned>, GatewayError> {
    let request = Request::MetaPut {
        partition: partition.to_string(),
        key: key.to_string(),
        record,
    };
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let spec = replicas(state, partition);
        let calls = spec
            .nodes()
            .into_iter()
            .map(|node| {
                let (st, req) = (state.clone(), request.clone());
                let task =
                    state.spawn(async move { st.nodes.call(node, &req, Bytes::new()).await });
                (node, async move {
                    task.await.map_err(|e| RpcError::Protocol {
                        node,
                        message: format!("write task failed: {e}"),
                    })?
                })
            })
            .collect();
        let outcome = quorum_of(calls, &spec).await;
        if outcome.met() {
            break outcome;
        }
        if attempt < META_ATTEMPTS && stale_map(&outcome.failures) {
            continue;
        }
        return Err(unavailable("metadata write", partition, &outcome.failures));
    };
    let mut replaced = Vec::new();
    for (node, response) in outcome.successes {
        match response.0 {
            Response::MetaPut {
                replaced: Some(old),
                ..
            } => {
                if !replaced.contains(&old) {
                    replaced.push(old);
                }
            }
            Response::MetaPut { replaced: None, .. } => {}
            other => return Err(GatewayError::Internal(unexpected(node, &other))),
        }
    }
    Ok(replaced)
}

/// Reads the newest record of `key` from a majority of replicas; `None` if no replica has one.
/// Tombstones are returned as such: callers decide what a deletion means to them.
pub async fn get(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
) -> Result<Option<MetaValue>, GatewayError> {
    let request = Request::MetaGet {
        partition: partition.to_string(),
        key: key.to_string(),
    };
    let successes = ask_majority(state, partition, &request, "metadata read").await?;
    let mut answers: Vec<(NodeId, Option<Versioned>)> = Vec::with_capacity(successes.len());
    for (node, response) in successes {
        match response {
            Response::MetaValue(v) => answers.push((node, v)),
            other => return Err(GatewayError::Internal(unexpected(node, &other))),
        }
    }
    let newest = answers
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .fold(None::<&Versioned>, |best, v| match best {
            Some(b) if !v.supersedes(b) => Some(b),
            _ => Some(v),
        })
        .cloned();
    let Some(newest) = newest else {
        return Ok(None);
    };
    state.clock.observe(newest.hlc);
    let stale: Vec<NodeId> = answers
        .iter()
        .filter(|(_, v)| v.as_ref() != Some(&newest))
        .map(|(n, _)| *n)
        .collect();
    if !stale.is_empty() {
        read_repair(state, partition, key, &newest, stale);
    }
    decode(&newest).map(Some)
}

fn read_repair(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
    newest: &Versioned,
    stale: Vec<NodeId>,
) {
    tracing::debug!(
        partition,
        key,
        ?stale,
        "read repair of stale metadata replicas"
    );
    for node in stale {
        let request = Request::MetaPut {
            partition: partition.to_string(),
            key: key.to_string(),
            record: newest.clone(),
        };
        let st = state.clone();
        state.spawn(async move {
            if let Err(e) = st.nodes.call(node, &request, Bytes::new()).await {
                tracing::debug!(%node, error = %e, "read repair write failed; anti-entropy will retry");
            }
        });
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

/// Scans keys of `partition` starting with `prefix`, after `start_after`, merging a majority of
/// replicas. The merged page stops at the smallest "last key" among replicas that had more, so
/// no replica's later keys are skipped.
pub async fn scan(
    state: &Arc<GatewayState>,
    partition: &str,
    prefix: &str,
    start_after: &[u8],
    limit: u32,
) -> Result<ScanPage, GatewayError> {
    let request = Request::MetaScan {
        partition: partition.to_string(),
        prefix: prefix.to_string(),
        start_after: start_after.to_vec(),
        limit,
    };
    let successes = ask_majority(state, partition, &request, "metadata scan").await?;
    let mut merged: BTreeMap<String, Versioned> = BTreeMap::new();
    let mut bound: Option<String> = None;
    for (node, response) in successes {
        let Response::MetaEntries { entries, more } = response else {
            return Err(GatewayError::Internal(unexpected(node, &response)));
        };
        if more {
            if let Some((last, _)) = entries.last() {
                if bound.as_ref().is_none_or(|b| last < b) {
                    bound = Some(last.clone());
                }
            }
        }
        for (k, v) in entries {
            match merged.get(&k) {
                Some(cur) if !v.supersedes(cur) => {}
                _ => {
                    merged.insert(k, v);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for (k, v) in merged {
        if bound.as_ref().is_some_and(|b| &k > b) {
            break;
        }
        state.clock.observe(v.hlc);
        out.push((k, decode(&v)?));
    }
    Ok(ScanPage {
        entries: out,
        next: bound.map(String::into_bytes),
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
    nodes: Vec<NodeId>,
}

/// Takes a majority of leases on `key`, retrying with jittered backoff while another writer
/// holds them; 409 ConditionalRequestConflict after [`CONDITIONAL_LOCK_PATIENCE`].
pub async fn lease(
    state: &Arc<GatewayState>,
    partition: &str,
    key: &str,
) -> Result<KeyLease, GatewayError> {
    let token: [u8; 16] = rand::random();
    let request = Request::MetaLock {
        partition: partition.to_string(),
        key: key.to_string(),
        token,
        ttl_ms: CONDITIONAL_LEASE_TTL.as_millis() as u32,
    };
    let give_up = tokio::time::Instant::now() + CONDITIONAL_LOCK_PATIENCE;
    for attempt in 1u64.. {
        // Taken afresh each round: a stale-map refusal has refreshed the map meanwhile.
        let spec = replicas(state, partition);
        let nodes = spec.nodes();
        let answers = futures::future::join_all(nodes.iter().map(|&node| {
            let req = &request;
            async move { (node, state.nodes.call(node, req, Bytes::new()).await) }
        }))
        .await;
        let granted: Vec<NodeId> = answers
            .into_iter()
            .filter(|(_, r)| matches!(r, Ok((Response::Lock { granted: true }, _))))
            .map(|(n, _)| n)
            .collect();
        let lease = KeyLease {
            partition: partition.to_string(),
            key: key.to_string(),
            token,
            nodes: granted,
        };
        if spec.met_by(&lease.nodes) {
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

/// Releases the leases (best effort: an unreleased lease expires by itself).
pub async fn release(state: &Arc<GatewayState>, lease: KeyLease) {
    let request = Request::MetaUnlock {
        partition: lease.partition,
        key: lease.key,
        token: lease.token,
    };
    futures::future::join_all(lease.nodes.iter().map(|&node| {
        let req = &request;
        async move {
            if let Err(e) = state.nodes.call(node, req, Bytes::new()).await {
                tracing::debug!(%node, error = %e, "lease release failed; it will expire");
            }
        }
    }))
    .await;
}
