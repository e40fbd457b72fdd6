//! The scrubber ("scrubber", DESIGN 11): re-reads every local chunk every
//! `scrub.interval_secs` (and when `gateway admin scrub` asks), paced to
//! `scrub.max_rate_mib_per_s`, and checks its checksum; a corrupt chunk goes to the heal queue
//! and is rebuilt in place from its siblings ([`super::heal`]).

use super::context::{NodeContext, RepairError};
use super::{Cadence, Worker, WorkerState};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Chunks verified per step of a scrub.
const SCRUB_PAGE: usize = 64;

pub struct Scrubber {
    ctx: Arc<NodeContext>,
    cadence: Cadence,
    /// Chunks verified and found corrupt by the last pass.
    last: Option<(u64, u64)>,
}

impl Worker for Scrubber {
    fn name(&self) -> &'static str {
        "scrubber"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if !self.cadence.take_due() {
            return WorkerState::Idle;
        }
        match self.ctx.scrub_pass(shutdown).await {
            Ok((chunks, corrupt)) => {
                tracing::info!(chunks, corrupt, "scrub pass done");
                self.last = Some((chunks, corrupt));
            }
            Err(e) => tracing::warn!(error = %e, "scrub pass failed"),
        }
        self.cadence.restart();
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.cadence.wait(Some(&self.ctx.scrub_now)).await;
    }

    fn status(&self) -> String {
        match self.last {
            Some((chunks, corrupt)) => {
                format!("last pass verified {chunks} chunks, {corrupt} corrupt")
            }
            None => "no pass yet".into(),
        }
    }
}

impl Scrubber {
    pub fn new(ctx: Arc<NodeContext>) -> Scrubber {
        let interval = Duration::from_secs(ctx.scrub_config.interval_secs);
        Scrubber {
            ctx,
            cadence: Cadence::new(interval),
            last: None,
        }
    }
}

impl NodeContext {
    /// Verifies every local chunk; queues the corrupt ones for healing.
    async fn scrub_pass(&self, shutdown: &CancellationToken) -> Result<(u64, u64), RepairError> {
        let (mut after, mut chunks, mut corrupt_total) = (Vec::new(), 0u64, 0u64);
        loop {
            if shutdown.is_cancelled() {
                return Ok((chunks, corrupt_total));
            }
            let store = self.store.clone();
            let (corrupt, bytes, next, seen) =
                tokio::task::spawn_blocking(move || store.scrub_page(&after, SCRUB_PAGE))
                    .await
                    .map_err(|e| RepairError::Codec(e.to_string()))??;
            self.scrub_pace.pace(bytes).await;
            chunks += seen as u64;
            for key in corrupt {
                tracing::warn!(version = %key.version, stripe = key.stripe_idx.0, chunk = key.chunk_idx.0, "scrub found a corrupt chunk");
                corrupt_total += 1;
                self.heal(&key)?;
            }
            self.stats.lock().expect("repair stats").scrubbed_chunks += seen as u64;
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        self.stats.lock().expect("repair stats").scrub_passes += 1;
        Ok((chunks, corrupt_total))
    }
}
