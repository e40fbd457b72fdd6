//! The node's RocksDB database: layout, formats and every disk operation.
//!
//! Column families (DESIGN 14):
//! - `chunks`: key `[v1][version 16 B][stripe u32 BE][chunk u8]`, value `[v1][blake3 32 B][bytes]`.
//!   Values go to BlobDB blob files so compaction never rewrites chunk bytes.
//! - `meta`: key `[v1][partition][0x00][sort key]`, value `[v1][hlc u64 BE][record]`. Partition
//!   names never contain 0x00, so one partition is one contiguous key range.
//! - `queues`: conditional-write leases (`[v1]['L']...`), the repair queue
//!   (`[v1]['R'][partition][0x00][sort key]`) and the chunk heal queue (`[v1]['H'][chunk key]`).
//! - `index`: key `[v1][version 16 B]`, value `[v1][home]`: for every object version this node
//!   holds chunks of, an opaque description of where its other chunks are (layout and
//!   placement, written by the caller), so a corrupt chunk can be rebuilt from its siblings
//!   without finding the record that references it (DESIGN 11).
//!
//! Every write that acknowledges data uses a synced WAL write: when a call returns `Ok`, the
//! bytes survive power loss. Calls block; the server runs them on the blocking thread pool.
//!
//! Invariant: this module knows nothing of S3, stripes or placement: chunks are opaque bytes with
//! a checksum, records are opaque bytes with a clock.

use bytes::Bytes;
use dmpstore_common::ids::{ChunkKey, Hlc, VersionId};
use dmpstore_common::record::Versioned;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use std::path::Path;
use std::sync::Mutex;

const FORMAT_V1: u8 = 1;
const CF_CHUNKS: &str = "chunks";
const CF_META: &str = "meta";
const CF_QUEUES: &str = "queues";
const CF_INDEX: &str = "index";
/// Chunk values at least this large go to blob files.
const MIN_BLOB_SIZE_BYTES: u64 = 4096;
/// Striped locks serialize read-compare-write of one metadata key.
const META_LOCK_STRIPES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("stored chunk is corrupt: {0}")]
    Corrupt(String),
    #[error("payload checksum does not match the checksum sent with it")]
    ChecksumMismatch,
    #[error("unsupported on-disk format version {0}")]
    Format(u8),
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
}

pub struct Store {
    db: DB,
    meta_locks: Vec<Mutex<()>>,
    /// Metadata records that scans found undecodable and skipped (issue: a corrupt value must
    /// not stop every scan of its partition): how many, and the first few with why.
    undecodable: Mutex<Undecodable>,
}

/// Records scans skipped because their stored bytes do not decode.
#[derive(Debug, Default, Clone)]
pub struct Undecodable {
    pub count: u64,
    /// `(partition/key, why)`, at most [`UNDECODABLE_KEPT`], each once.
    pub first: Vec<(String, String)>,
}

/// Undecodable records named in status.
const UNDECODABLE_KEPT: usize = 10;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

pub fn chunk_key(key: &ChunkKey) -> [u8; 22] {
    let mut out = [0u8; 22];
    out[0] = FORMAT_V1;
    out[1..17].copy_from_slice(&key.version.0);
    out[17..21].copy_from_slice(&key.stripe_idx.0.to_be_bytes());
    out[21] = key.chunk_idx.0;
    out
}

/// The inverse of [`chunk_key`].
pub fn parse_chunk_key(raw: &[u8]) -> Option<ChunkKey> {
    if raw.len() != 22 || raw[0] != FORMAT_V1 {
        return None;
    }
    Some(ChunkKey {
        version: VersionId(raw[1..17].try_into().ok()?),
        stripe_idx: dmpstore_common::ids::StripeIdx(u32::from_be_bytes(
            raw[17..21].try_into().ok()?,
        )),
        chunk_idx: dmpstore_common::ids::ChunkIdx(raw[21]),
    })
}

fn index_key(version: &VersionId) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(FORMAT_V1);
    out.extend_from_slice(&version.0);
    out
}

/// Key of a scheduled drop of a chunk slot that moved to another node, in the queues family:
/// `[v1]['G'][version][chunk idx]`.
fn drop_key(version: &VersionId, chunk_idx: u8) -> Vec<u8> {
    let mut out = vec![FORMAT_V1, b'G'];
    out.extend_from_slice(&version.0);
    out.push(chunk_idx);
    out
}

/// What must still hold for [`Store::drop_moved_chunks`] to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropIf {
    /// The drop scheduled for `due_ms` is still scheduled (no chunk write cancelled it).
    Scheduled { due_ms: u64 },
    /// The version's index entry is still this home (and, if given, this write time).
    IndexIs {
        written_ms: Option<u64>,
        home: Vec<u8>,
    },
}

/// Why a write that meets a lease was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// A write under a lease that the node no longer grants to its token.
    Lost,
    /// A client's write to a key another writer holds the lease of.
    HeldByOther,
}

/// What [`Store::meta_put`] did: applied (and what it replaced), or refused because the node
/// holds `holds` (a newer version, or not the expected one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaPutOutcome {
    pub applied: bool,
    pub replaced: Option<Versioned>,
    pub holds: Option<Hlc>,
}

/// What a node holds, counted exactly ([`Store::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    pub chunks: u64,
    pub indexed_versions: u64,
    pub metadata_records: u64,
    pub drops_pending: u64,
}

/// A chunk slot of this node that repair moved to another node: dropped once `due_ms` has
/// passed, unless the record that was repaired (or a sibling record of the same object)
/// still places the slot here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDrop {
    pub version: VersionId,
    pub chunk_idx: u8,
    pub due_ms: u64,
    pub partition: String,
    pub key: String,
}

impl PendingDrop {
    fn encode_value(&self) -> Vec<u8> {
        let mut v = vec![FORMAT_V1];
        v.extend_from_slice(&self.due_ms.to_be_bytes());
        v.extend_from_slice(&(self.partition.len() as u32).to_be_bytes());
        v.extend_from_slice(self.partition.as_bytes());
        v.extend_from_slice(self.key.as_bytes());
        v
    }

    fn decode(key: &[u8], value: &[u8]) -> Option<PendingDrop> {
        let version = VersionId(key.get(2..18)?.try_into().ok()?);
        let chunk_idx = *key.get(18)?;
        let (&FORMAT_V1, rest) = value.split_first()? else {
            return None;
        };
        let due_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let plen = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let partition = String::from_utf8(rest.get(12..12 + plen)?.to_vec()).ok()?;
        let key = String::from_utf8(rest.get(12 + plen..)?.to_vec()).ok()?;
        Some(PendingDrop {
            version,
            chunk_idx,
            due_ms,
            partition,
            key,
        })
    }
}

/// Format of an index value that carries when it was written: `[2][written ms][home]`
/// (format 1 was `[1][home]`).
const INDEX_FORMAT_V2: u8 = 2;

fn index_value(written_ms: u64, home: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + home.len());
    v.push(INDEX_FORMAT_V2);
    v.extend_from_slice(&written_ms.to_be_bytes());
    v.extend_from_slice(home);
    v
}

fn decode_index_value(raw: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match raw.split_first() {
        Some((&FORMAT_V1, rest)) => Ok((0, rest)),
        Some((&INDEX_FORMAT_V2, rest)) if rest.len() >= 8 => Ok((
            u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
            &rest[8..],
        )),
        Some((&v, _)) => Err(StoreError::Format(v)),
        None => Err(StoreError::Corrupt("empty index value".into())),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn heal_key(key: &ChunkKey) -> Vec<u8> {
    let mut out = vec![FORMAT_V1, b'H'];
    out.extend_from_slice(&chunk_key(key));
    out
}

fn meta_key(partition: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + partition.len() + key.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(partition.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// Key of a metadata lease in the queues family: `[v1]['L'][partition][0x00][key]`.
fn lease_key(partition: &str, key: &str) -> Vec<u8> {
    let mut out = vec![FORMAT_V1, b'L'];
    out.extend_from_slice(partition.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Key of a queued repair in the queues family: `[v1]['R'][partition][0x00][key]`.
fn repair_queue_key(partition: &str, key: &str) -> Vec<u8> {
    let mut out = vec![FORMAT_V1, b'R'];
    out.extend_from_slice(partition.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The raw key to resume a [`Store::meta_all`] scan from: the last returned entry's.
fn after_key(out: &[(String, String, Versioned)], next: &[u8]) -> Vec<u8> {
    match out.last() {
        Some((p, k, _)) => meta_key(p, k.as_bytes()),
        None => next.to_vec(),
    }
}

fn encode_meta_value(v: &Versioned) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + v.value.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&v.hlc.0.to_be_bytes());
    out.extend_from_slice(&v.value);
    out
}

fn decode_meta_value(raw: &[u8]) -> Result<Versioned, StoreError> {
    match raw.split_first() {
        Some((&FORMAT_V1, rest)) if rest.len() >= 8 => Ok(Versioned {
            hlc: Hlc(u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"))),
            value: rest[8..].to_vec(),
        }),
        Some((&FORMAT_V1, _)) => Err(StoreError::Corrupt("metadata value too short".into())),
        Some((&v, _)) => Err(StoreError::Format(v)),
        None => Err(StoreError::Corrupt("empty metadata value".into())),
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);

        let mut chunk_opts = Options::default();
        chunk_opts.set_enable_blob_files(true);
        chunk_opts.set_min_blob_size(MIN_BLOB_SIZE_BYTES);
        chunk_opts.set_enable_blob_gc(true);
        chunk_opts.set_write_buffer_size(64 * 1024 * 1024);

        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_CHUNKS, chunk_opts),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
            ColumnFamilyDescriptor::new(CF_QUEUES, Options::default()),
            ColumnFamilyDescriptor::new(CF_INDEX, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        Ok(Store {
            db,
            meta_locks: (0..META_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            undecodable: Mutex::default(),
        })
    }

    /// Counts a record a scan skipped because it does not decode, and logs it with its key.
    pub fn skip_undecodable(&self, partition: &str, key: &str, e: &dyn std::fmt::Display) {
        let name = format!("{partition}/{key}");
        tracing::warn!(record = %name, error = %e, "undecodable metadata record skipped");
        let mut u = self.undecodable.lock().expect("undecodable");
        u.count += 1;
        if u.first.len() < UNDECODABLE_KEPT && !u.first.iter().any(|(k, _)| *k == name) {
            u.first.push((name, e.to_string()));
        }
    }

    /// What scans skipped as undecodable since the node started.
    pub fn undecodable(&self) -> Undecodable {
        self.undecodable.lock().expect("undecodable").clone()
    }

    /// Serializes read-compare-write of one metadata key (records and leases).
    fn key_lock(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let stripe = blake3::hash(key).as_bytes()[0] as usize % META_LOCK_STRIPES;
        self.meta_locks[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The locks of two keys, taken in stripe order (once if they share a stripe).
    fn key_locks_both(
        &self,
        a: &[u8],
        b: &[u8],
    ) -> (
        std::sync::MutexGuard<'_, ()>,
        Option<std::sync::MutexGuard<'_, ()>>,
    ) {
        let stripe = |k: &[u8]| blake3::hash(k).as_bytes()[0] as usize % META_LOCK_STRIPES;
        let (sa, sb) = (stripe(a), stripe(b));
        let lock = |s: usize| self.meta_locks[s].lock().unwrap_or_else(|p| p.into_inner());
        match sa.cmp(&sb) {
            std::cmp::Ordering::Equal => (lock(sa), None),
            std::cmp::Ordering::Less => {
                let first = lock(sa);
                (first, Some(lock(sb)))
            }
            std::cmp::Ordering::Greater => {
                let first = lock(sb);
                (first, Some(lock(sa)))
            }
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Stores a chunk after checking the payload against the checksum the writer computed,
    /// with the version's `home` (where its sibling chunks are) in the index, in one synced
    /// write.
    pub fn put_chunk(
        &self,
        key: &ChunkKey,
        checksum: &[u8; 32],
        data: &[u8],
        home: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if blake3::hash(data).as_bytes() != checksum {
            return Err(StoreError::ChecksumMismatch);
        }
        // Serialized with conditional drops of the same version.
        let _guard = self.key_lock(&index_key(&key.version));
        let mut value = Vec::with_capacity(33 + data.len());
        value.push(FORMAT_V1);
        value.extend_from_slice(checksum);
        value.extend_from_slice(data);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CHUNKS), chunk_key(key), value);
        if let Some(home) = home {
            batch.put_cf(
                self.cf(CF_INDEX),
                index_key(&key.version),
                index_value(now_ms(), home),
            );
        }
        // The slot is wanted here again (a repair moving it back writes stripe 0 first):
        // cancel a scheduled drop. Only on stripe 0, so other chunk writes add no delete.
        if key.stripe_idx.0 == 0 {
            batch.delete_cf(self.cf(CF_QUEUES), drop_key(&key.version, key.chunk_idx.0));
        }
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Schedules the drop of a chunk slot that moved to another node (persisted, so a restart
    /// keeps it).
    pub fn drop_schedule(&self, pending: &PendingDrop) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_QUEUES),
            drop_key(&pending.version, pending.chunk_idx),
            pending.encode_value(),
            &synced(),
        )?;
        Ok(())
    }

    /// Up to `limit` scheduled drops, in key order.
    pub fn drop_list(&self, limit: usize) -> Result<Vec<PendingDrop>, StoreError> {
        let prefix = [FORMAT_V1, b'G'];
        let iter = self.db.iterator_cf(
            self.cf(CF_QUEUES),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() == limit {
                break;
            }
            match PendingDrop::decode(&k, &v) {
                Some(p) => out.push(p),
                None => return Err(StoreError::Corrupt("unreadable scheduled drop".into())),
            }
        }
        Ok(out)
    }

    /// How many drops are scheduled (counting up to `limit`).
    pub fn drops_scheduled(&self, limit: usize) -> Result<usize, StoreError> {
        Ok(self.queue_keys(b'G', limit)?.len())
    }

    pub fn drop_cancel(&self, version: &VersionId, chunk_idx: u8) -> Result<(), StoreError> {
        self.db
            .delete_cf_opt(self.cf(CF_QUEUES), drop_key(version, chunk_idx), &synced())?;
        Ok(())
    }

    /// Drops every stripe's chunk `chunk_idx` of `version` (and the version's index entry
    /// when no chunk of it is left here) and the scheduled drop, if `condition` still holds;
    /// a chunk write of the version in between (a repair moving the slot back here) makes it
    /// fail. Returns the chunks dropped (0 when the condition failed).
    pub fn drop_moved_chunks(
        &self,
        version: &VersionId,
        chunk_idx: u8,
        condition: DropIf,
    ) -> Result<u64, StoreError> {
        let _guard = self.key_lock(&index_key(version));
        let holds = match &condition {
            DropIf::Scheduled { due_ms } => {
                self.db
                    .get_cf(self.cf(CF_QUEUES), drop_key(version, chunk_idx))?
                    .and_then(|v| {
                        v.get(1..9)
                            .map(|b| u64::from_be_bytes(b.try_into().expect("8")))
                    })
                    == Some(*due_ms)
            }
            DropIf::IndexIs { written_ms, home } => {
                match self.db.get_cf(self.cf(CF_INDEX), index_key(version))? {
                    Some(raw) => {
                        let (w, h) = decode_index_value(&raw)?;
                        h == &home[..] && written_ms.is_none_or(|ms| ms == w)
                    }
                    None => false,
                }
            }
        };
        if !holds {
            return Ok(0);
        }
        let mut prefix = vec![FORMAT_V1];
        prefix.extend_from_slice(&version.0);
        let iter = self.db.iterator_cf(
            self.cf(CF_CHUNKS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        let mut batch = WriteBatch::default();
        let (mut dropped, mut kept) = (0u64, 0u64);
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if k.last() == Some(&chunk_idx) && k.len() == prefix.len() + 5 {
                batch.delete_cf(self.cf(CF_CHUNKS), &k);
                dropped += 1;
            } else {
                kept += 1;
            }
        }
        if kept == 0 {
            batch.delete_cf(self.cf(CF_INDEX), index_key(version));
        }
        batch.delete_cf(self.cf(CF_QUEUES), drop_key(version, chunk_idx));
        self.db.write_opt(batch, &synced())?;
        Ok(dropped)
    }

    /// The home recorded for a version by [`Store::put_chunk`].
    pub fn chunk_home(&self, version: &VersionId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.get_cf(self.cf(CF_INDEX), index_key(version))? {
            Some(raw) => decode_index_value(&raw).map(|(_, home)| Some(home.to_vec())),
            None => Ok(None),
        }
    }

    /// Up to `limit` index entries after version `after` (`None`: from the start): each
    /// version with when its home was last written here (unix ms) and the home.
    #[allow(clippy::type_complexity)]
    pub fn index_page(
        &self,
        after: Option<&VersionId>,
        limit: usize,
    ) -> Result<Vec<(VersionId, u64, Vec<u8>)>, StoreError> {
        let start = after.map_or_else(|| vec![FORMAT_V1], index_key);
        let iter = self.db.iterator_cf(
            self.cf(CF_INDEX),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if k[..] == start[..] && after.is_some() {
                continue;
            }
            if out.len() == limit || k.len() != 17 || k[0] != FORMAT_V1 {
                break;
            }
            let version = VersionId(k[1..17].try_into().expect("16 bytes"));
            let (written_ms, home) = decode_index_value(&v)?;
            out.push((version, written_ms, home.to_vec()));
        }
        Ok(out)
    }

    /// The chunk slots (chunk indexes) of `version` this node holds.
    pub fn chunk_slots(&self, version: &VersionId) -> Result<Vec<u8>, StoreError> {
        let mut prefix = vec![FORMAT_V1];
        prefix.extend_from_slice(&version.0);
        let iter = self.db.iterator_cf(
            self.cf(CF_CHUNKS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        let mut slots = Vec::new();
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(&idx) = k.last() {
                if !slots.contains(&idx) {
                    slots.push(idx);
                }
            }
        }
        Ok(slots)
    }

    /// Drops the index entry of a version none of whose chunks is held here.
    pub fn drop_index_entry(&self, version: &VersionId) -> Result<(), StoreError> {
        self.db
            .delete_cf_opt(self.cf(CF_INDEX), index_key(version), &synced())?;
        Ok(())
    }

    /// Verifies the checksums of up to `limit` chunks after the raw chunk key `after` (empty:
    /// from the start). Returns the corrupt chunks' keys, the bytes read, the key to resume
    /// from when more follow, and how many chunks were verified.
    #[allow(clippy::type_complexity)]
    pub fn scrub_page(
        &self,
        after: &[u8],
        limit: usize,
    ) -> Result<(Vec<ChunkKey>, u64, Option<Vec<u8>>, usize), StoreError> {
        let start = if after.is_empty() {
            vec![FORMAT_V1]
        } else {
            after.to_vec()
        };
        // RocksDB's own blob checksums would fail the iterator at a damaged blob without saying
        // which key it was; skip them and check every value against the chunk's blake3.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(false);
        opts.fill_cache(false);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_CHUNKS),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        let (mut corrupt, mut bytes, mut seen) = (Vec::new(), 0u64, 0usize);
        let mut last: Option<Vec<u8>> = None;
        for item in iter {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                    tracing::warn!(error = %e, "scrub: unreadable chunk data");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if &k[..] == after {
                continue;
            }
            if seen == limit {
                return Ok((corrupt, bytes, last, seen));
            }
            seen += 1;
            bytes += v.len() as u64;
            let intact = match v.split_first() {
                Some((&FORMAT_V1, rest)) if rest.len() >= 32 => {
                    blake3::hash(&rest[32..]).as_bytes()[..] == rest[..32]
                }
                _ => false,
            };
            if !intact {
                if let Some(key) = parse_chunk_key(&k) {
                    corrupt.push(key);
                }
            }
            last = Some(k.to_vec());
        }
        Ok((corrupt, bytes, None, seen))
    }

    /// Queues a chunk of this node for rebuilding from its siblings (synced).
    pub fn heal_push(&self, key: &ChunkKey) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(CF_QUEUES), heal_key(key), [FORMAT_V1], &synced())?;
        Ok(())
    }

    pub fn heal_list(&self, limit: usize) -> Result<Vec<ChunkKey>, StoreError> {
        let keys = self.queue_keys(b'H', limit)?;
        Ok(keys.iter().filter_map(|k| parse_chunk_key(k)).collect())
    }

    /// Up to `limit` keys of the queue `kind` in the queues family, in order, without the
    /// `[v1][kind]` prefix.
    fn queue_keys(&self, kind: u8, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.queue_keys_after(kind, &[], limit)
    }

    /// Up to `limit` entries of queue `kind` after the entry `after` (its bytes after the
    /// queue prefix; empty: from the start).
    fn queue_keys_after(
        &self,
        kind: u8,
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = [FORMAT_V1, kind];
        let mut start = prefix.to_vec();
        start.extend_from_slice(after);
        let iter = self.db.iterator_cf(
            self.cf(CF_QUEUES),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) || out.len() == limit {
                break;
            }
            if !after.is_empty() && &k[prefix.len()..] == after {
                continue;
            }
            out.push(k[prefix.len()..].to_vec());
        }
        Ok(out)
    }

    pub fn heal_remove(&self, key: &ChunkKey) -> Result<(), StoreError> {
        self.db
            .delete_cf_opt(self.cf(CF_QUEUES), heal_key(key), &synced())?;
        Ok(())
    }

    /// Reads a chunk and verifies it against its stored checksum; corrupt bytes are never
    /// returned as data.
    pub fn get_chunk(&self, key: &ChunkKey) -> Result<([u8; 32], Bytes), StoreError> {
        let raw = match self.db.get_cf(self.cf(CF_CHUNKS), chunk_key(key)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(StoreError::NotFound),
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                return Err(StoreError::Corrupt(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        match raw.split_first() {
            Some((&FORMAT_V1, rest)) if rest.len() >= 32 => {
                let stored: [u8; 32] = rest[..32].try_into().expect("32 bytes");
                let data = &rest[32..];
                if blake3::hash(data).as_bytes() != &stored {
                    return Err(StoreError::Corrupt(format!(
                        "checksum mismatch for chunk {}/{}/{}",
                        key.version, key.stripe_idx.0, key.chunk_idx.0
                    )));
                }
                Ok((stored, Bytes::copy_from_slice(data)))
            }
            Some((&FORMAT_V1, _)) | None => {
                Err(StoreError::Corrupt("chunk value too short".into()))
            }
            Some((&v, _)) => Err(StoreError::Format(v)),
        }
    }

    pub fn delete_chunks(&self, version: &VersionId) -> Result<(), StoreError> {
        let mut from = vec![FORMAT_V1];
        from.extend_from_slice(&version.0);
        let mut to = from.clone();
        to.extend_from_slice(&[0xFF; 6]);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_CHUNKS), from, to);
        batch.delete_cf(self.cf(CF_INDEX), index_key(version));
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Stores `record` unless the node holds one that supersedes it, or, with `expect`,
    /// unless the node holds exactly a record of that version (compare-and-set: repair
    /// rewrites a record only if no client wrote it meanwhile).
    pub fn meta_put(
        &self,
        partition: &str,
        key: &str,
        record: &Versioned,
        expect: Option<Hlc>,
    ) -> Result<MetaPutOutcome, StoreError> {
        let mkey = meta_key(partition, key.as_bytes());
        let _guard = self.key_lock(&mkey);
        self.meta_put_locked(&mkey, record, expect)
    }

    /// [`Store::meta_put`] that meets the key's lease at `now_ms`. With `Some(token)`, a write
    /// under that lease: applied only while the token holds an unexpired lease on the key
    /// (`Lost` otherwise). With `None`, a client's write: refused while another writer holds
    /// an unexpired lease (`HeldByOther`). Checked and written under the locks of both the
    /// lease and the record, so no lease changes hands between the check and the write
    /// (ADR 0005).
    pub fn meta_put_leased(
        &self,
        partition: &str,
        key: &str,
        record: &Versioned,
        expect: Option<Hlc>,
        token: Option<&[u8; 16]>,
        now_ms: u64,
    ) -> Result<Result<MetaPutOutcome, LeaseRefusal>, StoreError> {
        let lkey = lease_key(partition, key);
        let mkey = meta_key(partition, key.as_bytes());
        let _guards = self.key_locks_both(&lkey, &mkey);
        let holder: Option<Vec<u8>> = match self.db.get_cf(self.cf(CF_QUEUES), &lkey)? {
            Some(raw) if raw.len() == 25 && raw[0] == FORMAT_V1 => {
                let expires_ms = u64::from_be_bytes(raw[17..25].try_into().expect("8 bytes"));
                (expires_ms > now_ms).then(|| raw[1..17].to_vec())
            }
            _ => None,
        };
        match (token, holder) {
            (Some(t), Some(h)) if h == t => {}
            (Some(_), _) => return Ok(Err(LeaseRefusal::Lost)),
            (None, Some(_)) => return Ok(Err(LeaseRefusal::HeldByOther)),
            (None, None) => {}
        }
        self.meta_put_locked(&mkey, record, expect).map(Ok)
    }

    fn meta_put_locked(
        &self,
        mkey: &[u8],
        record: &Versioned,
        expect: Option<Hlc>,
    ) -> Result<MetaPutOutcome, StoreError> {
        // Bytes that do not decode are no record: a write replaces them (read repair and
        // anti-entropy heal a corrupt replica this way).
        let current = match self.db.get_cf(self.cf(CF_META), mkey)? {
            Some(raw) => match decode_meta_value(&raw) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable metadata record replaced by a write");
                    None
                }
            },
            None => None,
        };
        let refused = |holds: Option<Hlc>| MetaPutOutcome {
            applied: false,
            replaced: None,
            holds,
        };
        if let Some(expected) = expect {
            if current.as_ref().map(|c| c.hlc) != Some(expected) {
                return Ok(refused(current.map(|c| c.hlc)));
            }
        }
        if let Some(cur) = &current {
            if !record.supersedes(cur) {
                return Ok(refused(Some(cur.hlc)));
            }
        }
        self.db
            .put_cf_opt(self.cf(CF_META), mkey, encode_meta_value(record), &synced())?;
        Ok(MetaPutOutcome {
            applied: true,
            replaced: current,
            holds: None,
        })
    }

    /// Deletes the record of `key` if it is exactly `record` (a tombstone past its grace,
    /// held identically by every replica). Returns whether it did.
    pub fn meta_purge(
        &self,
        partition: &str,
        key: &str,
        record: &Versioned,
    ) -> Result<bool, StoreError> {
        let mkey = meta_key(partition, key.as_bytes());
        let _guard = self.key_lock(&mkey);
        let current = match self.db.get_cf(self.cf(CF_META), &mkey)? {
            Some(raw) => Some(decode_meta_value(&raw)?),
            None => None,
        };
        if current.as_ref() != Some(record) {
            return Ok(false);
        }
        self.db.delete_cf_opt(self.cf(CF_META), &mkey, &synced())?;
        Ok(true)
    }

    pub fn meta_get(&self, partition: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self
            .db
            .get_cf(self.cf(CF_META), meta_key(partition, key.as_bytes()))?
        {
            Some(raw) => Ok(Some(decode_meta_value(&raw)?)),
            None => Ok(None),
        }
    }

    /// Records of `partition` whose key starts with `prefix` and is greater than `start_after`,
    /// in key order, at most `limit` of them and at most one past `max_bytes` of keys and
    /// values; the flag says whether more follow.
    pub fn meta_scan(
        &self,
        partition: &str,
        prefix: &str,
        start_after: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(String, Versioned)>, bool), StoreError> {
        let range_prefix = meta_key(partition, prefix.as_bytes());
        let after = meta_key(partition, start_after);
        let seek = if after > range_prefix {
            after.clone()
        } else {
            range_prefix.clone()
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let iter = self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(&seek, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&range_prefix) {
                break;
            }
            if k[..] == after[..] {
                continue;
            }
            if out.len() == limit || bytes >= max_bytes {
                return Ok((out, true));
            }
            bytes += k.len() + v.len();
            let sort_key = &k[range_prefix.len() - prefix.len()..];
            let sort_key = String::from_utf8(sort_key.to_vec())
                .map_err(|_| StoreError::Corrupt("metadata key is not UTF-8".into()))?;
            // A record that does not decode is skipped (the other replicas have it), so it
            // never stops the scans of its whole partition.
            match decode_meta_value(&v) {
                Ok(record) => out.push((sort_key, record)),
                Err(e) => self.skip_undecodable(partition, &sort_key, &e),
            }
        }
        Ok((out, false))
    }

    /// Grants a lease on a metadata key to `token` unless another token holds an unexpired one.
    /// Leases are stored (synced) in the queues family, so a restart cannot hand out a lease
    /// that another writer still holds.
    pub fn meta_lock(
        &self,
        partition: &str,
        key: &str,
        token: &[u8; 16],
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let lkey = lease_key(partition, key);
        let _guard = self.key_lock(&lkey);
        if let Some(raw) = self.db.get_cf(self.cf(CF_QUEUES), &lkey)? {
            if raw.len() == 25 && raw[0] == FORMAT_V1 {
                let holder = &raw[1..17];
                let expires_ms = u64::from_be_bytes(raw[17..25].try_into().expect("8 bytes"));
                if holder != token && expires_ms > now_ms {
                    return Ok(false);
                }
            }
        }
        let mut value = Vec::with_capacity(25);
        value.push(FORMAT_V1);
        value.extend_from_slice(token);
        value.extend_from_slice(&(now_ms + ttl_ms).to_be_bytes());
        self.db
            .put_cf_opt(self.cf(CF_QUEUES), &lkey, value, &synced())?;
        Ok(true)
    }

    pub fn meta_unlock(
        &self,
        partition: &str,
        key: &str,
        token: &[u8; 16],
    ) -> Result<(), StoreError> {
        let lkey = lease_key(partition, key);
        let _guard = self.key_lock(&lkey);
        if let Some(raw) = self.db.get_cf(self.cf(CF_QUEUES), &lkey)? {
            if raw.len() == 25 && &raw[1..17] == token {
                self.db.delete_cf(self.cf(CF_QUEUES), &lkey)?;
            }
        }
        Ok(())
    }

    /// Every record of every partition after the raw meta key `after` (empty: from the
    /// start), at most `limit`, as `(partition, sort key, record)`, with the raw key to resume
    /// from when more follow. For the repair scan.
    #[allow(clippy::type_complexity)]
    pub fn meta_all(
        &self,
        after: &[u8],
        limit: usize,
    ) -> Result<(Vec<(String, String, Versioned)>, Option<Vec<u8>>), StoreError> {
        let start = if after.is_empty() {
            vec![FORMAT_V1]
        } else {
            after.to_vec()
        };
        let iter = self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if &k[..] == after {
                continue;
            }
            if out.len() == limit {
                let resume = after_key(&out, &k);
                return Ok((out, Some(resume)));
            }
            let Some((&FORMAT_V1, rest)) = k.split_first() else {
                continue;
            };
            let Some(sep) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(partition), Ok(key)) = (
                std::str::from_utf8(&rest[..sep]),
                std::str::from_utf8(&rest[sep + 1..]),
            ) else {
                continue;
            };
            match decode_meta_value(&v) {
                Ok(record) => out.push((partition.to_string(), key.to_string(), record)),
                Err(e) => self.skip_undecodable(partition, key, &e),
            }
        }
        Ok((out, None))
    }

    /// Adds a record to the repair queue (idempotent; synced, so the queue survives a crash).
    pub fn repair_push(&self, partition: &str, key: &str) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_QUEUES),
            repair_queue_key(partition, key),
            [FORMAT_V1],
            &synced(),
        )?;
        Ok(())
    }

    /// Up to `limit` queued repairs, in key order.
    pub fn repair_list(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.repair_list_after(None, limit)
    }

    /// Up to `limit` queued repairs after `after` (exclusive), in key order: the worker pages
    /// through the whole queue, so entries that keep failing never hide the ones behind them.
    pub fn repair_list_after(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let after = after.map_or(Vec::new(), |(p, k)| repair_queue_key(p, k)[2..].to_vec());
        let keys = self.queue_keys_after(b'R', &after, limit)?;
        Ok(keys
            .iter()
            .filter_map(|rest| {
                let sep = rest.iter().position(|&b| b == 0)?;
                Some((
                    String::from_utf8_lossy(&rest[..sep]).into_owned(),
                    String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
                ))
            })
            .collect())
    }

    pub fn repair_remove(&self, partition: &str, key: &str) -> Result<(), StoreError> {
        self.db.delete_cf_opt(
            self.cf(CF_QUEUES),
            repair_queue_key(partition, key),
            &synced(),
        )?;
        Ok(())
    }

    /// The nodes being drained, as set by [`Store::set_draining`].
    pub fn draining(&self) -> Result<Vec<u32>, StoreError> {
        match self.db.get_cf(self.cf(CF_QUEUES), [FORMAT_V1, b'D'])? {
            Some(raw) => Ok(raw[1..]
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    pub fn set_draining(&self, nodes: &[u32]) -> Result<(), StoreError> {
        let mut value = vec![FORMAT_V1];
        for n in nodes {
            value.extend_from_slice(&n.to_be_bytes());
        }
        self.db
            .put_cf_opt(self.cf(CF_QUEUES), [FORMAT_V1, b'D'], value, &synced())?;
        Ok(())
    }

    /// The cluster map this node last installed (postcard bytes), if any.
    pub fn cluster_map(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.get_cf(self.cf(CF_QUEUES), [FORMAT_V1, b'M'])? {
            Some(raw) => match raw.split_first() {
                Some((&FORMAT_V1, rest)) => Ok(Some(rest.to_vec())),
                Some((&v, _)) => Err(StoreError::Format(v)),
                None => Err(StoreError::Corrupt("empty cluster map value".into())),
            },
            None => Ok(None),
        }
    }

    pub fn set_cluster_map(&self, encoded: &[u8]) -> Result<(), StoreError> {
        let mut value = vec![FORMAT_V1];
        value.extend_from_slice(encoded);
        self.db
            .put_cf_opt(self.cf(CF_QUEUES), [FORMAT_V1, b'M'], value, &synced())?;
        Ok(())
    }

    /// Exact counts of what the node holds (a full pass over its keys: for an offline
    /// `storage-node --inspect`, not for a running node's status).
    pub fn inspect(&self) -> Result<Inventory, StoreError> {
        let count = |cf: &str, prefix: &[u8]| -> Result<u64, StoreError> {
            let mut n = 0;
            let iter = self
                .db
                .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward));
            for item in iter {
                let (k, _) = item?;
                if !k.starts_with(prefix) {
                    break;
                }
                n += 1;
            }
            Ok(n)
        };
        Ok(Inventory {
            chunks: count(CF_CHUNKS, &[FORMAT_V1])?,
            indexed_versions: count(CF_INDEX, &[FORMAT_V1])?,
            metadata_records: count(CF_META, &[FORMAT_V1])?,
            drops_pending: count(CF_QUEUES, &[FORMAT_V1, b'G'])?,
        })
    }

    /// The metadata partitions this node holds records of.
    pub fn meta_partitions(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut seek = vec![FORMAT_V1];
        loop {
            let mut iter = self.db.iterator_cf(
                self.cf(CF_META),
                IteratorMode::From(&seek, Direction::Forward),
            );
            let Some(item) = iter.next() else {
                return Ok(out);
            };
            let (k, _) = item?;
            let Some((&FORMAT_V1, rest)) = k.split_first() else {
                return Ok(out);
            };
            let Some(sep) = rest.iter().position(|&b| b == 0) else {
                return Ok(out);
            };
            let partition = String::from_utf8_lossy(&rest[..sep]).into_owned();
            // Past every key of this partition: `[v1][partition][1]`.
            seek = meta_key(&partition, b"");
            *seek.last_mut().expect("separator") = 1;
            out.push(partition);
        }
    }

    /// Deletes every record of a partition this node is no longer a replica of.
    pub fn meta_drop_partition(&self, partition: &str) -> Result<(), StoreError> {
        let from = meta_key(partition, b"");
        let mut to = from.clone();
        *to.last_mut().expect("separator") = 1;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_META), from, to);
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Exact count of the records (tombstones included) of one metadata partition.
    pub fn count_partition(&self, partition: &str) -> Result<u64, StoreError> {
        let prefix = meta_key(partition, b"");
        let mut n = 0;
        let iter = self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    pub fn estimate_chunks(&self) -> u64 {
        self.db
            .property_int_value_cf(self.cf(CF_CHUNKS), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Flushes memtables to SST and blob files, so a clean shutdown leaves no work for WAL
    /// replay. Data is already durable through the synced WAL without it.
    pub fn flush(&self) -> Result<(), StoreError> {
        for cf in [CF_CHUNKS, CF_META, CF_QUEUES, CF_INDEX] {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpstore_common::ids::{ChunkIdx, StripeIdx};

    fn key(v: u8, s: u32, c: u8) -> ChunkKey {
        ChunkKey {
            version: VersionId([v; 16]),
            stripe_idx: StripeIdx(s),
            chunk_idx: ChunkIdx(c),
        }
    }

    #[test]
    fn chunks_round_trip_survive_reopen_and_refuse_bad_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![42u8; 10_000];
        let sum = *blake3::hash(&data).as_bytes();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_chunk(&key(1, 0, 0), &sum, &data, None).unwrap();
            assert!(matches!(
                store.put_chunk(&key(1, 0, 1), &[0; 32], &data, None),
                Err(StoreError::ChecksumMismatch)
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let (got_sum, got) = store.get_chunk(&key(1, 0, 0)).unwrap();
        assert_eq!(got_sum, sum);
        assert_eq!(&got[..], &data[..]);
        assert!(matches!(
            store.get_chunk(&key(1, 0, 1)),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn a_scheduled_drop_takes_one_slot_and_a_new_write_of_it_cancels_the_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sum = *blake3::hash(b"x").as_bytes();
        for s in [0, 1, 2] {
            store
                .put_chunk(&key(1, s, 3), &sum, b"x", Some(b"h"))
                .unwrap();
            store
                .put_chunk(&key(2, s, 3), &sum, b"x", Some(b"h"))
                .unwrap();
        }
        store
            .put_chunk(&key(1, 0, 4), &sum, b"x", Some(b"h"))
            .unwrap();
        let pending = |v: u8, idx: u8| PendingDrop {
            version: VersionId([v; 16]),
            chunk_idx: idx,
            due_ms: 42,
            partition: "bucket#versions".into(),
            key: "a/b\0id".into(),
        };
        store.drop_schedule(&pending(1, 3)).unwrap();
        store.drop_schedule(&pending(2, 3)).unwrap();
        assert_eq!(
            store.drop_list(10).unwrap(),
            vec![pending(1, 3), pending(2, 3)]
        );
        // Slot 3 of version 2 is written here again: its drop is cancelled.
        store
            .put_chunk(&key(2, 0, 3), &sum, b"x", Some(b"h"))
            .unwrap();
        assert_eq!(store.drop_list(10).unwrap(), vec![pending(1, 3)]);
        // A stale condition drops nothing.
        let cond = |due_ms| DropIf::Scheduled { due_ms };
        assert_eq!(
            store
                .drop_moved_chunks(&VersionId([1; 16]), 3, cond(41))
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .drop_moved_chunks(&VersionId([2; 16]), 3, cond(42))
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .drop_moved_chunks(&VersionId([1; 16]), 3, cond(42))
                .unwrap(),
            3
        );
        for s in [0, 1, 2] {
            assert!(matches!(
                store.get_chunk(&key(1, s, 3)),
                Err(StoreError::NotFound)
            ));
            assert!(store.get_chunk(&key(2, s, 3)).is_ok());
        }
        // Slot 4 of version 1 stays, and with it the version's index entry.
        assert!(store.get_chunk(&key(1, 0, 4)).is_ok());
        assert!(store.chunk_home(&VersionId([1; 16])).unwrap().is_some());
        assert!(store.drop_list(10).unwrap().is_empty());
        let home = |h: &[u8]| DropIf::IndexIs {
            written_ms: None,
            home: h.to_vec(),
        };
        assert_eq!(
            store
                .drop_moved_chunks(&VersionId([1; 16]), 4, home(b"other"))
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .drop_moved_chunks(&VersionId([1; 16]), 4, home(b"h"))
                .unwrap(),
            1
        );
        assert!(store.chunk_home(&VersionId([1; 16])).unwrap().is_none());
    }

    #[test]
    fn partitions_are_listed_and_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = Versioned {
            hlc: dmpstore_common::ids::Hlc(1),
            value: vec![1],
        };
        for (p, k) in [
            ("a", "x"),
            ("a", "y"),
            ("a#versions", "x"),
            ("b", "z"),
            ("", "a"),
        ] {
            store.meta_put(p, k, &rec, None).unwrap();
        }
        assert_eq!(
            store.meta_partitions().unwrap(),
            ["", "a", "a#versions", "b"]
        );
        store.meta_drop_partition("a").unwrap();
        assert_eq!(store.meta_partitions().unwrap(), ["", "a#versions", "b"]);
        assert_eq!(store.count_partition("a#versions").unwrap(), 1);
        assert_eq!(store.count_partition("").unwrap(), 1);
    }

    #[test]
    fn delete_chunks_drops_one_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sum = *blake3::hash(b"x").as_bytes();
        for v in [1, 2] {
            for s in [0, 1, u32::MAX] {
                store
                    .put_chunk(&key(v, s, 5), &sum, b"x", Some(b"home"))
                    .unwrap();
            }
        }
        store.delete_chunks(&VersionId([1; 16])).unwrap();
        assert_eq!(store.chunk_home(&VersionId([1; 16])).unwrap(), None);
        assert_eq!(
            store.chunk_home(&VersionId([2; 16])).unwrap().as_deref(),
            Some(&b"home"[..])
        );
        for s in [0, 1, u32::MAX] {
            assert!(matches!(
                store.get_chunk(&key(1, s, 5)),
                Err(StoreError::NotFound)
            ));
            assert!(store.get_chunk(&key(2, s, 5)).is_ok());
        }
    }

    #[test]
    fn scrub_finds_exactly_the_corrupt_chunks_page_by_page_and_heals_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = b"good bytes";
        let sum = *blake3::hash(good).as_bytes();
        for s in 0..10 {
            store.put_chunk(&key(7, s, 1), &sum, good, None).unwrap();
        }
        // Damage two chunks behind the store's back: a stored value whose bytes no longer
        // match its checksum.
        for s in [3u32, 8] {
            let mut bad = vec![FORMAT_V1];
            bad.extend_from_slice(&sum);
            bad.extend_from_slice(b"evil bytes");
            store
                .db
                .put_cf(store.cf(CF_CHUNKS), chunk_key(&key(7, s, 1)), bad)
                .unwrap();
        }
        let (mut found, mut after, mut pages) = (Vec::new(), Vec::new(), 0);
        loop {
            let (corrupt, bytes, next, _) = store.scrub_page(&after, 3).unwrap();
            assert!(bytes > 0);
            found.extend(corrupt);
            pages += 1;
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        assert_eq!(pages, 4);
        assert_eq!(found, vec![key(7, 3, 1), key(7, 8, 1)]);
        for k in &found {
            store.heal_push(k).unwrap();
            assert_eq!(parse_chunk_key(&chunk_key(k)), Some(*k));
        }
        assert_eq!(store.heal_list(10).unwrap(), found);
        store.heal_remove(&found[0]).unwrap();
        assert_eq!(store.heal_list(10).unwrap(), vec![found[1]]);
    }

    #[test]
    fn the_repair_queue_survives_reopen_in_key_order_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for (p, k) in [("b", "z"), ("b#versions", "k\0v1"), ("b", "a"), ("b", "a")] {
                store.repair_push(p, k).unwrap();
            }
            store.heal_push(&key(3, 0, 2)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let q = store.repair_list(10).unwrap();
        let want = |p: &str, k: &str| (p.to_string(), k.to_string());
        assert_eq!(
            q,
            vec![want("b", "a"), want("b", "z"), want("b#versions", "k\0v1")]
        );
        assert_eq!(store.repair_list(1).unwrap(), vec![want("b", "a")]);
        store.repair_remove("b", "a").unwrap();
        assert_eq!(store.repair_list(10).unwrap().len(), 2);
        assert_eq!(store.heal_list(10).unwrap(), vec![key(3, 0, 2)]);
    }

    #[test]
    fn leases_exclude_other_tokens_until_released_or_expired_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.meta_lock("b", "k", &[1; 16], 1000, 500).unwrap());
            assert!(!store.meta_lock("b", "k", &[2; 16], 1200, 500).unwrap());
            assert!(
                store.meta_lock("b", "k", &[1; 16], 1200, 500).unwrap(),
                "the holder renews"
            );
            assert!(
                store.meta_lock("b", "other", &[2; 16], 1200, 500).unwrap(),
                "another key is free"
            );
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(
            !store.meta_lock("b", "k", &[2; 16], 1300, 500).unwrap(),
            "a lease survives a restart"
        );
        store.meta_unlock("b", "k", &[2; 16]).unwrap();
        assert!(
            !store.meta_lock("b", "k", &[2; 16], 1300, 500).unwrap(),
            "only the holder releases"
        );
        assert!(
            store.meta_lock("b", "k", &[2; 16], 1701, 500).unwrap(),
            "an expired lease is free"
        );
        store.meta_unlock("b", "k", &[2; 16]).unwrap();
        assert!(store.meta_lock("b", "k", &[3; 16], 1702, 500).unwrap());
    }

    #[test]
    fn fenced_writes_land_only_while_their_lease_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = |h: u64| Versioned {
            hlc: Hlc(h),
            value: vec![h as u8],
        };
        let put = |h: u64, token: Option<u8>, now: u64| {
            store
                .meta_put_leased(
                    "b",
                    "k",
                    &rec(h),
                    None,
                    token.map(|t| [t; 16]).as_ref(),
                    now,
                )
                .unwrap()
        };
        use LeaseRefusal::{HeldByOther, Lost};
        assert_eq!(
            put(1, Some(1), 1000),
            Err(Lost),
            "no lease, no fenced write"
        );
        assert!(
            put(1, None, 1000).unwrap().applied,
            "a client writes a key nobody holds"
        );
        assert!(store.meta_lock("b", "k", &[1; 16], 1000, 500).unwrap());
        assert!(put(2, Some(1), 1100).unwrap().applied, "the holder writes");
        assert_eq!(put(3, Some(2), 1100), Err(Lost), "another token does not");
        assert_eq!(
            put(3, None, 1100),
            Err(HeldByOther),
            "nor a client, while the lease holds"
        );
        assert_eq!(
            put(4, Some(1), 1500),
            Err(Lost),
            "nor the holder once it expired"
        );
        assert!(store.meta_lock("b", "k", &[2; 16], 1501, 500).unwrap());
        assert!(
            put(5, Some(2), 1600).unwrap().applied,
            "the next holder writes"
        );
        assert_eq!(
            put(6, Some(1), 1600),
            Err(Lost),
            "the stalled holder is fenced out"
        );
        assert_eq!(store.meta_get("b", "k").unwrap(), Some(rec(5)));
        assert_eq!(
            store
                .meta_put_leased("b", "other", &rec(7), None, Some(&[2; 16]), 1600)
                .unwrap(),
            Err(Lost),
            "a lease covers its own key only"
        );
        assert!(
            put(8, None, 2001).unwrap().applied,
            "an expired lease holds nobody back"
        );
        assert!(
            store.meta_put("b", "k", &rec(9), None).unwrap().applied,
            "copies of records ignore leases"
        );
    }

    #[test]
    fn meta_put_keeps_the_newest_and_scans_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = |h: u64, v: &[u8]| Versioned {
            hlc: Hlc(h),
            value: v.to_vec(),
        };
        let applied = |replaced| MetaPutOutcome {
            applied: true,
            replaced,
            holds: None,
        };
        let refused = |holds| MetaPutOutcome {
            applied: false,
            replaced: None,
            holds,
        };
        assert_eq!(
            store.meta_put("b", "k", &rec(5, b"a"), None).unwrap(),
            applied(None)
        );
        // An older stamp is refused, and the node says which version it holds.
        assert_eq!(
            store.meta_put("b", "k", &rec(4, b"old"), None).unwrap(),
            refused(Some(Hlc(5)))
        );
        assert_eq!(
            store.meta_put("b", "k", &rec(6, b"new"), None).unwrap(),
            applied(Some(rec(5, b"a")))
        );
        assert_eq!(store.meta_get("b", "k").unwrap(), Some(rec(6, b"new")));
        for k in ["a/1", "a/2", "b", "a/3", "a"] {
            store.meta_put("p", k, &rec(1, k.as_bytes()), None).unwrap();
        }
        store
            .meta_put("pp", "a/0", &rec(1, b"other partition"), None)
            .unwrap();
        let (page, more) = store.meta_scan("p", "a/", b"", 2, usize::MAX).unwrap();
        assert_eq!(
            page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a/1", "a/2"]
        );
        assert!(more);
        let (page, more) = store.meta_scan("p", "a/", b"a/2", 10, usize::MAX).unwrap();
        assert_eq!(
            page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a/3"]
        );
        assert!(!more);
        let (page, _) = store.meta_scan("p", "", b"a/\xff", 10, usize::MAX).unwrap();
        assert_eq!(
            page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn compare_and_set_applies_only_over_the_expected_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = |h: u64, v: &[u8]| Versioned {
            hlc: Hlc(h),
            value: v.to_vec(),
        };
        store.meta_put("b", "k", &rec(5, b"a"), None).unwrap();
        // A client wrote 7 meanwhile: a repair of version 5 must not land, even above it.
        store.meta_put("b", "k", &rec(7, b"client"), None).unwrap();
        let out = store
            .meta_put("b", "k", &rec(8, b"repair"), Some(Hlc(5)))
            .unwrap();
        assert!(!out.applied);
        assert_eq!(out.holds, Some(Hlc(7)));
        let out = store
            .meta_put("b", "k", &rec(8, b"repair"), Some(Hlc(7)))
            .unwrap();
        assert!(out.applied);
        // Nothing to compare with: refused, the node holds nothing.
        let out = store
            .meta_put("b", "absent", &rec(2, b"x"), Some(Hlc(1)))
            .unwrap();
        assert!(!out.applied && out.holds.is_none());
    }

    #[test]
    fn scan_pages_are_bounded_by_bytes_whatever_the_entry_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let body = vec![7u8; 16 * 1024];
        for i in 0..100 {
            let rec = Versioned {
                hlc: Hlc(1),
                value: body.clone(),
            };
            store
                .meta_put("p", &format!("k{i:03}"), &rec, None)
                .unwrap();
        }
        let max_bytes = 100 * 1024;
        let mut after = Vec::new();
        let mut seen = 0;
        loop {
            let (page, more) = store.meta_scan("p", "", &after, 1000, max_bytes).unwrap();
            let bytes: usize = page.iter().map(|(k, v)| k.len() + v.value.len()).sum();
            assert!(!page.is_empty());
            assert!(bytes < max_bytes + body.len() + 64, "page of {bytes} bytes");
            seen += page.len();
            after = page.last().unwrap().0.clone().into_bytes();
            if !more {
                break;
            }
        }
        assert_eq!(seen, 100);
    }
}
