//! What the node persists about itself in the `queues` family: the set of nodes being drained
//! (`[v1]['D']`) and the cluster map it last installed (`[v1]['M']`), so a restart keeps both.

use super::{synced, Store, StoreError, CF_QUEUES, FORMAT_V1};

impl Store {
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
}
