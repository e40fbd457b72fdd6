//! `gateway admin status`: the cluster's summary, assembled from every node's own report (the
//! `Status` RPC), and its JSON types (`--json` prints them as they are).

use super::availability::AvailabilitySummary;
use super::fault_tolerance::FaultToleranceSummary;
use super::{admin_client, STATUS_DEADLINE};
use crate::config::GatewayConfig;
use crate::nodes::NodeClient;
use bytes::Bytes;
use dmpstore_common::cluster::{ClusterMap, NodeInfo, NodeState};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::{
    DegradedCount, DiskReport, FailureRecord, NodeStatus, PeerView, Request, Response, WorkerReport,
};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Buckets with lifecycle rules and the worker's progress through each; `None` if the
    /// metadata could not be read.
    pub lifecycle: Option<Vec<LifecycleSummary>>,
}

/// One bucket's lifecycle rules and how far the worker got (totals since the rules were set).
#[derive(Debug, Serialize)]
pub struct LifecycleSummary {
    pub bucket: String,
    pub rules: usize,
    pub passes: u64,
    pub in_pass: bool,
    pub last_pass_end_ms: Option<u64>,
    pub scanned: u64,
    pub expired: u64,
    pub noncurrent_expired: u64,
    pub markers_removed: u64,
    pub uploads_aborted: u64,
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

/// Reports of one node going Down within this long of each other are one failure.
const SAME_FAILURE_MS: u64 = 30_000;
/// Failures status shows.
const FAILURES_SHOWN: usize = 10;
/// Parked repairs and undecodable records status names, over all nodes.
const EXAMPLES_SHOWN: usize = 5;

/// Asks every node for its status and summarizes: the cluster's status; P_FT assumes
/// `annual_failure_rate` (share of nodes failing a year).
pub async fn status(
    config: &GatewayConfig,
    annual_failure_rate: f64,
) -> anyhow::Result<ClusterSummary> {
    let mut summary = nodes_status(config, annual_failure_rate).await?;
    summary.lifecycle = lifecycle_summary(config).await;
    Ok(summary)
}

/// [`status`] from the nodes' reports alone (no lifecycle progress, which takes metadata
/// reads): what long admin commands poll.
pub async fn nodes_status(
    config: &GatewayConfig,
    annual_failure_rate: f64,
) -> anyhow::Result<ClusterSummary> {
    let client = admin_client(config).await?;
    let map = client.map();
    let reports = ask_every_node(&client, &map).await;
    Ok(summarize(config, annual_failure_rate, &map, &reports))
}

/// [`status`] through a running gateway's own node client and metadata client (the web
/// console): no new connections per call.
pub async fn status_of_gateway(
    state: &std::sync::Arc<crate::state::GatewayState>,
    annual_failure_rate: f64,
) -> ClusterSummary {
    let map = state.nodes.map();
    let reports = ask_every_node(&state.nodes, &map).await;
    let mut summary = summarize(&state.config, annual_failure_rate, &map, &reports);
    summary.lifecycle = lifecycle_of(state).await;
    summary
}

/// The lifecycle rules and progress of every bucket that has rules, read through a metadata
/// client of this command's own.
async fn lifecycle_summary(config: &GatewayConfig) -> Option<Vec<LifecycleSummary>> {
    let state = std::sync::Arc::new(crate::state::GatewayState::new(config.clone()).ok()?);
    let summary = lifecycle_of(&state).await;
    state.tasks.close();
    summary
}

/// [`lifecycle_summary`] through `state`'s metadata client.
async fn lifecycle_of(
    state: &std::sync::Arc<crate::state::GatewayState>,
) -> Option<Vec<LifecycleSummary>> {
    let overview = crate::lifecycle::overview(state)
        .await
        .inspect_err(|e| tracing::debug!(error = %e, "status: lifecycle progress unreadable"))
        .ok()?;
    Some(
        overview
            .into_iter()
            .map(|(bucket, record, progress)| {
                let p = progress.unwrap_or_default();
                LifecycleSummary {
                    bucket,
                    rules: record.configuration.rules.len(),
                    passes: p.passes,
                    in_pass: p.pass_started_ms.is_some(),
                    last_pass_end_ms: p.last_pass_end_ms,
                    scanned: p.scanned,
                    expired: p.expired,
                    noncurrent_expired: p.noncurrent_expired,
                    markers_removed: p.markers_removed,
                    uploads_aborted: p.uploads_aborted,
                }
            })
            .collect(),
    )
}

/// Every node of `map` with its own report, `None` if it did not answer in time.
async fn ask_every_node(
    client: &NodeClient,
    map: &ClusterMap,
) -> Vec<(NodeId, Option<NodeStatus>)> {
    let asks = map.nodes().map(|n| async move {
        let r = client
            .call_with_deadline(n.id, &Request::Status, Bytes::new(), STATUS_DEADLINE)
            .await;
        match r {
            Ok((Response::Status(s), _)) => (n.id, Some(*s)),
            _ => (n.id, None),
        }
    });
    futures::future::join_all(asks).await
}

/// The cluster's summary from the nodes' reports: per node, the sums and maxima over the
/// nodes that answered, what is degraded, P_FT, P_HA and the failure history.
pub(super) fn summarize(
    config: &GatewayConfig,
    annual_failure_rate: f64,
    map: &ClusterMap,
    reports: &[(NodeId, Option<NodeStatus>)],
) -> ClusterSummary {
    let answered: Vec<&NodeStatus> = reports.iter().filter_map(|(_, s)| s.as_ref()).collect();
    let nodes: Vec<NodeSummary> = map
        .nodes()
        .map(|info| NodeSummary::of(info, map, reports, &answered))
        .collect();
    let up_ids = up_node_ids(&nodes);
    let max = |f: fn(&NodeStatus) -> Option<u64>| answered.iter().filter_map(|s| f(s)).max();
    let sum = |f: fn(&NodeStatus) -> u64| -> u64 { answered.iter().map(|s| f(s)).sum() };
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
    ClusterSummary {
        map_version: map.version,
        repair_queued: sum(|s| s.repair.queued),
        repair_rate_bytes_per_s: sum(|s| s.repair.rate_bytes_per_s),
        repair_eta_s: max(|s| s.repair.eta_s),
        rebuilt_bytes: sum(|s| s.repair.rebuilt_bytes),
        healed_chunks: sum(|s| s.repair.healed_chunks),
        scrub_passes: sum(|s| s.repair.scrub_passes),
        scrubbed_chunks: sum(|s| s.repair.scrubbed_chunks),
        dropped_moved_chunks: sum(|s| s.repair.dropped_moved_chunks),
        drops_pending: sum(|s| s.repair.drops_pending),
        anti_entropy_passes: sum(|s| s.repair.anti_entropy_passes),
        anti_entropy_repaired: sum(|s| s.repair.anti_entropy_repaired),
        orphan_chunks_dropped: sum(|s| s.repair.orphan_chunks_dropped),
        orphan_passes: sum(|s| s.repair.orphan_passes),
        tombstones_purged: sum(|s| s.repair.tombstones_purged),
        repair_delay_ms,
        last_t_fd_ms,
        last_t_fr_ms,
        last_t_rt_ms,
        repair_idle: repair_idle(&answered, &up_ids),
        dead_agreed: dead_agreed(map, &answered, &up_ids),
        degraded,
        parked_repairs: sum(|s| s.repair.parked.count),
        parked_first: first_examples(&answered, |s| &s.repair.parked.first),
        fault_tolerance,
        availability: AvailabilitySummary::of(&answered),
        failures: failure_history(&answered, repair_delay_ms.unwrap_or(0)),
        undecodable_records: sum(|s| s.repair.undecodable.count),
        undecodable_first: first_examples(&answered, |s| &s.repair.undecodable.first),
        lifecycle: None,
        nodes,
    }
}

impl NodeSummary {
    /// `info`'s line: what it reports of itself, and what its peers report of it.
    fn of(
        info: &NodeInfo,
        map: &ClusterMap,
        reports: &[(NodeId, Option<NodeStatus>)],
        answered: &[&NodeStatus],
    ) -> NodeSummary {
        let own = reports
            .iter()
            .find(|(id, _)| *id == info.id)
            .and_then(|(_, s)| s.as_ref());
        let views: Vec<&PeerView> = answered
            .iter()
            .filter(|s| s.node_id != info.id)
            .filter_map(|s| s.peers.iter().find(|p| p.node_id == info.id))
            .collect();
        NodeSummary {
            node_id: info.id.0,
            addr: info.addr.clone(),
            zone: info.zone.clone(),
            metadata: map.is_metadata_node(info.id),
            reachable: own.is_some(),
            state: agreed_state(&views, own.is_some()),
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
        }
    }
}

/// The worst state a majority of the peers' `views` of a node agree on; with no view at all,
/// Down unless the node itself `answered`.
fn agreed_state(views: &[&PeerView], answered: bool) -> NodeState {
    let majority = views.len() / 2 + 1;
    [NodeState::Down, NodeState::Suspect]
        .into_iter()
        .find(|st| views.iter().filter(|v| v.state >= *st).count() >= majority)
        .unwrap_or(if views.is_empty() && !answered {
            NodeState::Down
        } else {
            NodeState::Up
        })
}

/// The nodes their peers agree are Up (see [`agreed_state`]).
fn up_node_ids(nodes: &[NodeSummary]) -> Vec<u32> {
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Up)
        .map(|n| n.node_id)
        .collect()
}

/// Every Up node that answered has scanned for the current failures and emptied its queue,
/// and at least one did (no answer is not an idle cluster). Nodes the others consider down (an
/// isolated one still answers) do not count.
fn repair_idle(answered: &[&NodeStatus], up_ids: &[u32]) -> bool {
    let judged: Vec<_> = answered
        .iter()
        .filter(|s| up_ids.contains(&s.node_id.0))
        .collect();
    !judged.is_empty()
        && judged
            .iter()
            .all(|s| s.repair.queued == 0 && !s.repair.scan_pending)
}

/// The nodes of `map` that every other Up node that answered holds dead.
fn dead_agreed(map: &ClusterMap, answered: &[&NodeStatus], up_ids: &[u32]) -> Vec<u32> {
    map.nodes()
        .map(|n| n.id)
        .filter(|id| {
            let judges: Vec<_> = answered
                .iter()
                .filter(|s| s.node_id != *id && up_ids.contains(&s.node_id.0))
                .collect();
            !judges.is_empty() && judges.iter().all(|s| s.repair.dead.contains(id))
        })
        .map(|id| id.0)
        .collect()
}

/// The first few `(partition/key, why)` the nodes list, as `(node, partition/key, why)`.
fn first_examples(
    answered: &[&NodeStatus],
    first: fn(&NodeStatus) -> &Vec<(String, String)>,
) -> Vec<(u32, String, String)> {
    answered
        .iter()
        .flat_map(|s| {
            first(s)
                .iter()
                .map(|(k, why)| (s.node_id.0, k.clone(), why.clone()))
        })
        .take(EXAMPLES_SHOWN)
        .collect()
}

impl DegradedSummary {
    fn of<'a>(reports: impl Iterator<Item = &'a NodeStatus>) -> DegradedSummary {
        let mut total = DegradedCount::default();
        let mut without = Vec::new();
        let mut counted = 0usize;
        for r in reports {
            counted += 1;
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
            fully_redundant: total.versions == 0 && without.is_empty() && counted > 0,
            nodes_without_census: without,
            oldest_census_ms_ago: total.taken_ms.map(|t| now.saturating_sub(t)),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// No answer is not a healthy cluster: with every node silent, status claims neither an
    /// idle repair nor full redundancy (`admin remove` waits on both).
    #[test]
    fn with_no_node_answering_nothing_is_idle_or_fully_redundant() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.example.toml");
        let config = GatewayConfig::load(&path).unwrap();
        let map = dmpstore_storage_node::config::cluster_map(&config.nodes).unwrap();
        let silent: Vec<(NodeId, Option<NodeStatus>)> = map.nodes().map(|n| (n.id, None)).collect();
        let s = summarize(&config, 0.05, &map, &silent);
        assert!(!s.repair_idle);
        assert!(!s.degraded.fully_redundant);
        assert!(super::super::render(&s).contains("redundancy: unknown"));
    }
}
