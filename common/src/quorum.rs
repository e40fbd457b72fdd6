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
    met: bool,
}

impl<T, E> QuorumOutcome<T, E> {
    pub fn met(&self) -> bool {
        self.met
    }
}

/// Which answering nodes make a metadata quorum: a majority of every replica set. There is
/// one set normally, and two (the old and the new) while a metadata membership change is in
/// its joint phase, so any quorum of either phase overlaps any quorum of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MajorityOf {
    sets: Vec<Vec<NodeId>>,
}

impl MajorityOf {
    pub fn new(sets: Vec<Vec<NodeId>>) -> MajorityOf {
        MajorityOf { sets }
    }

    /// Every node of every set, each once, the first set's first.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for n in self.sets.iter().flatten() {
            if !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }

    pub fn sets(&self) -> &[Vec<NodeId>] {
        &self.sets
    }

    pub fn met_by(&self, ok: &[NodeId]) -> bool {
        self.sets.iter().all(|set| {
            let have = set.iter().filter(|n| ok.contains(n)).count();
            have > set.len() / 2
        })
    }

    /// Whether a quorum can still be reached once `failed` have failed.
    pub fn possible_without(&self, failed: &[NodeId]) -> bool {
        self.sets.iter().all(|set| {
            let left = set.iter().filter(|n| !failed.contains(n)).count();
            left > set.len() / 2
        })
    }
}

/// Like [`quorum`], with the quorum given as [`MajorityOf`]: every node of `spec` is called.
pub async fn quorum_of<T, E, F>(calls: Vec<(NodeId, F)>, spec: &MajorityOf) -> QuorumOutcome<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    run(
        calls,
        |ok, _| spec.met_by(ok),
        |_, failed| !spec.possible_without(failed),
    )
    .await
}

pub async fn quorum<T, E, F>(calls: Vec<(NodeId, F)>, needed: usize) -> QuorumOutcome<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let total = calls.len();
    run(
        calls,
        |ok, _| ok.len() >= needed,
        |_, failed| total - failed.len() < needed,
    )
    .await
}

/// Runs every call at once until `met` (by the nodes that succeeded) or `hopeless` (by the
/// nodes that failed), or until all have finished.
async fn run<T, E, F>(
    calls: Vec<(NodeId, F)>,
    met: impl Fn(&[NodeId], &[NodeId]) -> bool,
    hopeless: impl Fn(&[NodeId], &[NodeId]) -> bool,
) -> QuorumOutcome<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let total = calls.len();
    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(node, call)| async move { (node, call.await) })
        .collect();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    let mut outcome = QuorumOutcome {
        successes: Vec::with_capacity(total),
        failures: Vec::new(),
        met: met(&ok, &failed),
    };
    while let Some((node, result)) = running.next().await {
        match result {
            Ok(v) => {
                ok.push(node);
                outcome.successes.push((node, v));
            }
            Err(e) => {
                failed.push(node);
                outcome.failures.push((node, e));
            }
        }
        outcome.met = met(&ok, &failed);
        if outcome.met || hopeless(&ok, &failed) {
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

    #[tokio::test(start_paused = true)]
    async fn a_joint_quorum_needs_a_majority_of_both_sets() {
        let n = |i| NodeId(i);
        // Old set 1..=3, new set 2..=4: nodes 2 and 3 answer fast, 1 and 4 never.
        let spec = MajorityOf::new(vec![vec![n(1), n(2), n(3)], vec![n(2), n(3), n(4)]]);
        assert_eq!(spec.nodes(), vec![n(1), n(2), n(3), n(4)]);
        let calls = vec![
            (n(1), call(false, 1)),
            (n(2), call(true, 2)),
            (n(3), call(true, 3)),
            (n(4), call(false, 4)),
        ];
        assert!(quorum_of(calls, &spec).await.met());
        // Only the old set's majority answers: not enough.
        let calls = vec![
            (n(1), call(true, 1)),
            (n(2), call(true, 2)),
            (n(3), call(false, 3)),
            (n(4), call(false, 4)),
        ];
        let out = quorum_of(calls, &spec).await;
        assert!(!out.met());
        assert!(!spec.met_by(&[n(1), n(2)]) && spec.met_by(&[n(2), n(3)]));
    }

    #[tokio::test]
    async fn reports_every_finished_call() {
        let calls = vec![(NodeId(1), call(true, 0)), (NodeId(2), call(false, 0))];
        let out = quorum(calls, 2).await;
        assert!(!out.met());
        assert_eq!(out.successes.len() + out.failures.len(), 2);
    }
}
