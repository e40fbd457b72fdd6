//! `gateway admin`: the operator's view of the cluster, from the storage nodes' own reports
//! (the `Status` RPC): every node's state as its peers see it and its last heartbeat, the
//! repair queue, rebuild rate, progress and ETA, the last failure's T_FD / T_FR / T_RT, and
//! P_FT, the fault-tolerance estimate of DESIGN's Figures, from measured data.

use crate::config::GatewayConfig;
use crate::nodes::{Marking, NodeClient};
use bytes::Bytes;
use dmpstore_common::availability::Served;
use dmpstore_common::cluster::{ClusterMap, NodeInfo, NodeState};
use dmpstore_common::durability::{fault_tolerance, FaultToleranceInput};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::{
    DegradedCount, DegradedReason, DiskReport, FailureRecord, GatewayAvailability, NodeStatus,
    Request, Response, WorkerReport,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Share of nodes failing per year that P_FT assumes unless the operator sets another
/// (`gateway admin status --annual-failure-rate`).
pub const DEFAULT_ANNUAL_FAILURE_RATE: f64 = 0.05;
/// The rebuild rate P_FT assumes per node before any rebuild was measured: the default
/// `repair.max_rate_mib_per_s` of the nodes.
const ASSUMED_REBUILD_BYTES_PER_S_PER_NODE: f64 = 64.0 * 1048576.0;
const STATUS_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub struct NodeSummary {
    pub node_id: u32,
    pub addr: String,
    pub zone: String,
    /// Holds metadata partitions (a founding node); nodes added later hold chunks only.
    pub metadata: bool,
    /// Whether this command reached the node.
    pub reachable: bool,
    /// The worst state a majority of the reachable peers agree on.
    pub state: NodeState,
    /// Some node reports it as being drained.
    pub draining: bool,
    /// The node's data disk as it reports it: read-only while it is full.
    pub disk: Option<DiskReport>,
    /// Most recent answered heartbeat any peer saw, in ms.
    pub last_heartbeat_ms_ago: Option<u64>,
    pub chunks_estimate: Option<u64>,
    pub repair_queued: Option<u64>,
    pub repair_rate_bytes_per_s: Option<u64>,
    pub repair_eta_s: Option<u64>,
    pub repaired_versions: Option<u64>,
    /// Chunks the node dropped after they moved elsewhere, and moved chunks still in their
    /// grace period (garbage collection).
    pub dropped_moved_chunks: Option<u64>,
    pub drops_pending: Option<u64>,
    /// The node's cluster map version, and the metadata epoch of its last clean
    /// anti-entropy pass.
    pub map_version: Option<u64>,
    pub anti_entropy_clean_epoch: Option<u64>,
    /// Background workers of this node that panicked and were started again.
    pub restarted_workers: Vec<WorkerReport>,
}

#[derive(Debug, Serialize)]
pub struct ClusterSummary {
    /// Version of the newest cluster map the nodes hold.
    pub map_version: u64,
    pub nodes: Vec<NodeSummary>,
    pub repair_queued: u64,
    pub repair_rate_bytes_per_s: u64,
    pub repair_eta_s: Option<u64>,
    pub rebuilt_bytes: u64,
    /// Corrupt chunks rebuilt in place, scrub passes completed and chunks scrubbed (sums).
    pub healed_chunks: u64,
    pub scrub_passes: u64,
    pub scrubbed_chunks: u64,
    /// Moved chunks dropped, and waiting for their grace (sums).
    pub dropped_moved_chunks: u64,
    pub drops_pending: u64,
    /// Anti-entropy passes completed, and metadata records they wrote to stale replicas (sums).
    pub anti_entropy_passes: u64,
    pub anti_entropy_repaired: u64,
    /// Tombstones purged past their grace (sum).
    pub tombstones_purged: u64,
    /// Chunks the orphan scans dropped, and orphan scans completed (sums).
    pub orphan_chunks_dropped: u64,
    pub orphan_passes: u64,
    pub repair_delay_ms: Option<u64>,
    /// Detection, rebuild and recovery time of the last failure (max over the nodes' reports).
    pub last_t_fd_ms: Option<u64>,
    pub last_t_fr_ms: Option<u64>,
    pub last_t_rt_ms: Option<u64>,
    /// Every reachable node has scanned for the current failures and emptied its queue.
    pub repair_idle: bool,
    /// Nodes every reachable node sees Down for longer than the repair delay.
    pub dead_agreed: Vec<u32>,
    /// Object versions below full redundancy, from the Up nodes' censuses.
    pub degraded: DegradedSummary,
    /// Versions taken out of repair queues because they cannot be repaired now (sum), and
    /// the first few as `(node, partition/key, reason)`.
    pub parked_repairs: u64,
    pub parked_first: Vec<(u32, String, String)>,
    /// P_FT and every figure it was computed from (`None` if no node answered).
    pub fault_tolerance: Option<FaultToleranceSummary>,
    /// P_HA, per gateway and for the cluster.
    pub availability: AvailabilitySummary,
    /// The last failures (nodes declared Down), newest first, each with its own T_FD, T_FR
    /// and T_RT.
    pub failures: Vec<FailureSummary>,
    /// Metadata records the nodes' scans skipped because they do not decode (times skipped),
    /// and the first few as `(node, partition/key, why)`.
    pub undecodable_records: u64,
    pub undecodable_first: Vec<(u32, String, String)>,
}

/// One failure as the nodes saw it: the reports of one node going Down, merged.
#[derive(Debug, Serialize)]
pub struct FailureSummary {
    pub node: u32,
    pub down_ms_ago: u64,
    /// The longest detection time any node measured.
    pub t_fd_ms: u64,
    pub back_after_ms: Option<u64>,
    /// Down for longer than the repair delay: its chunks had to be rebuilt.
    pub rebuilt: bool,
    pub t_fr_ms: Option<u64>,
    /// `T_FD + repair delay + T_FR`, once redundancy was restored after it.
    pub t_rt_ms: Option<u64>,
}

/// Reports of one node going Down within this long of each other are one failure.
const SAME_FAILURE_MS: u64 = 30_000;
/// Failures status shows.
const FAILURES_SHOWN: usize = 10;

/// Merges the nodes' failure histories: one entry per node going Down, newest first.
fn failure_history(answered: &[&NodeStatus], repair_delay_ms: u64) -> Vec<FailureSummary> {
    let mut records: Vec<&FailureRecord> =
        answered.iter().flat_map(|s| &s.repair.failures).collect();
    records.sort_by_key(|r| (r.node, r.down_at_ms));
    let mut merged: Vec<FailureRecord> = Vec::new();
    for r in records {
        match merged.last_mut() {
            Some(m) if m.node == r.node && r.down_at_ms - m.down_at_ms <= SAME_FAILURE_MS => {
                m.t_fd_ms = m.t_fd_ms.max(r.t_fd_ms);
                m.back_after_ms = m.back_after_ms.max(r.back_after_ms);
                // Restored only once every node's census found nothing degraded (a node that
                // owns no degraded version records its T_FR at once).
                m.t_fr_ms = m.t_fr_ms.zip(r.t_fr_ms).map(|(a, b)| a.max(b));
            }
            _ => merged.push(r.clone()),
        }
    }
    merged.sort_by_key(|m| std::cmp::Reverse(m.down_at_ms));
    let now = crate::state::GatewayState::now_ms();
    merged
        .into_iter()
        .take(FAILURES_SHOWN)
        .map(|m| FailureSummary {
            node: m.node.0,
            down_ms_ago: now.saturating_sub(m.down_at_ms),
            t_fd_ms: m.t_fd_ms,
            back_after_ms: m.back_after_ms,
            rebuilt: m.back_after_ms.is_none_or(|b| b >= repair_delay_ms)
                && now.saturating_sub(m.down_at_ms) >= repair_delay_ms,
            t_fr_ms: m.t_fr_ms,
            t_rt_ms: m.t_fr_ms.map(|fr| m.t_fd_ms + repair_delay_ms + fr),
        })
        .collect()
}

/// P_HA (DESIGN 17): the share of S3 requests answered without a server-side error, from
/// each gateway's newest report to the nodes.
#[derive(Debug, Serialize)]
pub struct AvailabilitySummary {
    pub last_hour: ServedSummary,
    pub last_day: ServedSummary,
    pub gateways: Vec<GatewayServed>,
}

#[derive(Debug, Serialize)]
pub struct GatewayServed {
    /// The gateway's S3 listen address.
    pub gateway: String,
    /// Age of its newest report (by the gateway's clock against this one's).
    pub reported_ms_ago: u64,
    pub last_hour: ServedSummary,
    pub last_day: ServedSummary,
}

#[derive(Debug, Serialize)]
pub struct ServedSummary {
    pub requests: u64,
    pub failed: u64,
    /// `None` when no request was answered in the window.
    pub availability: Option<f64>,
}

impl From<Served> for ServedSummary {
    fn from(s: Served) -> ServedSummary {
        ServedSummary {
            requests: s.requests,
            failed: s.failed,
            availability: s.availability(),
        }
    }
}

impl AvailabilitySummary {
    fn of(answered: &[&NodeStatus]) -> AvailabilitySummary {
        let mut newest: BTreeMap<&str, &GatewayAvailability> = BTreeMap::new();
        for report in answered.iter().flat_map(|s| &s.gateways) {
            let slot = newest.entry(&report.gateway).or_insert(report);
            if report.sent_ms > slot.sent_ms {
                *slot = report;
            }
        }
        let now = crate::state::GatewayState::now_ms();
        let (mut hour, mut day) = (Served::default(), Served::default());
        let gateways = newest
            .into_values()
            .map(|r| {
                hour.add(&r.last_hour);
                day.add(&r.last_day);
                GatewayServed {
                    gateway: r.gateway.clone(),
                    reported_ms_ago: now.saturating_sub(r.sent_ms),
                    last_hour: r.last_hour.into(),
                    last_day: r.last_day.into(),
                }
            })
            .collect();
        AvailabilitySummary {
            last_hour: hour.into(),
            last_day: day.into(),
            gateways,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DegradedSummary {
    pub versions: u64,
    pub bytes: u64,
    /// Chunks missing -> versions.
    pub by_missing: BTreeMap<u32, u64>,
    /// Reason -> versions.
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Up nodes that have not taken a census yet (their partitions are not counted).
    pub nodes_without_census: Vec<u32>,
    /// Age of the oldest census counted, milliseconds.
    pub oldest_census_ms_ago: Option<u64>,
    /// Nothing is degraded and every Up node took a census: full redundancy everywhere.
    pub fully_redundant: bool,
}

impl DegradedSummary {
    fn of<'a>(reports: impl Iterator<Item = &'a NodeStatus>) -> DegradedSummary {
        let mut total = DegradedCount::default();
        let mut without = Vec::new();
        for r in reports {
            if r.repair.degraded.taken_ms.is_none() {
                without.push(r.node_id.0);
            }
            total.merge(&r.repair.degraded);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        DegradedSummary {
            versions: total.versions,
            bytes: total.bytes,
            by_missing: total.by_missing.iter().copied().collect(),
            by_reason: total
                .by_reason
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            fully_redundant: total.versions == 0 && without.is_empty(),
            nodes_without_census: without,
            oldest_census_ms_ago: total.taken_ms.map(|t| now.saturating_sub(t)),
        }
    }
}

/// P_FT (DESIGN 17) with every assumption beside it.
#[derive(Debug, Serialize)]
pub struct FaultToleranceSummary {
    pub nodes: usize,
    pub parity_chunks: usize,
    /// Share of nodes failing per year, set by the operator.
    pub annual_failure_rate: f64,
    pub repair_delay_hours: f64,
    /// Chunk bytes of the fullest node (its chunk count times the chunk size: an upper bound).
    pub bytes_per_node: u64,
    pub rebuild_bytes_per_s: f64,
    pub rebuild_rate_source: &'static str,
    /// Modelled recovery time of one node failure: delay + bytes per node / rebuild rate.
    pub mttr_hours: f64,
    /// The most chunks a version is missing now, and when those versions are whole again
    /// (`None`: they cannot be rebuilt now).
    pub missing_chunks: usize,
    pub restore_hours: Option<f64>,
    pub loss_while_degraded: f64,
    pub loss_at_full_redundancy: f64,
    /// Probability of data loss within a year: 1 - P_FT.
    pub annual_loss: f64,
    /// Probability of a year without data loss.
    pub p_ft: f64,
}

impl FaultToleranceSummary {
    /// From what the nodes reported; `None` when no node answered.
    fn of(
        answered: &[&NodeStatus],
        (n_nodes, up_nodes): (usize, usize),
        config: &GatewayConfig,
        degraded: &DegradedSummary,
        annual_failure_rate: f64,
    ) -> Option<FaultToleranceSummary> {
        let repair_delay_ms = answered.iter().map(|s| s.repair.repair_delay_ms).max()?;
        let chunk_bytes = u64::from(config.erasure.chunk_size_bytes);
        let bytes_per_node = answered
            .iter()
            .map(|s| s.n_chunks_estimate.saturating_mul(chunk_bytes))
            .max()
            .unwrap_or(0);
        let (rebuild_bytes_per_s, rebuild_rate_source) = rebuild_rate(answered, n_nodes);
        let parity_chunks = usize::from(config.erasure.parity_chunks);
        let width = usize::from(config.erasure.data_chunks) + parity_chunks;
        let down_nodes = n_nodes.saturating_sub(up_nodes);
        let restore_hours = restore_hours(
            degraded,
            (down_nodes, n_nodes - down_nodes >= width),
            repair_delay_ms,
            (bytes_per_node, rebuild_bytes_per_s),
        );
        // The census lags a failure by seconds (and does not count inline objects, whose
        // redundancy is their metadata replicas): until it counts something, every node not
        // Up is taken to hold a chunk of the worst version.
        let census_missing = degraded.by_missing.keys().max().map_or(0, |&m| m as usize);
        let missing_chunks = if census_missing > 0 {
            census_missing
        } else {
            down_nodes.min(width)
        };
        let input = FaultToleranceInput {
            nodes: n_nodes,
            up_nodes,
            parity_chunks,
            annual_failure_rate,
            repair_delay_hours: repair_delay_ms as f64 / 3_600_000.0,
            bytes_per_node: bytes_per_node as f64,
            rebuild_bytes_per_hour: rebuild_bytes_per_s * 3600.0,
            missing_chunks,
            restore_hours,
        };
        let ft = fault_tolerance(&input)?;
        Some(FaultToleranceSummary {
            nodes: input.nodes,
            parity_chunks: input.parity_chunks,
            annual_failure_rate,
            repair_delay_hours: input.repair_delay_hours,
            bytes_per_node,
            rebuild_bytes_per_s,
            rebuild_rate_source,
            mttr_hours: ft.mttr_hours,
            missing_chunks: input.missing_chunks,
            restore_hours,
            loss_while_degraded: ft.loss_while_degraded,
            loss_at_full_redundancy: ft.loss_at_full_redundancy,
            annual_loss: ft.annual_loss,
            p_ft: ft.p_ft(),
        })
    }
}

/// The cluster's rebuild rate, bytes per second, and where it comes from: measured now, or
/// over the last rebuild, or (before any) the nodes' default cap.
fn rebuild_rate(answered: &[&NodeStatus], n_nodes: usize) -> (f64, &'static str) {
    let now: u64 = answered.iter().map(|s| s.repair.rate_bytes_per_s).sum();
    if now > 0 {
        return (now as f64, "measured now");
    }
    let rebuilt: u64 = answered.iter().map(|s| s.repair.rebuilt_bytes).sum();
    let t_fr_ms = answered.iter().filter_map(|s| s.repair.last_t_fr_ms).max();
    match t_fr_ms {
        Some(ms) if ms > 0 && rebuilt > 0 => (
            rebuilt as f64 * 1000.0 / ms as f64,
            "measured: bytes rebuilt since the nodes started over the last T_FR",
        ),
        _ => (
            ASSUMED_REBUILD_BYTES_PER_S_PER_NODE * n_nodes.saturating_sub(1).max(1) as f64,
            "assumed: 64 MiB/s on each other node, the default cap (no rebuild measured yet)",
        ),
    }
}

/// Hours until the versions degraded now are whole again, `None` if some cannot be rebuilt
/// now (no spare node, fewer than `k` chunks left). Nodes Down that no census counted yet
/// take a node's worth of chunks each, rebuilt after the repair delay.
fn restore_hours(
    d: &DegradedSummary,
    (down_nodes, spare): (usize, bool),
    repair_delay_ms: u64,
    (bytes_per_node, bytes_per_s): (u64, f64),
) -> Option<f64> {
    let stuck = [DegradedReason::NoSpareNode, DegradedReason::Unrepairable];
    let is_stuck = stuck
        .iter()
        .any(|r| d.by_reason.get(r.as_str()).is_some_and(|&n| n > 0));
    if is_stuck || (down_nodes > 0 && !spare) {
        return None;
    }
    let waiting = down_nodes > 0
        || d.by_reason
            .get(DegradedReason::WaitingForDelay.as_str())
            .is_some_and(|&n| n > 0);
    let delay_s = if waiting {
        repair_delay_ms as f64 / 1000.0
    } else {
        0.0
    };
    let bytes = d
        .bytes
        .max(bytes_per_node.saturating_mul(down_nodes as u64));
    Some((delay_s + bytes as f64 / bytes_per_s.max(1.0)) / 3600.0)
}

/// An RPC client for admin calls: it never marks nodes up or down from call outcomes. Its map
/// is the newest any node has (the config's may predate an added node).
async fn admin_client(config: &GatewayConfig) -> anyhow::Result<NodeClient> {
    let map = Arc::new(config.cluster_map()?);
    let client = NodeClient::new(map.clone(), &config.cluster_secret, Marking::ByDetector)?;
    let asks = map.nodes().map(|n| {
        let client = &client;
        async move {
            match client
                .call_with_deadline(n.id, &Request::GetClusterMap, Bytes::new(), STATUS_DEADLINE)
                .await
            {
                Ok((Response::ClusterMap(m), _)) => Some(m),
                _ => None,
            }
        }
    });
    let newest = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .max_by_key(|m| m.version);
    if let Some(m) = newest {
        client.install_map(m);
    }
    Ok(client)
}

/// Adds `node` to the cluster as a data node: installs the next cluster map on every node
/// (the new one included, which must be running). The nodes then heartbeat it and move to it
/// the chunks whose rendezvous placement moved (rebalance); gateways learn the map from their
/// health probes. Returns the new map's version and the nodes that did not take it (they learn
/// it from their peers' heartbeats).
pub async fn add_node(
    config: &GatewayConfig,
    node: NodeInfo,
) -> anyhow::Result<(u64, Vec<(NodeId, String)>)> {
    let client = admin_client(config).await?;
    let next = client.map().with_data_node(node.clone())?;
    let version = next.version;
    client.install_map(next.clone());
    // The new node must answer before anyone places chunks on it.
    client
        .call_with_deadline(node.id, &Request::Health, Bytes::new(), STATUS_DEADLINE)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the new node {} does not answer at {}: {e}",
                node.id,
                node.addr
            )
        })?;
    let request = Request::SetClusterMap { map: next.clone() };
    // The new node first, so it knows its peers before they start sending it chunks.
    client
        .call_with_deadline(node.id, &request, Bytes::new(), STATUS_DEADLINE)
        .await?;
    let others = next.nodes().filter(|n| n.id != node.id).map(|n| {
        let (client, request) = (&client, &request);
        async move {
            let r = client
                .call_with_deadline(n.id, request, Bytes::new(), STATUS_DEADLINE)
                .await;
            (n.id, r.err().map(|e| e.to_string()))
        }
    });
    let missed: Vec<(NodeId, String)> = futures::future::join_all(others)
        .await
        .into_iter()
        .filter_map(|(id, e)| Some((id, e?)))
        .collect();
    Ok((version, missed))
}

/// Asks every node for its status and summarizes.
/// The cluster's status; P_FT assumes `annual_failure_rate` (share of nodes failing a year).
pub async fn status(
    config: &GatewayConfig,
    annual_failure_rate: f64,
) -> anyhow::Result<ClusterSummary> {
    let client = admin_client(config).await?;
    let map = client.map();
    let asks = map.nodes().map(|n| {
        let client = &client;
        async move {
            let r = client
                .call_with_deadline(n.id, &Request::Status, Bytes::new(), STATUS_DEADLINE)
                .await;
            match r {
                Ok((Response::Status(s), _)) => (n.id, Some(*s)),
                _ => (n.id, None),
            }
        }
    });
    let reports: Vec<(NodeId, Option<NodeStatus>)> = futures::future::join_all(asks).await;
    let answered: Vec<&NodeStatus> = reports.iter().filter_map(|(_, s)| s.as_ref()).collect();

    let mut nodes = Vec::new();
    for info in map.nodes() {
        let own = reports
            .iter()
            .find(|(id, _)| *id == info.id)
            .and_then(|(_, s)| s.as_ref());
        let views: Vec<_> = answered
            .iter()
            .filter(|s| s.node_id != info.id)
            .filter_map(|s| s.peers.iter().find(|p| p.node_id == info.id))
            .collect();
        let majority = views.len() / 2 + 1;
        let state = [NodeState::Down, NodeState::Suspect]
            .into_iter()
            .find(|st| views.iter().filter(|v| v.state >= *st).count() >= majority)
            .unwrap_or(if views.is_empty() && own.is_none() {
                NodeState::Down
            } else {
                NodeState::Up
            });
        nodes.push(NodeSummary {
            node_id: info.id.0,
            addr: info.addr.clone(),
            zone: info.zone.clone(),
            metadata: map.is_metadata_node(info.id),
            reachable: own.is_some(),
            state,
            draining: answered
                .iter()
                .any(|s| s.repair.draining.contains(&info.id)),
            disk: own.map(|s| s.disk.clone()),
            last_heartbeat_ms_ago: views.iter().filter_map(|v| v.last_heartbeat_ms_ago).min(),
            chunks_estimate: own.map(|s| s.n_chunks_estimate),
            repair_queued: own.map(|s| s.repair.queued),
            repair_rate_bytes_per_s: own.map(|s| s.repair.rate_bytes_per_s),
            repair_eta_s: own.and_then(|s| s.repair.eta_s),
            repaired_versions: own.map(|s| s.repair.repaired_versions),
            dropped_moved_chunks: own.map(|s| s.repair.dropped_moved_chunks),
            drops_pending: own.map(|s| s.repair.drops_pending),
            map_version: own.map(|s| s.repair.map_version),
            anti_entropy_clean_epoch: own.map(|s| s.repair.anti_entropy_clean_epoch),
            restarted_workers: own
                .map(|s| {
                    s.workers
                        .iter()
                        .filter(|w| w.restarts > 0)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    let up_ids: Vec<u32> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Up)
        .map(|n| n.node_id)
        .collect();
    let max = |f: fn(&NodeStatus) -> Option<u64>| answered.iter().filter_map(|s| f(s)).max();
    let last_t_fd_ms = max(|s| s.repair.last_t_fd_ms);
    let degraded = DegradedSummary::of(
        answered
            .iter()
            .copied()
            .filter(|s| up_ids.contains(&s.node_id.0)),
    );
    // Redundancy is restored, and the rebuild time known, only once nothing is degraded.
    let last_t_fr_ms = max(|s| s.repair.last_t_fr_ms).filter(|_| degraded.versions == 0);
    let repair_delay_ms = max(|s| Some(s.repair.repair_delay_ms));
    let last_t_rt_ms = match (last_t_fd_ms, repair_delay_ms, last_t_fr_ms) {
        (Some(fd), Some(delay), Some(fr)) => Some(fd + delay + fr),
        _ => None,
    };
    let fault_tolerance = FaultToleranceSummary::of(
        &answered,
        (map.len(), up_ids.len()),
        config,
        &degraded,
        annual_failure_rate,
    );
    Ok(ClusterSummary {
        map_version: map.version,
        repair_queued: answered.iter().map(|s| s.repair.queued).sum(),
        repair_rate_bytes_per_s: answered.iter().map(|s| s.repair.rate_bytes_per_s).sum(),
        repair_eta_s: answered.iter().filter_map(|s| s.repair.eta_s).max(),
        rebuilt_bytes: answered.iter().map(|s| s.repair.rebuilt_bytes).sum(),
        healed_chunks: answered.iter().map(|s| s.repair.healed_chunks).sum(),
        scrub_passes: answered.iter().map(|s| s.repair.scrub_passes).sum(),
        scrubbed_chunks: answered.iter().map(|s| s.repair.scrubbed_chunks).sum(),
        dropped_moved_chunks: answered.iter().map(|s| s.repair.dropped_moved_chunks).sum(),
        drops_pending: answered.iter().map(|s| s.repair.drops_pending).sum(),
        anti_entropy_passes: answered.iter().map(|s| s.repair.anti_entropy_passes).sum(),
        anti_entropy_repaired: answered
            .iter()
            .map(|s| s.repair.anti_entropy_repaired)
            .sum(),
        orphan_chunks_dropped: answered
            .iter()
            .map(|s| s.repair.orphan_chunks_dropped)
            .sum(),
        orphan_passes: answered.iter().map(|s| s.repair.orphan_passes).sum(),
        tombstones_purged: answered.iter().map(|s| s.repair.tombstones_purged).sum(),
        repair_delay_ms,
        last_t_fd_ms,
        last_t_fr_ms,
        last_t_rt_ms,
        // Nodes the others consider down (an isolated one still answers) do not count.
        repair_idle: answered
            .iter()
            .filter(|s| up_ids.contains(&s.node_id.0))
            .all(|s| s.repair.queued == 0 && !s.repair.scan_pending),
        dead_agreed: map
            .nodes()
            .map(|n| n.id)
            .filter(|id| {
                let judges: Vec<_> = answered
                    .iter()
                    .filter(|s| s.node_id != *id && up_ids.contains(&s.node_id.0))
                    .collect();
                !judges.is_empty() && judges.iter().all(|s| s.repair.dead.contains(id))
            })
            .map(|id| id.0)
            .collect(),
        degraded,
        parked_repairs: answered.iter().map(|s| s.repair.parked.count).sum(),
        parked_first: answered
            .iter()
            .flat_map(|s| {
                s.repair
                    .parked
                    .first
                    .iter()
                    .map(|(k, why)| (s.node_id.0, k.clone(), why.clone()))
            })
            .take(5)
            .collect(),
        fault_tolerance,
        availability: AvailabilitySummary::of(&answered),
        failures: failure_history(&answered, repair_delay_ms.unwrap_or(0)),
        undecodable_records: answered.iter().map(|s| s.repair.undecodable.count).sum(),
        undecodable_first: answered
            .iter()
            .flat_map(|s| {
                s.repair
                    .undecodable
                    .first
                    .iter()
                    .map(|(k, why)| (s.node_id.0, k.clone(), why.clone()))
            })
            .take(5)
            .collect(),
        nodes,
    })
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1} s", v as f64 / 1000.0))
}

/// The human-readable form.
pub fn render(s: &ClusterSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<5} {:<22} {:<8} {:<8} {:>10} {:>10} {:>8} {:>12} {:>8}\n",
        "node", "addr", "zone", "state", "heartbeat", "chunks", "queue", "rebuild/s", "eta"
    ));
    for n in &s.nodes {
        out.push_str(&format!(
            "{:<5} {:<22} {:<8} {:<8} {:>10} {:>10} {:>8} {:>12} {:>8}\n",
            format!("n{}{}", n.node_id, if n.metadata { "" } else { "*" }),
            n.addr,
            n.zone,
            match (n.reachable, n.draining) {
                _ if n.disk.as_ref().is_some_and(|d| d.read_only) => {
                    format!("{} read-only", n.state)
                }
                (true, false) => n.state.to_string(),
                (true, true) => format!("{} draining", n.state),
                (false, _) => format!("{} (no answer)", n.state),
            },
            n.last_heartbeat_ms_ago
                .map_or("-".into(), |v| format!("{v} ms ago")),
            n.chunks_estimate.map_or("-".into(), |v| v.to_string()),
            n.repair_queued.map_or("-".into(), |v| v.to_string()),
            n.repair_rate_bytes_per_s
                .map_or("-".into(), |v| format!("{:.1} MiB", v as f64 / 1048576.0)),
            n.repair_eta_s.map_or("-".into(), |v| format!("{v} s")),
        ));
    }
    for n in &s.nodes {
        if let Some(d) = n.disk.as_ref().filter(|d| d.read_only) {
            out.push_str(&format!(
                "n{} is read-only: its disk is full ({:.1} MiB free of {:.1} MiB, {:.1} MiB kept in reserve); it takes no new chunks or records until space is freed (delete data or grow the disk)\n",
                n.node_id,
                d.free_bytes as f64 / 1048576.0,
                d.total_bytes as f64 / 1048576.0,
                d.reserve_bytes as f64 / 1048576.0,
            ));
        }
    }
    if s.nodes.iter().any(|n| !n.metadata) {
        out.push_str("* data node (added later): holds chunks, no metadata replicas\n");
    }
    out.push_str(&format!("\ncluster map v{}\n", s.map_version));
    out.push_str(&format!(
        "repair: {} queued, {:.1} MiB/s, ETA {}, {:.1} MiB rebuilt, {}\n",
        s.repair_queued,
        s.repair_rate_bytes_per_s as f64 / 1048576.0,
        s.repair_eta_s.map_or("-".into(), |v| format!("{v} s")),
        s.rebuilt_bytes as f64 / 1048576.0,
        match (s.repair_idle, s.degraded.versions) {
            (true, 0) => "idle",
            (true, _) => "idle, with nothing it can rebuild now (see redundancy)",
            (false, _) => "working",
        },
    ));
    out.push_str(&render_degraded(&s.degraded));
    if s.parked_repairs > 0 {
        out.push_str(&format!(
            "parked: {} repairs (versions, or chunks to heal) cannot be done now: fewer than k chunks readable; tried again when the down nodes change\n",
            s.parked_repairs
        ));
        for (node, key, why) in &s.parked_first {
            out.push_str(&format!("  n{node}: {key}: {why}\n"));
        }
    }
    for n in &s.nodes {
        for w in &n.restarted_workers {
            out.push_str(&format!(
                "workers: n{} {} panicked and was restarted {} times (last: {})\n",
                n.node_id,
                w.name,
                w.restarts,
                w.last_panic.as_deref().unwrap_or("-")
            ));
        }
    }
    out.push_str(&format!(
        "scrub: {} passes, {} chunks verified, {} corrupt chunks rebuilt in place\n",
        s.scrub_passes, s.scrubbed_chunks, s.healed_chunks
    ));
    out.push_str(&format!(
        "gc: {} moved chunks dropped, {} waiting for their grace period; {} orphan chunks dropped in {} scans\n",
        s.dropped_moved_chunks, s.drops_pending, s.orphan_chunks_dropped, s.orphan_passes
    ));
    out.push_str(&format!(
        "anti-entropy: {} passes, {} stale metadata replicas brought up to date, {} tombstones purged\n",
        s.anti_entropy_passes, s.anti_entropy_repaired, s.tombstones_purged
    ));
    out.push_str(&format!(
        "last failure: T_FD {}, repair delay {}, T_FR {}, T_RT {}\n",
        ms(s.last_t_fd_ms),
        ms(s.repair_delay_ms),
        ms(s.last_t_fr_ms),
        ms(s.last_t_rt_ms)
    ));
    if s.undecodable_records > 0 {
        out.push_str(&format!(
            "undecodable: records and unreadable SST ranges skipped {} times by scans (the other replicas serve them; restore the node's disk or replace it):\n",
            s.undecodable_records
        ));
        for (node, key, why) in &s.undecodable_first {
            out.push_str(&format!("  n{node}: {key}: {why}\n"));
        }
    }
    out.push_str(&render_failures(&s.failures));
    out.push_str(&render_availability(&s.availability));
    out.push_str(&render_fault_tolerance(
        s.fault_tolerance.as_ref(),
        &s.degraded,
    ));
    out
}

/// The failure history, newest first.
fn render_failures(failures: &[FailureSummary]) -> String {
    if failures.is_empty() {
        return "failures: none since the nodes started\n".into();
    }
    let mut out = "failures (newest first):\n".to_string();
    for f in failures {
        let end = match (f.t_fr_ms, f.back_after_ms, f.rebuilt) {
            (Some(fr), _, _) => format!("T_FR {}, T_RT {}", ms(Some(fr)), ms(f.t_rt_ms)),
            (None, Some(back), false) => {
                format!("back after {}, within the repair delay", ms(Some(back)))
            }
            (None, None, false) => "waiting for the repair delay".to_string(),
            (None, _, true) => "redundancy not restored yet".to_string(),
        };
        out.push_str(&format!(
            "  n{} down {} ago: T_FD {}, {end}\n",
            f.node,
            ms(Some(f.down_ms_ago)),
            ms(Some(f.t_fd_ms))
        ));
    }
    out
}

/// P_HA for the cluster, then per gateway.
fn render_availability(a: &AvailabilitySummary) -> String {
    let share = |s: &ServedSummary| match s.availability {
        Some(p) => format!("{:.3} % of {} requests", p * 100.0, s.requests),
        None => "no requests".to_string(),
    };
    let mut out = format!(
        "availability (P_HA, requests answered without a server-side error): last hour {}, last day {}\n",
        share(&a.last_hour),
        share(&a.last_day)
    );
    if a.gateways.is_empty() {
        out.push_str("  no gateway has reported yet\n");
    }
    for g in &a.gateways {
        out.push_str(&format!(
            "  gateway {}: last hour {}, last day {} (reported {:.1} s ago)\n",
            g.gateway,
            share(&g.last_hour),
            share(&g.last_day),
            g.reported_ms_ago as f64 / 1000.0
        ));
    }
    out
}

/// P_FT, what it assumed, and how the current degradation weighs in.
fn render_fault_tolerance(f: Option<&FaultToleranceSummary>, d: &DegradedSummary) -> String {
    let Some(f) = f else {
        return "fault tolerance: P_FT unknown (no node answered)\n".into();
    };
    let p_ft = if f.annual_loss < 1e-4 {
        format!("1 - {:.3e}", f.annual_loss)
    } else {
        format!("{:.4}", f.p_ft)
    };
    let mut out = format!(
        "fault tolerance: P_FT ≈ {p_ft} (probability of a year without data loss; of a loss: {:.3e})\n",
        f.annual_loss
    );
    out.push_str(&format!(
        "  model: {} nodes, m = {}, annual node failure rate {} % (--annual-failure-rate), MTTR {:.3} h = repair delay {:.3} h + {:.1} MiB per node / rebuild {:.1} MiB/s ({}); Markov approximation, independent failures, one placement group\n",
        f.nodes,
        f.parity_chunks,
        f.annual_failure_rate * 100.0,
        f.mttr_hours,
        f.repair_delay_hours,
        f.bytes_per_node as f64 / 1048576.0,
        f.rebuild_bytes_per_s / 1048576.0,
        f.rebuild_rate_source,
    ));
    if f.missing_chunks > f.parity_chunks {
        out.push_str(&format!(
            "  now: nodes holding {} chunks of some versions are not up, more than the {} parity chunks: those versions are unreadable, and lost unless the nodes return\n",
            f.missing_chunks, f.parity_chunks
        ));
    } else if f.missing_chunks > 0 {
        let until = f.restore_hours.map_or(
            "cannot be rebuilt now, so counted degraded for the whole year".to_string(),
            |h| format!("whole again in about {h:.3} h"),
        );
        let what = if d.versions > 0 {
            format!("{} object versions missing", d.versions)
        } else {
            "nodes not up (no census counted them yet) hold".to_string()
        };
        out.push_str(&format!(
            "  now: {what} up to {} of {} parity chunks, {until}: P(loss while degraded) ≈ {:.3e}\n",
            f.missing_chunks, f.parity_chunks, f.loss_while_degraded
        ));
    }
    out
}

/// The redundancy line(s) of the status: plainly, how much is degraded, by how much, why,
/// and what the operator must do.
fn render_degraded(d: &DegradedSummary) -> String {
    let census = d.oldest_census_ms_ago.map_or("no census yet".into(), |a| {
        format!("oldest census {:.1} s ago", a as f64 / 1000.0)
    });
    let mut out = if d.versions == 0 {
        format!("redundancy: full, no object version below full redundancy ({census})\n")
    } else {
        let missing: Vec<String> = d
            .by_missing
            .iter()
            .map(|(m, n)| format!("{n} missing {m} chunk{}", if *m == 1 { "" } else { "s" }))
            .collect();
        let reasons: Vec<String> = d
            .by_reason
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!(
            "redundancy: DEGRADED, {} object versions ({:.1} MiB) below full redundancy: {}; why: {} ({census})\n",
            d.versions,
            d.bytes as f64 / 1048576.0,
            missing.join(", "),
            reasons.join(", "),
        )
    };
    if !d.nodes_without_census.is_empty() {
        out.push_str(&format!(
            "  not yet counted: the partitions of nodes {:?} (no census taken yet)\n",
            d.nodes_without_census
        ));
    }
    if d.by_reason
        .contains_key(DegradedReason::NoSpareNode.as_str())
    {
        out.push_str("  no spare node to rebuild onto: add a node (`gateway admin add`) or replace the failed one (`gateway admin replace`)\n");
    }
    if d.by_reason
        .contains_key(DegradedReason::Unrepairable.as_str())
    {
        out.push_str("  fewer than k chunks left for some versions: they cannot be read or rebuilt until a failed node comes back\n");
    }
    out
}

/// Installs `map` on every node of it except `skip`, and says which nodes did not take it
/// (they learn it from their peers' heartbeats).
async fn install_everywhere(client: &NodeClient, map: &ClusterMap, skip: NodeId) {
    let request = Request::SetClusterMap { map: map.clone() };
    let calls = map.nodes().filter(|n| n.id != skip).map(|n| {
        let request = &request;
        async move {
            let r = client
                .call_with_deadline(n.id, request, Bytes::new(), STATUS_DEADLINE)
                .await;
            (n.id, r.err().map(|e| e.to_string()))
        }
    });
    for (n, e) in futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|(id, e)| Some((id, e?)))
    {
        println!("  {n} did not take the new map ({e}); it learns it from its peers");
    }
}

/// Polls the cluster's status every second until `done` says so, printing `progress` of it
/// every few seconds; gives up at `deadline`.
async fn wait_status(
    config: &GatewayConfig,
    what: &str,
    deadline: tokio::time::Instant,
    mut done: impl FnMut(&ClusterSummary) -> bool,
    progress: impl Fn(&ClusterSummary) -> String,
) -> anyhow::Result<ClusterSummary> {
    let mut last_print = tokio::time::Instant::now();
    loop {
        let s = status(config, DEFAULT_ANNUAL_FAILURE_RATE).await?;
        if done(&s) {
            return Ok(s);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not done before the deadline ({})", progress(&s));
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            println!("  {what}: {}", progress(&s));
            last_print = tokio::time::Instant::now();
        }
        // Deliberate polling interval of a long-running admin command.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes `node` (dead or alive) from the cluster, in three steps with progress:
/// 1. drain: its chunks are rebuilt or moved elsewhere (at once, without the repair delay);
/// 2. if it holds metadata replicas: a metadata membership change without it (a data node,
///    if there is one, takes its place), whose joint phase lasts until every node has run a
///    clean anti-entropy pass, which copies each partition to its new replicas;
/// 3. a cluster map without it.
///
/// Running it again after an interruption resumes. Returns the final map version.
pub async fn remove_node(
    config: &GatewayConfig,
    node: NodeId,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let client = admin_client(config).await?;
    let map = client.map();
    if map.get(node).is_none() {
        anyhow::bail!("{node} is not in the cluster map (version {})", map.version);
    }
    let changing = map.previous_metadata_nodes().is_some();
    if changing && map.is_metadata_node(node) {
        anyhow::bail!("another metadata membership change is in progress; finish it first");
    }

    println!("1/3 draining {node}: its chunks move to other nodes");
    let request = Request::Drain {
        node,
        draining: true,
    };
    let missed = broadcast(config, &request).await?;
    if let Some((n, e)) = missed.iter().find(|(n, _)| *n != node) {
        anyhow::bail!("{n} did not take the drain: {e}");
    }
    wait_status(
        config,
        "drain",
        deadline,
        |s| s.dead_agreed.contains(&node.0) && s.repair_idle,
        |s| {
            format!(
                "{} queued, {:.1} MiB/s, ETA {}",
                s.repair_queued,
                s.repair_rate_bytes_per_s as f64 / 1048576.0,
                s.repair_eta_s.map_or("-".into(), |v| format!("{v} s"))
            )
        },
    )
    .await?;

    // One more full scan on every node for chunks on it: a record committed after the scans
    // of the drain (a multipart upload completed late) is moved too.
    let missed = broadcast(config, &Request::RepairScan { node }).await?;
    if let Some((n, e)) = missed.iter().find(|(n, _)| *n != node) {
        anyhow::bail!("{n} did not take the final scan: {e}");
    }
    wait_status(
        config,
        "final scan",
        deadline,
        |s| s.repair_idle,
        |s| format!("{} queued", s.repair_queued),
    )
    .await?;

    let map = admin_client(config).await?.map();
    let joint = if map.is_metadata_node(node) {
        let mut new_set = map.metadata_nodes().clone();
        new_set.remove(&node);
        if let Some(promoted) = map
            .nodes()
            .map(|n| n.id)
            .find(|id| *id != node && !map.is_metadata_node(*id))
        {
            println!("2/3 {promoted} takes {node}'s place among the metadata nodes");
            new_set.insert(promoted);
        }
        let joint = map.begin_metadata_change(new_set)?;
        install_everywhere(&client, &joint, node).await;
        println!(
            "2/3 metadata of {node} is copied to its new replicas (map v{}, metadata epoch {})",
            joint.version, joint.metadata_epoch
        );
        joint
    } else {
        // Not a metadata node, or resuming the joint phase of an interrupted remove.
        if !changing {
            println!("2/3 {node} holds no metadata: nothing to copy");
        }
        (*map).clone()
    };
    if joint.previous_metadata_nodes().is_some() {
        let epoch = joint.metadata_epoch;
        broadcast(config, &Request::AntiEntropy).await?;
        wait_status(
            config,
            "metadata copy",
            deadline,
            |s| {
                s.nodes
                    .iter()
                    .filter(|n| n.reachable && n.node_id != node.0)
                    .all(|n| n.anti_entropy_clean_epoch >= Some(epoch))
            },
            |s| {
                let done = s
                    .nodes
                    .iter()
                    .filter(|n| n.reachable && n.anti_entropy_clean_epoch >= Some(epoch))
                    .count();
                format!(
                    "{done} of {} nodes done, {} records copied",
                    s.nodes.iter().filter(|n| n.reachable).count(),
                    s.anti_entropy_repaired
                )
            },
        )
        .await?;
    }

    let last = joint.finish_metadata_change(Some(node))?;
    install_everywhere(&client, &last, node).await;
    println!(
        "3/3 {node} removed: cluster map v{} with {} nodes",
        last.version,
        last.len()
    );
    Ok(last.version)
}

/// Sends `request` to every node; returns the nodes that did not take it, with the reason.
pub async fn broadcast(
    config: &GatewayConfig,
    request: &Request,
) -> anyhow::Result<Vec<(NodeId, String)>> {
    let client = admin_client(config).await?;
    let map = client.map();
    let calls = map.nodes().map(|n| {
        let client = &client;
        async move {
            let r = client
                .call_with_deadline(n.id, request, Bytes::new(), STATUS_DEADLINE)
                .await;
            (n.id, r.err().map(|e| e.to_string()))
        }
    });
    Ok(futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|(id, e)| Some((id, e?)))
        .collect())
}

/// Sends `request` to one node.
pub async fn send(config: &GatewayConfig, node: NodeId, request: &Request) -> anyhow::Result<()> {
    let client = admin_client(config).await?;
    client
        .call_with_deadline(node, request, Bytes::new(), STATUS_DEADLINE)
        .await?;
    Ok(())
}
