//! Large chunk bytes written to disk once (DESIGN 14, ADR 0011).
//!
//! A chunk of at least `extent_min_bytes` does not go through RocksDB's WAL and blob files
//! (two writes of every byte): its bytes are appended to the extent file of its version's slot
//! (`extents/<first byte of version, hex>/<version hex>-<chunk idx>.extent`), made durable
//! (`fdatasync`, and the directory when the file is new), and only then is the small RocksDB
//! record that references them written, synced: `[EXTENT_V1][blake3 32 B][offset u64][len u32]`.
//! RocksDB stays the store of record: a file's bytes count only through a record.
//!
//! What keeps files and records consistent:
//! - A slot's file is touched by writers (append, then record), by deleters (records, then the
//!   file) and by the orphan sweep (a file no record references). [`Extents::slots`] counts the
//!   writers of each slot; a file is unlinked only while its slot has none, and a writer's
//!   count drops only after its record is written. So a file with records is never unlinked,
//!   and a writer never appends to a file that is being unlinked: it opens a new one.
//! - A crash leaves at worst bytes no record references (a write before its record; a delete
//!   between records and unlink): [`super::Store::open`] sweeps them.
//!
//! Files are written and read with `O_DIRECT` where the file system allows it (not tmpfs):
//! measured on the large PUT, copying chunk bytes into fresh page-cache pages took 30 % of the
//! machine's CPU (ADR 0011). Every chunk therefore starts at a multiple of [`ALIGN`] and takes
//! a multiple of it, its tail padded with zeros.

use bytes::Bytes;
use dmpstore_common::ids::VersionId;
use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Alignment of every chunk's offset, length and buffer in an extent file (`O_DIRECT`).
pub(super) const ALIGN: usize = 4096;
/// Write buffers up to this size are kept per thread for the next write.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// `len` zeroed bytes at an [`ALIGN`]ed address, as a window of `buf`.
fn aligned_window(buf: &mut Vec<u8>, len: usize) -> std::ops::Range<usize> {
    buf.clear();
    buf.resize(len + ALIGN, 0);
    let start = buf.as_ptr().align_offset(ALIGN);
    start..start + len
}

thread_local! {
    /// The write buffer of this (blocking) thread, reused across chunks.
    static WRITE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Format byte of a chunk value that references extent bytes.
pub(super) const EXTENT_V1: u8 = 2;
/// Length of such a value: format, checksum, offset, length.
pub(super) const EXTENT_VALUE_LEN: usize = 1 + 32 + 8 + 4;
/// Default for the smallest chunk written to an extent file: below it the WAL's one sync is
/// cheaper than a file write and its own sync.
pub const DEFAULT_EXTENT_MIN_BYTES: u64 = 64 * 1024;

/// Where a chunk's bytes are in its slot's extent file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExtentRef {
    pub checksum: [u8; 32],
    pub offset: u64,
    pub len: u32,
}

impl ExtentRef {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(EXTENT_VALUE_LEN);
        v.push(EXTENT_V1);
        v.extend_from_slice(&self.checksum);
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v
    }

    /// Decodes a value whose format byte is [`EXTENT_V1`].
    pub fn decode(raw: &[u8]) -> Option<ExtentRef> {
        if raw.len() != EXTENT_VALUE_LEN || raw[0] != EXTENT_V1 {
            return None;
        }
        Some(ExtentRef {
            checksum: raw[1..33].try_into().ok()?,
            offset: u64::from_be_bytes(raw[33..41].try_into().ok()?),
            len: u32::from_be_bytes(raw[41..45].try_into().ok()?),
        })
    }
}

/// One slot's open file and who is writing it.
struct Slot {
    file: Arc<File>,
    /// Where the next append goes.
    end: u64,
    writers: usize,
    /// Whether the file's directory entry is durable (set by the first writer of a new file).
    dir_synced: Arc<OnceLock<Result<(), io::ErrorKind>>>,
}

/// The extent files of one node.
pub(super) struct Extents {
    dir: PathBuf,
    /// Whether the file system takes `O_DIRECT` (tmpfs does not).
    direct: bool,
    slots: Mutex<HashMap<(VersionId, u8), Slot>>,
}

/// A reserved append: its file and offset. Hand it back to [`Extents::finish`] once the
/// record that references the bytes is written (or was not).
pub(super) struct Append {
    slot: (VersionId, u8),
    file: Arc<File>,
    pub offset: u64,
}

impl Extents {
    /// Opens (creating) `dir` and its 256 shard directories, each made durable.
    pub fn open(dir: &Path) -> io::Result<Extents> {
        let mut created = false;
        for shard in 0..=255u8 {
            let sub = dir.join(format!("{shard:02x}"));
            if !sub.is_dir() {
                std::fs::create_dir_all(&sub)?;
                created = true;
            }
        }
        if created {
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let probe = dir.join("direct-io.probe");
        let direct = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&probe)
            .is_ok();
        let _ = std::fs::remove_file(&probe);
        if !direct {
            tracing::info!(dir = %dir.display(), "no O_DIRECT here: extent files go through the page cache");
        }
        Ok(Extents {
            dir: dir.to_path_buf(),
            direct,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn open_options(&self) -> OpenOptions {
        let mut o = OpenOptions::new();
        if self.direct {
            o.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        o
    }

    fn shard(&self, version: &VersionId) -> PathBuf {
        self.dir.join(format!("{:02x}", version.0[0]))
    }

    pub fn path(&self, version: &VersionId, chunk_idx: u8) -> PathBuf {
        self.shard(version)
            .join(format!("{}-{chunk_idx}.extent", hex::encode(version.0)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(VersionId, u8), Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `data` at the end of the slot's file and makes it durable (the file's data and,
    /// for a new file, its directory entry). The caller writes the record, then calls
    /// [`Extents::finish`] whatever happened.
    pub fn append(&self, version: &VersionId, chunk_idx: u8, data: &[u8]) -> io::Result<Append> {
        let key = (*version, chunk_idx);
        let (append, dir_synced) = {
            let mut slots = self.lock();
            let slot = match slots.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let file = self
                        .open_options()
                        .create(true)
                        .truncate(false)
                        .read(true)
                        .write(true)
                        .open(self.path(version, chunk_idx))?;
                    let end = padded(file.metadata()?.len() as usize) as u64;
                    // A file with bytes in it was made durable by the writer that made it.
                    let dir_synced = Arc::new(OnceLock::new());
                    if end > 0 {
                        let _ = dir_synced.set(Ok(()));
                    }
                    e.insert(Slot {
                        file: Arc::new(file),
                        end,
                        writers: 0,
                        dir_synced,
                    })
                }
            };
            slot.writers += 1;
            let offset = slot.end;
            slot.end += padded(data.len()) as u64;
            (
                Append {
                    slot: key,
                    file: slot.file.clone(),
                    offset,
                },
                slot.dir_synced.clone(),
            )
        };
        let written = WRITE_BUFFER
            .with_borrow_mut(|buf| {
                let window = aligned_window(buf, padded(data.len()));
                buf[window.start..window.start + data.len()].copy_from_slice(data);
                let result = append.file.write_all_at(&buf[window], append.offset);
                if buf.capacity() > KEEP_BUFFER_BYTES {
                    *buf = Vec::new();
                }
                result
            })
            .and_then(|()| append.file.sync_data())
            // Every writer of a new file waits for its directory entry to be durable (the
            // first one syncs it), so no record references a file a crash could lose.
            .and_then(|()| {
                (*dir_synced.get_or_init(|| sync_dir(&self.shard(version)).map_err(|e| e.kind())))
                    .map_err(io::Error::from)
            });
        match written {
            Ok(()) => Ok(append),
            Err(e) => {
                self.finish(append);
                Err(e)
            }
        }
    }

    /// Ends a writer of the slot (its record written or failed).
    pub fn finish(&self, append: Append) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(&append.slot) {
            slot.writers -= 1;
            if slot.writers == 0 {
                slots.remove(&append.slot);
            }
        }
    }

    /// Reads the chunk at `at` of the slot's file (with its padding, then without).
    pub fn read(&self, version: &VersionId, chunk_idx: u8, at: &ExtentRef) -> io::Result<Bytes> {
        let file = self
            .open_options()
            .read(true)
            .open(self.path(version, chunk_idx))?;
        let mut buf = Vec::new();
        let window = aligned_window(&mut buf, padded(at.len as usize));
        file.read_exact_at(&mut buf[window.clone()], at.offset)?;
        Ok(Bytes::from(buf).slice(window.start..window.start + at.len as usize))
    }

    /// Unlinks the slot's file unless a writer is appending to it, deciding under the slots'
    /// lock with `unreferenced` (true: no record references the file). Returns whether a
    /// file was removed.
    pub fn remove_if(
        &self,
        version: &VersionId,
        chunk_idx: u8,
        unreferenced: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        let slots = self.lock();
        if slots.contains_key(&(*version, chunk_idx)) || !unreferenced() {
            return Ok(false);
        }
        match std::fs::remove_file(self.path(version, chunk_idx)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The slots of `version` that have a file here.
    pub fn slots_of(&self, version: &VersionId) -> io::Result<Vec<u8>> {
        let prefix = format!("{}-", hex::encode(version.0));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.shard(version))? {
            let name = entry?.file_name();
            if let Some((v, idx)) = parse_name(&name.to_string_lossy()) {
                if v == *version && name.to_string_lossy().starts_with(&prefix) {
                    out.push(idx);
                }
            }
        }
        Ok(out)
    }

    /// Every slot with a file here, shard by shard.
    pub fn all_slots(&self) -> io::Result<Vec<(VersionId, u8)>> {
        let mut out = Vec::new();
        for shard in 0..=255u8 {
            let dir = self.dir.join(format!("{shard:02x}"));
            for entry in std::fs::read_dir(&dir)? {
                if let Some(slot) = parse_name(&entry?.file_name().to_string_lossy()) {
                    out.push(slot);
                }
            }
        }
        Ok(out)
    }
}

/// `<version hex>-<chunk idx>.extent` back to its slot.
fn parse_name(name: &str) -> Option<(VersionId, u8)> {
    let stem = name.strip_suffix(".extent")?;
    let (v, idx) = stem.split_once('-')?;
    let bytes: [u8; 16] = hex::decode(v).ok()?.try_into().ok()?;
    Some((VersionId(bytes), idx.parse().ok()?))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_and_names_parse() {
        let dir = tempfile::tempdir().unwrap();
        let ext = Extents::open(&dir.path().join("extents")).unwrap();
        let v = VersionId([7; 16]);
        let a = ext.append(&v, 3, b"first").unwrap();
        let b = ext.append(&v, 3, b"second!").unwrap();
        assert_eq!((a.offset, b.offset), (0, 4096));
        ext.finish(a);
        // A writer still holds the slot: no unlink, whatever the records say.
        assert!(!ext.remove_if(&v, 3, || true).unwrap());
        ext.finish(b);
        let at = |offset, len| ExtentRef {
            checksum: [0; 32],
            offset,
            len,
        };
        assert_eq!(&ext.read(&v, 3, &at(4096, 7)).unwrap()[..], b"second!");
        assert_eq!(&ext.read(&v, 3, &at(0, 5)).unwrap()[..], b"first");
        assert_eq!(ext.slots_of(&v).unwrap(), vec![3]);
        assert_eq!(ext.all_slots().unwrap(), vec![(v, 3)]);
        // A later writer appends after what is there.
        let c = ext.append(&v, 3, b"x").unwrap();
        assert_eq!(c.offset, 8192);
        ext.finish(c);
        assert!(!ext.remove_if(&v, 3, || false).unwrap());
        assert!(ext.remove_if(&v, 3, || true).unwrap());
        assert!(ext.slots_of(&v).unwrap().is_empty());
        let r = at(u64::MAX / 3, 9);
        assert_eq!(ExtentRef::decode(&r.encode()), Some(r));
        assert_eq!(parse_name("zz-1.extent"), None);
    }
}
