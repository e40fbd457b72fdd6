//! The one quorum primitive: every replicated call (metadata reads and writes, chunk writes)
//! goes through [`quorum`].
//!
//! Contract:
//! - All calls start at once. The function returns as soon as `needed` calls have succeeded, or
//!   as soon as so many have failed that `needed` successes are impossible, or when all calls
//!   have finished, whichever comes first.
//! - Success means `outcome.successes.len() >= needed`; the verdict is [`QuorumOutcome::met`].
//! - Stragglers (calls still running at return) are dropped here. A caller that needs them to
//!   run to completion (writes, so that every replica gets the record when it can) passes
//!   futures that are handles of spawned, owned tasks: dropping a handle does not cancel them.
//! - Every call's own outcome is reported, node by node, so callers can log, mark nodes down,
//!   or repair the replicas that answered with stale data.

use crate::ids::NodeId;
use futures::stream::{FuturesUnordered, StreamExt};
use std::future::Future;

#[derive(Debug)]
pub struct QuorumOutcome<T, E> {
    pub successes: Vec<(NodeId, T)>,
    pub failures: Vec<(NodeId, E)>,
    pub needed: usize,
}

impl<T, E> QuorumOutcome<T, E> {
    pub fn met(&self) -> bool {
        self.successes.len() >= self.needed
    }
}

pub async fn quorum<T, E, F>(calls: Vec<(NodeId, F)>, needed: usize) -> QuorumOutcome<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let total = calls.len();
    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(node, call)| async move { (node, call.await) })
        .collect();
    let mut outcome = QuorumOutcome {
        successes: Vec::with_capacity(total),
        failures: Vec::new(),
        needed,
    };
    while let Some((node, result)) = running.next().await {
        match result {
            Ok(v) => outcome.successes.push((node, v)),
            Err(e) => outcome.failures.push((node, e)),
        }
        let impossible = total - outcome.failures.len() < needed;
        if outcome.successes.len() >= needed || impossible {
            break;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A replica that answers after `delay_ms` of (paused) tokio time.
    async fn call(ok: bool, delay_ms: u64) -> Result<u32, &'static str> {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if ok {
            Ok(1)
        } else {
            Err("down")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn returns_at_quorum_without_waiting_for_stragglers() {
        let calls = vec![
            (NodeId(1), call(true, 1)),
            (NodeId(2), call(true, 2)),
            (NodeId(3), call(true, 10_000)),
        ];
        let start = tokio::time::Instant::now();
        let out = quorum(calls, 2).await;
        assert!(out.met());
        assert_eq!(out.successes.len(), 2);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_as_soon_as_quorum_is_impossible() {
        let calls = vec![
            (NodeId(1), call(false, 1)),
            (NodeId(2), call(false, 2)),
            (NodeId(3), call(true, 10_000)),
        ];
        let start = tokio::time::Instant::now();
        let out = quorum(calls, 2).await;
        assert!(!out.met());
        assert_eq!(out.failures.len(), 2);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn reports_every_finished_call() {
        let calls = vec![(NodeId(1), call(true, 0)), (NodeId(2), call(false, 0))];
        let out = quorum(calls, 2).await;
        assert!(!out.met());
        assert_eq!(out.successes.len() + out.failures.len(), 2);
    }
}
