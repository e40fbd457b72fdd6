//! `gateway admin`: the operator's view of the cluster, from the storage nodes' own reports
//! (the `Status` RPC): every node's state as its peers see it and its last heartbeat, the
//! repair queue, rebuild rate, progress and ETA, the last failure's T_FD / T_FR / T_RT, and
//! P_FT, the fault-tolerance estimate of DESIGN's Figures, from measured data.
//!
//! This file holds the commands (add, remove, and the broadcasts: scrub, anti-entropy,
//! replace, drain) and the admin RPC client; `iam.rs` the users and access keys; `status.rs` assembles the summary and holds its
//! JSON types, with P_FT in `fault_tolerance.rs` and P_HA in `availability.rs`; `render.rs` is
//! its human-readable form.

mod availability;
mod fault_tolerance;
pub mod iam;
pub mod progress;
mod render;
mod status;

pub use availability::{AvailabilitySummary, GatewayServed, ServedSummary};
pub use fault_tolerance::{FaultToleranceSummary, DEFAULT_ANNUAL_FAILURE_RATE};
pub use render::render;
pub use status::{
    nodes_status, status, status_of_gateway, ClusterSummary, DegradedSummary, FailureSummary,
    LifecycleSummary, NodeSummary,
};

use crate::config::GatewayConfig;
use crate::nodes::{Marking, NodeClient};
use bytes::Bytes;
use dmpstore_common::cluster::{ClusterMap, NodeInfo};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::{Request, Response};
use std::sync::Arc;
use std::time::Duration;

const STATUS_DEADLINE: Duration = Duration::from_secs(3);

/// An RPC client for admin calls: it never marks nodes up or down from call outcomes. Its map
/// is the newest any node has (the config's may predate an added node).
async fn admin_client(config: &GatewayConfig) -> anyhow::Result<NodeClient> {
    let map = Arc::new(config.cluster_map()?);
    let tls = config.rpc_tls()?;
    let client = NodeClient::new(
        map.clone(),
        &config.cluster_secret,
        Marking::ByDetector,
        tls.map(|t| t.client),
    )?;
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
    progress: impl Fn(&ClusterSummary) -> (u64, String),
) -> anyhow::Result<ClusterSummary> {
    let mut bar = progress::Progress::new(what);
    let mut last_print: Option<tokio::time::Instant> = None;
    loop {
        let s = status::nodes_status(config, DEFAULT_ANNUAL_FAILURE_RATE).await?;
        let (remaining, detail) = progress(&s);
        let line = bar.line(remaining, &detail);
        if done(&s) {
            println!("  {}", bar.line(0, &detail));
            return Ok(s);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not done before the deadline ({line})");
        }
        if last_print.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            println!("  {line}");
            last_print = Some(tokio::time::Instant::now());
        }
        // Deliberate polling interval of a long-running admin command.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often a long admin command prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Follows a repair-driven step (drain, replace) until `done`: the bar counts queued repairs.
pub async fn follow_repair(
    config: &GatewayConfig,
    what: &str,
    timeout: Duration,
    done: impl FnMut(&ClusterSummary) -> bool,
) -> anyhow::Result<ClusterSummary> {
    let deadline = tokio::time::Instant::now() + timeout;
    wait_status(config, what, deadline, done, repair_progress).await
}

/// Queued repairs, and the rebuild rate and ETA the nodes report.
fn repair_progress(s: &ClusterSummary) -> (u64, String) {
    (
        s.repair_queued,
        format!(
            "{} queued, {:.1} MiB/s, nodes' ETA {}",
            s.repair_queued,
            s.repair_rate_bytes_per_s as f64 / 1048576.0,
            s.repair_eta_s.map_or("-".into(), |v| format!("{v} s"))
        ),
    )
}

/// Follows a scrub pass started on every node: done when every reachable node finished a
/// pass after `before`; the bar counts chunks scrubbed against the nodes' chunk estimates.
pub async fn follow_scrub(
    config: &GatewayConfig,
    before: &ClusterSummary,
    timeout: Duration,
) -> anyhow::Result<ClusterSummary> {
    let deadline = tokio::time::Instant::now() + timeout;
    let nodes = before.nodes.iter().filter(|n| n.reachable).count() as u64;
    let (passes, scrubbed) = (before.scrub_passes, before.scrubbed_chunks);
    let chunks: u64 = before.nodes.iter().filter_map(|n| n.chunks_estimate).sum();
    wait_status(
        config,
        "scrub",
        deadline,
        |s| s.scrub_passes >= passes + nodes,
        |s| {
            let done = s.scrubbed_chunks.saturating_sub(scrubbed);
            (
                chunks.saturating_sub(done),
                format!(
                    "{} of {nodes} nodes finished their pass",
                    s.scrub_passes.saturating_sub(passes)
                ),
            )
        },
    )
    .await
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

    drain(config, node, deadline).await?;
    final_scan(config, node, deadline).await?;

    let joint = leave_metadata_nodes(config, &client, node, changing).await?;
    if joint.previous_metadata_nodes().is_some() {
        wait_metadata_copied(config, node, joint.metadata_epoch, deadline).await?;
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

/// Step 1 of a remove: every node moves `node`'s chunks elsewhere; done once every Up node
/// holds it dead and repair is idle.
async fn drain(
    config: &GatewayConfig,
    node: NodeId,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
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
        repair_progress,
    )
    .await?;
    Ok(())
}

/// One more full scan on every node for chunks on it: a record committed after the scans
/// of the drain (a multipart upload completed late) is moved too.
async fn final_scan(
    config: &GatewayConfig,
    node: NodeId,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let missed = broadcast(config, &Request::RepairScan { node }).await?;
    if let Some((n, e)) = missed.iter().find(|(n, _)| *n != node) {
        anyhow::bail!("{n} did not take the final scan: {e}");
    }
    wait_status(
        config,
        "final scan",
        deadline,
        |s| s.repair_idle,
        repair_progress,
    )
    .await?;
    Ok(())
}

/// Step 2 of a remove: if `node` is a metadata node, begins a metadata membership change
/// without it (a data node, if there is one, takes its place) and installs the joint map.
/// Returns the map the remove goes on from: the joint one, or the current one when `node`
/// holds no metadata or the joint phase of an interrupted remove is resumed.
async fn leave_metadata_nodes(
    config: &GatewayConfig,
    client: &NodeClient,
    node: NodeId,
    changing: bool,
) -> anyhow::Result<ClusterMap> {
    let map = admin_client(config).await?.map();
    if !map.is_metadata_node(node) {
        // Not a metadata node, or resuming the joint phase of an interrupted remove.
        if !changing {
            println!("2/3 {node} holds no metadata: nothing to copy");
        }
        return Ok((*map).clone());
    }
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
    install_everywhere(client, &joint, node).await;
    println!(
        "2/3 metadata of {node} is copied to its new replicas (map v{}, metadata epoch {})",
        joint.version, joint.metadata_epoch
    );
    Ok(joint)
}

/// The joint phase of a metadata membership change: every node but `node` runs anti-entropy
/// until it has a clean pass at `epoch`, which copies each partition to its new replicas.
async fn wait_metadata_copied(
    config: &GatewayConfig,
    node: NodeId,
    epoch: u64,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
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
            let reachable = s.nodes.iter().filter(|n| n.reachable).count();
            (
                (reachable - done) as u64,
                format!(
                    "{done} of {reachable} nodes done, {} records copied",
                    s.anti_entropy_repaired
                ),
            )
        },
    )
    .await?;
    Ok(())
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
