//! The node's repair status (`Status` RPC, `/metrics`): queues, rates, the census, the
//! workers' totals, parked and undecodable records, all read from the [`NodeContext`] now.

use super::context::{NodeContext, Stats};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::{ParkedRepairs, RepairStatus, UndecodableRecords};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The window of the rebuild rate.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl NodeContext {
    pub fn status(&self) -> RepairStatus {
        let queued = self
            .store
            .repair_list(100_000)
            .map_or(0, |q| q.len() as u64)
            + self.store.heal_list(100_000).map_or(0, |q| q.len() as u64);
        let drops_pending = self.store.drops_scheduled(100_000).map_or(0, |n| n as u64);
        let mut dead: Vec<NodeId> = self.dead().into_iter().collect();
        dead.sort();
        let mut s = self.stats.lock().expect("repair stats");
        s.queued = queued;
        let (rate, eta_s) = rate_and_eta(&mut s, queued);
        RepairStatus {
            queued,
            repaired_versions: s.repaired_versions,
            repaired_chunks: s.repaired_chunks,
            rebuilt_bytes: s.rebuilt_bytes,
            rate_bytes_per_s: rate,
            eta_s,
            last_t_fd_ms: self.detector.last_t_fd_ms(),
            last_t_fr_ms: s.last_t_fr_ms,
            repair_delay_ms: self.config.delay_secs * 1000,
            draining: self.draining(),
            scan_pending: self.scan_pending(&s, &dead),
            dead,
            healed_chunks: s.healed_chunks,
            scrub_passes: s.scrub_passes,
            scrubbed_chunks: s.scrubbed_chunks,
            dropped_moved_chunks: s.dropped_moved_chunks,
            drops_pending,
            anti_entropy_passes: s.anti_entropy_passes,
            anti_entropy_repaired: s.anti_entropy_repaired,
            anti_entropy_clean_epoch: s.anti_entropy_clean_epoch,
            tombstones_purged: s.tombstones_purged,
            orphan_chunks_dropped: s.orphan_chunks_dropped,
            orphan_passes: s.orphan_passes,
            map_version: self.client.map().version,
            degraded: s.degraded.clone(),
            failures: self.detector.failures(),
            undecodable: self.undecodable(),
            parked: self.parked_repairs(&s),
        }
    }

    /// Whether a scan is pending: the scanner says so, or a failure past the delay that the
    /// scanner has not picked up yet, or this node's own drain until a sweep found nothing
    /// left to move.
    fn scan_pending(&self, s: &Stats, dead: &[NodeId]) -> bool {
        s.scan_pending
            || {
                let scanned_for = self.scanned_for.lock().expect("scanned");
                dead.iter().any(|n| !scanned_for.contains(n))
            }
            || (dead.contains(&self.me) && !self.drain_clean.load(Ordering::Relaxed))
    }

    fn undecodable(&self) -> UndecodableRecords {
        let u = self.store.undecodable();
        UndecodableRecords {
            count: u.count,
            first: u.first,
        }
    }

    /// The parked versions: how many, and the first few by name with why.
    fn parked_repairs(&self, s: &Stats) -> ParkedRepairs {
        let parked = self.parked.lock().expect("parked");
        ParkedRepairs {
            count: parked.len() as u64 + s.parked_overflow,
            first: parked
                .iter()
                .take(5)
                .map(|((p, k), (why, _))| (format!("{p}/{k}"), why.clone()))
                .collect(),
        }
    }
}

/// The rebuild rate over the last [`RATE_WINDOW`] (forgetting older chunks), and the time the
/// `queued` tasks should take at the recent average.
fn rate_and_eta(s: &mut Stats, queued: u64) -> (u64, Option<u64>) {
    while s
        .recent
        .front()
        .is_some_and(|(t, _)| t.elapsed() > RATE_WINDOW)
    {
        s.recent.pop_front();
    }
    let recent_bytes: u64 = s.recent.iter().map(|(_, b)| b).sum();
    let rate = recent_bytes / RATE_WINDOW.as_secs();
    let avg_task = if s.task_secs.is_empty() {
        None
    } else {
        Some(s.task_secs.iter().sum::<f64>() / s.task_secs.len() as f64)
    };
    let eta = avg_task
        .filter(|_| queued > 0)
        .map(|t| (t * queued as f64).ceil() as u64);
    (rate, eta)
}
