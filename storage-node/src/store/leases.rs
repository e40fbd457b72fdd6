//! Per-key leases of conditional writes (ADR 0001, 0005), in the `queues` family
//! (`[v1]['L'][partition][0x00][key]`, value `[v1][token 16 B][expires ms u64 BE]`), and the
//! metadata write that meets them.

use super::{lease_key, meta_key, synced, MetaPutOutcome, Store, StoreError, CF_QUEUES, FORMAT_V1};
use dmpstore_common::ids::Hlc;
use dmpstore_common::record::Versioned;

/// Why a write that meets a lease was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// A write under a lease that the node no longer grants to its token.
    Lost,
    /// A client's write to a key another writer holds the lease of.
    HeldByOther,
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
