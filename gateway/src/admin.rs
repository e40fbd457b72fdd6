//! `gateway admin`: the operator's view of the cluster, from the storage nodes' own reports
//! (the `Status` RPC): every node's state as its peers see it and its last heartbeat, the
//! repair queue, rebuild rate, progress and ETA, the last failure's T_FD / T_FR / T_RT, and the
//! durability estimate of DESIGN's Figures.

use crate::config::GatewayConfig;
use crate::nodes::{Marking, NodeClient};
use bytes::Bytes;
use dmpstore_common::cluster::{ClusterMap, NodeInfo, NodeState};
use dmpstore_common::durability::{annual_loss_probability, DurabilityInput};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::{
    DegradedCount, DegradedReason, NodeStatus, Request, Response, WorkerReport,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Assumed share of nodes failing per year, for the durability estimate.
pub const ASSUMED_ANNUAL_FAILURE_RATE: f64 = 0.05;
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
    pub durability: Durability,
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

#[derive(Debug, Serialize)]
pub struct Durability {
    pub nodes: usize,
    pub parity_chunks: usize,
    pub assumed_annual_failure_rate: f64,
    /// The recovery time used: the measured T_RT, else the repair delay.
    pub mttr_hours: f64,
    pub mttr_source: &'static str,
    pub annual_data_loss_probability: Option<f64>,
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
pub async fn status(config: &GatewayConfig) -> anyhow::Result<ClusterSummary> {
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
    let (mttr_hours, mttr_source) = match (last_t_rt_ms, repair_delay_ms) {
        (Some(rt), _) => (rt as f64 / 3_600_000.0, "measured T_RT of the last failure"),
        (None, Some(delay)) => (
            delay.max(1) as f64 / 3_600_000.0,
            "repair delay (no failure measured yet)",
        ),
        (None, None) => (1.0, "1 hour (no node answered)"),
    };
    let parity_chunks = usize::from(config.erasure.parity_chunks);
    let durability_input = DurabilityInput {
        nodes: map.len(),
        parity_chunks,
        annual_failure_rate: ASSUMED_ANNUAL_FAILURE_RATE,
        mttr_hours,
    };
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
        durability: Durability {
            nodes: map.len(),
            parity_chunks,
            assumed_annual_failure_rate: ASSUMED_ANNUAL_FAILURE_RATE,
            mttr_hours,
            mttr_source,
            annual_data_loss_probability: annual_loss_probability(&durability_input),
        },
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
    let d = &s.durability;
    out.push_str(&format!(
        "durability: P(data loss in a year) ≈ {} for {} nodes, m = {}, assumed annual node failure rate {:.0} %, MTTR {:.4} h ({}); Markov approximation, independent failures, one placement group\n",
        d.annual_data_loss_probability
            .map_or("-".into(), |p| format!("{p:.3e}")),
        d.nodes,
        d.parity_chunks,
        d.assumed_annual_failure_rate * 100.0,
        d.mttr_hours,
        d.mttr_source
    ));
    if s.degraded.versions > 0 {
        out.push_str(&format!(
            "  that figure assumes full redundancy: {} object versions are below it now, and the MTTR above is not the time to restore them\n",
            s.degraded.versions
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
        let s = status(config).await?;
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
