//! Anti-entropy between metadata replicas (DESIGN 5): the owner of a partition (its first Up
//! replica) walks the partition on every Up replica at once, page by page in key order, and
//! writes the newest record of each key to the replicas that miss it or hold an older one.
//! Tombstones travel like any record, so a replica that was away cannot bring a deleted key
//! back. Read repair fixes what clients read; this pass fixes what nobody reads.
//!
//! The partitions are the buckets partition and, for each bucket listed there, the bucket's
//! own partitions (objects, versions, tags, uploads, parts).

use super::{Repair, RepairError};
use bytes::Bytes;
use dmpstore_common::ids::NodeId;
use dmpstore_common::record::{
    parts_partition, tags_partition, uploads_partition, versions_partition, Versioned,
    BUCKETS_PARTITION,
};
use dmpstore_common::rpc::{Request, Response};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records asked of each replica per page.
const PAGE: u32 = 256;

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
}

impl Repair {
    /// Runs a pass every `anti_entropy_interval_secs` and when asked, until `shutdown`.
    pub async fn run_anti_entropy(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.config.anti_entropy_interval_secs.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = self.anti_entropy_now.notified() => {}
                () = shutdown.cancelled() => return,
            }
            match self.anti_entropy_pass(&shutdown).await {
                Ok(o) => {
                    tracing::info!(
                        partitions = o.partitions,
                        compared = o.records_compared,
                        repaired = o.records_repaired,
                        failed = o.failed_partitions,
                        epoch = o.epoch,
                        "anti-entropy pass done"
                    );
                    let mut s = self.stats.lock().expect("repair stats");
                    s.anti_entropy_passes += 1;
                    s.anti_entropy_repaired += o.records_repaired;
                    if o.failed_partitions == 0 && !shutdown.is_cancelled() {
                        s.anti_entropy_clean_epoch = s.anti_entropy_clean_epoch.max(o.epoch);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "anti-entropy pass failed; next one retries"),
            }
        }
    }

    pub fn request_anti_entropy(&self) {
        self.anti_entropy_now.notify_one();
    }

    /// One pass over the partitions this node owns.
    pub async fn anti_entropy_pass(
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
        let up: Vec<NodeId> = spec
            .nodes()
            .into_iter()
            .filter(|&n| self.detector.state(n) == super::NodeState::Up)
            .collect();
        // Normally the owner (first Up replica) merges. While a metadata membership change
        // is in its joint phase every replica merges: the change may only finish once every
        // partition has been copied to its new replicas, whatever each node's view of who
        // is up.
        let owner = up.first().copied();
        let joint = spec.sets().len() > 1;
        let mine = owner == Some(self.me) || (joint && up.contains(&self.me));
        if !mine {
            // Not ours to merge; the bucket list is still needed to find our partitions.
            if let Some(out) = keys_seen {
                self.list_keys(partition, &up, out).await?;
            }
            return Ok(());
        }
        if !spec.met_by(&up) {
            return Err(RepairError::NoQuorum(partition.to_string()));
        }
        outcome.partitions += 1;
        let mut cursor: Vec<u8> = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let pages = self.scan_all(partition, &up, &cursor).await?;
            // Keys up to the smallest last key of a replica that has more are complete in
            // this window on every replica.
            let frontier: Option<String> = pages
                .iter()
                .filter(|(_, (_, more))| *more)
                .filter_map(|(_, (entries, _))| entries.last().map(|(k, _)| k.clone()))
                .min();
            let mut by_key: BTreeMap<String, Vec<(NodeId, Versioned)>> = BTreeMap::new();
            for (node, (entries, _)) in &pages {
                for (k, v) in entries {
                    if frontier.as_ref().is_none_or(|f| k <= f) {
                        by_key
                            .entry(k.clone())
                            .or_default()
                            .push((*node, v.clone()));
                    }
                }
            }
            for (key, held) in &by_key {
                outcome.records_compared += 1;
                if let Some(out) = keys_seen.as_deref_mut() {
                    out.push(key.clone());
                }
                let newest = held
                    .iter()
                    .map(|(_, v)| v)
                    .reduce(|a, b| if b.supersedes(a) { b } else { a })
                    .expect("a key seen is held somewhere");
                for &node in &up {
                    let current = held.iter().find(|(n, _)| *n == node).map(|(_, v)| v);
                    if current == Some(newest) {
                        continue;
                    }
                    let request = Request::MetaPut {
                        partition: partition.to_string(),
                        key: key.clone(),
                        record: newest.clone(),
                    };
                    match self.client.call(node, &request, Bytes::new()).await {
                        Ok(_) => {
                            outcome.records_repaired += 1;
                            tracing::debug!(partition, key, %node, "anti-entropy: stale replica brought up to date");
                        }
                        Err(e) => return Err(RepairError::Write { node, error: e }),
                    }
                }
            }
            match frontier {
                Some(f) => cursor = f.into_bytes(),
                None => return Ok(()),
            }
        }
    }

    /// One page of `partition` after `cursor` from each of `nodes` (all must answer).
    #[allow(clippy::type_complexity)]
    async fn scan_all(
        &self,
        partition: &str,
        nodes: &[NodeId],
        cursor: &[u8],
    ) -> Result<Vec<(NodeId, (Vec<(String, Versioned)>, bool))>, RepairError> {
        let request = Request::MetaScan {
            partition: partition.to_string(),
            prefix: String::new(),
            start_after: cursor.to_vec(),
            limit: PAGE,
        };
        let calls = nodes.iter().map(|&node| {
            let req = &request;
            async move {
                match self.client.call(node, req, Bytes::new()).await {
                    Ok((Response::MetaEntries { entries, more }, _)) => Ok((node, (entries, more))),
                    _ => Err(RepairError::NoQuorum(partition.to_string())),
                }
            }
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Every key of `partition` any of `nodes` holds (for the bucket list).
    async fn list_keys(
        &self,
        partition: &str,
        nodes: &[NodeId],
        out: &mut Vec<String>,
    ) -> Result<(), RepairError> {
        let mut cursor = Vec::new();
        loop {
            let pages = self.scan_all(partition, nodes, &cursor).await?;
            let frontier: Option<String> = pages
                .iter()
                .filter(|(_, (_, more))| *more)
                .filter_map(|(_, (entries, _))| entries.last().map(|(k, _)| k.clone()))
                .min();
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
