//! Metadata records (`meta` family): the newest-wins write with its compare-and-set, the
//! tombstone purge, reads, byte-bounded scans of a partition and of everything (the repair
//! scan), and whole partitions listed, counted and dropped.

use super::{meta_key, synced, Store, StoreError, CF_META, FORMAT_V1};
use dmpstore_common::ids::Hlc;
use dmpstore_common::record::Versioned;
use rocksdb::{Direction, IteratorMode, WriteBatch};

/// What [`Store::meta_put`] did: applied (and what it replaced), or refused because the node
/// holds `holds` (a newer version, or not the expected one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaPutOutcome {
    pub applied: bool,
    pub replaced: Option<Versioned>,
    pub holds: Option<Hlc>,
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

    pub(super) fn meta_put_locked(
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
        let mut seek = seek;
        'unreadable: loop {
            let iter = self.db.iterator_cf(
                self.cf(CF_META),
                IteratorMode::From(&seek, Direction::Forward),
            );
            for item in iter {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    // A corrupt SST block: go on past it (the other replicas have its records).
                    Err(e) => {
                        let at = out.last().map_or(seek, |(key, _): &(String, Versioned)| {
                            meta_key(partition, key.as_bytes())
                        });
                        seek = self.skip_unreadable(CF_META, &at, &e).ok_or(e)?;
                        continue 'unreadable;
                    }
                };
                if !k.starts_with(&range_prefix) {
                    return Ok((out, false));
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
            return Ok((out, false));
        }
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
            let (k, v) = match item {
                Ok(kv) => kv,
                // A corrupt SST block: the next page starts past it.
                Err(e) => {
                    let at = out
                        .last()
                        .map_or(start, |(p, key, _): &(String, String, Versioned)| {
                            meta_key(p, key.as_bytes())
                        });
                    let resume = self.skip_unreadable(CF_META, &at, &e).ok_or(e)?;
                    return Ok((out, Some(resume)));
                }
            };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A corrupt SST block does not stop scans: they go on past the damaged file, and the
    /// skipped range is counted and named with the file.
    #[test]
    fn scans_skip_a_corrupt_sst_block_and_name_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Versioned {
            hlc: dmpstore_common::ids::Hlc(1),
            value: vec![7; 100],
        };
        let damaged = {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..50 {
                store
                    .meta_put("a", &format!("k{i:02}"), &rec, None)
                    .unwrap();
            }
            store.flush().unwrap();
            let first: Vec<String> = store
                .db
                .live_files()
                .unwrap()
                .into_iter()
                .filter(|f| f.column_family_name == CF_META)
                .map(|f| f.name.trim_start_matches('/').to_string())
                .collect();
            for i in 0..50 {
                store
                    .meta_put("b", &format!("k{i:02}"), &rec, None)
                    .unwrap();
            }
            store.flush().unwrap();
            assert_eq!(first.len(), 1, "one SST file holds partition a");
            first[0].clone()
        };
        let path = dir.path().join(&damaged);
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[32..48] {
            *b = !*b;
        }
        std::fs::write(&path, bytes).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (mut seen, mut after) = (Vec::new(), Vec::new());
        loop {
            let (page, resume) = store.meta_all(&after, 7).unwrap();
            seen.extend(page.into_iter().map(|(p, k, _)| format!("{p}/{k}")));
            match resume {
                Some(r) => after = r,
                None => break,
            }
        }
        let expected: Vec<String> = (0..50).map(|i| format!("b/k{i:02}")).collect();
        assert_eq!(seen, expected, "every record past the damaged file, once");
        let (page, more) = store.meta_scan("b", "", b"", 100, usize::MAX).unwrap();
        assert_eq!((page.len(), more), (50, false));
        let (page, more) = store.meta_scan("a", "", b"", 100, usize::MAX).unwrap();
        assert_eq!((page.len(), more), (0, false));
        let skipped = store.undecodable();
        assert_eq!(skipped.count, 2, "{skipped:?}");
        assert!(skipped.first[0].0.contains(&damaged), "{skipped:?}");
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
