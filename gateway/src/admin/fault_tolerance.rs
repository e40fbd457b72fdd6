//! P_FT (DESIGN 17) in the status: the probability of a year without data loss, from the
//! nodes' measured rebuild rate, chunk counts and current degradation, with every assumption
//! beside it.

use super::status::DegradedSummary;
use crate::config::GatewayConfig;
use dmpstore_common::durability::{fault_tolerance, FaultToleranceInput};
use dmpstore_common::rpc::{DegradedReason, NodeStatus};
use serde::Serialize;

/// Share of nodes failing per year that P_FT assumes unless the operator sets another
/// (`gateway admin status --annual-failure-rate`).
pub const DEFAULT_ANNUAL_FAILURE_RATE: f64 = 0.05;
/// The rebuild rate P_FT assumes per node before any rebuild was measured: the default
/// `repair.max_rate_mib_per_s` of the nodes.
const ASSUMED_REBUILD_BYTES_PER_S_PER_NODE: f64 = 64.0 * 1048576.0;

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
    pub(super) fn of(
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
