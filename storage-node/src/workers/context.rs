//! The state every background worker shares, and that the RPC server reaches into: the
//! store, the RPC client and metadata quorum client, the failure detector's view, the repair
//! statistics, the parked versions, the drain set, and the wake-ups of the workers. Also what
//! the server calls (queue a repair or heal, drain, start a scrub, scan or anti-entropy pass)
//! and the small helpers several workers use (who is dead, who owns a partition, pacing).

use crate::config::{RepairConfig, ScrubConfig};
use crate::detector::Detector;
use crate::meta_client::MetaClient;
use crate::peers::{NodeClient, NodeState, RpcError};
use crate::store::Store;
use dmpstore_common::ids::{ChunkKey, NodeId};
use dmpstore_common::quorum::MajorityOf;
use dmpstore_common::record::{ErasureData, MetaValue, ObjectData, Versioned};
use dmpstore_common::rpc::DegradedCount;
use dmpstore_common::targets;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Parked versions kept by name for status.
const MAX_PARKED: usize = 10_000;
/// A repair that failed is retried after this long (the queue keeps it).
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the repair worker looks at its queue and the scanner at the failure detector.
pub(super) const POLL: Duration = Duration::from_millis(200);

pub(super) fn now_ms() -> u64 {
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
pub(super) struct Stats {
    pub(super) repaired_versions: u64,
    pub(super) repaired_chunks: u64,
    pub(super) rebuilt_bytes: u64,
    /// (when, bytes) of recent rebuilt chunks, for the rate.
    pub(super) recent: VecDeque<(Instant, u64)>,
    /// Recent task durations, for the ETA.
    pub(super) task_secs: VecDeque<f64>,
    /// When the current repair episode began (a node passed the repair delay).
    pub(super) episode_start: Option<Instant>,
    pub(super) last_t_fr_ms: Option<u64>,
    pub(super) queued: u64,
    pub(super) scan_pending: bool,
    /// The scan for the current episode's failure is done (the follow-up may still be due).
    pub(super) episode_scanned: bool,
    pub(super) healed_chunks: u64,
    pub(super) scrub_passes: u64,
    pub(super) scrubbed_chunks: u64,
    pub(super) dropped_moved_chunks: u64,
    pub(super) anti_entropy_passes: u64,
    pub(super) anti_entropy_repaired: u64,
    pub(super) anti_entropy_clean_epoch: u64,
    pub(super) orphan_chunks_dropped: u64,
    pub(super) orphan_passes: u64,
    pub(super) tombstones_purged: u64,
    /// The last census of degraded versions in the partitions this node owns.
    pub(super) degraded: DegradedCount,
    /// Parked versions not kept by name (beyond `MAX_PARKED`).
    pub(super) parked_overflow: u64,
}

/// Holds a stream of work to a byte rate (a deliberate pacing wait).
pub(super) struct Pacer {
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

    pub(super) async fn pace(&self, bytes: u64) {
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

/// A version taken out of the repair queue: why, and the nodes that were down then.
pub(super) type Parked = (String, BTreeSet<NodeId>);

/// The shared state of the node's background work (see the module doc): made once per node,
/// shared by every worker and by the RPC server.
pub struct NodeContext {
    pub(super) me: NodeId,
    pub(super) store: Arc<Store>,
    pub(super) client: Arc<NodeClient>,
    pub(super) detector: Arc<Detector>,
    pub(super) config: RepairConfig,
    pub(super) scrub_config: ScrubConfig,
    /// The metadata quorum client (the same one the gateways use).
    pub(super) meta: MetaClient,
    pub(super) stats: Mutex<Stats>,
    /// Queued records that failed recently, and when they may be tried again.
    pub(super) backoff: Mutex<HashMap<(String, String), Instant>>,
    /// Versions taken out of the queue because they cannot be repaired now: why, and the
    /// nodes that were down then.
    pub(super) parked: Mutex<BTreeMap<(String, String), Parked>>,
    /// Wakes the worker when something was queued.
    pub(super) wake: tokio::sync::Notify,
    /// Starts a scrub pass now.
    pub(super) scrub_now: tokio::sync::Notify,
    /// Starts an anti-entropy pass now.
    pub(super) anti_entropy_now: tokio::sync::Notify,
    /// Nodes replaced by empty ones: scan for everything they should hold.
    pub(super) forced: Mutex<Vec<NodeId>>,
    /// The dead nodes the last completed scan covered.
    pub(super) scanned_for: Mutex<HashSet<NodeId>>,
    /// Nodes being drained: treated like nodes dead past the delay.
    pub(super) draining: Mutex<HashSet<NodeId>>,
    /// Serializes drain changes while they are persisted, so readers of `draining` (health
    /// answers) never wait for the disk.
    drain_change: Mutex<()>,
    /// This node is draining and its last drain sweep found no chunk left to move.
    pub(super) drain_clean: AtomicBool,
    /// The repair queue ran empty after work: take a census now (redundancy may be restored).
    pub(super) census_requested: AtomicBool,
    pub(super) rebuild_pace: Pacer,
    pub(super) scrub_pace: Pacer,
}

impl NodeContext {
    pub fn new(
        me: NodeId,
        store: Arc<Store>,
        client: Arc<NodeClient>,
        detector: Arc<Detector>,
        config: RepairConfig,
        scrub_config: ScrubConfig,
        meta: MetaClient,
    ) -> NodeContext {
        let draining: HashSet<NodeId> = store
            .draining()
            .unwrap_or_default()
            .into_iter()
            .map(NodeId)
            .collect();
        NodeContext {
            me,
            store,
            client,
            detector,
            meta,
            stats: Mutex::new(Stats::default()),
            backoff: Mutex::new(HashMap::new()),
            parked: Mutex::new(BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
            scrub_now: tokio::sync::Notify::new(),
            anti_entropy_now: tokio::sync::Notify::new(),
            forced: Mutex::new(Vec::new()),
            scanned_for: Mutex::new(HashSet::new()),
            draining: Mutex::new(draining),
            drain_change: Mutex::new(()),
            drain_clean: AtomicBool::new(false),
            census_requested: AtomicBool::new(false),
            rebuild_pace: Pacer::new(config.max_rate_mib_per_s),
            scrub_pace: Pacer::new(scrub_config.max_rate_mib_per_s),
            config,
            scrub_config,
        }
    }

    pub(super) fn delay(&self) -> Duration {
        Duration::from_secs(self.config.delay_secs)
    }

    /// Nodes Down for longer than the repair delay, or being drained: their chunks are
    /// rebuilt elsewhere. (A node no longer in the map at all counts as dead wherever a
    /// placement names it: see `repair_piece`.)
    pub(super) fn dead(&self) -> HashSet<NodeId> {
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
        let _one_change_at_a_time = self.drain_change.lock().expect("drain change");
        let mut next = self.draining.lock().expect("draining").clone();
        if on {
            if node == self.me && !next.contains(&node) {
                self.drain_clean.store(false, Ordering::Relaxed);
            }
            next.insert(node);
        } else {
            next.remove(&node);
        }
        // Persisted first: a restart must not forget a drain that took effect.
        let ids: Vec<u32> = next.iter().map(|n| n.0).collect();
        self.store.set_draining(&ids)?;
        *self.draining.lock().expect("draining") = next;
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

    pub fn request_anti_entropy(&self) {
        self.anti_entropy_now.notify_one();
    }

    /// `node` was replaced by an empty one: scan for what it should hold.
    pub fn request_scan_for(&self, node: NodeId) {
        self.forced.lock().expect("forced").push(node);
        self.stats.lock().expect("repair stats").scan_pending = true;
    }

    /// Keeps a version that cannot be repaired now, with why, for status (bounded: beyond
    /// [`MAX_PARKED`] only the count grows).
    pub(super) fn park(&self, partition: &str, key: &str, reason: String) {
        let down = self.down_nodes();
        let overflow = {
            let mut parked = self.parked.lock().expect("parked");
            let room = parked.len() < MAX_PARKED;
            if room {
                parked.insert((partition.to_string(), key.to_string()), (reason, down));
            }
            !room
        };
        // Never with `parked` held: `status` takes `stats`, then `parked`.
        if overflow {
            self.stats.lock().expect("repair stats").parked_overflow += 1;
        }
    }

    /// The nodes of the map that this node's detector sees Down.
    pub(super) fn down_nodes(&self) -> BTreeSet<NodeId> {
        self.client
            .map()
            .nodes()
            .map(|n| n.id)
            .filter(|&n| self.detector.state(n) == NodeState::Down)
            .collect()
    }

    /// The replicas of a partition and what makes a quorum of them (both sets during a
    /// metadata membership change).
    pub(super) fn quorum_spec(&self, partition: &str) -> MajorityOf {
        self.meta.replicas(partition)
    }

    /// Whether this node is the first Up replica of the partition.
    pub(super) fn owns_partition(&self, partition: &str) -> bool {
        self.quorum_spec(partition)
            .nodes()
            .into_iter()
            .find(|&n| self.detector.state(n) == NodeState::Up)
            == Some(self.me)
    }

    pub(super) fn first_up(&self, placement: &[Option<NodeId>]) -> Option<NodeId> {
        targets::owner(placement, |n| self.detector.state(n) == NodeState::Up)
    }

    /// The newest record of `key` (the quorum client's read).
    pub(super) async fn meta_get(
        &self,
        partition: &str,
        key: &str,
    ) -> Result<Option<Versioned>, RepairError> {
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
pub(super) fn record_bytes(value: &MetaValue) -> u64 {
    match value {
        MetaValue::Object(r) => r.size_bytes,
        MetaValue::Part(p) => p.part.size_bytes,
        _ => 0,
    }
}

/// Mutable access to the erasure-coded pieces of a record, each with its size in bytes.
pub(super) fn erasure_pieces_mut(value: &mut MetaValue) -> Vec<(&mut ErasureData, u64)> {
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
