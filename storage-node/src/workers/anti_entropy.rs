//! Anti-entropy between metadata replicas ("anti-entropy" worker, DESIGN 5): the owner of a
//! partition (its first Up replica) walks the partition on every Up replica at once, page by
//! page in key order, and writes the newest record of each key to the replicas that miss it or
//! hold an older one. Tombstones travel like any record, so a replica that was away cannot
//! bring a deleted key back. Read repair fixes what clients read; this pass fixes what nobody
//! reads. A pass runs every `anti_entropy_interval_secs` and when `gateway admin anti-entropy`
//! asks.
//!
//! The pass also collects tombstones: one older than `tombstone_grace_secs` that every
//! replica of the partition holds identically (all of them answered the page) is purged from
//! all of them ([`super::gc`]).
//!
//! The partitions are the buckets partition and, for each bucket listed there, the bucket's
//! own partitions (objects, versions, tags, uploads, parts).

use super::context::{NodeContext, RepairError};
use super::{Cadence, Worker, WorkerState};
use crate::peers::{NodeState, RpcError};
use bytes::Bytes;
use dmpstore_common::ids::NodeId;
use dmpstore_common::quorum::MajorityOf;
use dmpstore_common::record::{
    parts_partition, tags_partition, uploads_partition, versions_partition, Versioned,
    BUCKETS_PARTITION,
};
use dmpstore_common::rpc::{ErrorKind, LeaseCheck, Request, Response};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records asked of each replica per page.
const PAGE: u32 = 256;

/// One replica's page of a partition: its entries, and whether it holds more after them.
type Page = (NodeId, (Vec<(String, Versioned)>, bool));

/// The records each Up replica holds of each key of a page.
type ByKey = BTreeMap<String, Vec<(NodeId, Versioned)>>;

/// The last key up to which a set of pages is complete on every replica: the smallest last
/// key of a replica that has more (`None`: every replica's page reached its end).
fn frontier(pages: &[Page]) -> Option<String> {
    pages
        .iter()
        .filter(|(_, (_, more))| *more)
        .filter_map(|(_, (entries, _))| entries.last().map(|(k, _)| k.clone()))
        .min()
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassOutcome {
    pub partitions: u64,
    pub records_compared: u64,
    pub records_repaired: u64,
    /// Partitions that could not be merged (too few replicas up): the pass is not clean.
    pub failed_partitions: u64,
    /// The metadata epoch of the map the pass started with.
    pub epoch: u64,
    pub tombstones_purged: u64,
}

/// Runs a pass every `anti_entropy_interval_secs` and when asked.
pub struct AntiEntropy {
    ctx: Arc<NodeContext>,
    cadence: Cadence,
    last: Option<PassOutcome>,
}

impl Worker for AntiEntropy {
    fn name(&self) -> &'static str {
        "anti-entropy"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if !self.cadence.take_due() {
            return WorkerState::Idle;
        }
        match self.ctx.anti_entropy_pass(shutdown).await {
            Ok(o) => {
                tracing::info!(
                    partitions = o.partitions,
                    compared = o.records_compared,
                    repaired = o.records_repaired,
                    failed = o.failed_partitions,
                    tombstones_purged = o.tombstones_purged,
                    epoch = o.epoch,
                    "anti-entropy pass done"
                );
                self.last = Some(o);
                let mut s = self.ctx.stats.lock().expect("repair stats");
                s.anti_entropy_passes += 1;
                s.anti_entropy_repaired += o.records_repaired;
                s.tombstones_purged += o.tombstones_purged;
                if o.failed_partitions == 0 && !shutdown.is_cancelled() {
                    s.anti_entropy_clean_epoch = s.anti_entropy_clean_epoch.max(o.epoch);
                }
            }
            Err(e) => tracing::warn!(error = %e, "anti-entropy pass failed; next one retries"),
        }
        self.cadence.restart();
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.cadence.wait(Some(&self.ctx.anti_entropy_now)).await;
    }

    fn status(&self) -> String {
        match self.last {
            Some(o) => format!(
                "last pass (epoch {}): {} partitions, {} records compared, {} repaired, {} tombstones purged, {} partitions failed",
                o.epoch, o.partitions, o.records_compared, o.records_repaired, o.tombstones_purged, o.failed_partitions
            ),
            None => "no pass yet".into(),
        }
    }
}

impl AntiEntropy {
    pub fn new(ctx: Arc<NodeContext>) -> AntiEntropy {
        let interval = Duration::from_secs(ctx.config.anti_entropy_interval_secs.max(1));
        AntiEntropy {
            ctx,
            cadence: Cadence::new(interval),
            last: None,
        }
    }
}

impl NodeContext {
    /// One pass over the partitions this node owns.
    async fn anti_entropy_pass(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<PassOutcome, RepairError> {
        let mut outcome = PassOutcome {
            epoch: self.client.map().metadata_epoch,
            ..PassOutcome::default()
        };
        let mut partitions = vec![BUCKETS_PARTITION.to_string()];
        let mut buckets = Vec::new();
        // The bucket list as the replicas of the buckets partition hold it, merged on the way.
        self.sync_partition(
            BUCKETS_PARTITION,
            &mut outcome,
            Some(&mut buckets),
            shutdown,
        )
        .await?;
        for b in &buckets {
            partitions.extend([
                b.clone(),
                versions_partition(b),
                tags_partition(b),
                uploads_partition(b),
                parts_partition(b),
            ]);
        }
        for p in partitions.iter().skip(1) {
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = self.sync_partition(p, &mut outcome, None, shutdown).await {
                outcome.failed_partitions += 1;
                tracing::warn!(partition = %p, error = %e, "anti-entropy of a partition failed; the next pass retries");
            }
        }
        Ok(outcome)
    }

    /// Merges the replicas of `partition` if this node owns it. With `keys_seen`, lists the
    /// partition's keys into it whether this node owns it or not (the bucket list).
    async fn sync_partition(
        &self,
        partition: &str,
        outcome: &mut PassOutcome,
        mut keys_seen: Option<&mut Vec<String>>,
        shutdown: &CancellationToken,
    ) -> Result<(), RepairError> {
        // Both sets during a metadata membership change: this pass is what fills the new
        // replicas then.
        let spec = self.quorum_spec(partition);
        let mut up: Vec<NodeId> = spec
            .nodes()
            .into_iter()
            .filter(|&n| self.detector.state(n) == NodeState::Up)
            .collect();
        if !self.merges(&spec, &up) {
            // Not ours to merge; the bucket list is still needed to find our partitions.
            if let Some(out) = keys_seen {
                self.list_keys(partition, &spec, &up, out).await?;
            }
            return Ok(());
        }
        if !spec.met_by(&up) {
            return Err(RepairError::NoQuorum(partition.to_string()));
        }
        outcome.partitions += 1;
        // Tombstones may be purged only when every replica answers: one that is away may hold
        // the deleted record and would bring it back.
        let all_replicas_answered = up.len() == spec.nodes().len();
        let mut cursor: Vec<u8> = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let pages = self.scan_all(partition, &spec, &mut up, &cursor).await?;
            let all_replicas_answered = all_replicas_answered && up.len() == spec.nodes().len();
            let frontier = frontier(&pages);
            for (key, held) in &by_key(&pages, frontier.as_ref()) {
                outcome.records_compared += 1;
                if let Some(out) = keys_seen.as_deref_mut() {
                    out.push(key.clone());
                }
                let merge = Merge {
                    partition,
                    key,
                    held,
                    up: &up,
                };
                self.merge_key(&merge, all_replicas_answered, outcome)
                    .await?;
            }
            match frontier {
                Some(f) => cursor = f.into_bytes(),
                None => return Ok(()),
            }
        }
    }

    /// Whether this node merges a partition whose replicas are `spec`, `up` of them Up.
    /// Normally the owner (first Up replica) merges. While a metadata membership change is in
    /// its joint phase every replica merges: the change may only finish once every partition
    /// has been copied to its new replicas, whatever each node's view of who is up.
    fn merges(&self, spec: &MajorityOf, up: &[NodeId]) -> bool {
        let owner = up.first().copied();
        let joint = spec.sets().len() > 1;
        owner == Some(self.me) || (joint && up.contains(&self.me))
    }

    /// Writes the newest record of a key to every Up replica that does not hold it, and
    /// purges it everywhere if it is an expired tombstone that every replica holds.
    async fn merge_key(
        &self,
        merge: &Merge<'_>,
        all_replicas_answered: bool,
        outcome: &mut PassOutcome,
    ) -> Result<(), RepairError> {
        let Merge {
            partition,
            key,
            held,
            up,
        } = *merge;
        let newest = held
            .iter()
            .map(|(_, v)| v)
            .reduce(|a, b| if b.supersedes(a) { b } else { a })
            .expect("a key seen is held somewhere");
        for &node in up {
            let current = held.iter().find(|(n, _)| *n == node).map(|(_, v)| v);
            if current == Some(newest) {
                continue;
            }
            self.bring_up_to_date(partition, key, newest, node, outcome)
                .await?;
        }
        if all_replicas_answered
            && held.len() == up.len()
            && held.iter().all(|(_, v)| v == newest)
            && self.tombstone_expired(newest)
        {
            self.purge_tombstone(partition, key, newest, up).await?;
            outcome.tombstones_purged += 1;
        }
        Ok(())
    }

    /// Copies `newest` to a replica that misses it or holds an older record.
    async fn bring_up_to_date(
        &self,
        partition: &str,
        key: &str,
        newest: &Versioned,
        node: NodeId,
        outcome: &mut PassOutcome,
    ) -> Result<(), RepairError> {
        let request = Request::MetaPut {
            partition: partition.to_string(),
            key: key.to_string(),
            record: newest.clone(),
            expect: None,
            // A record a majority does not hold yet is made visible by this copy, so it waits
            // while a writer holds the key's lease and decides (as a read's write-back does,
            // ADR 0005); the next pass copies it.
            lease: LeaseCheck::Yield,
        };
        match self.client.call(node, &request, Bytes::new()).await {
            Ok(_) => {
                outcome.records_repaired += 1;
                tracing::debug!(partition, key, %node, "anti-entropy: stale replica brought up to date");
            }
            Err(RpcError::Remote {
                kind: ErrorKind::Leased,
                ..
            }) => {
                tracing::debug!(partition, key, %node, "anti-entropy: key leased by a writer; left for the next pass");
            }
            Err(e) => return Err(RepairError::Write { node, error: e }),
        }
        Ok(())
    }

    /// One page of `partition` after `cursor` from each of `nodes`. A node that does not
    /// answer is dropped from `nodes` (it went down meanwhile); the answers must still make a
    /// quorum of `spec`.
    async fn scan_all(
        &self,
        partition: &str,
        spec: &MajorityOf,
        nodes: &mut Vec<NodeId>,
        cursor: &[u8],
    ) -> Result<Vec<Page>, RepairError> {
        let request = Request::MetaScan {
            partition: partition.to_string(),
            prefix: String::new(),
            start_after: cursor.to_vec(),
            limit: PAGE,
            bodies: true,
        };
        let calls = nodes.iter().map(|&node| {
            let req = &request;
            async move {
                match self.client.call(node, req, Bytes::new()).await {
                    Ok((Response::MetaEntries { entries, more }, _)) => {
                        Some((node, (entries, more)))
                    }
                    other => {
                        tracing::debug!(%node, partition, answer = ?other.err(), "replica did not answer an anti-entropy page");
                        None
                    }
                }
            }
        });
        let pages: Vec<_> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        nodes.retain(|n| pages.iter().any(|(m, _)| m == n));
        if !spec.met_by(nodes) {
            return Err(RepairError::NoQuorum(partition.to_string()));
        }
        Ok(pages)
    }

    /// Every key of `partition` any of `nodes` holds (for the bucket list).
    async fn list_keys(
        &self,
        partition: &str,
        spec: &MajorityOf,
        nodes: &[NodeId],
        out: &mut Vec<String>,
    ) -> Result<(), RepairError> {
        let mut cursor = Vec::new();
        let mut nodes = nodes.to_vec();
        loop {
            let pages = self.scan_all(partition, spec, &mut nodes, &cursor).await?;
            let frontier = frontier(&pages);
            let mut keys: Vec<String> = pages
                .into_iter()
                .flat_map(|(_, (entries, _))| entries.into_iter().map(|(k, _)| k))
                .filter(|k| frontier.as_ref().is_none_or(|f| k <= f))
                .collect();
            keys.sort();
            keys.dedup();
            out.extend(keys);
            match frontier {
                Some(f) => cursor = f.into_bytes(),
                None => return Ok(()),
            }
        }
    }
}

/// The records of each key of `pages` up to `frontier`, with the replica holding each.
fn by_key(pages: &[Page], frontier: Option<&String>) -> ByKey {
    let mut by_key = ByKey::new();
    for (node, (entries, _)) in pages {
        for (k, v) in entries {
            if frontier.is_none_or(|f| k <= f) {
                by_key
                    .entry(k.clone())
                    .or_default()
                    .push((*node, v.clone()));
            }
        }
    }
    by_key
}

/// One key being merged: its partition, the records each Up replica holds, the Up replicas.
#[derive(Clone, Copy)]
struct Merge<'a> {
    partition: &'a str,
    key: &'a str,
    held: &'a [(NodeId, Versioned)],
    up: &'a [NodeId],
}
