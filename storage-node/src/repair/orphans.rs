//! Sweeps over this node's chunk index.
//!
//! The orphan scan (garbage collection, DESIGN 7 and 12): chunks on this node that no record
//! references here. They come from PUTs that never committed (a gateway crashed between the
//! chunks and the record), from versions deleted or overwritten while this node was down (the
//! gateway's drop could not reach it), and from chunks rebuilt elsewhere while this node was
//! declared out.
//!
//! Every chunk write records, in the node's index, the record that references (or will
//! reference) the version and when it was written. The scan walks the index, paced; for a
//! version written longer ago than `orphan_grace_secs` it asks a quorum whether that record, or
//! a sibling record of the same object, places each of the slots held here on this node. A slot
//! no record places here is dropped. Records whose siblings cannot be found from the record
//! (multipart parts) count as referenced, and versions written before index entries carried a
//! record are left alone: the scan only ever errs towards keeping data.
//!
//! The drain sweep: while this node is being drained, it looks through its own index every
//! few seconds and queues (here) the repair of every record that still places a chunk on it.
//! The owners' scans find almost everything; the sweep catches what they cannot see, such as
//! a PUT that committed after the follow-up scan, and it makes the drain's end exact: the
//! node reports its drain done only when a sweep found nothing left to move.

use super::{now_ms, Repair, RepairError};
use crate::store::DropIf;
use dmpstore_common::ids::VersionId;
use dmpstore_common::rpc::ChunkHome;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Index entries read per step.
const PAGE: usize = 128;
/// Pause after each version checked (a deliberate pace: each check is a quorum read).
const PACE: Duration = Duration::from_millis(5);

impl Repair {
    /// The index entries after `after`, advancing it (empty at the end).
    #[allow(clippy::type_complexity)]
    async fn next_index_page(
        &self,
        after: &mut Option<VersionId>,
    ) -> Result<Vec<(VersionId, u64, Vec<u8>)>, RepairError> {
        let store = self.store.clone();
        let from = *after;
        let page = tokio::task::spawn_blocking(move || store.index_page(from.as_ref(), PAGE))
            .await
            .map_err(|e| RepairError::Codec(e.to_string()))??;
        if let Some(last) = page.last() {
            *after = Some(last.0);
        }
        Ok(page)
    }
}

/// How often a draining node sweeps its index.
const DRAIN_SWEEP: Duration = Duration::from_secs(2);

impl Repair {
    /// Sweeps the index while this node is being drained, until `shutdown`.
    pub async fn run_drain_sweep(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DRAIN_SWEEP) => {}
                () = shutdown.cancelled() => return,
            }
            if !self.draining().contains(&self.me) {
                continue;
            }
            match self.drain_sweep(&shutdown).await {
                Ok(0) => {
                    if !self.drain_clean.swap(true, Ordering::Relaxed) {
                        tracing::info!("drain sweep: no chunk here is referenced any more");
                    }
                }
                Ok(found) => {
                    self.drain_clean.store(false, Ordering::Relaxed);
                    tracing::info!(
                        found,
                        "drain sweep queued records that still place chunks here"
                    );
                }
                Err(e) => {
                    self.drain_clean.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "drain sweep failed; retrying");
                }
            }
        }
    }

    /// Queues the repair of every record that places a chunk held here on this node; returns
    /// how many were queued.
    async fn drain_sweep(&self, shutdown: &CancellationToken) -> Result<u64, RepairError> {
        let mut found = 0u64;
        let mut after: Option<VersionId> = None;
        loop {
            let page = self.next_index_page(&mut after).await?;
            if page.is_empty() {
                return Ok(found);
            }
            for (version, _, home) in page {
                if shutdown.is_cancelled() {
                    return Ok(found);
                }
                let Some(record) = ChunkHome::decode(&home).and_then(|h| h.record) else {
                    continue;
                };
                for idx in self.store.chunk_slots(&version)? {
                    let (placing, _) = self
                        .records_placing_here(&record.partition, &record.key, version, idx)
                        .await?;
                    for (p, k) in placing {
                        self.enqueue(&p, &k)?;
                        found += 1;
                    }
                }
            }
        }
    }

    /// Runs an orphan scan every `orphan_scan_interval_secs`, until `shutdown`.
    pub async fn run_orphan_scan(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.config.orphan_scan_interval_secs.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
            match self.orphan_pass(&shutdown).await {
                Ok((checked, dropped)) => {
                    tracing::info!(checked, dropped, "orphan scan done");
                    self.stats.lock().expect("repair stats").orphan_passes += 1;
                }
                Err(e) => tracing::warn!(error = %e, "orphan scan stopped; the next one retries"),
            }
        }
    }

    /// One pass over the index. Returns the versions checked and the chunks dropped.
    async fn orphan_pass(&self, shutdown: &CancellationToken) -> Result<(u64, u64), RepairError> {
        let grace_ms = self.config.orphan_grace_secs.saturating_mul(1000);
        let (mut checked, mut dropped) = (0u64, 0u64);
        let mut after: Option<VersionId> = None;
        loop {
            let page = self.next_index_page(&mut after).await?;
            if page.is_empty() {
                return Ok((checked, dropped));
            }
            for (version, written_ms, home) in page {
                if shutdown.is_cancelled() {
                    return Ok((checked, dropped));
                }
                if now_ms() < written_ms.saturating_add(grace_ms) {
                    continue;
                }
                let Some(record) = ChunkHome::decode(&home).and_then(|h| h.record) else {
                    continue;
                };
                // Dropped only if no chunk of the version was written here since this read.
                let unchanged = DropIf::IndexIs {
                    written_ms: Some(written_ms),
                    home: home.clone(),
                };
                let slots = self.store.chunk_slots(&version)?;
                if slots.is_empty() {
                    self.store.drop_index_entry(&version)?;
                    continue;
                }
                checked += 1;
                for idx in slots {
                    if self
                        .still_referenced(&record.partition, &record.key, version, idx)
                        .await?
                    {
                        continue;
                    }
                    let n = self
                        .store
                        .drop_moved_chunks(&version, idx, unchanged.clone())?;
                    dropped += n;
                    self.stats
                        .lock()
                        .expect("repair stats")
                        .orphan_chunks_dropped += n;
                    tracing::info!(%version, chunk = idx, chunks = n, partition = %record.partition, key = %record.key, "orphan chunks dropped: no record places them here");
                }
                tokio::time::sleep(PACE).await;
            }
        }
    }
}
