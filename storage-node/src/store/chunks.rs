//! Chunks and the index of their homes: writing a chunk with its checksum (and its version's
//! home), reading it back verified, deleting a version, walking the index, and scrubbing.
//! Corrupt bytes are never returned as data.

use super::{
    chunk_key, decode_index_value, drop_key, index_key, index_value, now_ms, parse_chunk_key,
    synced, Store, StoreError, CF_CHUNKS, CF_INDEX, CF_QUEUES, FORMAT_V1,
};
use bytes::Bytes;
use dmpstore_common::ids::{ChunkKey, VersionId};
use rocksdb::{Direction, IteratorMode, WriteBatch};

impl Store {
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
        let mut seek = start.clone();
        let mut out = Vec::new();
        'unreadable: loop {
            let iter = self.db.iterator_cf(
                self.cf(CF_INDEX),
                IteratorMode::From(&seek, Direction::Forward),
            );
            for item in iter {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    // A corrupt SST block: go on past it.
                    Err(e) => {
                        let at = out.last().map_or(seek, |(v, _, _)| index_key(v));
                        seek = self.skip_unreadable(CF_INDEX, &at, &e).ok_or(e)?;
                        continue 'unreadable;
                    }
                };
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
            return Ok(out);
        }
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
                Err(e)
                    if e.kind() == rocksdb::ErrorKind::Corruption
                        && !e.to_string().contains(".sst") =>
                {
                    tracing::warn!(error = %e, "scrub: unreadable chunk data");
                    continue;
                }
                // A corrupt SST block: the next page starts past it.
                Err(e) => {
                    let at = last.clone().unwrap_or_else(|| start.clone());
                    let resume = self.skip_unreadable(CF_CHUNKS, &at, &e).ok_or(e)?;
                    return Ok((corrupt, bytes, Some(resume), seen));
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_chunk_key as key;

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
}
