//! The drain sweep ("drain sweep" worker, ADR 0003): while this node is being drained, it looks
//! through its own index every [`DRAIN_SWEEP`] and queues (here) the repair of every record that
//! still places a chunk on it. The owners' scans find almost everything; the sweep catches what
//! they cannot see, such as a PUT that committed after the follow-up scan, and it makes the
//! drain's end exact: the node reports its drain done only when a sweep found nothing left to
//! move.

use super::context::{NodeContext, RepairError};
use super::{Cadence, Worker, WorkerState};
use dmpstore_common::ids::VersionId;
use dmpstore_common::rpc::ChunkHome;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a draining node sweeps its index.
const DRAIN_SWEEP: Duration = Duration::from_secs(2);

pub struct DrainSweep {
    ctx: Arc<NodeContext>,
    cadence: Cadence,
    /// Records the last sweep queued (`None`: no sweep yet).
    last_found: Option<u64>,
}

impl Worker for DrainSweep {
    fn name(&self) -> &'static str {
        "drain sweep"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if !self.cadence.take_due() {
            return WorkerState::Idle;
        }
        if self.ctx.draining().contains(&self.ctx.me) {
            self.sweep(shutdown).await;
        }
        self.cadence.restart();
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.cadence.wait(None).await;
    }

    fn status(&self) -> String {
        match (self.ctx.draining().contains(&self.ctx.me), self.last_found) {
            (false, _) => "this node is not being drained".into(),
            (true, None) => "draining: no sweep yet".into(),
            (true, Some(0)) => "draining: the last sweep found nothing left to move".into(),
            (true, Some(n)) => format!("draining: the last sweep queued {n} records"),
        }
    }
}

impl DrainSweep {
    pub fn new(ctx: Arc<NodeContext>) -> DrainSweep {
        DrainSweep {
            ctx,
            cadence: Cadence::new(DRAIN_SWEEP),
            last_found: None,
        }
    }

    /// One sweep, and what it says about the drain's end.
    async fn sweep(&mut self, shutdown: &CancellationToken) {
        let ctx = &self.ctx;
        match ctx.drain_sweep(shutdown).await {
            Ok(0) => {
                self.last_found = Some(0);
                if !ctx.drain_clean.swap(true, Ordering::Relaxed) {
                    tracing::info!("drain sweep: no chunk here is referenced any more");
                }
            }
            Ok(found) => {
                self.last_found = Some(found);
                ctx.drain_clean.store(false, Ordering::Relaxed);
                tracing::info!(
                    found,
                    "drain sweep queued records that still place chunks here"
                );
            }
            Err(e) => {
                ctx.drain_clean.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "drain sweep failed; retrying");
            }
        }
    }
}

impl NodeContext {
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
}
