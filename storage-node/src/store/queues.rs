//! The persistent work queues of the `queues` family: the repair queue (records to repair,
//! `[v1]['R'][partition][0x00][key]`) and the heal queue (corrupt chunks of this node,
//! `[v1]['H'][chunk key]`). Every push is synced, so queued work survives a crash.

use super::{
    heal_key, parse_chunk_key, repair_queue_key, synced, Store, StoreError, CF_QUEUES, FORMAT_V1,
};
use dmpstore_common::ids::ChunkKey;
use rocksdb::{Direction, IteratorMode};

impl Store {
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
    pub(super) fn queue_keys(&self, kind: u8, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_chunk_key as key;

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
}
