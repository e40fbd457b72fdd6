//! Metadata writes (ADR 0004, 0005): the write round every write shares (the record to every
//! replica as owned tasks, judged once a majority of every replica set applied it or cannot),
//! a client's write that goes above every version it meets, and repair's compare-and-set.

use super::{no_quorum, stale_map, MetaClient, MetaError, PutOutcome};
use crate::peers::{wall_ms, RpcError};
use bytes::Bytes;
use dmpstore_common::ids::{Hlc, NodeId};
use dmpstore_common::limits::{CONDITIONAL_LEASE_TTL, META_WRITE_ATTEMPTS, WRITE_SETTLE_GRACE};
use dmpstore_common::quorum::MajorityOf;
use dmpstore_common::record::Versioned;
use dmpstore_common::rpc::{ErrorKind, LeaseCheck, Request, Response};
use futures::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::time::{Duration, Instant};

/// Why one replica did not apply a write.
#[derive(Debug)]
enum WriteFailure {
    /// It holds this version (newer than, equal to, or, for a compare-and-set, other than
    /// the one written).
    Holds(Option<Hlc>),
    Rpc(RpcError),
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFailure::Holds(h) => write!(f, "holds version {h:?}"),
            WriteFailure::Rpc(e) => write!(f, "{e}"),
        }
    }
}

/// What to do after a round of a client write.
enum Next {
    /// The write took effect.
    Done,
    /// Another writer holds the key's lease: wait, then send the same record again.
    WaitForLease,
    /// A replica holds a newer version: the clock went above it; try again.
    Again,
    /// A replica holds a newer version, but the write applied where a read may have seen it:
    /// send the same record again (it takes effect if a majority applies it, else it fails).
    Pin,
}

/// The state of a client write across its rounds.
struct ClientWrite<'a> {
    partition: &'a str,
    key: &'a str,
    value: Vec<u8>,
    fence: Option<([u8; 16], Instant)>,
    /// A client's write waits while another writer holds the key's lease, at most for as
    /// long as a lease lasts, with jittered backoff; those rounds are not attempts.
    wait_for_lease_until: Instant,
    lease_waits: u32,
    /// Once a replica refused for a lease, the write keeps its stamp: what it left on the
    /// other replicas may already have been read, so it must never reappear above a newer
    /// version later (it fails instead, its outcome unknown).
    pinned: Option<Versioned>,
    /// The replicas that applied the record of the current stamp, over its rounds.
    landed: Vec<NodeId>,
    replaced: Vec<Versioned>,
}

impl ClientWrite<'_> {
    fn contended(&self) -> MetaError {
        MetaError::Contended {
            partition: self.partition.to_string(),
            key: self.key.to_string(),
        }
    }

    fn lease_lost(&self) -> MetaError {
        MetaError::LeaseLost {
            partition: self.partition.to_string(),
            key: self.key.to_string(),
        }
    }

    /// Keeps the records a round replaced (a record of an earlier attempt of this very write
    /// is not "replaced" data).
    fn note_replaced(&mut self, round: &WriteRound) {
        for old in round.applied.iter().filter_map(|(_, r)| r.as_ref()) {
            if old.value != self.value && !self.replaced.contains(old) {
                self.replaced.push(old.clone());
            }
        }
    }
}

impl MetaClient {
    /// Writes `record` (with `expect`: as a compare-and-set) to every replica as owned tasks
    /// and returns the per-replica verdicts once a majority applied it or cannot. With
    /// `holding_counts`, a replica that refuses because it already holds the record or a newer
    /// one counts as a success too (a write-back).
    pub(super) async fn write_round(
        &self,
        partition: &str,
        key: &str,
        record: &Versioned,
        expect: Option<Hlc>,
        lease: LeaseCheck,
        holding_counts: bool,
    ) -> (MajorityOf, WriteRound) {
        let mut retried = false;
        loop {
            let request = Request::MetaPut {
                partition: partition.to_string(),
                key: key.to_string(),
                record: record.clone(),
                expect,
                lease,
            };
            let spec = self.replicas(partition);
            let calls = spec
                .nodes()
                .into_iter()
                .map(|node| {
                    let call = self.write_call(node, &request, record.hlc, holding_counts);
                    (node, call)
                })
                .collect();
            // A client's write that fails waits a little for the refusals that say whether
            // it may go above a newer version; others decide as soon as the quorum is lost.
            let settle = (expect.is_none() && !holding_counts).then_some(record.hlc);
            let round = collect_round(calls, &spec, settle).await;
            let stale = stale_map(round.failures.iter().filter_map(|(_, f)| match f {
                WriteFailure::Rpc(e) => Some(e),
                WriteFailure::Holds(_) => None,
            }));
            if !round.met && !retried && stale {
                retried = true;
                continue;
            }
            return (spec, round);
        }
    }

    /// Sends a metadata write to `node` as an owned task (so it still lands after the quorum
    /// is decided); the returned future is its verdict: applied (with the record it
    /// replaced), or why not.
    fn write_call(
        &self,
        node: NodeId,
        request: &Request,
        hlc: Hlc,
        holding_counts: bool,
    ) -> impl Future<Output = Result<Option<Versioned>, WriteFailure>> {
        let (nodes, req) = (self.nodes.clone(), request.clone());
        let task = self
            .tasks
            .spawn(async move { nodes.call(node, &req, Bytes::new()).await });
        async move {
            let answer = task.await.map_err(|e| {
                WriteFailure::Rpc(RpcError::Protocol {
                    node,
                    message: format!("write task failed: {e}"),
                })
            })?;
            match answer {
                Ok((
                    Response::MetaPut {
                        applied: true,
                        replaced,
                        ..
                    },
                    _,
                )) => Ok(replaced),
                Ok((Response::MetaPut { holds, .. }, _))
                    if holding_counts && holds >= Some(hlc) =>
                {
                    Ok(None)
                }
                Ok((Response::MetaPut { holds, .. }, _)) => Err(WriteFailure::Holds(holds)),
                Ok((other, _)) => Err(WriteFailure::Rpc(RpcError::Protocol {
                    node,
                    message: format!("unexpected answer to a metadata write: {other:?}"),
                })),
                Err(e) => Err(WriteFailure::Rpc(e)),
            }
        }
    }

    /// A client's write of `value` to `key` (the write-order rule of the module doc).
    pub async fn put(
        &self,
        partition: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<PutOutcome, MetaError> {
        self.put_fenced(partition, key, value, None).await
    }

    /// [`MetaClient::put`] made under the key's lease `fence`: its `MetaLock` token, and the
    /// last moment a stamp may be drawn under it. Replicas apply the write only while the
    /// token holds their lease, so a holder that stalled past its lease cannot write after the
    /// next holder took over ([`MetaError::LeaseLost`]). The deadline keeps every stamp drawn
    /// under the lease below those of the next holder, whatever the clocks (within the maximum
    /// offset): a stamp is drawn only while enough of the lease is left (ADR 0005).
    pub async fn put_fenced(
        &self,
        partition: &str,
        key: &str,
        value: Vec<u8>,
        fence: Option<([u8; 16], std::time::Instant)>,
    ) -> Result<PutOutcome, MetaError> {
        let lease = match fence {
            Some((token, _)) => LeaseCheck::Holder(token),
            None => LeaseCheck::Yield,
        };
        let mut w = ClientWrite {
            partition,
            key,
            value,
            fence,
            wait_for_lease_until: Instant::now() + CONDITIONAL_LEASE_TTL,
            lease_waits: 0,
            pinned: None,
            landed: Vec::new(),
            replaced: Vec::new(),
        };
        let mut attempt = 0;
        while attempt < META_WRITE_ATTEMPTS {
            attempt += 1;
            self.check_clock()?;
            if fence.is_some_and(|(_, deadline)| Instant::now() >= deadline) {
                return Err(w.lease_lost());
            }
            let record = match &w.pinned {
                Some(r) => r.clone(),
                None => {
                    w.landed.clear();
                    Versioned {
                        hlc: self.now(),
                        value: w.value.clone(),
                    }
                }
            };
            let (spec, round) = self
                .write_round(partition, key, &record, None, lease, false)
                .await;
            w.note_replaced(&round);
            w.landed.extend(round.appliers());
            match self.judge(&w, &spec, &round, record.hlc)? {
                Next::Done => {
                    return Ok(PutOutcome {
                        hlc: record.hlc,
                        replaced: w.replaced,
                    })
                }
                Next::WaitForLease => {
                    w.pinned = Some(record.clone());
                    w.lease_waits += 1;
                    attempt -= 1;
                    // Deliberate backoff: the lease holder needs a moment to decide and commit.
                    let ms = rand::random_range(5..25) * u64::from(w.lease_waits.min(8));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Next::Again => {}
                Next::Pin => w.pinned = Some(record.clone()),
            }
        }
        Err(w.contended())
    }

    /// What a round of a client write says: done, wait for another writer's lease, try again
    /// above a newer version, or fail.
    fn judge(
        &self,
        w: &ClientWrite<'_>,
        spec: &MajorityOf,
        round: &WriteRound,
        stamp: Hlc,
    ) -> Result<Next, MetaError> {
        if let Some(e) = round.clock_error() {
            return Err(e);
        }
        if !round.met && round.lease_lost() {
            return Err(w.lease_lost());
        }
        let newer = round.newest_held().filter(|h| *h > stamp);
        // Applied by a majority: done, even if a replica holds a newer version. That version
        // is on a minority, so no read returned it and no writer was told it was written: it
        // is a write still in flight (or of unknown outcome) and takes effect after this one.
        // Going above it instead would make this write appear twice if a read saw it here.
        let met = round.met || spec.met_by(&w.landed);
        if met || (self.unsafe_ignore_refusals && spec.met_by(&round.answered())) {
            return Ok(Next::Done);
        }
        if round.leased() {
            // Another writer holds the key's lease (a conditional write deciding): wait for
            // it, then try the same record again.
            if Instant::now() >= w.wait_for_lease_until {
                return Err(w.contended());
            }
            return Ok(Next::WaitForLease);
        }
        match newer {
            // A write under a lease decided on the version it read: it does not go above one
            // it never saw (a value that raced in), it fails (ADR 0005). Nor does a write
            // pinned to its stamp by a lease.
            Some(_) if w.fence.is_some() || w.pinned.is_some() => Err(w.contended()),
            // Applied where a read may have seen it (some majority holds nothing newer): the
            // write keeps its stamp, so it can never appear again above a later write; the
            // replicas that have not answered yet may still make a majority.
            Some(_) if round.readable_somewhere(spec, stamp) => Ok(Next::Pin),
            // Go above the newest version a replica holds, and try again.
            Some(h) => {
                if !self.observe(h) {
                    return Err(MetaError::ClockOffset(format!(
                        "a replica holds a version stamped {} ms ahead of this clock",
                        h.physical_ms().saturating_sub(wall_ms())
                    )));
                }
                tracing::debug!(partition = w.partition, key = w.key, newer = ?h, "a replica holds a newer version; writing above it");
                Ok(Next::Again)
            }
            None => Err(round.no_quorum("metadata write", w.partition)),
        }
    }

    /// Repair's compare-and-set: writes `value` at the next revision of `expect` (above it,
    /// below every client stamp above it: [`Hlc`]) where the replica still holds exactly
    /// version `expect`. `Ok(false)`: some replica holds another version (a client wrote the
    /// key meanwhile), and the rewrite is left to lose to it. A rewrite that lands on a
    /// minority only can then never shadow a client's write stamped after it read `expect`.
    pub async fn replace(
        &self,
        partition: &str,
        key: &str,
        expect: Hlc,
        value: Vec<u8>,
    ) -> Result<bool, MetaError> {
        let Some(hlc) = expect.next_revision() else {
            return Err(MetaError::RewritesExhausted {
                partition: partition.to_string(),
                key: key.to_string(),
            });
        };
        let record = Versioned { hlc, value };
        let (_, round) = self
            .write_round(
                partition,
                key,
                &record,
                Some(expect),
                LeaseCheck::Ignore,
                false,
            )
            .await;
        if round.met {
            return Ok(true);
        }
        if round
            .failures
            .iter()
            .any(|(_, f)| matches!(f, WriteFailure::Holds(h) if *h != Some(expect)))
        {
            return Ok(false);
        }
        Err(round.no_quorum("metadata compare-and-set", partition))
    }
}

/// Runs the calls of a write round until a majority applied the record, or until it cannot.
/// With `settle` (a client write of that stamp), a round that cannot goes on collecting answers
/// until they settle whether a read may have seen the record (the replicas known to hold a
/// newer version leave no majority without one), all have answered, or
/// [`WRITE_SETTLE_GRACE`] passed. Calls still running at return are owned tasks: they land.
async fn collect_round<F>(
    calls: Vec<(NodeId, F)>,
    spec: &MajorityOf,
    settle: Option<Hlc>,
) -> WriteRound
where
    F: Future<Output = Result<Option<Versioned>, WriteFailure>>,
{
    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(node, call)| async move { (node, call.await) })
        .collect();
    let mut round = WriteRound {
        met: false,
        applied: Vec::new(),
        failures: Vec::new(),
    };
    let mut give_up_at: Option<tokio::time::Instant> = None;
    loop {
        let next = match give_up_at {
            Some(at) => match tokio::time::timeout_at(at, running.next()).await {
                Ok(next) => next,
                Err(_) => return round,
            },
            None => running.next().await,
        };
        let Some((node, verdict)) = next else {
            return round;
        };
        match verdict {
            Ok(replaced) => round.applied.push((node, replaced)),
            Err(e) => round.failures.push((node, e)),
        }
        let appliers: Vec<NodeId> = round.appliers().collect();
        round.met = spec.met_by(&appliers);
        let failed: Vec<NodeId> = round.failures.iter().map(|(n, _)| *n).collect();
        let lost = !spec.possible_without(&failed);
        match settle {
            _ if round.met => return round,
            Some(stamp) if lost && !round.settled(spec, stamp) => {
                give_up_at.get_or_insert(tokio::time::Instant::now() + WRITE_SETTLE_GRACE);
            }
            _ if lost => return round,
            _ => {}
        }
    }
}

/// The verdicts of one write round.
pub(super) struct WriteRound {
    pub(super) met: bool,
    applied: Vec<(NodeId, Option<Versioned>)>,
    failures: Vec<(NodeId, WriteFailure)>,
}

impl WriteRound {
    /// The newest version a replica said it holds instead of applying the write.
    fn newest_held(&self) -> Option<Hlc> {
        self.failures
            .iter()
            .filter_map(|(_, f)| match f {
                WriteFailure::Holds(h) => *h,
                WriteFailure::Rpc(_) => None,
            })
            .max()
    }

    /// The replicas that answered holding a version newer than `stamp`.
    fn holding_newer(&self, stamp: Hlc) -> Vec<NodeId> {
        self.failures
            .iter()
            .filter(|(_, f)| matches!(f, WriteFailure::Holds(Some(h)) if *h > stamp))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Whether the answers already tell that no read could have returned the write: the
    /// replicas holding a newer version leave no majority without one.
    fn settled(&self, spec: &MajorityOf, stamp: Hlc) -> bool {
        !spec.possible_without(&self.holding_newer(stamp))
    }

    /// Whether a read could have returned the write: a replica may have applied it (it said
    /// so, it has not answered, or its call failed after it may have landed), and a majority
    /// exists that holds nothing newer than `stamp` as far as the answers tell.
    fn readable_somewhere(&self, spec: &MajorityOf, stamp: Hlc) -> bool {
        let refused: Vec<NodeId> = self
            .failures
            .iter()
            .filter(|(_, f)| matches!(f, WriteFailure::Holds(_)))
            .map(|(n, _)| *n)
            .collect();
        let maybe_applied = spec.nodes().iter().any(|n| !refused.contains(n));
        maybe_applied && !self.settled(spec, stamp)
    }

    /// The replicas that applied the write in this round.
    fn appliers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.applied.iter().map(|(n, _)| *n)
    }

    /// The replicas that applied the write or refused it (the planted bug counts both).
    fn answered(&self) -> Vec<NodeId> {
        let refused = self.failures.iter().filter_map(|(n, f)| match f {
            WriteFailure::Holds(_) => Some(*n),
            WriteFailure::Rpc(_) => None,
        });
        self.applied
            .iter()
            .map(|(n, _)| *n)
            .chain(refused)
            .collect()
    }

    fn clock_error(&self) -> Option<MetaError> {
        self.failures.iter().find_map(|(node, f)| match f {
            WriteFailure::Rpc(RpcError::Remote {
                kind: ErrorKind::ClockOffset,
                message,
                ..
            }) if !self.met => Some(MetaError::ClockOffset(format!("node {node}: {message}"))),
            _ => None,
        })
    }

    pub(super) fn lease_lost(&self) -> bool {
        self.failed_with(ErrorKind::LeaseLost)
    }

    /// Whether a replica refused because another writer holds the key's lease.
    pub(super) fn leased(&self) -> bool {
        self.failed_with(ErrorKind::Leased)
    }

    fn failed_with(&self, kind: ErrorKind) -> bool {
        self.failures.iter().any(
            |(_, f)| matches!(f, WriteFailure::Rpc(RpcError::Remote { kind: k, .. }) if *k == kind),
        )
    }

    pub(super) fn no_quorum(&self, what: &'static str, partition: &str) -> MetaError {
        no_quorum(what, partition, &self.failures)
    }
}
