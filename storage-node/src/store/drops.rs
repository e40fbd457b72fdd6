//! Scheduled drops (garbage collection's part of the store): a chunk slot that repair moved to
//! another node is dropped here after a grace, and only if nothing wrote the slot again since
//! (`queues` family, `[v1]['G'][version][chunk idx]`).

use super::{
    decode_index_value, drop_key, index_key, synced, Store, StoreError, CF_CHUNKS, CF_INDEX,
    CF_QUEUES, FORMAT_V1,
};
use dmpstore_common::ids::VersionId;
use rocksdb::{Direction, IteratorMode, WriteBatch};

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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_chunk_key as key;

    fn pending(v: u8, idx: u8) -> PendingDrop {
        PendingDrop {
            version: VersionId([v; 16]),
            chunk_idx: idx,
            due_ms: 42,
            partition: "bucket#versions".into(),
            key: "a/b\0id".into(),
        }
    }

    /// Slots 3 of versions 1 and 2 (three stripes each) and slot 4 of version 1 (one stripe),
    /// all with home `h`.
    fn store_with_two_versions(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).unwrap();
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
        store
    }

    #[test]
    fn a_scheduled_drop_takes_one_slot_and_a_new_write_of_it_cancels_the_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_two_versions(dir.path());
        let sum = *blake3::hash(b"x").as_bytes();
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
}
