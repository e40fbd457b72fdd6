//! The repair worker ("repair worker", DESIGN 11): works through the node's heal queue (corrupt
//! chunks of this node, [`super::heal`]) and its repair queue (records whose versions need
//! chunks rebuilt or moved, [`super::reconstruct`]), one at a time, so no version is rebuilt
//! twice at once by its owner.
//!
//! The queue is paged through from start to end and over again, so entries that keep failing
//! (each retried after [`RETRY_AFTER`]) never hold up the ones behind them. A version that
//! cannot be rebuilt now (fewer than `k` chunks readable, or rewritten as often as its stamp
//! allows) is parked with its reason instead of being retried forever. When the queue runs
//! dry after work, the scanner is asked for a census: redundancy may be restored.

use super::context::{NodeContext, RepairError, POLL, RETRY_AFTER};
use super::{Worker, WorkerState};
use crate::meta_client::MetaError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Queued repairs read per step of the worker.
const QUEUE_PAGE: usize = 64;

pub struct Rebuild {
    ctx: Arc<NodeContext>,
    /// Whether the last pages held work (the queue running dry after it asks for a census).
    worked: bool,
    /// Where the next page of the queue starts (after this entry; `None`: at its beginning).
    cursor: Option<(String, String)>,
    /// Records repaired, parked and left to retry since the worker started.
    repaired: u64,
    parked: u64,
    retried: u64,
}

impl Worker for Rebuild {
    fn name(&self) -> &'static str {
        "repair worker"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        self.ctx.heal_queued(shutdown).await;
        let from_start = self.cursor.is_none();
        let page = self.next_page().await;
        if page.is_empty() && !from_start {
            return WorkerState::Busy; // the end of the queue: start over from its beginning
        }
        let ready = self.ready(&page);
        let heals_waiting = self.ctx.store.heal_list(1).is_ok_and(|h| !h.is_empty());
        if page.is_empty() && !heals_waiting && self.worked {
            // The queue ran dry: the census says whether redundancy is restored.
            self.worked = false;
            self.ctx.census_requested.store(true, Ordering::Relaxed);
        }
        if ready.is_empty() {
            return match self.cursor {
                Some(_) => WorkerState::Busy, // more of the queue to look at
                None => WorkerState::Idle,
            };
        }
        self.worked = true;
        for (partition, key) in ready {
            if shutdown.is_cancelled() {
                return WorkerState::Done;
            }
            self.repair_one(partition, key).await;
        }
        WorkerState::Busy
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            () = self.ctx.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    fn status(&self) -> String {
        format!(
            "{} versions repaired, {} parked, {} failed and queued again since start",
            self.repaired, self.parked, self.retried
        )
    }
}

impl Rebuild {
    pub fn new(ctx: Arc<NodeContext>) -> Rebuild {
        Rebuild {
            ctx,
            worked: true,
            cursor: None,
            repaired: 0,
            parked: 0,
            retried: 0,
        }
    }

    /// The next page of the repair queue, moving the cursor past it (back to the beginning
    /// after a short page).
    async fn next_page(&mut self) -> Vec<(String, String)> {
        let store = self.ctx.store.clone();
        let after = self.cursor.clone();
        let page = tokio::task::spawn_blocking(move || {
            store.repair_list_after(
                after.as_ref().map(|(p, k)| (p.as_str(), k.as_str())),
                QUEUE_PAGE,
            )
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        self.cursor = if page.len() == QUEUE_PAGE {
            page.last().cloned()
        } else {
            None
        };
        page
    }

    /// The entries of `page` not waiting out a backoff (forgetting backoffs that ended).
    fn ready(&self, page: &[(String, String)]) -> Vec<(String, String)> {
        let now = Instant::now();
        let mut backoff = self.ctx.backoff.lock().expect("backoff");
        backoff.retain(|_, until| *until > now);
        page.iter()
            .filter(|t| !backoff.contains_key(*t))
            .cloned()
            .collect()
    }

    /// Repairs one queued record, then dequeues it, parks it, or leaves it to a retry.
    async fn repair_one(&mut self, partition: String, key: String) {
        let ctx = &self.ctx;
        let started = Instant::now();
        match ctx.repair_record(&partition, &key).await {
            Ok(()) => {
                self.repaired += 1;
                if let Err(e) = ctx.store.repair_remove(&partition, &key) {
                    tracing::warn!(error = %e, "could not dequeue a finished repair");
                }
                ctx.parked
                    .lock()
                    .expect("parked")
                    .remove(&(partition.clone(), key.clone()));
                let mut s = ctx.stats.lock().expect("repair stats");
                s.task_secs.push_back(started.elapsed().as_secs_f64());
                if s.task_secs.len() > 64 {
                    s.task_secs.pop_front();
                }
            }
            Err(
                e @ (RepairError::TooFewChunks { .. }
                | RepairError::Meta(MetaError::RewritesExhausted { .. })),
            ) => {
                // Cannot be rebuilt now: parked with its reason, out of the queue. The scan
                // after a node comes back (or is added) queues it again.
                self.parked += 1;
                tracing::warn!(partition, key, error = %e, "version cannot be repaired now: parked");
                if let Err(e) = ctx.store.repair_remove(&partition, &key) {
                    tracing::warn!(error = %e, "could not dequeue a parked repair");
                }
                ctx.park(&partition, &key, e.to_string());
            }
            Err(e) => {
                self.retried += 1;
                if matches!(e, RepairError::Waiting(_)) {
                    tracing::debug!(partition, key, error = %e, "repair waits");
                } else {
                    tracing::warn!(partition, key, error = %e, "repair failed; will retry");
                }
                ctx.backoff
                    .lock()
                    .expect("backoff")
                    .insert((partition, key), Instant::now() + RETRY_AFTER);
            }
        }
    }
}
