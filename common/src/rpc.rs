//! The internal node RPC: typed, versioned messages (DESIGN 13).
//!
//! Every call is one HTTP `POST` to [`RPC_PATH`] carrying the cluster secret in
//! [`SECRET_HEADER`]. The body is a frame: a 4-byte big-endian length, a postcard-encoded
//! [`Envelope`] holding the message, then raw payload bytes (a chunk) that are never copied into
//! the typed part. Responses use the same framing.

use crate::availability::Served;
use crate::cluster::{ClusterMap, NodeState};
use crate::ids::{ChunkKey, Hlc, NodeId, VersionId};
use crate::limits::MAX_RPC_HEADER_BYTES;
use crate::record::Versioned;
use crate::stripe::StripeLayout;
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Protocol version of the newest messages this build speaks.
pub const RPC_PROTOCOL_VERSION: u16 = 8;
/// The oldest protocol version this build still reads and writes (ADR 0010): a frame is
/// stamped with the oldest version that has its message ([`Message::since`]), so a process of
/// the previous release reads everything it knows of; frames of any version from this one to
/// [`RPC_PROTOCOL_VERSION`] are read. Messages only ever gain variants at the end of their
/// enums; a changed message is a new variant.
pub const RPC_MIN_PROTOCOL_VERSION: u16 = 8;
const _: () = assert!(RPC_MIN_PROTOCOL_VERSION <= RPC_PROTOCOL_VERSION);

/// A message of the internal RPC, and the protocol version that introduced it.
pub trait Message {
    /// The first protocol version with this message (its variant, as it is now).
    fn since(&self) -> u16;
}

impl Message for Request {
    fn since(&self) -> u16 {
        // Every variant listed, so a new one cannot be added without choosing its version.
        match self {
            Request::PutChunk { .. }
            | Request::GetChunk { .. }
            | Request::DeleteChunks { .. }
            | Request::MetaPut { .. }
            | Request::MetaGet { .. }
            | Request::MetaPurge { .. }
            | Request::MetaScan { .. }
            | Request::MetaLock { .. }
            | Request::MetaUnlock { .. }
            | Request::Heartbeat { .. }
            | Request::Health
            | Request::Status
            | Request::RepairEnqueue { .. }
            | Request::RepairScan { .. }
            | Request::Scrub
            | Request::AntiEntropy
            | Request::Drain { .. }
            | Request::Isolate { .. }
            | Request::DropMovedChunk { .. }
            | Request::GetClusterMap
            | Request::SetClusterMap { .. }
            | Request::GatewayReport(_) => 8,
        }
    }
}

impl Message for Response {
    fn since(&self) -> u16 {
        match self {
            Response::Done
            | Response::Chunk { .. }
            | Response::Purged(_)
            | Response::MetaPut { .. }
            | Response::MetaValue(_)
            | Response::MetaEntries { .. }
            | Response::Health(_)
            | Response::Lock { .. }
            | Response::Status(_)
            | Response::ClusterMap(_)
            | Response::Error { .. } => 8,
        }
    }
}
pub const RPC_PATH: &str = "/rpc/v1";
pub const SECRET_HEADER: &str = "x-dmpstore-secret";
/// The caller's [`ClusterMap::metadata_epoch`]: a node refuses metadata requests from an
/// older epoch with [`ErrorKind::StaleMap`].
pub const META_EPOCH_HEADER: &str = "x-dmpstore-meta-epoch";

/// One closed set of node calls, dispatched by one `match` on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Store one chunk (the payload) durably. `checksum` is the blake3 of the payload as the
    /// gateway encoded it; the node refuses a payload that does not match.
    PutChunk {
        key: ChunkKey,
        checksum: [u8; 32],
        /// Where the version's other chunks are, kept in the node's index so a corrupt chunk
        /// can be rebuilt from its siblings.
        home: Option<ChunkHome>,
    },
    /// Read one chunk; answered with [`Response::Chunk`] and the bytes as payload.
    GetChunk {
        key: ChunkKey,
    },
    /// Drop every chunk of an object version held by this node.
    DeleteChunks {
        version: VersionId,
    },
    /// Store a metadata record unless the node already holds one that supersedes it (or,
    /// with `expect`, unless the node's record is not exactly that version: a compare-and-set
    /// for repair, which must never override a client's write). The node also refuses a
    /// record stamped further in its future than its maximum clock offset
    /// ([`ErrorKind::ClockOffset`]). `lease` says how the key's lease (`MetaLock`) bears on
    /// the write (ADR 0005).
    MetaPut {
        partition: String,
        key: String,
        record: Versioned,
        expect: Option<Hlc>,
        lease: LeaseCheck,
    },
    MetaGet {
        partition: String,
        key: String,
    },
    /// Delete the record of `key` if the node holds exactly `record` (garbage collection of
    /// a tombstone that every replica holds, past its grace period).
    MetaPurge {
        partition: String,
        key: String,
        record: Versioned,
    },
    /// Records of a partition in key order, with keys starting with `prefix` and greater than
    /// `start_after` (raw bytes, so a cursor can point between keys), tombstones included.
    /// A page holds at most `limit` entries and about [`crate::limits::MAX_SCAN_PAGE_BYTES`]
    /// of records; with `bodies: false` inline object bytes are left out (listings).
    MetaScan {
        partition: String,
        prefix: String,
        start_after: Vec<u8>,
        limit: u32,
        bodies: bool,
    },
    /// Takes (or renews) a lease on one metadata key for `token`, for `ttl_ms`, unless another
    /// token holds an unexpired lease. Conditional writes hold a majority of these while they
    /// check and commit, so two of them can never decide the same key at once.
    MetaLock {
        partition: String,
        key: String,
        token: [u8; 16],
        ttl_ms: u32,
    },
    /// Releases the lease if `token` holds it.
    MetaUnlock {
        partition: String,
        key: String,
        token: [u8; 16],
    },
    Heartbeat {
        from: NodeId,
        map_version: u64,
    },
    Health,
    /// The node's view of the cluster and its repair work, for `gateway admin status`.
    Status,
    /// Queue the repair of the object versions a record references (sent by the node that
    /// found the record to the version's repair owner, DESIGN 11).
    RepairEnqueue {
        partition: String,
        key: String,
    },
    /// Scan now for records with chunks on `node` and repair them (after `node` was replaced by
    /// an empty one), and copy the metadata partitions this node owns to it.
    RepairScan {
        node: NodeId,
    },
    /// Start a scrub pass over this node's chunks now.
    Scrub,
    /// Start an anti-entropy pass over the metadata partitions this node owns now.
    AntiEntropy,
    /// Drain `node` (move every chunk off it; gateways stop placing chunks on it), or stop
    /// draining it. For a dead node this rebuilds its chunks now, without the repair delay.
    Drain {
        node: NodeId,
        draining: bool,
    },
    /// A drill: cut this node off from the cluster for `millis` (0: reconnect now). It answers
    /// nothing but `Status` and `Isolate`, and its own calls to peers fail, as in a network
    /// partition.
    Isolate {
        millis: u64,
    },
    /// Chunk `chunk_idx` of `version` moved off this node (repair rewrote the record
    /// `partition`/`key`): drop it after the grace, unless the records still place it here.
    DropMovedChunk {
        version: VersionId,
        chunk_idx: u8,
        partition: String,
        key: String,
    },
    /// The node's cluster map; answered with [`Response::ClusterMap`].
    GetClusterMap,
    /// Install `map` if it is newer than the node's (persisted; the node then heartbeats the
    /// new nodes and rebalances chunks whose rendezvous placement moved, DESIGN 12).
    SetClusterMap {
        map: ClusterMap,
    },
    /// A gateway's P_HA counts (sent to every node now and then), kept in memory and shown by
    /// `Status` so that `gateway admin status` can report every gateway's availability.
    GatewayReport(GatewayAvailability),
}

/// What a gateway served over the last hour and day (P_HA, DESIGN 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAvailability {
    /// The gateway's S3 listen address: its name in reports.
    pub gateway: String,
    pub last_hour: Served,
    pub last_day: Served,
    /// When the gateway sent it, ms since the epoch by its clock.
    pub sent_ms: u64,
}

/// Where the chunks of an object version are: its layout and placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHome {
    pub layout: StripeLayout,
    pub placement: Vec<Option<NodeId>>,
    /// The metadata record that references (or, for a PUT in flight, will reference) the
    /// version, so garbage collection can tell an orphan from live data.
    pub record: Option<RecordRef>,
}

/// Where a metadata record lives: its partition and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub partition: String,
    pub key: String,
}

impl ChunkHome {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serializing to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Option<ChunkHome> {
        postcard::from_bytes(bytes).ok()
    }
}

/// How a metadata write meets the lease of its key (ADR 0005).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCheck {
    /// A copy of a record that already exists (read repair, anti-entropy, repair's
    /// compare-and-set): not a new decision, so leases do not apply.
    Ignore,
    /// A client's write: refused ([`ErrorKind::Leased`]) while another writer holds an
    /// unexpired lease on the key, so a conditional writer's check and commit are atomic with
    /// respect to every other writer of the key.
    Yield,
    /// A write under the lease of this token: applied only while the token holds an
    /// unexpired lease on the key ([`ErrorKind::LeaseLost`] otherwise).
    Holder([u8; 16]),
}

impl Request {
    /// Whether the request reads or writes a metadata partition (fenced by the metadata
    /// epoch).
    pub fn is_metadata(&self) -> bool {
        matches!(
            self,
            Request::MetaPut { .. }
                | Request::MetaGet { .. }
                | Request::MetaPurge { .. }
                | Request::MetaScan { .. }
                | Request::MetaLock { .. }
                | Request::MetaUnlock { .. }
        )
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::PutChunk { .. } => "put_chunk",
            Request::GetChunk { .. } => "get_chunk",
            Request::DeleteChunks { .. } => "delete_chunks",
            Request::MetaPut { .. } => "meta_put",
            Request::MetaGet { .. } => "meta_get",
            Request::MetaPurge { .. } => "meta_purge",
            Request::MetaScan { .. } => "meta_scan",
            Request::MetaLock { .. } => "meta_lock",
            Request::MetaUnlock { .. } => "meta_unlock",
            Request::Heartbeat { .. } => "heartbeat",
            Request::Health => "health",
            Request::Status => "status",
            Request::RepairEnqueue { .. } => "repair_enqueue",
            Request::RepairScan { .. } => "repair_scan",
            Request::Scrub => "scrub",
            Request::AntiEntropy => "anti_entropy",
            Request::Drain { .. } => "drain",
            Request::Isolate { .. } => "isolate",
            Request::DropMovedChunk { .. } => "drop_moved_chunk",
            Request::GetClusterMap => "get_cluster_map",
            Request::SetClusterMap { .. } => "set_cluster_map",
            Request::GatewayReport(_) => "gateway_report",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    /// The chunk's bytes follow as payload; `checksum` is the blake3 stored with it, already
    /// verified by the node against the bytes it read.
    Chunk {
        checksum: [u8; 32],
    },
    Purged(bool),
    MetaPut {
        applied: bool,
        /// The record this write replaced on this node, if any.
        replaced: Option<Versioned>,
        /// When not applied: the version the node holds, which the writer must go above.
        holds: Option<Hlc>,
    },
    MetaValue(Option<Versioned>),
    MetaEntries {
        entries: Vec<(String, Versioned)>,
        /// The node holds more matching entries after the last one returned.
        more: bool,
    },
    Health(HealthReport),
    Lock {
        granted: bool,
    },
    Status(Box<NodeStatus>),
    ClusterMap(ClusterMap),
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub node_id: NodeId,
    pub uptime_ms: u64,
    pub n_chunks_estimate: u64,
    /// Nodes being drained, as this node knows them: gateways place no new chunks on them.
    pub draining: Vec<NodeId>,
    /// Version of the node's cluster map: a caller with an older one fetches the new one.
    pub map_version: u64,
    /// The node's wall clock when it answered (ms since the Unix epoch): callers estimate
    /// their clock offset from it (DESIGN 15).
    pub wall_ms: u64,
    /// The node's disk is full: it takes no new chunks or records (gateways place chunks
    /// elsewhere, repair does not target it).
    pub read_only: bool,
}

/// A node's data disk, as its free-space watch last measured it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// Free space fell below the reserve (or a write failed for lack of space): the node takes
    /// no new data until free space is back above twice the reserve.
    pub read_only: bool,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub reserve_bytes: u64,
    /// Times the node turned read-only since it started.
    pub read_only_episodes: u64,
}

/// What a node reports about itself and its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub uptime_ms: u64,
    pub n_chunks_estimate: u64,
    pub peers: Vec<PeerView>,
    pub repair: RepairStatus,
    /// The node's background workers, as its supervisor keeps them.
    pub workers: Vec<WorkerReport>,
    /// The newest availability report of each gateway that sent one since the node started.
    pub gateways: Vec<GatewayAvailability>,
    pub disk: DiskReport,
}

/// One supervised background worker: how often it panicked and was started again, and its
/// status line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub name: String,
    pub restarts: u64,
    pub last_panic: Option<String>,
    /// The worker's state after its last step and what it said it did last
    /// ("idle: last pass verified 120 chunks, 0 corrupt").
    pub status: String,
}

/// One peer as the reporting node's failure detector sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub node_id: NodeId,
    pub state: NodeState,
    /// Milliseconds since the last answered heartbeat (`None`: never answered).
    pub last_heartbeat_ms_ago: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus {
    /// Records waiting in this node's (persistent) repair queue.
    pub queued: u64,
    /// Object versions this node rebuilt chunks of since it started.
    pub repaired_versions: u64,
    pub repaired_chunks: u64,
    pub rebuilt_bytes: u64,
    /// Rebuild rate over the last few seconds of work, bytes per second.
    pub rate_bytes_per_s: u64,
    /// Seconds until the queue is empty at the current pace (`None` when idle or unknown).
    pub eta_s: Option<u64>,
    /// Chunks found corrupt by scrub or reads and rebuilt in place from their siblings.
    pub healed_chunks: u64,
    /// Completed scrub passes and chunks verified by scrub since the node started.
    pub scrub_passes: u64,
    pub scrubbed_chunks: u64,
    /// Detection time of the last failure this node saw: last answered heartbeat to Down.
    pub last_t_fd_ms: Option<u64>,
    /// Rebuild time of the last failure: repair start (Down + repair delay) until this node's census
    /// finds no version below full redundancy.
    pub last_t_fr_ms: Option<u64>,
    pub repair_delay_ms: u64,
    /// Nodes whose chunks this node moves elsewhere: Down for longer than the repair delay, or
    /// being drained.
    pub dead: Vec<NodeId>,
    pub draining: Vec<NodeId>,
    /// A failure past the delay that this node has not finished scanning for yet.
    pub scan_pending: bool,
    /// Chunks this node dropped after repair moved them elsewhere (garbage collection).
    pub dropped_moved_chunks: u64,
    /// Moved chunks waiting for their grace period before the drop.
    pub drops_pending: u64,
    /// Completed anti-entropy passes, and records they wrote to stale or missing replicas.
    pub anti_entropy_passes: u64,
    pub anti_entropy_repaired: u64,
    /// The metadata epoch at the start of this node's last anti-entropy pass that merged
    /// every partition it had to: a metadata membership change finishes once every node
    /// reports its epoch here.
    pub anti_entropy_clean_epoch: u64,
    /// Version of the node's cluster map.
    pub map_version: u64,
    /// Tombstones past their grace this node purged from every replica (as a partition's
    /// anti-entropy owner).
    pub tombstones_purged: u64,
    /// Chunks dropped by the orphan scan (no record references them here), and its
    /// completed passes.
    pub orphan_chunks_dropped: u64,
    pub orphan_passes: u64,
    /// The object versions of the partitions this node owns that are below full redundancy,
    /// from its last census.
    pub degraded: DegradedCount,
    /// Versions this node took out of its repair queue because they cannot be repaired now.
    pub parked: ParkedRepairs,
    /// The last failures this node's detector saw, oldest first.
    pub failures: Vec<FailureRecord>,
    /// Metadata records this node's scans skipped because they do not decode.
    pub undecodable: UndecodableRecords,
}

/// Records skipped as undecodable: how often, and the first few as `(partition/key, why)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndecodableRecords {
    pub count: u64,
    pub first: Vec<(String, String)>,
}

/// One failure as a node saw it: a peer declared Down, how long that took, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub node: NodeId,
    /// When it was declared Down, ms since the epoch by the reporting node's clock.
    pub down_at_ms: u64,
    /// T_FD: from its last answered heartbeat to Down.
    pub t_fd_ms: u64,
    /// It answered again this long after it was declared Down.
    pub back_after_ms: Option<u64>,
    /// T_FR of the repair that restored full redundancy after it (none if it came back
    /// within the repair delay, or while redundancy is not restored yet).
    pub t_fr_ms: Option<u64>,
}

/// Repairs parked for want of chunks: how many, and the first few with why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRepairs {
    pub count: u64,
    /// `(partition/key, reason)`.
    pub first: Vec<(String, String)>,
}

/// Why an object version is below full redundancy (its worst piece's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DegradedReason {
    /// A chunk is on a node Down for less than the repair delay: it may come back.
    WaitingForDelay,
    /// Repair can rebuild it (queued, or about to be, and paced by the rebuild rate).
    Queued,
    /// Fewer Up nodes outside its placement than chunks to place: a node must be added or
    /// the failed one replaced.
    NoSpareNode,
    /// Fewer than `k` chunks are left: it cannot be rebuilt until a node comes back.
    Unrepairable,
}

impl DegradedReason {
    pub const ALL: [DegradedReason; 4] = [
        DegradedReason::WaitingForDelay,
        DegradedReason::Queued,
        DegradedReason::NoSpareNode,
        DegradedReason::Unrepairable,
    ];

    /// The words status and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedReason::WaitingForDelay => "waiting for repair_delay",
            DegradedReason::Queued => "queued",
            DegradedReason::NoSpareNode => "no spare node",
            DegradedReason::Unrepairable => "unrepairable",
        }
    }
}

/// A census of the versions below full redundancy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedCount {
    /// Object versions with at least one chunk missing, and their bytes.
    pub versions: u64,
    pub bytes: u64,
    /// `(chunks missing, versions)`, ascending by chunks missing.
    pub by_missing: Vec<(u32, u64)>,
    /// `(reason, versions)`, in [`DegradedReason`] order, zeros left out.
    pub by_reason: Vec<(DegradedReason, u64)>,
    /// When the census was taken (ms since the epoch); `None`: none has run yet.
    pub taken_ms: Option<u64>,
}

impl DegradedCount {
    /// Adds one version that misses `missing` chunks for `reason`.
    pub fn add(&mut self, bytes: u64, missing: u32, reason: DegradedReason) {
        self.versions += 1;
        self.bytes += bytes;
        match self.by_missing.binary_search_by_key(&missing, |(m, _)| *m) {
            Ok(i) => self.by_missing[i].1 += 1,
            Err(i) => self.by_missing.insert(i, (missing, 1)),
        }
        match self.by_reason.binary_search_by_key(&reason, |(r, _)| *r) {
            Ok(i) => self.by_reason[i].1 += 1,
            Err(i) => self.by_reason.insert(i, (reason, 1)),
        }
    }

    /// Adds another node's census (partitions have one owner, so the sums do not overlap).
    pub fn merge(&mut self, other: &DegradedCount) {
        self.versions += other.versions;
        self.bytes += other.bytes;
        for &(m, n) in &other.by_missing {
            match self.by_missing.binary_search_by_key(&m, |(x, _)| *x) {
                Ok(i) => self.by_missing[i].1 += n,
                Err(i) => self.by_missing.insert(i, (m, n)),
            }
        }
        for &(r, n) in &other.by_reason {
            match self.by_reason.binary_search_by_key(&r, |(x, _)| *x) {
                Ok(i) => self.by_reason[i].1 += n,
                Err(i) => self.by_reason.insert(i, (r, n)),
            }
        }
        self.taken_ms = match (self.taken_ms, other.taken_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Versions counted for `reason`.
    pub fn with_reason(&self, reason: DegradedReason) -> u64 {
        self.by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    /// Stored bytes do not match their checksum: never returned as data.
    Corrupt,
    BadRequest,
    Unauthorized,
    /// The node cannot serve now (shutting down, disk error).
    Unavailable,
    /// The node is being drained and takes no new chunks (it still serves reads).
    Draining,
    /// The node's disk is full: it takes no new chunks or records (it still serves reads and
    /// deletes).
    ReadOnly,
    /// The caller's cluster map predates a metadata membership change: fetch the node's map
    /// (`GetClusterMap`) and retry.
    StaleMap,
    /// The write's clock stamp is further ahead of the node's clock than the maximum offset,
    /// or the caller's clock is known to be off: writes are refused (DESIGN 15).
    ClockOffset,
    /// A write made under a lease arrived after the lease expired or passed to another
    /// holder: it was not applied.
    LeaseLost,
    /// Another writer holds the key's lease: a client's write waits for it and retries.
    Leased,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Envelope<T> {
    version: u16,
    message: T,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its length prefix")]
    Truncated,
    #[error("frame header of {0} bytes exceeds the limit")]
    HeaderTooLarge(usize),
    #[error("protocol version {0} is not supported (this build speaks {RPC_MIN_PROTOCOL_VERSION} to {RPC_PROTOCOL_VERSION})")]
    Version(u16),
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes a message and its payload into one frame, stamped with the oldest protocol version
/// that has the message.
pub fn encode_frame<T: Serialize + Message>(message: &T, payload: &[u8]) -> Bytes {
    let header = postcard::to_stdvec(&Envelope {
        version: message.since().max(RPC_MIN_PROTOCOL_VERSION),
        message,
    })
    .expect("serializing to a Vec cannot fail");
    let mut out = BytesMut::with_capacity(4 + header.len() + payload.len());
    out.put_u32(u32::try_from(header.len()).expect("headers are small"));
    out.put_slice(&header);
    out.put_slice(payload);
    out.freeze()
}

/// Splits a frame into its message and payload. Never panics on arbitrary bytes.
pub fn decode_frame<T: DeserializeOwned>(mut frame: Bytes) -> Result<(T, Bytes), FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::Truncated);
    }
    let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_RPC_HEADER_BYTES {
        return Err(FrameError::HeaderTooLarge(len));
    }
    if frame.len() < 4 + len {
        return Err(FrameError::Truncated);
    }
    let _ = frame.split_to(4);
    let header = frame.split_to(len);
    // Read the version first, so a future message layout gives a clear error.
    let (version, _): (u16, _) = postcard::take_from_bytes(&header)?;
    if !(RPC_MIN_PROTOCOL_VERSION..=RPC_PROTOCOL_VERSION).contains(&version) {
        return Err(FrameError::Version(version));
    }
    let envelope: Envelope<T> = postcard::from_bytes(&header)?;
    Ok((envelope.message, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkIdx, StripeIdx};
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_with_payload() {
        let req = Request::PutChunk {
            key: ChunkKey {
                version: VersionId([3; 16]),
                stripe_idx: StripeIdx(7),
                chunk_idx: ChunkIdx(5),
            },
            checksum: [9; 32],
            home: Some(ChunkHome {
                layout: StripeLayout {
                    k: 4,
                    m: 2,
                    chunk_size_bytes: 1024,
                },
                placement: vec![Some(NodeId(1)), None],
                record: Some(RecordRef {
                    partition: "b".into(),
                    key: "k".into(),
                }),
            }),
        };
        let frame = encode_frame(&req, b"chunk bytes");
        let (back, payload): (Request, Bytes) = decode_frame(frame).unwrap();
        assert_eq!(back, req);
        assert_eq!(&payload[..], b"chunk bytes");
    }

    #[test]
    fn other_protocol_versions_are_refused() {
        let mut frame = encode_frame(&Request::Health, b"").to_vec();
        frame[4] = 9; // varint of the version, first header byte
        let err = decode_frame::<Request>(Bytes::from(frame)).unwrap_err();
        assert!(matches!(err, FrameError::Version(9)), "{err}");
    }

    proptest! {
        #[test]
        fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame::<Request>(Bytes::from(bytes.clone()));
            let _ = decode_frame::<Response>(Bytes::from(bytes));
        }
    }
}
