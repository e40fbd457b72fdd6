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
//! - **Scrub and heal.** Scrub re-reads every local chunk on a schedule and checks its
//!   checksum; a corrupt chunk (found by scrub, or by a read) goes to the node's heal queue and
//!   is rebuilt in place from its siblings, found through the node's index of chunk homes
//!   (layout and placement, recorded with every chunk write), without needing the record.
//! - **Replace.** After a node is replaced by an empty one, `RepairScan` makes every node scan
//!   for records with chunks on it (rebuilt in place) and copy the metadata of the partitions
//!   it owns to it.

mod anti_entropy;
mod orphans;

use crate::config::{RepairConfig, ScrubConfig};
use crate::detector::Detector;
use crate::meta_client::{MetaClient, MetaError};
use crate::peers::{NodeClient, NodeState, RpcError};
use crate::store::{DropIf, PendingDrop, Store};
use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::codec::Codec;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, NodeId, StripeIdx, VersionId};
use dmpstore_common::quorum::MajorityOf;
use dmpstore_common::record::{
    key_of_version_sort_key, versions_of_key_prefix, versions_partition, ErasureData, MetaValue,
    ObjectData, Versioned, VERSIONS_SUFFIX,
};
use dmpstore_common::redundancy::{classify, Slot};
use dmpstore_common::rpc::{
    ChunkHome, DegradedCount, DegradedReason, LeaseCheck, ParkedRepairs, RecordRef, RepairStatus,
    Request, Response, UndecodableRecords,
};
use dmpstore_common::targets;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records read per step of a scan.
const SCAN_PAGE: usize = 512;
/// Queued repairs read per step of the worker.
const QUEUE_PAGE: usize = 64;
/// Parked versions kept by name for status.
const MAX_PARKED: usize = 10_000;
/// Chunks verified per step of a scrub.
const SCRUB_PAGE: usize = 64;
/// A repair that failed is retried after this long (the queue keeps it).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the worker looks at its queue and the scanner at the failure detector.
const POLL: Duration = Duration::from_millis(200);
/// A scan for a new failure or drain is followed by one more this much later: a PUT that
/// wrote its chunks before the change and committed after the scan passed its key is found
/// then (later stripes of a PUT in flight are refused or fail, which queues it at once).
const FOLLOW_UP_SCAN: Duration = Duration::from_secs(3);
/// The census of degraded versions is refreshed this often (or at twice a scan's duration,
/// whichever is longer) while anything is degraded or a node is Down.
const CENSUS_INTERVAL: Duration = Duration::from_secs(3);
/// How often garbage collection looks for moved chunks past their grace, and how many at once.
const GC_POLL: Duration = Duration::from_secs(1);
const GC_PAGE: usize = 256;
/// Versions of one key looked at when checking whether a moved chunk is still referenced.
const GC_SIBLING_SCAN_LIMIT: u32 = 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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
    #[error("metadata: {0}")]
    Meta(#[from] crate::meta_client::MetaError),
    #[error("node {0} is down but not past the repair delay here yet")]
    Waiting(NodeId),
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
    /// The scan for the current episode's failure is done (the follow-up may still be due).
    episode_scanned: bool,
    healed_chunks: u64,
    scrub_passes: u64,
    scrubbed_chunks: u64,
    dropped_moved_chunks: u64,
    anti_entropy_passes: u64,
    anti_entropy_repaired: u64,
    anti_entropy_clean_epoch: u64,
    orphan_chunks_dropped: u64,
    orphan_passes: u64,
    tombstones_purged: u64,
    /// The last census of degraded versions in the partitions this node owns.
    degraded: DegradedCount,
    /// Parked versions not kept by name (beyond `MAX_PARKED`).
    parked_overflow: u64,
}

/// Holds a stream of work to a byte rate (a deliberate pacing wait).
struct Pacer {
    per_byte: f64,
    until: Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(mib_per_s: u64) -> Pacer {
        Pacer {
            per_byte: 1.0 / (mib_per_s.max(1) as f64 * 1024.0 * 1024.0),
            until: Mutex::new(None),
        }
    }

    async fn pace(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 * self.per_byte);
        let start = {
            let mut until = self.until.lock().expect("pacer");
            let now = Instant::now();
            let start = until.filter(|u| *u > now).unwrap_or(now);
            *until = Some(start + cost);
            start
        };
        let now = Instant::now();
        if start > now {
            tokio::time::sleep(start - now).await;
        }
    }
}

pub struct Repair {
    me: NodeId,
    store: Arc<Store>,
    client: Arc<NodeClient>,
    detector: Arc<Detector>,
    config: RepairConfig,
    scrub_config: ScrubConfig,
    /// The metadata quorum client (the same one the gateways use).
    meta: MetaClient,
    stats: Mutex<Stats>,
    /// Queued records that failed recently, and when they may be tried again.
    backoff: Mutex<HashMap<(String, String), Instant>>,
    /// Versions taken out of the queue because they cannot be repaired now: why, and the
    /// nodes that were down then.
    #[allow(clippy::type_complexity)]
    parked: Mutex<
        std::collections::BTreeMap<(String, String), (String, std::collections::BTreeSet<NodeId>)>,
    >,
    /// Wakes the worker when something was queued.
    wake: tokio::sync::Notify,
    /// Starts a scrub pass now.
    scrub_now: tokio::sync::Notify,
    /// Starts an anti-entropy pass now.
    anti_entropy_now: tokio::sync::Notify,
    /// Nodes replaced by empty ones: scan for everything they should hold.
    forced: Mutex<Vec<NodeId>>,
    /// The dead nodes the last completed scan covered.
    scanned_for: Mutex<HashSet<NodeId>>,
    /// Nodes being drained: treated like nodes dead past the delay.
    draining: Mutex<HashSet<NodeId>>,
    /// This node is draining and its last drain sweep found no chunk left to move.
    drain_clean: std::sync::atomic::AtomicBool,
    /// The repair queue ran empty after work: take a census now (redundancy may be restored).
    census_requested: std::sync::atomic::AtomicBool,
    rebuild_pace: Pacer,
    scrub_pace: Pacer,
}

impl Repair {
    pub fn new(
        me: NodeId,
        store: Arc<Store>,
        client: Arc<NodeClient>,
        detector: Arc<Detector>,
        config: RepairConfig,
        scrub_config: ScrubConfig,
        meta: MetaClient,
    ) -> Repair {
        let draining: HashSet<NodeId> = store
            .draining()
            .unwrap_or_default()
            .into_iter()
            .map(NodeId)
            .collect();
        Repair {
            me,
            store,
            client,
            detector,
            meta,
            stats: Mutex::new(Stats::default()),
            backoff: Mutex::new(HashMap::new()),
            parked: Mutex::new(std::collections::BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
            scrub_now: tokio::sync::Notify::new(),
            anti_entropy_now: tokio::sync::Notify::new(),
            forced: Mutex::new(Vec::new()),
            scanned_for: Mutex::new(HashSet::new()),
            draining: Mutex::new(draining),
            drain_clean: std::sync::atomic::AtomicBool::new(false),
            census_requested: std::sync::atomic::AtomicBool::new(false),
            rebuild_pace: Pacer::new(config.max_rate_mib_per_s),
            scrub_pace: Pacer::new(scrub_config.max_rate_mib_per_s),
            config,
            scrub_config,
        }
    }

    fn delay(&self) -> Duration {
        Duration::from_secs(self.config.delay_secs)
    }

    /// Nodes Down for longer than the repair delay, or being drained: their chunks are
    /// rebuilt elsewhere. (A node no longer in the map at all counts as dead wherever a
    /// placement names it: see `repair_piece`.)
    fn dead(&self) -> HashSet<NodeId> {
        let draining = self.draining.lock().expect("draining").clone();
        self.client
            .map()
            .nodes()
            .map(|n| n.id)
            .filter(|&id| {
                draining.contains(&id)
                    || self
                        .detector
                        .down_for(id)
                        .is_some_and(|d| d >= self.delay())
            })
            .collect()
    }

    pub fn draining(&self) -> Vec<NodeId> {
        let mut d: Vec<NodeId> = self
            .draining
            .lock()
            .expect("draining")
            .iter()
            .copied()
            .collect();
        d.sort();
        d
    }

    /// Starts or stops draining `node` (persisted, so a restart keeps draining).
    pub fn set_draining(&self, node: NodeId, on: bool) -> Result<(), crate::store::StoreError> {
        let mut d = self.draining.lock().expect("draining");
        if on {
            if node == self.me && !d.contains(&node) {
                self.drain_clean
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            d.insert(node);
        } else {
            d.remove(&node);
        }
        let ids: Vec<u32> = d.iter().map(|n| n.0).collect();
        self.store.set_draining(&ids)?;
        tracing::info!(%node, on, "drain changed");
        Ok(())
    }

    /// Queues a record for repair on this node (the `RepairEnqueue` RPC and local triggers).
    pub fn enqueue(&self, partition: &str, key: &str) -> Result<(), RepairError> {
        {
            // A parked version stays parked while the nodes that are down are the same: a
            // retry could only fail the same way. Any change (a node back, another down)
            // gives it another try.
            let mut parked = self.parked.lock().expect("parked");
            let id = (partition.to_string(), key.to_string());
            match parked.get(&id) {
                Some((_, down)) if *down == self.down_nodes() => return Ok(()),
                Some(_) => {
                    parked.remove(&id);
                }
                None => {}
            }
        }
        self.store.repair_push(partition, key)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a chunk of this node that was found corrupt, to rebuild from its siblings.
    pub fn heal(&self, key: &ChunkKey) -> Result<(), RepairError> {
        self.store.heal_push(key)?;
        self.wake.notify_one();
        Ok(())
    }

    pub fn request_scrub(&self) {
        self.scrub_now.notify_one();
    }

    /// `node` was replaced by an empty one: scan for what it should hold.
    pub fn request_scan_for(&self, node: NodeId) {
        self.forced.lock().expect("forced").push(node);
        self.stats.lock().expect("repair stats").scan_pending = true;
    }

    pub fn status(&self) -> RepairStatus {
        let queued = self
            .store
            .repair_list(100_000)
            .map_or(0, |q| q.len() as u64)
            + self.store.heal_list(100_000).map_or(0, |q| q.len() as u64);
        let drops_pending = self.store.drops_scheduled(100_000).map_or(0, |n| n as u64);
        let mut dead: Vec<NodeId> = self.dead().into_iter().collect();
        dead.sort();
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
            dead: dead.clone(),
            draining: self.draining(),
            // Also pending: a failure past the delay that the scanner has not picked up yet,
            // and this node's own drain until a sweep found nothing left to move.
            scan_pending: s.scan_pending
                || {
                    let scanned_for = self.scanned_for.lock().expect("scanned");
                    dead.iter().any(|n| !scanned_for.contains(n))
                }
                || (dead.contains(&self.me)
                    && !self.drain_clean.load(std::sync::atomic::Ordering::Relaxed)),
            healed_chunks: s.healed_chunks,
            scrub_passes: s.scrub_passes,
            scrubbed_chunks: s.scrubbed_chunks,
            dropped_moved_chunks: s.dropped_moved_chunks,
            drops_pending,
            anti_entropy_passes: s.anti_entropy_passes,
            anti_entropy_repaired: s.anti_entropy_repaired,
            anti_entropy_clean_epoch: s.anti_entropy_clean_epoch,
            tombstones_purged: s.tombstones_purged,
            orphan_chunks_dropped: s.orphan_chunks_dropped,
            orphan_passes: s.orphan_passes,
            map_version: self.client.map().version,
            degraded: s.degraded.clone(),
            failures: self.detector.failures(),
            undecodable: {
                let u = self.store.undecodable();
                UndecodableRecords {
                    count: u.count,
                    first: u.first,
                }
            },
            parked: {
                let parked = self.parked.lock().expect("parked");
                ParkedRepairs {
                    count: parked.len() as u64 + s.parked_overflow,
                    first: parked
                        .iter()
                        .take(5)
                        .map(|((p, k), (why, _))| (format!("{p}/{k}"), why.clone()))
                        .collect(),
                }
            },
        }
    }

    /// Scans on failures past the delay and on schedule, until `shutdown`.
    pub async fn run_scanner(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_scan = Instant::now();
        let mut was_down: HashSet<NodeId> = HashSet::new();
        let mut follow_up: Option<Instant> = None;
        let mut scanned_map = self.client.map().version;
        let mut last_scan_took = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let dead = self.dead();
            if dead.len() * 2 >= self.client.map().len() {
                // This node sees half the cluster or more down: most likely it is the one cut
                // off. Rebuilding from here could only fail; wait for the network.
                continue;
            }
            let new_failure = {
                let scanned_for = self.scanned_for.lock().expect("scanned");
                dead.iter().any(|n| !scanned_for.contains(n))
            };
            let scheduled =
                last_scan.elapsed() >= Duration::from_secs(self.config.scan_interval_secs);
            // A node that was Down and answers again can take the chunks that writes made
            // while it was away had to leave out.
            let down_now: HashSet<NodeId> = self
                .client
                .map()
                .nodes()
                .map(|n| n.id)
                .filter(|&n| self.detector.state(n) == NodeState::Down)
                .collect();
            let recovered = was_down.iter().any(|n| !down_now.contains(n));
            // A node went Down: count what is degraded now (waiting for the repair delay).
            let went_down = down_now.iter().any(|n| !was_down.contains(n));
            was_down = down_now;
            // While anything is degraded or Down, the census is kept fresh (at most every
            // CENSUS_INTERVAL, or twice as long as a scan takes), so that status can say when
            // redundancy is restored.
            let census_due = self
                .census_requested
                .swap(false, std::sync::atomic::Ordering::Relaxed)
                || went_down
                || ((self.stats.lock().expect("repair stats").degraded.versions > 0
                    || !was_down.is_empty())
                    && last_scan.elapsed() >= CENSUS_INTERVAL.max(last_scan_took * 2));
            let forced: Vec<NodeId> = std::mem::take(&mut *self.forced.lock().expect("forced"));
            let follow_up_due = follow_up.is_some_and(|t| Instant::now() >= t);
            // A new cluster map (a node was added): move the chunks whose placement moved.
            let map_version = self.client.map().version;
            let map_changed = map_version != scanned_map;
            if !new_failure
                && !scheduled
                && !recovered
                && !follow_up_due
                && !map_changed
                && !census_due
                && forced.is_empty()
            {
                self.scanned_for
                    .lock()
                    .expect("scanned")
                    .retain(|n| dead.contains(n));
                continue;
            }
            if new_failure {
                let mut s = self.stats.lock().expect("repair stats");
                s.episode_start.get_or_insert_with(Instant::now);
                s.scan_pending = true;
                s.episode_scanned = false;
                tracing::info!(dead = ?dead, "nodes down past the repair delay: scanning for versions to rebuild");
            }
            if !forced.is_empty() {
                tracing::info!(nodes = ?forced, "scanning for what replaced nodes should hold");
            }
            if map_changed {
                tracing::info!(
                    map_version,
                    "cluster map changed: scanning for chunks to rebalance"
                );
                self.stats.lock().expect("repair stats").scan_pending = true;
            }
            let started = Instant::now();
            match self.scan(&dead, &forced, &shutdown).await {
                Ok((found, census)) => {
                    // Logged when something happened, not on every census while a node is
                    // down (those run every few seconds).
                    let degraded_before =
                        self.stats.lock().expect("repair stats").degraded.versions;
                    if found > 0 || census.versions != degraded_before || new_failure || recovered {
                        tracing::info!(found, degraded = census.versions, "repair scan done");
                    }
                    *self.scanned_for.lock().expect("scanned") = dead;
                    last_scan = Instant::now();
                    last_scan_took = started.elapsed();
                    scanned_map = map_version;
                    if new_failure {
                        // Still pending until the follow-up scan is done.
                        follow_up = Some(Instant::now() + FOLLOW_UP_SCAN);
                        self.stats.lock().expect("repair stats").episode_scanned = true;
                    } else if follow_up_due {
                        follow_up = None;
                        self.stats.lock().expect("repair stats").scan_pending = false;
                    } else if follow_up.is_none() {
                        self.stats.lock().expect("repair stats").scan_pending = false;
                    }
                    self.census_taken(census);
                    self.wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "repair scan failed; retrying");
                    self.forced.lock().expect("forced").extend(forced);
                }
            }
        }
    }

    /// One pass over the records of the partitions this node owns. Returns how many records
    /// were sent for repair, and the census of the versions below full redundancy.
    async fn scan(
        &self,
        dead: &HashSet<NodeId>,
        forced: &[NodeId],
        shutdown: &CancellationToken,
    ) -> Result<(u64, DegradedCount), RepairError> {
        let mut after = Vec::new();
        let mut found = 0u64;
        let mut census = DegradedCount::default();
        let mut owned: HashMap<String, bool> = HashMap::new();
        let map = self.client.map();
        loop {
            if shutdown.is_cancelled() {
                return Ok((found, census));
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
                self.copy_to_replaced(forced, &partition, &key, &record)
                    .await;
                let value = match MetaValue::decode(&record.value) {
                    Ok(value) => value,
                    Err(e) => {
                        self.store.skip_undecodable(&partition, &key, &e);
                        continue;
                    }
                };
                let pieces = erasure_pieces(&value);
                let verdict = self.degraded(&map, &partition, &value, dead);
                if let Some((missing, reason, _)) = verdict {
                    census.add(record_bytes(&value), missing, reason);
                }
                if verdict.is_some_and(|(_, reason, spares)| {
                    reason == DegradedReason::Unrepairable
                        || (reason == DegradedReason::NoSpareNode && spares == 0)
                }) {
                    // Nothing repair can do now; the census reports it, and the scan after
                    // a node comes back or is added queues it.
                    continue;
                }
                let needs = |s: &Option<NodeId>| {
                    s.is_none_or(|n| {
                        dead.contains(&n) || forced.contains(&n) || map.get(n).is_none()
                    })
                };
                if !pieces
                    .iter()
                    .any(|e| e.placement.iter().any(needs) || self.misplaced(&map, e, dead))
                {
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
                None => {
                    census.taken_ms = Some(now_ms());
                    return Ok((found, census));
                }
            }
        }
    }

    /// How many chunks the version `value` (a record of `partition`) misses and why, with the
    /// spare nodes of its worst piece; `None` at full redundancy or for records that are not
    /// counted. Each stored version is counted once: from its `#versions` entry when it has a
    /// version id, from the key's current record when it is unversioned or the null version
    /// (a null version that is no longer current is not counted).
    fn degraded(
        &self,
        map: &ClusterMap,
        partition: &str,
        value: &MetaValue,
        dead: &HashSet<NodeId>,
    ) -> Option<(u32, DegradedReason, usize)> {
        let in_versions = partition.ends_with(VERSIONS_SUFFIX);
        let counted = match value {
            MetaValue::Object(r) => in_versions == r.version_id.is_some(),
            MetaValue::Part(_) => true,
            _ => false,
        };
        if !counted {
            return None;
        }
        erasure_pieces(value)
            .into_iter()
            .filter_map(|piece| {
                let slots: Vec<Slot> = piece
                    .placement
                    .iter()
                    .map(|slot| match *slot {
                        None => Slot::Empty,
                        Some(n) if map.get(n).is_none() => Slot::Gone,
                        Some(n) if self.detector.state(n) != NodeState::Down => Slot::Held,
                        Some(n) if dead.contains(&n) => Slot::Dead,
                        Some(_) => Slot::DownWaiting,
                    })
                    .collect();
                let spares = map
                    .nodes()
                    .filter(|n| {
                        self.detector.state(n.id) == NodeState::Up
                            && !dead.contains(&n.id)
                            && !piece.placement.contains(&Some(n.id))
                    })
                    .count();
                classify(&slots, usize::from(piece.layout.k), spares)
                    .map(|(missing, reason)| (missing, reason, spares))
            })
            .max_by_key(|(missing, reason, _)| (*reason, *missing))
    }

    /// Keeps a census, and ends a repair episode once nothing is degraded any more: only
    /// then is redundancy restored and T_FR known.
    fn census_taken(&self, census: DegradedCount) {
        let mut s = self.stats.lock().expect("repair stats");
        let restored = census.versions == 0;
        s.degraded = census;
        if let (true, true, Some(start)) = (restored, s.episode_scanned, s.episode_start) {
            let t_fr = start.elapsed().as_millis() as u64;
            s.last_t_fr_ms = Some(t_fr);
            s.episode_start = None;
            self.detector
                .record_restored(t_fr, Duration::from_secs(self.config.delay_secs));
            tracing::info!(
                t_fr_ms = t_fr,
                "no version below full redundancy: redundancy restored"
            );
        }
    }

    /// Anti-entropy for a replaced node: the partition owner copies its record to replaced
    /// nodes that are replicas of the partition (newest wins on the node, so this is safe).
    async fn copy_to_replaced(
        &self,
        forced: &[NodeId],
        partition: &str,
        key: &str,
        record: &Versioned,
    ) {
        if forced.is_empty() {
            return;
        }
        let replicas = self.quorum_spec(partition).nodes();
        for &node in forced
            .iter()
            .filter(|n| replicas.contains(n) && **n != self.me)
        {
            let request = Request::MetaPut {
                partition: partition.to_string(),
                key: key.to_string(),
                record: record.clone(),
                expect: None,
                // Yields to a writer's lease like every copy that can make a record visible.
                lease: LeaseCheck::Yield,
            };
            if let Err(e) = self.client.call(node, &request, Bytes::new()).await {
                tracing::debug!(%node, error = %e, "copying metadata to a replaced node failed");
            }
        }
    }

    /// The replicas of a partition and what makes a quorum of them (both sets during a
    /// metadata membership change).
    fn quorum_spec(&self, partition: &str) -> MajorityOf {
        self.meta.replicas(partition)
    }

    /// Whether this node is the first Up replica of the partition.
    fn owns_partition(&self, partition: &str) -> bool {
        self.quorum_spec(partition)
            .nodes()
            .into_iter()
            .find(|&n| self.detector.state(n) == NodeState::Up)
            == Some(self.me)
    }

    /// Whether a chunk of the version should move to a node placement picks now (rebalance,
    /// DESIGN 12): [`targets::misplaced`] with this node's view of who is dead and who is up.
    fn misplaced(&self, map: &ClusterMap, piece: &ErasureData, dead: &HashSet<NodeId>) -> bool {
        targets::misplaced(
            map,
            piece,
            |n| !dead.contains(&n),
            |n| self.detector.state(n) == NodeState::Up,
        )
    }

    fn first_up(&self, placement: &[Option<NodeId>]) -> Option<NodeId> {
        targets::owner(placement, |n| self.detector.state(n) == NodeState::Up)
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
        let mut worked = true;
        // Where the next page of the queue starts: the worker pages through all of it, so
        // entries that keep failing (in backoff) never hold up the ones behind them.
        let mut cursor: Option<(String, String)> = None;
        loop {
            self.heal_queued(&shutdown).await;
            let store = self.store.clone();
            let after = cursor.clone();
            let from_start = after.is_none();
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
            cursor = if page.len() == QUEUE_PAGE {
                page.last().cloned()
            } else {
                None
            };
            if page.is_empty() && !from_start {
                continue; // the end of the queue: start over from its beginning
            }
            let queue = page;
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
            let heals_waiting = self.store.heal_list(1).is_ok_and(|h| !h.is_empty());
            if queue.is_empty() && !heals_waiting && worked {
                // The queue ran dry: the census says whether redundancy is restored.
                worked = false;
                self.census_requested
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if ready.is_empty() {
                if cursor.is_some() {
                    continue; // more of the queue to look at
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            worked = true;
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
                        self.parked
                            .lock()
                            .expect("parked")
                            .remove(&(partition.clone(), key.clone()));
                        let mut s = self.stats.lock().expect("repair stats");
                        s.task_secs.push_back(started.elapsed().as_secs_f64());
                        if s.task_secs.len() > 64 {
                            s.task_secs.pop_front();
                        }
                    }
                    Err(
                        e @ (RepairError::TooFewChunks { .. }
                        | RepairError::Meta(MetaError::RewritesExhausted { .. })),
                    ) => {
                        // Cannot be rebuilt now: parked with its reason, out of the queue. The
                        // scan after a node comes back (or is added) queues it again.
                        tracing::warn!(partition, key, error = %e, "version cannot be repaired now: parked");
                        if let Err(e) = self.store.repair_remove(&partition, &key) {
                            tracing::warn!(error = %e, "could not dequeue a parked repair");
                        }
                        self.park(&partition, &key, e.to_string());
                    }
                    Err(e) => {
                        if matches!(e, RepairError::Waiting(_)) {
                            tracing::debug!(partition, key, error = %e, "repair waits");
                        } else {
                            tracing::warn!(partition, key, error = %e, "repair failed; will retry");
                        }
                        self.backoff
                            .lock()
                            .expect("backoff")
                            .insert((partition, key), Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
    }

    /// Keeps a version that cannot be repaired now, with why, for status (bounded: beyond
    /// [`MAX_PARKED`] only the count grows).
    fn park(&self, partition: &str, key: &str, reason: String) {
        let down = self.down_nodes();
        let mut parked = self.parked.lock().expect("parked");
        if parked.len() < MAX_PARKED {
            parked.insert((partition.to_string(), key.to_string()), (reason, down));
        } else {
            self.stats.lock().expect("repair stats").parked_overflow += 1;
        }
    }

    /// The nodes of the map that this node's detector sees Down.
    fn down_nodes(&self) -> std::collections::BTreeSet<NodeId> {
        self.client
            .map()
            .nodes()
            .map(|n| n.id)
            .filter(|&n| self.detector.state(n) == NodeState::Down)
            .collect()
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
        let mut vacated = Vec::new();
        let record_ref = RecordRef {
            partition: partition.to_string(),
            key: key.to_string(),
        };
        for (piece, size_bytes) in erasure_pieces_mut(&mut value) {
            let (moved, chunks, left) = self
                .repair_piece(piece, size_bytes, &dead, &record_ref)
                .await?;
            changed |= moved;
            rebuilt += chunks;
            vacated.extend(
                left.into_iter()
                    .map(|(idx, node)| (piece.version, idx, node)),
            );
        }
        if changed {
            // A compare-and-set one stamp above the record repaired: it lands only where no
            // client wrote the key meanwhile, so a repair never overrides a client's write
            // (a client write that meets it goes above it, DESIGN 15).
            if !self
                .meta
                .replace(partition, key, current.hlc, value.encode())
                .await?
            {
                tracing::info!(
                    partition,
                    key,
                    "record changed while it was repaired; the client's write stands (its rebuilt chunks become orphans)"
                );
                return Ok(());
            }
            // The nodes the chunks moved off (drained, or no longer picked) drop them after
            // the grace. A node that is down keeps them: garbage it cannot be told about.
            for (version, chunk_idx, node) in vacated {
                if self.detector.state(node) == NodeState::Down {
                    continue;
                }
                let request = Request::DropMovedChunk {
                    version,
                    chunk_idx,
                    partition: partition.to_string(),
                    key: key.to_string(),
                };
                let sent = if node == self.me {
                    self.schedule_drop(version, chunk_idx, partition.to_string(), key.to_string())
                        .map_err(|e| e.to_string())
                } else {
                    self.client
                        .call(node, &request, Bytes::new())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                if let Err(e) = sent {
                    tracing::debug!(%node, %version, error = %e, "could not schedule the drop of a moved chunk; it stays as garbage");
                }
            }
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
        record: &RecordRef,
    ) -> Result<(bool, u64, Vec<(u8, NodeId)>), RepairError> {
        // Nodes removed from the cluster map are as dead as any.
        let map_now = self.client.map();
        let mut dead = dead.clone();
        dead.extend(
            piece
                .placement
                .iter()
                .flatten()
                .filter(|n| map_now.get(**n).is_none()),
        );
        let dead = &dead;
        let layout = piece.layout;
        let n = layout.n_chunks();
        let k = usize::from(layout.k);
        let codec = Codec::new(layout).map_err(|e| RepairError::Codec(e.to_string()))?;
        // A slot on a node that is Down but not past the delay in this node's view (views
        // differ by up to a heartbeat): try again later rather than decide now.
        if let Some(node) = piece
            .placement
            .iter()
            .flatten()
            .copied()
            .find(|n| self.detector.state(*n) == NodeState::Down && !dead.contains(n))
        {
            return Err(RepairError::Waiting(node));
        }
        // Where each slot's chunks go: a new node for empty slots and dead nodes, and
        // rebalance: a chunk on a node rendezvous placement no longer picks moves to a picked
        // Up node that holds none (a node was added, or came back).
        let map = self.client.map();
        let targets::Targets {
            placement: target,
            moved,
        } = targets::targets(
            &map,
            piece,
            |n| !dead.contains(&n),
            |n| self.detector.state(n) == NodeState::Up,
        );
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
            // A slot that moves must get every stripe on its new node before the record may
            // name that node: if the new node is not Up now, the whole repair waits.
            if let Some(node) = (0..n).find_map(|i| {
                let node = target[i]?;
                (target[i] != piece.placement[i] && self.detector.state(node) != NodeState::Up)
                    .then_some(node)
            }) {
                return Err(RepairError::Waiting(node));
            }
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
                self.rebuild_pace.pace(bytes.len() as u64).await;
                let request = Request::PutChunk {
                    key,
                    checksum,
                    home: Some(ChunkHome {
                        layout,
                        placement: target.clone(),
                        record: Some(record.clone()),
                    }),
                };
                self.client
                    .call(node, &request, bytes.clone())
                    .await
                    .map_err(|error| RepairError::Write { node, error })?;
                written += 1;
                let mut st = self.stats.lock().expect("repair stats");
                st.repaired_chunks += 1;
                st.rebuilt_bytes += bytes.len() as u64;
                st.recent.push_back((Instant::now(), bytes.len() as u64));
            }
        }
        let mut vacated = Vec::new();
        if moved {
            vacated = targets::vacated(&piece.placement, &target);
            piece.placement = target;
        }
        Ok((moved, written, vacated))
    }

    /// Schedules the drop of a chunk slot that moved off this node (`DropMovedChunk`).
    pub fn schedule_drop(
        &self,
        version: VersionId,
        chunk_idx: u8,
        partition: String,
        key: String,
    ) -> Result<(), RepairError> {
        let due_ms = now_ms() + self.config.replaced_data_grace_secs * 1000;
        self.store.drop_schedule(&PendingDrop {
            version,
            chunk_idx,
            due_ms,
            partition,
            key,
        })?;
        Ok(())
    }

    /// Drops moved chunks whose grace has passed, until `shutdown` (garbage collection).
    pub async fn run_gc(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(GC_POLL) => {}
                () = shutdown.cancelled() => return,
            }
            let store = self.store.clone();
            let pending = tokio::task::spawn_blocking(move || store.drop_list(GC_PAGE))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let now = now_ms();
            for p in pending.into_iter().filter(|p| p.due_ms <= now) {
                if shutdown.is_cancelled() {
                    return;
                }
                match self
                    .still_referenced(&p.partition, &p.key, p.version, p.chunk_idx)
                    .await
                {
                    Ok(true) => {
                        tracing::debug!(version = %p.version, chunk = p.chunk_idx, "moved chunk still referenced here: kept");
                        if let Err(e) = self.store.drop_cancel(&p.version, p.chunk_idx) {
                            tracing::warn!(error = %e, "could not cancel a drop");
                        }
                    }
                    Ok(false) => match self.store.drop_moved_chunks(
                        &p.version,
                        p.chunk_idx,
                        DropIf::Scheduled { due_ms: p.due_ms },
                    ) {
                        Ok(n) => {
                            self.stats
                                .lock()
                                .expect("repair stats")
                                .dropped_moved_chunks += n;
                            tracing::debug!(version = %p.version, chunk = p.chunk_idx, chunks = n, "moved chunk dropped");
                        }
                        Err(e) => tracing::warn!(error = %e, "dropping a moved chunk failed"),
                    },
                    // No quorum now: the drop stays scheduled and is tried again.
                    Err(e) => tracing::debug!(error = %e, "moved chunk check failed; will retry"),
                }
            }
        }
    }

    /// Whether the record that was repaired, or a sibling record of the same object (its
    /// current record and its entries among the key's versions), still places chunk
    /// `chunk_idx` of `version` on this node. Records whose siblings cannot be found from
    /// here (multipart parts) count as referenced: their moved chunks stay.
    async fn still_referenced(
        &self,
        partition: &str,
        key: &str,
        version: VersionId,
        chunk_idx: u8,
    ) -> Result<bool, RepairError> {
        let (placing, complete) = self
            .records_placing_here(partition, key, version, chunk_idx)
            .await?;
        Ok(!placing.is_empty() || !complete)
    }

    /// The records, among `partition`/`key` and its siblings (the object's current record
    /// and its entries among the key's versions), that place chunk `chunk_idx` of `version`
    /// on this node, on any replica; and whether every sibling could be looked at (not so
    /// for multipart parts, or for a key with more versions than one scan page).
    async fn records_placing_here(
        &self,
        partition: &str,
        key: &str,
        version: VersionId,
        chunk_idx: u8,
    ) -> Result<(Vec<(String, String)>, bool), RepairError> {
        // Every replica's records, not a majority's: data is dropped only on proof that no
        // replica holds a record that uses it.
        let mut records: Vec<(String, String, Versioned)> = self
            .meta
            .get_every(partition, key)
            .await?
            .into_iter()
            .map(|r| (partition.to_string(), key.to_string(), r))
            .collect();
        let mut complete = true;
        if let Some(bucket) = partition.strip_suffix("#versions") {
            let current = key_of_version_sort_key(key);
            records.extend(
                self.meta
                    .get_every(bucket, current)
                    .await?
                    .into_iter()
                    .map(|r| (bucket.to_string(), current.to_string(), r)),
            );
        } else if !partition.contains('#') {
            let versions = versions_partition(partition);
            match self
                .meta
                .scan_every(
                    &versions,
                    &versions_of_key_prefix(key),
                    GC_SIBLING_SCAN_LIMIT,
                )
                .await?
            {
                Some(entries) => {
                    records.extend(entries.into_iter().map(|(k, r)| (versions.clone(), k, r)))
                }
                None => complete = false,
            }
        } else {
            complete = false;
        }
        let here = Some(self.me);
        let mut placing: Vec<(String, String)> = Vec::new();
        for (p, k, r) in records {
            let places = MetaValue::decode(&r.value).is_ok_and(|v| {
                erasure_pieces(&v).iter().any(|e| {
                    e.version == version && e.placement.get(usize::from(chunk_idx)) == Some(&here)
                })
            });
            if places && !placing.iter().any(|(pp, kk)| *pp == p && *kk == k) {
                placing.push((p, k));
            }
        }
        Ok((placing, complete))
    }

    /// Rebuilds the queued corrupt chunks of this node from their siblings.
    async fn heal_queued(&self, shutdown: &CancellationToken) {
        let store = self.store.clone();
        let queue = tokio::task::spawn_blocking(move || store.heal_list(64))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for key in queue {
            if shutdown.is_cancelled() {
                return;
            }
            let name = format!("{}/{}/{}", key.version, key.stripe_idx.0, key.chunk_idx.0);
            let backoff_key = ("#heal".to_string(), name.clone());
            if self
                .backoff
                .lock()
                .expect("backoff")
                .get(&backoff_key)
                .is_some_and(|until| *until > Instant::now())
            {
                continue;
            }
            match self.heal_chunk(&key).await {
                Ok(()) => {
                    if let Err(e) = self.store.heal_remove(&key) {
                        tracing::warn!(error = %e, "could not dequeue a finished heal");
                    }
                }
                Err(e @ RepairError::TooFewChunks { .. }) => {
                    // Fewer than k siblings readable: parked like an unrepairable version
                    // (scrub or a read queues it again once it can be rebuilt).
                    tracing::warn!(chunk = %name, error = %e, "chunk cannot be healed now: parked");
                    if let Err(e) = self.store.heal_remove(&key) {
                        tracing::warn!(error = %e, "could not dequeue a parked heal");
                    }
                    self.park("#heal", &name, e.to_string());
                }
                Err(e) => {
                    tracing::warn!(chunk = %name, error = %e, "heal failed; will retry");
                    self.backoff
                        .lock()
                        .expect("backoff")
                        .insert(backoff_key, Instant::now() + RETRY_AFTER);
                }
            }
        }
    }

    /// Rebuilds one local chunk from `k` of its siblings, found through the node's index.
    async fn heal_chunk(&self, key: &ChunkKey) -> Result<(), RepairError> {
        let home_bytes = self.store.chunk_home(&key.version)?;
        let Some(home) = home_bytes.as_deref().and_then(ChunkHome::decode) else {
            tracing::warn!(version = %key.version, "no index entry for a corrupt chunk: left for a read or repair to fix");
            return Ok(());
        };
        let layout = home.layout;
        let (n, k) = (layout.n_chunks(), usize::from(layout.k));
        let me_idx = usize::from(key.chunk_idx.0);
        let reads = (0..n).map(|j| {
            let node = home.placement.get(j).copied().flatten();
            let sibling = ChunkKey {
                chunk_idx: ChunkIdx(j as u8),
                ..*key
            };
            async move { self.read_sibling(j != me_idx, node, sibling).await }
        });
        let answers: Vec<(Option<Bytes>, bool)> = futures::future::join_all(reads).await;
        let have = answers.iter().filter(|(c, _)| c.is_some()).count();
        let gone = answers.iter().filter(|(_, gone)| *gone).count();
        if have < k {
            if gone + 1 == n {
                // Every sibling answered "not found": the version was deleted or never
                // committed, or its siblings moved since this index entry was written. The
                // records decide: a slot they still place here is repaired from the record
                // (which knows where the siblings are now); else the chunk is garbage.
                let Some(record) = home.record.clone() else {
                    return Err(RepairError::TooFewChunks {
                        version: key.version.to_string(),
                        stripe: key.stripe_idx.0,
                        have,
                        k,
                    });
                };
                if self
                    .still_referenced(&record.partition, &record.key, key.version, key.chunk_idx.0)
                    .await?
                {
                    self.enqueue(&record.partition, &record.key)?;
                    tracing::info!(version = %key.version, "corrupt chunk whose index entry is stale: repaired from its record");
                } else {
                    let condition = DropIf::IndexIs {
                        written_ms: None,
                        home: home_bytes.clone().unwrap_or_default(),
                    };
                    self.store
                        .drop_moved_chunks(&key.version, key.chunk_idx.0, condition)?;
                    tracing::info!(version = %key.version, "corrupt chunk no record places here dropped");
                }
                return Ok(());
            }
            return Err(RepairError::TooFewChunks {
                version: key.version.to_string(),
                stripe: key.stripe_idx.0,
                have,
                k,
            });
        }
        let lens: HashSet<usize> = answers
            .iter()
            .filter_map(|(c, _)| c.as_ref().map(Bytes::len))
            .collect();
        if lens.len() != 1 {
            return Err(RepairError::Codec("sibling chunks differ in length".into()));
        }
        let codec = Codec::new(layout).map_err(|e| RepairError::Codec(e.to_string()))?;
        let all = codec
            .rebuild_chunks(answers.into_iter().map(|(c, _)| c).collect())
            .map_err(|e| RepairError::Codec(e.to_string()))?;
        let rebuilt = all[me_idx].clone();
        let checksum = *blake3::hash(&rebuilt).as_bytes();
        self.rebuild_pace.pace(rebuilt.len() as u64).await;
        self.store
            .put_chunk(key, &checksum, &rebuilt, home_bytes.as_deref())?;
        let mut s = self.stats.lock().expect("repair stats");
        s.healed_chunks += 1;
        s.repaired_chunks += 1;
        s.rebuilt_bytes += rebuilt.len() as u64;
        s.recent.push_back((Instant::now(), rebuilt.len() as u64));
        tracing::info!(version = %key.version, stripe = key.stripe_idx.0, chunk = key.chunk_idx.0, "corrupt chunk rebuilt in place from its siblings");
        Ok(())
    }

    /// One sibling chunk for a heal: its bytes, and whether its node said it does not exist.
    async fn read_sibling(
        &self,
        wanted: bool,
        node: Option<NodeId>,
        key: ChunkKey,
    ) -> (Option<Bytes>, bool) {
        let Some(node) = node.filter(|_| wanted) else {
            return (None, false);
        };
        if node == self.me {
            let store = self.store.clone();
            return match tokio::task::spawn_blocking(move || store.get_chunk(&key)).await {
                Ok(Ok((_, bytes))) => (Some(bytes), false),
                Ok(Err(crate::store::StoreError::NotFound)) => (None, true),
                _ => (None, false),
            };
        }
        if self.detector.state(node) == NodeState::Down {
            return (None, false);
        }
        match self
            .client
            .call(node, &Request::GetChunk { key }, Bytes::new())
            .await
        {
            Ok((Response::Chunk { checksum }, bytes))
                if blake3::hash(&bytes).as_bytes() == &checksum =>
            {
                (Some(bytes), false)
            }
            Err(RpcError::Remote {
                kind: dmpstore_common::rpc::ErrorKind::NotFound,
                ..
            }) => (None, true),
            _ => (None, false),
        }
    }

    /// Scrubs on schedule and on request, until `shutdown`.
    pub async fn run_scrubber(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.scrub_config.interval_secs);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = self.scrub_now.notified() => {}
                () = shutdown.cancelled() => return,
            }
            match self.scrub_pass(&shutdown).await {
                Ok((chunks, corrupt)) => tracing::info!(chunks, corrupt, "scrub pass done"),
                Err(e) => tracing::warn!(error = %e, "scrub pass failed"),
            }
        }
    }

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

    /// The newest record of `key` (the quorum client's read).
    async fn meta_get(&self, partition: &str, key: &str) -> Result<Option<Versioned>, RepairError> {
        Ok(self.meta.get(partition, key).await?)
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

/// The bytes of the object version or part a record stores.
fn record_bytes(value: &MetaValue) -> u64 {
    match value {
        MetaValue::Object(r) => r.size_bytes,
        MetaValue::Part(p) => p.part.size_bytes,
        _ => 0,
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
