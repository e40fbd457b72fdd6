//! The human-readable form of `gateway admin status`: a table of the nodes, then one line (or
//! a few) per concern: repair, redundancy, parked repairs, restarted workers, scrub, gc,
//! anti-entropy, the last failure, undecodable records, the failure history, P_HA and P_FT.

use super::availability::{AvailabilitySummary, ServedSummary};
use super::fault_tolerance::FaultToleranceSummary;
use super::status::{ClusterSummary, DegradedSummary, FailureSummary, NodeSummary};
use dmpstore_common::rpc::{DegradedReason, DiskReport};

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1} s", v as f64 / 1000.0))
}

/// The human-readable form.
pub fn render(s: &ClusterSummary) -> String {
    let mut out = render_nodes(&s.nodes);
    out.push_str(&format!("\ncluster map v{}\n", s.map_version));
    out.push_str(&render_repair(s));
    out.push_str(&render_degraded(&s.degraded));
    out.push_str(&render_parked(s));
    out.push_str(&render_restarted_workers(&s.nodes));
    out.push_str(&render_background_work(s));
    out.push_str(&render_last_failure(s));
    out.push_str(&render_undecodable(s));
    out.push_str(&render_failures(&s.failures));
    out.push_str(&render_availability(&s.availability));
    out.push_str(&render_lifecycle(s.lifecycle.as_deref()));
    out.push_str(&render_fault_tolerance(
        s.fault_tolerance.as_ref(),
        &s.degraded,
    ));
    out
}

/// The table of nodes, then what a full disk means for each read-only node.
fn render_nodes(nodes: &[NodeSummary]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<5} {:<22} {:<8} {:<8} {:>10} {:>10} {:>8} {:>12} {:>8}\n",
        "node", "addr", "zone", "state", "heartbeat", "chunks", "queue", "rebuild/s", "eta"
    ));
    for n in nodes {
        out.push_str(&render_node_row(n));
    }
    for n in nodes {
        if let Some(d) = n.disk.as_ref().filter(|d| d.read_only) {
            out.push_str(&render_read_only(n.node_id, d));
        }
    }
    if nodes.iter().any(|n| !n.metadata) {
        out.push_str("* data node (added later): holds chunks, no metadata replicas\n");
    }
    out
}

/// One node's row of the table.
fn render_node_row(n: &NodeSummary) -> String {
    format!(
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
    )
}

/// Why node `node_id` takes no new data, and what the operator can do.
fn render_read_only(node_id: u32, d: &DiskReport) -> String {
    format!(
        "n{} is read-only: its disk is full ({:.1} MiB free of {:.1} MiB, {:.1} MiB kept in reserve); it takes no new chunks or records until space is freed (delete data or grow the disk)\n",
        node_id,
        d.free_bytes as f64 / 1048576.0,
        d.total_bytes as f64 / 1048576.0,
        d.reserve_bytes as f64 / 1048576.0,
    )
}

/// The repair line: queue, rate, ETA, bytes rebuilt, and whether repair is working.
fn render_repair(s: &ClusterSummary) -> String {
    format!(
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
    )
}

/// The repairs that cannot be done now, and the first few of them; nothing if none.
fn render_parked(s: &ClusterSummary) -> String {
    let mut out = String::new();
    if s.parked_repairs > 0 {
        out.push_str(&format!(
            "parked: {} repairs (versions, or chunks to heal) cannot be done now: fewer than k chunks readable; tried again when the down nodes change\n",
            s.parked_repairs
        ));
        for (node, key, why) in &s.parked_first {
            out.push_str(&format!("  n{node}: {key}: {why}\n"));
        }
    }
    out
}

/// One line per background worker that panicked and was started again.
fn render_restarted_workers(nodes: &[NodeSummary]) -> String {
    let mut out = String::new();
    for n in nodes {
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
    out
}

/// The scrub, gc and anti-entropy lines.
fn render_background_work(s: &ClusterSummary) -> String {
    let mut out = String::new();
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
    out
}

/// T_FD, the repair delay, T_FR and T_RT of the last failure.
fn render_last_failure(s: &ClusterSummary) -> String {
    format!(
        "last failure: T_FD {}, repair delay {}, T_FR {}, T_RT {}\n",
        ms(s.last_t_fd_ms),
        ms(s.repair_delay_ms),
        ms(s.last_t_fr_ms),
        ms(s.last_t_rt_ms)
    )
}

/// What the nodes' scans skipped as undecodable, and the first few; nothing if none.
fn render_undecodable(s: &ClusterSummary) -> String {
    let mut out = String::new();
    if s.undecodable_records > 0 {
        out.push_str(&format!(
            "undecodable: records and unreadable SST ranges skipped {} times by scans (the other replicas serve them; restore the node's disk or replace it):\n",
            s.undecodable_records
        ));
        for (node, key, why) in &s.undecodable_first {
            out.push_str(&format!("  n{node}: {key}: {why}\n"));
        }
    }
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
    let mut out = if d.versions == 0 && d.oldest_census_ms_ago.is_none() {
        format!("redundancy: unknown, no node has counted it yet ({census})\n")
    } else if d.versions == 0 {
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

/// One line per bucket with lifecycle rules: passes, the last one's age, what they did.
fn render_lifecycle(buckets: Option<&[super::status::LifecycleSummary]>) -> String {
    let Some(buckets) = buckets else {
        return "lifecycle: rules unreadable now (metadata quorum not reached)\n".into();
    };
    if buckets.is_empty() {
        return "lifecycle: no bucket has rules\n".into();
    }
    let now = crate::state::GatewayState::now_ms();
    let mut out = "lifecycle (totals since the rules were set):\n".to_string();
    for b in buckets {
        let last = b.last_pass_end_ms.map_or("never".to_string(), |end| {
            format!("{:.0} s ago", now.saturating_sub(end) as f64 / 1000.0)
        });
        out.push_str(&format!(
            "  {}: {} rules, {} passes{}, last finished {last}; {} scanned, {} expired, {} noncurrent removed, {} delete markers removed, {} uploads aborted\n",
            b.bucket,
            b.rules,
            b.passes,
            if b.in_pass { " (one under way)" } else { "" },
            b.scanned,
            b.expired,
            b.noncurrent_expired,
            b.markers_removed,
            b.uploads_aborted
        ));
    }
    out
}
