//! The one metadata quorum client (DESIGN 5, 15), used by gateways and by storage nodes alike:
//! every read, write and scan of a metadata partition goes through [`MetaClient`], so the
//! write-order rule lives here once (ADR 0004).
//!
//! Contract:
//! - **Write** ([`MetaClient::put`]): the record takes effect only above every version the
//!   replicas hold for its key. A replica that holds a newer (or equal) version refuses and
//!   says which. A write is acknowledged once a majority of every replica set *applied* the
//!   same record. A majority that applied it holds nothing newer, so every write that
//!   completed before it (on a majority, which intersects this one) is below it: two writes to
//!   one key that do not overlap in time take effect in the order they were made, whatever
//!   the writers' clocks say. A newer version left on a minority is a write still in flight or
//!   of unknown outcome, and takes effect after this one. A write that did not reach a majority
//!   goes above the newest version it learned and tries again, unless a replica applied it
//!   where a read may have seen it (a majority without the newer version exists): then it keeps
//!   its stamp, so it can never appear a second time above a later write, and it fails with
//!   503 (outcome unknown) if no majority applies it.
//! - **Clock offset**: a process whose clock is off from the nodes' by more than the maximum
//!   offset refuses writes ([`MetaError::ClockOffset`]); a stamp further ahead of this clock
//!   than the maximum offset is never observed into it (nodes refuse to store one as well).
//! - **Compare-and-set** ([`MetaClient::replace`]): repair rewrites a record only where the
//!   replica still holds exactly the version repaired, so it never overrides a client write.
//! - **Read** ([`MetaClient::get`]): the newest record among a majority. If fewer than a
//!   majority hold it (a write in flight, or one that failed halfway), it is written back to a
//!   majority before it is returned, so a later read can never return something older. That
//!   write-back yields to the key's lease as client writes do ([`MetaClient::get_holding`]).
//!   Stale replicas among those that answered are repaired in the background otherwise.
//! - **Scan** ([`MetaClient::scan`]): one page merged across a majority, bounded in bytes on
//!   every node (DESIGN 16), newest version per key.
//! - A metadata membership change makes nodes refuse an older map (`StaleMap`); every call
//!   then runs once more with the map it learned.
//! - Write calls run as owned tasks, so replicas that answer after the quorum still get the
//!   record; stragglers of reads are dropped.
//!
//! The writes (client writes, compare-and-set, the write round they share) are in [`write`];
//! reads, scans and the every-replica reads of garbage collection are here.

mod write;

use crate::peers::{wall_ms, NodeClient, RpcError};
use bytes::Bytes;
use dmpstore_common::hlc::HlcClock;
use dmpstore_common::ids::{Hlc, NodeId};
use dmpstore_common::limits::{CONDITIONAL_LEASE_TTL, META_WRITE_ATTEMPTS};
use dmpstore_common::placement::partition_quorum;
use dmpstore_common::quorum::{quorum_of, MajorityOf};
use dmpstore_common::record::Versioned;
use dmpstore_common::rpc::{ErrorKind, LeaseCheck, Request, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    #[error("{what} in partition {partition:?} did not reach a quorum ({detail})")]
    NoQuorum {
        what: &'static str,
        partition: String,
        detail: String,
    },
    #[error("clock offset: {0}")]
    ClockOffset(String),
    #[error("write of {partition:?}/{key:?} met a newer version on every one of {attempts} attempts", attempts = META_WRITE_ATTEMPTS)]
    Contended { partition: String, key: String },
    #[error("the lease on {partition:?}/{key:?} expired or passed to another holder before the write landed")]
    LeaseLost { partition: String, key: String },
    #[error("version of {partition:?}/{key:?} was rewritten by background work as often as its stamp allows; the next client write of the key replaces it")]
    RewritesExhausted { partition: String, key: String },
    #[error("node {node} answered a metadata call with an unexpected {response}")]
    Protocol { node: NodeId, response: String },
}

/// What a client write did: the stamp it took effect at, and the records it replaced on the
/// replicas (older versions whose data may now be dropped; never the write's own record).
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub hlc: Hlc,
    pub replaced: Vec<Versioned>,
}

/// One page of a partition scan merged across a majority of replicas.
#[derive(Debug)]
pub struct ScanPage {
    /// Records in key order, newest version per key, tombstones included.
    pub entries: Vec<(String, Versioned)>,
    /// Where the next page starts (exclusive), if the scan is not finished.
    pub next: Option<Vec<u8>>,
}

/// How a read's write-back ended, when it did not fail.
enum WriteBack {
    /// A majority holds the record (or a newer one).
    Done,
    /// Another writer holds the key's lease: the record must wait.
    Leased,
}

pub struct MetaClient {
    nodes: Arc<NodeClient>,
    clock: HlcClock,
    /// `m` of the erasure profile: partitions have `2m + 1` replicas (all metadata nodes when
    /// fewer), DESIGN 5.
    parity_chunks: u8,
    max_offset: Duration,
    /// Owns the write calls that outlive their quorum (and background read repair).
    tasks: TaskTracker,
    /// Writes refused because this process's clock is off, and whether it is off now.
    clock_refusals: AtomicU64,
    clock_off: AtomicBool,
    /// Test switch (the history checker's planted bug): acknowledge a write that a majority
    /// refused, as the code did before ADR 0004. Never set outside that test.
    unsafe_ignore_refusals: bool,
}

impl std::fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaClient")
            .field("parity_chunks", &self.parity_chunks)
            .field("max_offset", &self.max_offset)
            .finish()
    }
}

impl MetaClient {
    pub fn new(
        nodes: Arc<NodeClient>,
        parity_chunks: u8,
        max_offset: Duration,
        tasks: TaskTracker,
    ) -> MetaClient {
        MetaClient {
            nodes,
            clock: HlcClock::new(),
            parity_chunks,
            max_offset,
            tasks,
            clock_refusals: AtomicU64::new(0),
            clock_off: AtomicBool::new(false),
            unsafe_ignore_refusals: false,
        }
    }

    /// The planted bug of the history checker's self-test (see the field).
    pub fn with_unsafe_ignore_refusals(mut self, on: bool) -> MetaClient {
        self.unsafe_ignore_refusals = on;
        self
    }

    pub fn nodes(&self) -> &Arc<NodeClient> {
        &self.nodes
    }

    /// A fresh stamp from this process's clock.
    pub fn now(&self) -> Hlc {
        self.clock.now(wall_ms())
    }

    /// Writes refused so far because this process's clock was off.
    pub fn clock_refusals(&self) -> u64 {
        self.clock_refusals.load(Ordering::Relaxed)
    }

    /// Replicas per partition under the current map.
    pub fn n_replicas(&self) -> usize {
        (2 * usize::from(self.parity_chunks) + 1).min(self.nodes.map().metadata_len())
    }

    /// The replicas of a partition and what makes a quorum of them (both sets during a
    /// metadata membership change).
    pub fn replicas(&self, partition: &str) -> MajorityOf {
        partition_quorum(&self.nodes.map(), partition, self.n_replicas())
    }

    /// Fails if this process's clock is off from the nodes' by more than the maximum offset
    /// (logged once per change, counted every time).
    pub fn check_clock(&self) -> Result<(), MetaError> {
        let max_ms = self.max_offset.as_millis() as i64;
        let offset = self.nodes.clock_offset_ms();
        let off = offset.is_some_and(|o| o.abs() > max_ms);
        let was_off = self.clock_off.swap(off, Ordering::Relaxed);
        if !off {
            if was_off {
                tracing::info!(
                    offset_ms = offset,
                    "clock back within the maximum offset from the nodes: writes accepted again"
                );
            }
            return Ok(());
        }
        self.clock_refusals.fetch_add(1, Ordering::Relaxed);
        let offset = offset.expect("off implies measured");
        if !was_off {
            tracing::warn!(
                offset_ms = offset,
                max_offset_ms = max_ms,
                "this process's clock is off from the storage nodes' by more than the maximum offset: refusing writes"
            );
        }
        Err(MetaError::ClockOffset(format!(
            "this process's clock is {} ms {} the storage nodes' (max {max_ms} ms)",
            offset.abs(),
            if offset > 0 { "behind" } else { "ahead of" }
        )))
    }

    /// Moves the clock past `seen`, unless `seen` is further ahead of this clock than the
    /// maximum offset (then the clock stays and `false` is returned).
    fn observe(&self, seen: Hlc) -> bool {
        let limit_ms = wall_ms() + self.max_offset.as_millis() as u64;
        if seen.physical_ms() > limit_ms {
            return false;
        }
        self.clock.observe(seen);
        true
    }

    /// Sends `request` to the partition's replicas and returns the answers of a majority
    /// (the slower rest are dropped), or an error if a majority cannot answer.
    pub async fn ask_majority(
        &self,
        partition: &str,
        request: &Request,
        what: &'static str,
    ) -> Result<Vec<(NodeId, Response)>, MetaError> {
        let mut retried = false;
        loop {
            let spec = self.replicas(partition);
            let calls = spec
                .nodes()
                .into_iter()
                .map(|node| {
                    (node, async move {
                        self.nodes.call(node, request, Bytes::new()).await
                    })
                })
                .collect();
            let outcome = quorum_of(calls, &spec).await;
            if outcome.met() {
                return Ok(outcome
                    .successes
                    .into_iter()
                    .map(|(node, (response, _))| (node, response))
                    .collect());
            }
            if !retried && stale_map(outcome.failures.iter().map(|(_, e)| e)) {
                retried = true;
                continue;
            }
            return Err(no_quorum(what, partition, &outcome.failures));
        }
    }

    /// Sends `request` to every replica of the partition and returns every answer, or an
    /// error if any replica does not answer: garbage collection drops data only on proof that
    /// every replica agrees no record uses it.
    async fn ask_every(
        &self,
        partition: &str,
        request: &Request,
        what: &'static str,
    ) -> Result<Vec<(NodeId, Response)>, MetaError> {
        let nodes = self.replicas(partition).nodes();
        let answers = futures::future::join_all(nodes.iter().map(|&node| async move {
            (node, self.nodes.call(node, request, Bytes::new()).await)
        }))
        .await;
        let mut out = Vec::with_capacity(answers.len());
        let mut failures = Vec::new();
        for (node, answer) in answers {
            match answer {
                Ok((response, _)) => out.push((node, response)),
                Err(e) => failures.push((node, e)),
            }
        }
        if !failures.is_empty() {
            return Err(no_quorum(what, partition, &failures));
        }
        Ok(out)
    }

    /// Every record that any replica of the partition holds for `key` (each replica must
    /// answer), for garbage collection's proof that no record uses some data.
    pub async fn get_every(&self, partition: &str, key: &str) -> Result<Vec<Versioned>, MetaError> {
        let request = Request::MetaGet {
            partition: partition.to_string(),
            key: key.to_string(),
        };
        let mut out: Vec<Versioned> = Vec::new();
        for (node, response) in self
            .ask_every(partition, &request, "metadata read of every replica")
            .await?
        {
            match response {
                Response::MetaValue(Some(v)) => {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Response::MetaValue(None) => {}
                other => return Err(unexpected(node, &other)),
            }
        }
        Ok(out)
    }

    /// Every record under `prefix` on every replica of the partition (each must answer), or
    /// `None` when some replica holds more than one page of them.
    pub async fn scan_every(
        &self,
        partition: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Option<Vec<(String, Versioned)>>, MetaError> {
        let request = Request::MetaScan {
            partition: partition.to_string(),
            prefix: prefix.to_string(),
            start_after: Vec::new(),
            limit,
            bodies: false,
        };
        let mut out = Vec::new();
        for (node, response) in self
            .ask_every(partition, &request, "metadata scan of every replica")
            .await?
        {
            let Response::MetaEntries { entries, more } = response else {
                return Err(unexpected(node, &response));
            };
            if more {
                return Ok(None);
            }
            out.extend(entries);
        }
        Ok(Some(out))
    }

    /// Reads the newest record of `key` (the read rule of the module doc); `None` if no
    /// replica of a majority has one. Tombstones are returned as such.
    pub async fn get(&self, partition: &str, key: &str) -> Result<Option<Versioned>, MetaError> {
        self.get_holding(partition, key, None).await
    }

    /// [`MetaClient::get`] by a reader that may hold the key's lease (`holder`: its token).
    ///
    /// A record found on fewer than a majority is written back before it is returned, and
    /// that write-back respects the key's lease like a client write does: while another
    /// writer holds the lease it deciding on what a majority showed it, so a minority record
    /// must not become visible under it (it would slip between that writer's check and its
    /// commit). The reader then waits for the lease and reads again, for at most as long as
    /// a lease lasts. The holder's own reads write back fenced by its token (ADR 0005).
    pub async fn get_holding(
        &self,
        partition: &str,
        key: &str,
        holder: Option<[u8; 16]>,
    ) -> Result<Option<Versioned>, MetaError> {
        let wait_for_lease_until = std::time::Instant::now() + CONDITIONAL_LEASE_TTL;
        let mut lease_waits = 0u32;
        loop {
            let Some((newest, minority)) = self.read_newest(partition, key).await? else {
                return Ok(None);
            };
            if !minority {
                return Ok(Some(newest));
            }
            // Not yet on a majority: make it so before anyone is told about it.
            let lease = match holder {
                Some(token) => LeaseCheck::Holder(token),
                None => LeaseCheck::Yield,
            };
            match self.write_back(partition, key, &newest, lease).await? {
                WriteBack::Done => return Ok(Some(newest)),
                WriteBack::Leased if std::time::Instant::now() < wait_for_lease_until => {
                    lease_waits += 1;
                    // Deliberate backoff: the lease holder needs a moment to decide and commit.
                    let ms = rand::random_range(5..25) * u64::from(lease_waits.min(8));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                WriteBack::Leased => {
                    return Err(MetaError::Contended {
                        partition: partition.to_string(),
                        key: key.to_string(),
                    })
                }
            }
        }
    }

    /// The newest record among a majority's answers, and whether fewer than a majority hold
    /// it. Stale replicas of a record a majority holds are repaired in the background.
    async fn read_newest(
        &self,
        partition: &str,
        key: &str,
    ) -> Result<Option<(Versioned, bool)>, MetaError> {
        let request = Request::MetaGet {
            partition: partition.to_string(),
            key: key.to_string(),
        };
        let successes = self
            .ask_majority(partition, &request, "metadata read")
            .await?;
        let mut answers: Vec<(NodeId, Option<Versioned>)> = Vec::with_capacity(successes.len());
        for (node, response) in successes {
            match response {
                Response::MetaValue(v) => answers.push((node, v)),
                other => return Err(unexpected(node, &other)),
            }
        }
        let Some(newest) = answers
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .fold(None::<&Versioned>, |best, v| match best {
                Some(b) if !v.supersedes(b) => Some(b),
                _ => Some(v),
            })
            .cloned()
        else {
            return Ok(None);
        };
        self.observe(newest.hlc);
        let holders: Vec<NodeId> = answers
            .iter()
            .filter(|(_, v)| v.as_ref() == Some(&newest))
            .map(|(n, _)| *n)
            .collect();
        let spec = self.replicas(partition);
        if !spec.met_by(&holders) {
            return Ok(Some((newest, true)));
        }
        if holders.len() < answers.len() {
            let stale = answers
                .iter()
                .filter(|(n, _)| !holders.contains(n))
                .map(|(n, _)| *n)
                .collect();
            self.read_repair(partition, key, &newest, stale);
        }
        Ok(Some((newest, false)))
    }

    /// Writes an existing record back until a majority holds it or something newer, unless
    /// the key's lease (held by another writer) refuses it.
    async fn write_back(
        &self,
        partition: &str,
        key: &str,
        record: &Versioned,
        lease: LeaseCheck,
    ) -> Result<WriteBack, MetaError> {
        tracing::debug!(
            partition,
            key,
            "newest record not on a majority yet: writing it back before answering"
        );
        let (_, round) = self
            .write_round(partition, key, record, None, lease, true)
            .await;
        if round.met {
            return Ok(WriteBack::Done);
        }
        if round.lease_lost() {
            return Err(MetaError::LeaseLost {
                partition: partition.to_string(),
                key: key.to_string(),
            });
        }
        if round.leased() {
            return Ok(WriteBack::Leased);
        }
        Err(round.no_quorum("metadata write-back", partition))
    }

    fn read_repair(&self, partition: &str, key: &str, newest: &Versioned, stale: Vec<NodeId>) {
        tracing::debug!(
            partition,
            key,
            ?stale,
            "read repair of stale metadata replicas"
        );
        for node in stale {
            let request = Request::MetaPut {
                partition: partition.to_string(),
                key: key.to_string(),
                record: newest.clone(),
                expect: None,
                lease: LeaseCheck::Ignore,
            };
            let nodes = self.nodes.clone();
            self.tasks.spawn(async move {
                if let Err(e) = nodes.call(node, &request, Bytes::new()).await {
                    tracing::debug!(%node, error = %e, "read repair write failed; anti-entropy will retry");
                }
            });
        }
    }

    /// One page of the keys of `partition` starting with `prefix`, after `start_after`,
    /// merged across a majority. The page stops at the smallest "last key" among replicas
    /// that had more, so no replica's later keys are skipped. `bodies: false` leaves inline
    /// object bytes out (listings).
    pub async fn scan(
        &self,
        partition: &str,
        prefix: &str,
        start_after: &[u8],
        limit: u32,
        bodies: bool,
    ) -> Result<ScanPage, MetaError> {
        let request = Request::MetaScan {
            partition: partition.to_string(),
            prefix: prefix.to_string(),
            start_after: start_after.to_vec(),
            limit,
            bodies,
        };
        let successes = self
            .ask_majority(partition, &request, "metadata scan")
            .await?;
        let mut merged: BTreeMap<String, Versioned> = BTreeMap::new();
        let mut bound: Option<String> = None;
        for (node, response) in successes {
            let Response::MetaEntries { entries, more } = response else {
                return Err(unexpected(node, &response));
            };
            if more {
                if let Some((last, _)) = entries.last() {
                    if bound.as_ref().is_none_or(|b| last < b) {
                        bound = Some(last.clone());
                    }
                }
            }
            for (k, v) in entries {
                match merged.get(&k) {
                    Some(cur) if !v.supersedes(cur) => {}
                    _ => {
                        merged.insert(k, v);
                    }
                }
            }
        }
        let mut entries = Vec::with_capacity(merged.len());
        for (k, v) in merged {
            if bound.as_ref().is_some_and(|b| &k > b) {
                break;
            }
            self.observe(v.hlc);
            entries.push((k, v));
        }
        Ok(ScanPage {
            entries,
            next: bound.map(String::into_bytes),
        })
    }
}

/// Whether a call failed because this process's map predates a metadata membership change
/// (the client has fetched the new map by then: the call is worth one retry).
fn stale_map<'a>(mut errors: impl Iterator<Item = &'a RpcError>) -> bool {
    errors.any(|e| {
        matches!(
            e,
            RpcError::Remote {
                kind: ErrorKind::StaleMap,
                ..
            }
        )
    })
}

fn no_quorum(
    what: &'static str,
    partition: &str,
    failures: &[(NodeId, impl std::fmt::Display)],
) -> MetaError {
    let detail: Vec<String> = failures.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    MetaError::NoQuorum {
        what,
        partition: partition.to_string(),
        detail: detail.join("; "),
    }
}

fn unexpected(node: NodeId, r: &Response) -> MetaError {
    MetaError::Protocol {
        node,
        response: format!("{r:?}"),
    }
}
