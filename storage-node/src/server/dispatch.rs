//! The one dispatch point of node RPCs (DESIGN 13): one `match` over [`Request`], each arm a
//! store call or a call into the node's cluster role (failure detector, background work). It
//! runs on the blocking pool (but for heartbeats and reports, see [`super::execute`]).

use super::{wall_ms, ClusterRole, Node};
use crate::store::{LeaseRefusal, MetaPutOutcome, StoreError};
use crate::workers::RepairError;
use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::ids::{ChunkKey, Hlc, NodeId, VersionId};
use dmpstore_common::limits::{
    MAX_GATEWAY_REPORTS, MAX_RECORD_BYTES, MAX_SCAN_ENTRIES, MAX_SCAN_PAGE_BYTES,
};
use dmpstore_common::record::Versioned;
use dmpstore_common::rpc::{
    ChunkHome, ErrorKind, GatewayAvailability, HealthReport, LeaseCheck, NodeStatus, Request,
    Response,
};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

type Answer = Result<(Response, Bytes), StoreError>;

fn done(r: Response) -> Answer {
    Ok((r, Bytes::new()))
}

/// An answer that is an error of the request, not of the store.
fn refused(kind: ErrorKind, message: String) -> Answer {
    done(Response::Error { kind, message })
}

/// The one dispatch point of node RPCs.
pub(super) fn dispatch(node: &Node, request: Request, payload: Bytes) -> Answer {
    let store = &node.store;
    match request {
        Request::PutChunk {
            key,
            checksum,
            home,
        } => put_chunk(node, &key, &checksum, home, &payload),
        Request::GetChunk { key } => get_chunk(node, &key),
        Request::DeleteChunks { version } => done_after(store.delete_chunks(&version)),
        Request::MetaPut {
            partition,
            key,
            record,
            expect,
            lease,
        } => meta_put(node, &partition, &key, &record, expect, lease),
        Request::MetaPurge {
            partition,
            key,
            record,
        } => done(Response::Purged(
            store.meta_purge(&partition, &key, &record)?,
        )),
        Request::MetaGet { partition, key } => {
            done(Response::MetaValue(store.meta_get(&partition, &key)?))
        }
        Request::MetaScan {
            partition,
            prefix,
            start_after,
            limit,
            bodies,
        } => meta_scan(node, &partition, &prefix, &start_after, limit, bodies),
        Request::MetaLock {
            partition,
            key,
            token,
            ttl_ms,
        } => meta_lock(node, &partition, &key, &token, ttl_ms),
        Request::MetaUnlock {
            partition,
            key,
            token,
        } => done_after(store.meta_unlock(&partition, &key, &token)),
        Request::Heartbeat { .. } | Request::Health => done(Response::Health(health(node))),
        Request::DropMovedChunk {
            version,
            chunk_idx,
            partition,
            key,
        } => drop_moved_chunk(node, version, chunk_idx, partition, key),
        Request::GetClusterMap => match &node.cluster {
            Some(c) => done(Response::ClusterMap((*c.client.map()).clone())),
            None => Err(StoreError::NotFound),
        },
        Request::SetClusterMap { map } => set_cluster_map(node, map),
        Request::Drain {
            node: drained,
            draining,
        } => drain(node, drained, draining),
        Request::Status => done(Response::Status(Box::new(status(node)))),
        Request::GatewayReport(report) => gateway_report(node, report),
        Request::RepairScan { node: replaced } => {
            on_cluster(node, |c| c.context.request_scan_for(replaced))
        }
        Request::Isolate { millis } => isolate(node, millis),
        Request::Scrub => on_cluster(node, |c| c.context.request_scrub()),
        Request::AntiEntropy => on_cluster(node, |c| c.context.request_anti_entropy()),
        Request::RepairEnqueue { partition, key } => repair_enqueue(node, &partition, &key),
    }
}

/// `Done` once `result` is known to be a success.
fn done_after(result: Result<(), StoreError>) -> Answer {
    result?;
    done(Response::Done)
}

/// Calls `f` with the node's cluster role, if it has one; `Done`.
fn on_cluster(node: &Node, f: impl FnOnce(&ClusterRole)) -> Answer {
    if let Some(c) = &node.cluster {
        f(c);
    }
    done(Response::Done)
}

fn put_chunk(
    node: &Node,
    key: &ChunkKey,
    checksum: &[u8; 32],
    home: Option<ChunkHome>,
    payload: &[u8],
) -> Answer {
    let home = home.map(|h| h.encode());
    node.store
        .put_chunk(key, checksum, payload, home.as_deref())?;
    done(Response::Done)
}

fn meta_lock(node: &Node, partition: &str, key: &str, token: &[u8; 16], ttl_ms: u32) -> Answer {
    let now_ms = wall_ms();
    let granted = node
        .store
        .meta_lock(partition, key, token, now_ms, u64::from(ttl_ms))?;
    done(Response::Lock { granted })
}

fn drop_moved_chunk(
    node: &Node,
    version: VersionId,
    chunk_idx: u8,
    partition: String,
    key: String,
) -> Answer {
    if let Some(c) = &node.cluster {
        c.context
            .schedule_drop(version, chunk_idx, partition, key)
            .map_err(as_store_error)?;
    }
    done(Response::Done)
}

fn set_cluster_map(node: &Node, map: ClusterMap) -> Answer {
    if let Some(c) = &node.cluster {
        if map.version > c.client.map().version {
            // Persisted first: a restart must not fall back to the older map.
            node.store.set_cluster_map(&map.encode())?;
            c.client.install_map(map);
        }
    }
    done(Response::Done)
}

fn drain(node: &Node, drained: NodeId, draining: bool) -> Answer {
    if let Some(c) = &node.cluster {
        c.context.set_draining(drained, draining)?;
    }
    done(Response::Done)
}

fn isolate(node: &Node, millis: u64) -> Answer {
    on_cluster(node, |c| {
        let until = (millis > 0).then(|| Instant::now() + Duration::from_millis(millis));
        c.client.isolate_until(until);
        tracing::warn!(millis, "isolation drill: cut off from the cluster");
    })
}

/// Queues a repair with the node's background work (or straight in the store, for a node
/// without a cluster role).
fn repair_enqueue(node: &Node, partition: &str, key: &str) -> Answer {
    match &node.cluster {
        Some(c) => c.context.enqueue(partition, key).map_err(as_store_error)?,
        None => node.store.repair_push(partition, key)?,
    }
    done(Response::Done)
}

/// A background-work error as the store error the RPC answers with.
fn as_store_error(e: RepairError) -> StoreError {
    match e {
        RepairError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// A chunk read; a corrupt chunk is never returned as data, and is queued to be rebuilt in
/// place from its siblings.
fn get_chunk(node: &Node, key: &ChunkKey) -> Answer {
    match node.store.get_chunk(key) {
        Ok((checksum, data)) => Ok((Response::Chunk { checksum }, data)),
        Err(StoreError::Corrupt(msg)) => {
            if let Some(c) = &node.cluster {
                if let Err(e) = c.context.heal(key) {
                    tracing::warn!(error = %e, "could not queue a corrupt chunk for healing");
                }
            }
            Err(StoreError::Corrupt(msg))
        }
        Err(e) => Err(e),
    }
}

/// A metadata write: refused if the record is too large or stamped too far ahead of this
/// node's clock, then applied as the key's lease allows.
fn meta_put(
    node: &Node,
    partition: &str,
    key: &str,
    record: &Versioned,
    expect: Option<Hlc>,
    lease: LeaseCheck,
) -> Answer {
    if record.value.len() > MAX_RECORD_BYTES {
        return refused(
            ErrorKind::BadRequest,
            format!(
                "record of {} bytes exceeds the {} allowed",
                record.value.len(),
                MAX_RECORD_BYTES
            ),
        );
    }
    let now_ms = wall_ms();
    let ahead_ms = record.hlc.physical_ms().saturating_sub(now_ms);
    if ahead_ms > node.config.max_clock_offset_ms {
        return clock_refusal(node, partition, key, now_ms, ahead_ms);
    }
    let token = match lease {
        LeaseCheck::Ignore => None,
        LeaseCheck::Yield => Some(None),
        LeaseCheck::Holder(t) => Some(Some(t)),
    };
    let out: MetaPutOutcome = match token {
        None => node.store.meta_put(partition, key, record, expect)?,
        Some(token) => {
            match node.store.meta_put_leased(
                partition,
                key,
                record,
                expect,
                token.as_ref(),
                now_ms,
            )? {
                Ok(out) => out,
                Err(refusal) => return lease_refusal(partition, key, refusal),
            }
        }
    };
    done(Response::MetaPut {
        applied: out.applied,
        replaced: out.replaced,
        holds: out.holds,
    })
}

/// Refuses a write stamped `ahead_ms` ahead of this node's clock (counted; logged once per
/// 10 s at most: a writer with a bad clock sends many).
fn clock_refusal(node: &Node, partition: &str, key: &str, now_ms: u64, ahead_ms: u64) -> Answer {
    node.metrics.clock_offset_refusals.inc();
    let last = node.last_clock_warn_ms.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) >= 10_000 {
        node.last_clock_warn_ms.store(now_ms, Ordering::Relaxed);
        tracing::warn!(
            partition,
            key,
            ahead_ms,
            "refused a metadata write stamped further ahead of this node's clock than the maximum offset (a writer's clock runs fast, or this node's runs slow)"
        );
    }
    refused(
        ErrorKind::ClockOffset,
        format!(
            "record stamped {ahead_ms} ms ahead of this node's clock (max {} ms)",
            node.config.max_clock_offset_ms
        ),
    )
}

fn lease_refusal(partition: &str, key: &str, refusal: LeaseRefusal) -> Answer {
    let (kind, why) = match refusal {
        LeaseRefusal::Lost => (
            ErrorKind::LeaseLost,
            "the write's lease expired or passed to another holder",
        ),
        LeaseRefusal::HeldByOther => (ErrorKind::Leased, "another writer holds the lease"),
    };
    refused(kind, format!("{partition:?}/{key:?}: {why}"))
}

/// One page of a partition, bounded in entries and bytes; without `bodies`, inline object
/// bytes are left out (listings).
fn meta_scan(
    node: &Node,
    partition: &str,
    prefix: &str,
    start_after: &[u8],
    limit: u32,
    bodies: bool,
) -> Answer {
    let limit = limit.clamp(1, MAX_SCAN_ENTRIES) as usize;
    let (mut entries, more) =
        node.store
            .meta_scan(partition, prefix, start_after, limit, MAX_SCAN_PAGE_BYTES)?;
    if !bodies {
        for (_, record) in &mut entries {
            record.value = dmpstore_common::record::without_inline_body(&record.value);
        }
    }
    done(Response::MetaEntries { entries, more })
}

fn health(node: &Node) -> HealthReport {
    let cluster = node.cluster.as_ref();
    HealthReport {
        node_id: node.config.id(),
        uptime_ms: node.started.elapsed().as_millis() as u64,
        n_chunks_estimate: node
            .chunks_estimate
            .load(std::sync::atomic::Ordering::Relaxed),
        draining: cluster.map(|c| c.context.draining()).unwrap_or_default(),
        map_version: cluster.map_or(0, |c| c.client.map().version),
        wall_ms: wall_ms(),
        read_only: node.disk.read_only(),
    }
}

fn status(node: &Node) -> NodeStatus {
    let cluster = node.cluster.as_ref();
    NodeStatus {
        node_id: node.config.id(),
        uptime_ms: node.started.elapsed().as_millis() as u64,
        n_chunks_estimate: node.store.estimate_chunks(),
        peers: cluster.map(|c| c.detector.views()).unwrap_or_default(),
        repair: cluster.map(|c| c.context.status()).unwrap_or_default(),
        workers: cluster.map(|c| c.supervisor.reports()).unwrap_or_default(),
        gateways: node
            .gateways
            .lock()
            .expect("gateway reports")
            .values()
            .cloned()
            .collect(),
        disk: node.disk.report(),
    }
}

/// Keeps a gateway's availability report, unless an older one or one too many.
fn gateway_report(node: &Node, report: GatewayAvailability) -> Answer {
    let mut reports = node.gateways.lock().expect("gateway reports");
    let room = reports.len() < MAX_GATEWAY_REPORTS || reports.contains_key(&report.gateway);
    if room
        && reports
            .get(&report.gateway)
            .is_none_or(|r| r.sent_ms <= report.sent_ms)
    {
        reports.insert(report.gateway.clone(), report);
    }
    drop(reports);
    done(Response::Done)
}
