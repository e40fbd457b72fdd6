//! Background repair (DESIGN 11): owned, not coordinated, spread over the cluster.
//!
//! - **Scan.** A node scans the metadata records it holds, but only of the partitions it owns
//!   (it is the first Up replica), so each record is looked at once. A record whose data has a
//!   chunk slot that is empty (a PUT that stored fewer than `k + m` chunks) or on a node Down
//!   for longer than `repair.delay_secs` is sent to the version's repair owner: the first Up
//!   node of its placement list. A scan runs when a node passes the repair delay, and every
//!   `scan_interval_secs`.
//! - **Queue.** Each node keeps its repair queue in RocksDB (`queues` family), so a repair
//!   survives a crash of the node doing it. The triggers that do not wait for a scan (a PUT that
//!   met quorum with chunks missing, a read that found a missing or corrupt chunk) send
//!   `RepairEnqueue` to the owner too. One worker per node works through the queue, so no version
//!   is rebuilt twice at once by one owner, and a version has one owner.
//! - **Rebuild.** For each stripe the worker reads every chunk it can (checksums checked), and
//!   rebuilds the missing ones from any `k`: in place when the chunk's node is Up (a lost or
//!   corrupt chunk), on a new node chosen in rendezvous order when the node is Down past the
//!   delay. Then it rewrites the record with the new placement. The rewrite carries the old
//!   record's clock plus one, so a newer client write always wins over it and a repair can never
//!   bring back an overwritten or deleted version.
//! - **Pace.** Rebuilt bytes are paced to `max_rate_mib_per_s`; progress, rate and ETA are in
//!   the node's status.

use crate::config::RepairConfig;
use crate::detector::Detector;
use crate::peers::{NodeClient, NodeState, RpcError};
use crate::store::Store;
use bytes::Bytes;
use dmpstore_common::codec::Codec;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, Hlc, NodeId, StripeIdx};
use dmpstore_common::placement::{partition_replicas, rank};
use dmpstore_common::quorum::quorum;
use dmpstore_common::record::{ErasureData, MetaValue, ObjectData, Versioned};
use dmpstore_common::rpc::{RepairStatus, Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records read per step of a scan.
const SCAN_PAGE: usize = 512;
/// A repair that failed is retried after this long (the queue keeps it).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the worker looks at its queue and the scanner at the failure detector.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("metadata of {0:?} unavailable: fewer than a majority of replicas answered")]
    NoQuorum(String),
    #[error("stripe {stripe} of version {version}: only {have} of the {k} chunks needed are readable now")]
    TooFewChunks {
        version: String,
        stripe: u32,
        have: usize,
        k: usize,
    },
    #[error("codec: {0}")]
    Codec(String),
    #[error("writing a rebuilt chunk to {node}: {error}")]
    Write { node: NodeId, error: RpcError },
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, Default)]
struct Stats {
    repaired_versions: u64,
    repaired_chunks: u64,
    rebuilt_bytes: u64,
    /// (when, bytes) of recent rebuilt chunks, for the rate.
    recent: VecDeque<(Instant, u64)>,
    /// Recent task durations, for the ETA.
    task_secs: VecDeque<f64>,
    /// When the current repair episode began (a node passed the repair delay).
    episode_start: Option<Instant>,
    last_t_fr_ms: Option<u64>,
    queued: u64,
    scan_pending: bool,
}

pub struct Repair {
    me: NodeId,
    store: Arc<Store>,
    client: Arc<NodeClient>,
    detector: Arc<Detector>,
    config: RepairConfig,
    n_meta_replicas: usize,
    stats: Mutex<Stats>,
    /// Queued records that failed recently, and when they may be tried again.
    backoff: Mutex<HashMap<(String, String), Instant>>,
    /// Wakes the worker when something was queued.
    wake: tokio::sync::Notify,
    /// Pacing: when the rebuilt bytes so far may all have been written at the rate limit.
    paced_until: Mutex<Option<Instant>>,
}

impl Repair {
    pub fn new(
        me: NodeId,
        store: Arc<Store>,
        client: Arc<NodeClient>,
        detector: Arc<Detector>,
        config: RepairConfig,
        parity_chunks: u8,
    ) -> Repair {
        let n_meta_replicas = (2 * usize::from(parity_chunks) + 1).min(client.map().len());
        Repair {
            me,
            store,
            client,
            detector,
            config,
            n_meta_replicas,
            stats: Mutex::new(Stats::default()),
            backoff: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            paced_until: Mutex::new(None),
        }
    }

    fn delay(&self) -> Duration {
        Duration::from_secs(self.config.delay_secs)
    }

    /// Nodes Down for longer than the repair delay: their chunks are rebuilt elsewhere.
    fn dead(&self) -> HashSet<NodeId> {
        self.client
            .map()
            .nodes()
            .map(|n| n.id)
            .filter(|&id| {
                self.detector
                    .down_for(id)
                    .is_some_and(|d| d >= self.delay())
            })
            .collect()
    }

    /// Queues a record for repair on this node (the `RepairEnqueue` RPC and local triggers).
    pub fn enqueue(&self, partition: &str, key: &str) -> Result<(), RepairError> {
        self.store.repair_push(partition, key)?;
        self.wake.notify_one();
        Ok(())
    }

    pub fn status(&self) -> RepairStatus {
        let queued = self
            .store
            .repair_list(100_000)
            .map_or(0, |q| q.len() as u64);
        let mut s = self.stats.lock().expect("repair stats");
        s.queued = queued;
        let window = Duration::from_secs(10);
        while s.recent.front().is_some_and(|(t, _)| t.elapsed() > window) {
            s.recent.pop_front();
        }
        let recent_bytes: u64 = s.recent.iter().map(|(_, b)| b).sum();
        let rate = recent_bytes / window.as_secs();
        let avg_task = if s.task_secs.is_empty() {
            None
        } else {
            Some(s.task_secs.iter().sum::<f64>() / s.task_secs.len() as f64)
        };
        RepairStatus {
            queued,
            repaired_versions: s.repaired_versions,
            repaired_chunks: s.repaired_chunks,
            rebuilt_bytes: s.rebuilt_bytes,
            rate_bytes_per_s: rate,
            eta_s: avg_task
                .filter(|_| queued > 0)
                .map(|t| (t * queued as f64).ceil() as u64),
            last_t_fd_ms: self.detector.last_t_fd_ms(),
            last_t_fr_ms: s.last_t_fr_ms,
            repair_delay_ms: self.config.delay_secs * 1000,
            dead: {
                let mut d: Vec<NodeId> = self.dead().into_iter().collect();
                d.sort();
                d
            },
            scan_pending: s.scan_pending,
        }
    }

    /// Scans on failures past the delay and on schedule, until `shutdown`.
    pub async fn run_scanner(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scanned_for: HashSet<NodeId> = HashSet::new();
        let mut last_scan = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let dead = self.dead();
            let new_failure = dead.iter().any(|n| !scanned_for.contains(n));
            let scheduled =
                last_scan.elapsed() >= Duration::from_secs(self.config.scan_interval_secs);
            if !new_failure && !scheduled {
                scanned_for.retain(|n| dead.contains(n));
                continue;
            }
            if new_failure {
                let mut s = self.stats.lock().expect("repair stats");
                s.episode_start.get_or_insert_with(Instant::now);
                s.scan_pending = true;
                tracing::info!(dead = ?dead, "nodes down past the repair delay: scanning for versions to rebuild");
            }
            match self.scan(&dead, &shutdown).await {
                Ok(found) => {
                    tracing::info!(found, "repair scan done");
                    scanned_for = dead;
                    last_scan = Instant::now();
                    self.stats.lock().expect("repair stats").scan_pending = false;
                    self.wake.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "repair scan failed; retrying"),
            }
        }
    }

    /// One pass over the records of the partitions this node owns. Returns how many records
    /// were sent for repair.
    async fn scan(
        &self,
        dead: &HashSet<NodeId>,
        shutdown: &CancellationToken,
    ) -> Result<u64, RepairError> {
        let mut after = Vec::new();
        let mut found = 0u64;
        let mut owned: HashMap<String, bool> = HashMap::new();
        loop {
            if shutdown.is_cancelled() {
                return Ok(found);
            }
            let store = self.store.clone();
            let (page, next) =
                tokio::task::spawn_blocking(move || store.meta_all(&after, SCAN_PAGE))
                    .await
                    .map_err(|e| RepairError::Codec(e.to_string()))??;
            for (partition, key, record) in page {
                let is_owner = *owned
                    .entry(partition.clone())
                    .or_insert_with(|| self.owns_partition(&partition));
                if !is_owner {
                    continue;
                }
                let Ok(value) = MetaValue::decode(&record.value) else {
                    continue;
                };
                let pieces = erasure_pieces(&value);
                if !pieces.iter().any(|e| {
                    e.placement
                        .iter()
                        .any(|s| s.is_none_or(|n| dead.contains(&n)))
                }) {
                    continue;
                }
                found += 1;
                let owner = pieces
                    .first()
                    .and_then(|e| self.first_up(&e.placement))
                    .unwrap_or(self.me);
                self.send_to_owner(owner, &partition, &key).await?;
            }
            match next {
                Some(n) => after = n,
                None => return Ok(found),
            }
        }
    }

    /// Whether this node is the first Up replica of the partition.
    fn owns_partition(&self, partition: &str) -> bool {
        let replicas = partition_replicas(self.client.map(), partition, self.n_meta_replicas);
        replicas
            .into_iter()
            .find(|&n| self.detector.state(n) == NodeState::Up)
            == Some(self.me)
    }

    fn first_up(&self, placement: &[Option<NodeId>]) -> Option<NodeId> {
        placement
            .iter()
            .flatten()
            .copied()
            .find(|&n| self.detector.state(n) == NodeState::Up)
    }

    async fn send_to_owner(
        &self,
        owner: NodeId,
        partition: &str,
        key: &str,
    ) -> Result<(), RepairError> {
        if owner != self.me {
            let request = Request::RepairEnqueue {
                partition: partition.to_string(),
                key: key.to_string(),
            };
            match self.client.call(owner, &request, Bytes::new()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::debug!(%owner, error = %e, "repair owner unreachable; repairing here")
                }
            }
        }
        self.enqueue(partition, key)
    }

    /// Works through the queue until `shutdown`.
    pub async fn run_worker(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let store = self.store.clone();
            let queue = tokio::task::spawn_blocking(move || store.repair_list(64))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let now = Instant::now();
            let ready: Vec<(String, String)> = {
                let mut backoff = self.backoff.lock().expect("backoff");
                backoff.retain(|_, until| *until > now);
                queue
                    .iter()
                    .filter(|t| !backoff.contains_key(*t))
                    .cloned()
                    .collect()
            };
            if queue.is_empty() {
                self.episode_over();
            }
            if ready.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            for (partition, key) in ready {
                if shutdown.is_cancelled() {
                    return;
                }
                let started = Instant::now();
                match self.repair_record(&partition, &key).await {
                    Ok(()) => {
                        if let Err(e) = self.store.repair_remove(&partition, &key) {
                            tracing::warn!(error = %e, "could not dequeue a finished repair");
                        }
                        let mut s = self.stats.lock().expect("repair stats");
                        s.task_secs.push_back(started.elapsed().as_secs_f64());
                        if s.task_secs.len() > 64 {
                            s.task_secs.pop_front();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition, key, error = %e, "repair failed; will retry");
                        self.backoff
                            .lock()
                            .expect("backoff")
                            .insert((partition, key), Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
    }

    /// The queue ran empty: if a repair episode was running, its rebuild time is known now.
    fn episode_over(&self) {
        let mut s = self.stats.lock().expect("repair stats");
        if let Some(start) = s.episode_start {
            if !s.scan_pending {
                let t_fr = start.elapsed().as_millis() as u64;
                s.last_t_fr_ms = Some(t_fr);
                s.episode_start = None;
                tracing::info!(t_fr_ms = t_fr, "repair queue empty: redundancy restored");
            }
        }
    }

    /// Repairs every erasure-coded piece a record references and rewrites the record if a
    /// placement changed.
    async fn repair_record(&self, partition: &str, key: &str) -> Result<(), RepairError> {
        let Some(current) = self.meta_get(partition, key).await? else {
            return Ok(()); // gone: nothing to repair
        };
        let Ok(mut value) = MetaValue::decode(&current.value) else {
            return Ok(());
        };
        let dead = self.dead();
        let mut changed = false;
        let mut rebuilt = 0u64;
        for (piece, size_bytes) in erasure_pieces_mut(&mut value) {
            let (moved, chunks) = self.repair_piece(piece, size_bytes, &dead).await?;
            changed |= moved;
            rebuilt += chunks;
        }
        if changed {
            // The old clock plus one: newer than the record repaired, older than any write a
            // client makes after it, so a repair never overrides a client's write.
            let record = Versioned {
                hlc: Hlc(current.hlc.0 + 1),
                value: value.encode(),
            };
            self.meta_put(partition, key, record).await?;
        }
        if changed || rebuilt > 0 {
            let mut s = self.stats.lock().expect("repair stats");
            s.repaired_versions += 1;
            tracing::info!(
                partition,
                key,
                chunks = rebuilt,
                moved = changed,
                "version repaired"
            );
        }
        Ok(())
    }

    /// Rebuilds the missing chunks of one erasure-coded piece, stripe by stripe. Returns
    /// whether the placement changed, and how many chunks were written.
    async fn repair_piece(
        &self,
        piece: &mut ErasureData,
        size_bytes: u64,
        dead: &HashSet<NodeId>,
    ) -> Result<(bool, u64), RepairError> {
        let layout = piece.layout;
        let n = layout.n_chunks();
        let k = usize::from(layout.k);
        let codec = Codec::new(layout).map_err(|e| RepairError::Codec(e.to_string()))?;
        // Where each slot's chunks go: a new node for empty slots and dead nodes.
        let mut target: Vec<Option<NodeId>> = piece.placement.clone();
        let mut taken: HashSet<NodeId> = piece.placement.iter().flatten().copied().collect();
        let mut candidates = rank(self.client.map(), &piece.version.0)
            .into_iter()
            .map(|n| n.id)
            .filter(|id| self.detector.state(*id) == NodeState::Up);
        let mut moved = false;
        for slot in target.iter_mut() {
            if slot.is_none_or(|node| dead.contains(&node)) {
                let next = candidates.by_ref().find(|id| !taken.contains(id));
                if let Some(id) = next {
                    taken.insert(id);
                    moved = true;
                }
                *slot = next.or(*slot);
            }
        }
        let mut written = 0u64;
        for s in 0..layout.n_stripes(size_bytes) {
            let stripe_idx = StripeIdx(s);
            let stripe = layout.stripe_range(stripe_idx, size_bytes);
            let chunk_len = layout.chunk_len(stripe.end - stripe.start);
            let reads = (0..n).map(|i| {
                let node = piece.placement[i];
                let version = piece.version;
                async move {
                    let node = node.filter(|n| self.detector.state(*n) != NodeState::Down)?;
                    let key = ChunkKey {
                        version,
                        stripe_idx,
                        chunk_idx: ChunkIdx(i as u8),
                    };
                    match self
                        .client
                        .call(node, &Request::GetChunk { key }, Bytes::new())
                        .await
                    {
                        Ok((Response::Chunk { checksum }, bytes))
                            if bytes.len() == chunk_len
                                && blake3::hash(&bytes).as_bytes() == &checksum =>
                        {
                            Some(bytes)
                        }
                        _ => None,
                    }
                }
            });
            let chunks: Vec<Option<Bytes>> = futures::future::join_all(reads).await;
            // Chunks to write: missing ones whose target can take them (a chunk on a node
            // that is Down but not past the delay waits for it to come back).
            let to_write: Vec<(usize, NodeId)> = (0..n)
                .filter_map(|i| {
                    let node = target[i]?;
                    let missing = chunks[i].is_none() || target[i] != piece.placement[i];
                    (missing && self.detector.state(node) == NodeState::Up).then_some((i, node))
                })
                .collect();
            if to_write.is_empty() {
                continue;
            }
            let have = chunks.iter().filter(|c| c.is_some()).count();
            if have < k {
                return Err(RepairError::TooFewChunks {
                    version: piece.version.to_string(),
                    stripe: s,
                    have,
                    k,
                });
            }
            let all = codec
                .rebuild_chunks(chunks)
                .map_err(|e| RepairError::Codec(e.to_string()))?;
            for (i, node) in to_write {
                let bytes = all[i].clone();
                let key = ChunkKey {
                    version: piece.version,
                    stripe_idx,
                    chunk_idx: ChunkIdx(i as u8),
                };
                let checksum = *blake3::hash(&bytes).as_bytes();
                self.pace(bytes.len() as u64).await;
                self.client
                    .call(node, &Request::PutChunk { key, checksum }, bytes.clone())
                    .await
                    .map_err(|error| RepairError::Write { node, error })?;
                written += 1;
                let mut st = self.stats.lock().expect("repair stats");
                st.repaired_chunks += 1;
                st.rebuilt_bytes += bytes.len() as u64;
                st.recent.push_back((Instant::now(), bytes.len() as u64));
            }
        }
        if moved {
            piece.placement = target;
        }
        Ok((moved, written))
    }

    /// Holds the rebuild to `max_rate_mib_per_s` (a deliberate pacing wait).
    async fn pace(&self, bytes: u64) {
        let per_byte = 1.0 / (self.config.max_rate_mib_per_s as f64 * 1024.0 * 1024.0);
        let cost = Duration::from_secs_f64(bytes as f64 * per_byte);
        let wait_until = {
            let mut until = self.paced_until.lock().expect("pace");
            let now = Instant::now();
            let start = until.filter(|u| *u > now).unwrap_or(now);
            *until = Some(start + cost);
            start
        };
        let now = Instant::now();
        if wait_until > now {
            tokio::time::sleep(wait_until - now).await;
        }
    }

    /// The newest record of `key` among a majority of the partition's replicas.
    async fn meta_get(&self, partition: &str, key: &str) -> Result<Option<Versioned>, RepairError> {
        let replicas = partition_replicas(self.client.map(), partition, self.n_meta_replicas);
        let needed = replicas.len() / 2 + 1;
        let request = Request::MetaGet {
            partition: partition.to_string(),
            key: key.to_string(),
        };
        let calls = replicas
            .iter()
            .map(|&node| {
                let req = &request;
                (node, async move {
                    match self.client.call(node, req, Bytes::new()).await {
                        Ok((Response::MetaValue(v), _)) => Ok(v),
                        Ok(_) => Err("unexpected response".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                })
            })
            .collect();
        let outcome = quorum(calls, needed).await;
        if !outcome.met() {
            return Err(RepairError::NoQuorum(partition.to_string()));
        }
        Ok(outcome
            .successes
            .into_iter()
            .filter_map(|(_, v)| v)
            .reduce(|a, b| if b.supersedes(&a) { b } else { a }))
    }

    async fn meta_put(
        &self,
        partition: &str,
        key: &str,
        record: Versioned,
    ) -> Result<(), RepairError> {
        let replicas = partition_replicas(self.client.map(), partition, self.n_meta_replicas);
        let needed = replicas.len() / 2 + 1;
        let request = Request::MetaPut {
            partition: partition.to_string(),
            key: key.to_string(),
            record,
        };
        let calls = replicas
            .iter()
            .map(|&node| {
                let req = &request;
                (node, async move {
                    self.client
                        .call(node, req, Bytes::new())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        if quorum(calls, needed).await.met() {
            Ok(())
        } else {
            Err(RepairError::NoQuorum(partition.to_string()))
        }
    }
}

/// The erasure-coded pieces a record references (an object's data or parts, or a part).
pub fn erasure_pieces(value: &MetaValue) -> Vec<&ErasureData> {
    match value {
        MetaValue::Object(r) => r.data.erasure_pieces(),
        MetaValue::Part(p) => p.part.data.erasure_pieces(),
        _ => Vec::new(),
    }
}

/// Mutable access to the erasure-coded pieces of a record, each with its size in bytes.
fn erasure_pieces_mut(value: &mut MetaValue) -> Vec<(&mut ErasureData, u64)> {
    fn of(data: &mut ObjectData, size: u64) -> Vec<(&mut ErasureData, u64)> {
        match data {
            ObjectData::Inline(_) => Vec::new(),
            ObjectData::Erasure(e) => vec![(e, size)],
            ObjectData::Multipart(parts) => parts
                .iter_mut()
                .flat_map(|p| of(&mut p.data, p.size_bytes))
                .collect(),
        }
    }
    match value {
        MetaValue::Object(r) => of(&mut r.data, r.size_bytes),
        MetaValue::Part(p) => of(&mut p.part.data, p.part.size_bytes),
        _ => Vec::new(),
    }
}
