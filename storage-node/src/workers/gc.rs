//! All of the node's garbage collection (DESIGN 5, 7, 12). Data is dropped only on proof that
//! no record uses it: every replica of the records that could reference it must answer, and
//! whatever cannot be looked at counts as referenced.
//!
//! - **Moved chunks** ("garbage collection" worker, [`MovedChunks`]): a chunk slot that repair
//!   or rebalance moved off this node is scheduled for a drop ([`NodeContext::schedule_drop`],
//!   the `DropMovedChunk` RPC) and dropped after `replaced_data_grace_secs`, so reads that
//!   started with the old placement can finish, unless the record that was repaired (or a
//!   sibling record of the same object) still places it here.
//! - **Orphans** ("orphan scan" worker, [`OrphanScan`]): chunks on this node that no record
//!   references here. They come from PUTs that never committed (a gateway crashed between the
//!   chunks and the record), from versions deleted or overwritten while this node was down
//!   (the gateway's drop could not reach it), and from chunks rebuilt elsewhere while this
//!   node was declared out. Every chunk write records, in the node's index, the record that
//!   references (or will reference) the version and when it was written. The scan walks the
//!   index, paced; for a version written longer ago than `orphan_grace_secs` it asks whether
//!   that record, or a sibling record of the same object, places each of the slots held here
//!   on this node. A slot no record places here is dropped. Records whose siblings cannot be
//!   found from the record (multipart parts) count as referenced, and versions written before
//!   index entries carried a record are left alone: the scan only ever errs towards keeping
//!   data.
//! - **Tombstones**: anti-entropy ([`super::anti_entropy`]) purges a tombstone older than
//!   `tombstone_grace_secs` that every replica of its partition holds identically
//!   ([`NodeContext::purge_tombstone`]). While any replica is away the tombstone stays, so a
//!   returning replica's stale record always meets it.

use super::context::{erasure_pieces, now_ms, NodeContext, RepairError};
use super::{Cadence, Worker, WorkerState};
use crate::store::{DropIf, PendingDrop};
use bytes::Bytes;
use dmpstore_common::ids::{NodeId, VersionId};
use dmpstore_common::record::{
    key_of_version_sort_key, versions_of_key_prefix, versions_partition, MetaValue, Versioned,
};
use dmpstore_common::rpc::{ChunkHome, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often garbage collection looks for moved chunks past their grace, and how many at once.
const GC_POLL: Duration = Duration::from_secs(1);
const GC_PAGE: usize = 256;
/// Versions of one key looked at when checking whether a moved chunk is still referenced.
const GC_SIBLING_SCAN_LIMIT: u32 = 1000;
/// Index entries read per step of the orphan scan and the drain sweep.
const INDEX_PAGE: usize = 128;
/// Pause after each version the orphan scan checked (a deliberate pace: each check is a
/// quorum read).
const ORPHAN_PACE: Duration = Duration::from_millis(5);

/// Records of one key and its siblings, on any replica: `(partition, key, record)`.
type Records = Vec<(String, String, Versioned)>;

/// Drops moved chunks whose grace has passed, every [`GC_POLL`].
pub struct MovedChunks {
    ctx: Arc<NodeContext>,
    cadence: Cadence,
    /// Chunks dropped and slots kept (still referenced) since the worker started.
    dropped: u64,
    kept: u64,
}

impl Worker for MovedChunks {
    fn name(&self) -> &'static str {
        "garbage collection"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if !self.cadence.take_due() {
            return WorkerState::Idle;
        }
        let store = self.ctx.store.clone();
        let pending = tokio::task::spawn_blocking(move || store.drop_list(GC_PAGE))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let now = now_ms();
        for p in pending.into_iter().filter(|p| p.due_ms <= now) {
            if shutdown.is_cancelled() {
                return WorkerState::Done;
            }
            self.collect(&p).await;
        }
        self.cadence.restart();
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.cadence.wait(None).await;
    }

    fn status(&self) -> String {
        format!(
            "{} moved chunks dropped, {} slots kept as still referenced since start",
            self.dropped, self.kept
        )
    }
}

impl MovedChunks {
    pub fn new(ctx: Arc<NodeContext>) -> MovedChunks {
        MovedChunks {
            ctx,
            cadence: Cadence::new(GC_POLL),
            dropped: 0,
            kept: 0,
        }
    }

    /// Drops a moved slot past its grace, or keeps it (cancelling the drop) if a record still
    /// places it here; without a proof either way, the drop stays scheduled.
    async fn collect(&mut self, p: &PendingDrop) {
        let ctx = &self.ctx;
        match ctx
            .still_referenced(&p.partition, &p.key, p.version, p.chunk_idx)
            .await
        {
            Ok(true) => {
                self.kept += 1;
                tracing::debug!(version = %p.version, chunk = p.chunk_idx, "moved chunk still referenced here: kept");
                if let Err(e) = ctx.store.drop_cancel(&p.version, p.chunk_idx) {
                    tracing::warn!(error = %e, "could not cancel a drop");
                }
            }
            Ok(false) => match ctx.store.drop_moved_chunks(
                &p.version,
                p.chunk_idx,
                DropIf::Scheduled { due_ms: p.due_ms },
            ) {
                Ok(n) => {
                    self.dropped += n;
                    ctx.stats.lock().expect("repair stats").dropped_moved_chunks += n;
                    tracing::debug!(version = %p.version, chunk = p.chunk_idx, chunks = n, "moved chunk dropped");
                }
                Err(e) => tracing::warn!(error = %e, "dropping a moved chunk failed"),
            },
            // No quorum now: the drop stays scheduled and is tried again.
            Err(e) => tracing::debug!(error = %e, "moved chunk check failed; will retry"),
        }
    }
}

/// Runs an orphan scan every `orphan_scan_interval_secs`.
pub struct OrphanScan {
    ctx: Arc<NodeContext>,
    cadence: Cadence,
    /// Versions checked and chunks dropped by the last pass.
    last: Option<(u64, u64)>,
}

impl Worker for OrphanScan {
    fn name(&self) -> &'static str {
        "orphan scan"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if !self.cadence.take_due() {
            return WorkerState::Idle;
        }
        match self.ctx.orphan_pass(shutdown).await {
            Ok((checked, dropped)) => {
                tracing::info!(checked, dropped, "orphan scan done");
                self.last = Some((checked, dropped));
                self.ctx.stats.lock().expect("repair stats").orphan_passes += 1;
            }
            Err(e) => tracing::warn!(error = %e, "orphan scan stopped; the next one retries"),
        }
        self.cadence.restart();
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.cadence.wait(None).await;
    }

    fn status(&self) -> String {
        match self.last {
            Some((checked, dropped)) => {
                format!("last pass checked {checked} versions, dropped {dropped} chunks")
            }
            None => "no pass yet".into(),
        }
    }
}

impl OrphanScan {
    pub fn new(ctx: Arc<NodeContext>) -> OrphanScan {
        let interval = Duration::from_secs(ctx.config.orphan_scan_interval_secs.max(1));
        OrphanScan {
            ctx,
            cadence: Cadence::new(interval),
            last: None,
        }
    }
}

impl NodeContext {
    /// Schedules the drop of a chunk slot that moved off this node (`DropMovedChunk`).
    pub fn schedule_drop(
        &self,
        version: VersionId,
        chunk_idx: u8,
        partition: String,
        key: String,
    ) -> Result<(), RepairError> {
        let due_ms = now_ms() + self.config.replaced_data_grace_secs * 1000;
        self.store.drop_schedule(&PendingDrop {
            version,
            chunk_idx,
            due_ms,
            partition,
            key,
        })?;
        Ok(())
    }

    /// Whether the record that was repaired, or a sibling record of the same object (its
    /// current record and its entries among the key's versions), still places chunk
    /// `chunk_idx` of `version` on this node. Records whose siblings cannot be found from
    /// here (multipart parts) count as referenced: their moved chunks stay.
    pub(super) async fn still_referenced(
        &self,
        partition: &str,
        key: &str,
        version: VersionId,
        chunk_idx: u8,
    ) -> Result<bool, RepairError> {
        let (placing, complete) = self
            .records_placing_here(partition, key, version, chunk_idx)
            .await?;
        Ok(!placing.is_empty() || !complete)
    }

    /// The records, among `partition`/`key` and its siblings (the object's current record
    /// and its entries among the key's versions), that place chunk `chunk_idx` of `version`
    /// on this node, on any replica; and whether every sibling could be looked at (not so
    /// for multipart parts, or for a key with more versions than one scan page).
    pub(super) async fn records_placing_here(
        &self,
        partition: &str,
        key: &str,
        version: VersionId,
        chunk_idx: u8,
    ) -> Result<(Vec<(String, String)>, bool), RepairError> {
        let (records, complete) = self.records_and_siblings(partition, key).await?;
        let here = Some(self.me);
        let mut placing: Vec<(String, String)> = Vec::new();
        for (p, k, r) in records {
            let places = MetaValue::decode(&r.value).is_ok_and(|v| {
                erasure_pieces(&v).iter().any(|e| {
                    e.version == version && e.placement.get(usize::from(chunk_idx)) == Some(&here)
                })
            });
            if places && !placing.iter().any(|(pp, kk)| *pp == p && *kk == k) {
                placing.push((p, k));
            }
        }
        Ok((placing, complete))
    }

    /// Every replica's records of `partition`/`key` and of its siblings, and whether every
    /// sibling could be looked at. Every replica's, not a majority's: data is dropped only on
    /// proof that no replica holds a record that uses it.
    async fn records_and_siblings(
        &self,
        partition: &str,
        key: &str,
    ) -> Result<(Records, bool), RepairError> {
        let mut records: Records = self
            .meta
            .get_every(partition, key)
            .await?
            .into_iter()
            .map(|r| (partition.to_string(), key.to_string(), r))
            .collect();
        let mut complete = true;
        if let Some(bucket) = partition.strip_suffix("#versions") {
            let current = key_of_version_sort_key(key);
            records.extend(
                self.meta
                    .get_every(bucket, current)
                    .await?
                    .into_iter()
                    .map(|r| (bucket.to_string(), current.to_string(), r)),
            );
        } else if !partition.contains('#') {
            let versions = versions_partition(partition);
            match self
                .meta
                .scan_every(
                    &versions,
                    &versions_of_key_prefix(key),
                    GC_SIBLING_SCAN_LIMIT,
                )
                .await?
            {
                Some(entries) => {
                    records.extend(entries.into_iter().map(|(k, r)| (versions.clone(), k, r)))
                }
                None => complete = false,
            }
        } else {
            complete = false;
        }
        Ok((records, complete))
    }

    /// The index entries after `after`, advancing it (empty at the end).
    #[allow(clippy::type_complexity)]
    pub(super) async fn next_index_page(
        &self,
        after: &mut Option<VersionId>,
    ) -> Result<Vec<(VersionId, u64, Vec<u8>)>, RepairError> {
        let store = self.store.clone();
        let from = *after;
        let page = tokio::task::spawn_blocking(move || store.index_page(from.as_ref(), INDEX_PAGE))
            .await
            .map_err(|e| RepairError::Codec(e.to_string()))??;
        if let Some(last) = page.last() {
            *after = Some(last.0);
        }
        Ok(page)
    }

    /// One pass of the orphan scan over the index. Returns the versions checked and the
    /// chunks dropped.
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
                if let Some(n) = self.drop_orphans(version, written_ms, home).await? {
                    checked += 1;
                    dropped += n;
                    tokio::time::sleep(ORPHAN_PACE).await;
                }
            }
        }
    }

    /// Drops the slots of `version` held here that no record places here, unless a chunk of
    /// the version was written here since its index entry was read. Returns the chunks
    /// dropped, `None` when the version was not checked (no record in its entry, or no chunk
    /// left: then the entry goes).
    async fn drop_orphans(
        &self,
        version: VersionId,
        written_ms: u64,
        home: Vec<u8>,
    ) -> Result<Option<u64>, RepairError> {
        let Some(record) = ChunkHome::decode(&home).and_then(|h| h.record) else {
            return Ok(None);
        };
        // Dropped only if no chunk of the version was written here since this read.
        let unchanged = DropIf::IndexIs {
            written_ms: Some(written_ms),
            home,
        };
        let slots = self.store.chunk_slots(&version)?;
        if slots.is_empty() {
            self.store.drop_index_entry(&version)?;
            return Ok(None);
        }
        let mut dropped = 0;
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
        Ok(Some(dropped))
    }

    /// Whether `record` is a tombstone older than `tombstone_grace_secs`.
    pub(super) fn tombstone_expired(&self, record: &Versioned) -> bool {
        match MetaValue::decode(&record.value) {
            Ok(MetaValue::Tombstone { deleted_ms }) => {
                deleted_ms.saturating_add(self.config.tombstone_grace_secs.saturating_mul(1000))
                    <= now_ms()
            }
            _ => false,
        }
    }

    /// Purges a tombstone every replica holds identically (garbage collection, DESIGN 5).
    /// A replica that refuses (it got a newer record meanwhile) keeps what it has.
    pub(super) async fn purge_tombstone(
        &self,
        partition: &str,
        key: &str,
        tombstone: &Versioned,
        replicas: &[NodeId],
    ) -> Result<(), RepairError> {
        let request = Request::MetaPurge {
            partition: partition.to_string(),
            key: key.to_string(),
            record: tombstone.clone(),
        };
        for &node in replicas {
            self.client
                .call(node, &request, Bytes::new())
                .await
                .map_err(|error| RepairError::Write { node, error })?;
        }
        tracing::debug!(
            partition,
            key,
            "tombstone past its grace purged from every replica"
        );
        Ok(())
    }
}
