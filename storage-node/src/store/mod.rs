//! The node's RocksDB database: layout, formats and every disk operation.
//!
//! Column families (DESIGN 14):
//! - `chunks`: key `[v1][version 16 B][stripe u32 BE][chunk u8]`, value `[v1][blake3 32 B][bytes]`.
//!   Values go to BlobDB blob files so compaction never rewrites chunk bytes.
//! - `meta`: key `[v1][partition][0x00][sort key]`, value `[v1][hlc u64 BE][record]`. Partition
//!   names never contain 0x00, so one partition is one contiguous key range.
//! - `queues`: conditional-write leases (`[v1]['L']...`), the repair queue
//!   (`[v1]['R'][partition][0x00][sort key]`), the chunk heal queue (`[v1]['H'][chunk key]`),
//!   scheduled drops (`[v1]['G'][version][chunk idx]`), the drain set (`[v1]['D']`) and the
//!   installed cluster map (`[v1]['M']`).
//! - `index`: key `[v1][version 16 B]`, value `[v1][home]`: for every object version this node
//!   holds chunks of, an opaque description of where its other chunks are (layout and
//!   placement, written by the caller), so a corrupt chunk can be rebuilt from its siblings
//!   without finding the record that references it (DESIGN 11).
//!
//! Every write that acknowledges data uses a synced WAL write: when a call returns `Ok`, the
//! bytes survive power loss. Calls block; the server runs them on the blocking thread pool.
//!
//! This file holds the [`Store`] itself (open, locks, counts, flush), its error, and every key
//! and shared value encoding; the operations live by concern:
//! - `chunks`: chunks and their index of homes, scrub.
//! - `metadata`: records, scans, partitions.
//! - `leases`: conditional-write leases and the write that meets them.
//! - `queues`: the repair and heal queues.
//! - `drops`: scheduled drops of moved chunks.
//! - `settings`: the drain set and the installed cluster map.
//!
//! Invariant: this module knows nothing of S3, stripes or placement: chunks are opaque bytes with
//! a checksum, records are opaque bytes with a clock.

mod chunks;
mod drops;
mod leases;
mod metadata;
mod queues;
mod settings;

pub use drops::{DropIf, PendingDrop};
pub use leases::LeaseRefusal;
pub use metadata::MetaPutOutcome;

use dmpstore_common::ids::{ChunkKey, VersionId};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};
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

/// What a node holds, counted exactly ([`Store::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    pub chunks: u64,
    pub indexed_versions: u64,
    pub metadata_records: u64,
    pub drops_pending: u64,
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
        self.note_skipped(name, e.to_string());
    }

    fn note_skipped(&self, name: String, why: String) {
        let mut u = self.undecodable.lock().expect("undecodable");
        u.count += 1;
        if u.first.len() < UNDECODABLE_KEPT && !u.first.iter().any(|(k, _)| *k == name) {
            u.first.push((name, why));
        }
    }

    /// Where a scan of column family `cf` goes on after its iterator failed at or after key
    /// `at` (a corrupt SST block): just past the largest key of the damaged file, the one the
    /// error names, else the file of `cf` whose key range holds `at` (or the first after it).
    /// The skipped range is counted, logged and named in status beside undecodable records.
    /// `None`: not a corruption, or no file explains it, and the error stands.
    pub(crate) fn skip_unreadable(
        &self,
        cf: &str,
        at: &[u8],
        e: &rocksdb::Error,
    ) -> Option<Vec<u8>> {
        if e.kind() != rocksdb::ErrorKind::Corruption {
            return None;
        }
        let message = e.to_string();
        let mut files: Vec<rocksdb::LiveFile> = self
            .db
            .live_files()
            .ok()?
            .into_iter()
            .filter(|f| f.column_family_name == cf)
            .filter(|f| f.end_key.as_deref().is_some_and(|end| end >= at))
            .collect();
        files.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        let named = files
            .iter()
            .position(|f| message.contains(f.name.trim_start_matches('/')));
        let holding = || {
            files
                .iter()
                .position(|f| f.start_key.as_deref().is_some_and(|s| s <= at))
        };
        let file = &files[named
            .or_else(holding)
            .or((!files.is_empty()).then_some(0))?];
        let end = file.end_key.clone()?;
        let name = format!(
            "{cf} keys {} to {} in {}",
            file.start_key.as_deref().unwrap_or_default().escape_ascii(),
            end.escape_ascii(),
            file.name.trim_start_matches('/')
        );
        tracing::warn!(range = %name, error = %message, "unreadable SST range skipped by a scan");
        self.note_skipped(name, message);
        let mut resume = end;
        resume.push(0);
        Some(resume)
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

/// Chunk `c` of stripe `s` of the version whose id is 16 bytes `v` (the stores' unit tests).
#[cfg(test)]
pub(crate) fn test_chunk_key(v: u8, s: u32, c: u8) -> ChunkKey {
    use dmpstore_common::ids::{ChunkIdx, StripeIdx};
    ChunkKey {
        version: VersionId([v; 16]),
        stripe_idx: StripeIdx(s),
        chunk_idx: ChunkIdx(c),
    }
}
