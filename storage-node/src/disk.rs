//! Free space on the node's data directory, and the read-only state it decides: a full disk
//! is a state, not a flap (DESIGN 10).
//!
//! When the file system's free space falls below the configured reserve (`min_free_bytes`),
//! or a write fails for lack of space, the node turns **read-only**: it refuses new chunks and
//! new metadata records (the callers place them elsewhere, or reach their quorum on other
//! replicas) but keeps serving reads, deletes and drops, which free space. Heartbeats and
//! health answers say so, so gateways stop placing chunks on it and repair stops targeting
//! it. It returns to service by itself once free space is back above twice the reserve (the
//! margin keeps a node at the edge from flapping).
//!
//! The reserve is kept for RocksDB itself: tombstones, flushes and the compactions that
//! reclaim deleted data all need room, and a database that hits ENOSPC stops writing until it
//! is reopened.

use dmpstore_common::rpc::DiskReport;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often free space is measured (writes also measure it when they fail for lack of space).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct DiskSpace {
    path: PathBuf,
    reserve_bytes: u64,
    read_only: AtomicBool,
    free_bytes: AtomicU64,
    total_bytes: AtomicU64,
    /// Times the node turned read-only since it started.
    episodes: AtomicU64,
}

impl DiskSpace {
    /// Watches the file system holding `path`, keeping `reserve_bytes` free.
    pub fn new(path: PathBuf, reserve_bytes: u64) -> DiskSpace {
        let disk = DiskSpace {
            path,
            reserve_bytes,
            read_only: AtomicBool::new(false),
            free_bytes: AtomicU64::new(u64::MAX),
            total_bytes: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
        };
        disk.check();
        disk
    }

    /// Whether the node refuses new data now.
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// Measures free space now and moves between writable and read-only; returns whether the
    /// node is read-only.
    pub fn check(&self) -> bool {
        match rustix::fs::statvfs(&self.path) {
            Ok(s) => {
                let free = s.f_bavail.saturating_mul(s.f_frsize);
                self.free_bytes.store(free, Ordering::Relaxed);
                self.total_bytes
                    .store(s.f_blocks.saturating_mul(s.f_frsize), Ordering::Relaxed);
                self.decide(free);
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "could not measure free disk space")
            }
        }
        self.read_only()
    }

    fn decide(&self, free: u64) {
        let read_only = self.read_only();
        if !read_only && free < self.reserve_bytes {
            self.enter(free, "free space fell below the reserve");
        } else if read_only && free >= self.reserve_bytes.saturating_mul(2) {
            self.read_only.store(false, Ordering::Relaxed);
            tracing::warn!(
                free_bytes = free,
                reserve_bytes = self.reserve_bytes,
                "disk space is back: the node takes new data again"
            );
        }
    }

    fn enter(&self, free: u64, why: &str) {
        if !self.read_only.swap(true, Ordering::Relaxed) {
            self.episodes.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                free_bytes = free,
                reserve_bytes = self.reserve_bytes,
                path = %self.path.display(),
                "disk full: the node is read-only until space is freed ({why})"
            );
        }
    }

    /// A write failed for lack of space: read-only now, whatever the last measure said.
    pub fn note_no_space(&self) {
        self.check();
        self.enter(
            self.free_bytes.load(Ordering::Relaxed),
            "a write failed with no space left",
        );
    }

    pub fn report(&self) -> DiskReport {
        DiskReport {
            read_only: self.read_only(),
            free_bytes: self.free_bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            reserve_bytes: self.reserve_bytes,
            read_only_episodes: self.episodes.load(Ordering::Relaxed),
        }
    }

    /// Measures free space every [`CHECK_INTERVAL`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.check();
        }
    }
}

/// Whether a store error says the disk is full.
pub fn is_no_space(e: &dyn std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("No space left") || text.contains("NoSpace")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_below_the_reserve_and_back_only_at_twice_it() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace::new(dir.path().to_path_buf(), 100);
        assert!(!disk.read_only(), "a temp dir has more than 100 bytes free");
        disk.decide(99);
        assert!(disk.read_only());
        disk.decide(150);
        assert!(disk.read_only(), "within the margin it stays read-only");
        disk.decide(200);
        assert!(!disk.read_only());
        disk.note_no_space();
        assert!(
            disk.read_only(),
            "a failed write turns it read-only at once"
        );
        assert_eq!(disk.report().read_only_episodes, 2);
        assert!(!disk.check(), "the real free space puts it back in service");
    }
}
