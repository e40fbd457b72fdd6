//! Healing (DESIGN 11): a chunk of this node found corrupt (by scrub, or by a read) is queued
//! in the node's heal queue and rebuilt in place from `k` of its siblings, found through the
//! node's index of chunk homes (layout and placement, recorded with every chunk write),
//! without needing the record. The repair worker ([`super::rebuild`]) works through the heal
//! queue before each page of its repair queue.
//!
//! When every sibling says it does not exist, the index entry is stale: the records decide
//! whether the slot is repaired from its record or dropped as garbage.

use super::context::{NodeContext, RepairError, RETRY_AFTER};
use crate::peers::{NodeState, RpcError};
use crate::store::DropIf;
use bytes::Bytes;
use dmpstore_common::codec::Codec;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, NodeId};
use dmpstore_common::rpc::{ChunkHome, Request, Response};
use std::collections::HashSet;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Each sibling's answer to a heal: its bytes, and whether its node said it does not exist.
type Sibling = (Option<Bytes>, bool);

impl NodeContext {
    /// Rebuilds the queued corrupt chunks of this node from their siblings.
    pub(super) async fn heal_queued(&self, shutdown: &CancellationToken) {
        let store = self.store.clone();
        let queue = tokio::task::spawn_blocking(move || store.heal_list(64))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for key in queue {
            if shutdown.is_cancelled() {
                return;
            }
            let name = format!("{}/{}/{}", key.version, key.stripe_idx.0, key.chunk_idx.0);
            let backoff_key = ("#heal".to_string(), name.clone());
            if self
                .backoff
                .lock()
                .expect("backoff")
                .get(&backoff_key)
                .is_some_and(|until| *until > Instant::now())
            {
                continue;
            }
            match self.heal_chunk(&key).await {
                Ok(()) => {
                    if let Err(e) = self.store.heal_remove(&key) {
                        tracing::warn!(error = %e, "could not dequeue a finished heal");
                    }
                }
                Err(e @ RepairError::TooFewChunks { .. }) => {
                    // Fewer than k siblings readable: parked like an unrepairable version
                    // (scrub or a read queues it again once it can be rebuilt).
                    tracing::warn!(chunk = %name, error = %e, "chunk cannot be healed now: parked");
                    if let Err(e) = self.store.heal_remove(&key) {
                        tracing::warn!(error = %e, "could not dequeue a parked heal");
                    }
                    self.park("#heal", &name, e.to_string());
                }
                Err(e) => {
                    tracing::warn!(chunk = %name, error = %e, "heal failed; will retry");
                    self.backoff
                        .lock()
                        .expect("backoff")
                        .insert(backoff_key, Instant::now() + RETRY_AFTER);
                }
            }
        }
    }

    /// Rebuilds one local chunk from `k` of its siblings, found through the node's index.
    async fn heal_chunk(&self, key: &ChunkKey) -> Result<(), RepairError> {
        let home_bytes = self.store.chunk_home(&key.version)?;
        let Some(home) = home_bytes.as_deref().and_then(ChunkHome::decode) else {
            tracing::warn!(version = %key.version, "no index entry for a corrupt chunk: left for a read or repair to fix");
            return Ok(());
        };
        let (n, k) = (home.layout.n_chunks(), usize::from(home.layout.k));
        let answers = self.read_siblings(key, &home).await;
        let have = answers.iter().filter(|(c, _)| c.is_some()).count();
        let gone = answers.iter().filter(|(_, gone)| *gone).count();
        let too_few = || RepairError::TooFewChunks {
            version: key.version.to_string(),
            stripe: key.stripe_idx.0,
            have,
            k,
        };
        if have < k {
            if gone + 1 == n {
                let home_bytes = home_bytes.clone().unwrap_or_default();
                return self.heal_stale_index(key, &home, home_bytes, too_few).await;
            }
            return Err(too_few());
        }
        let rebuilt = rebuild_from_siblings(&home, usize::from(key.chunk_idx.0), answers)?;
        let checksum = *blake3::hash(&rebuilt).as_bytes();
        self.rebuild_pace.pace(rebuilt.len() as u64).await;
        self.store
            .put_chunk(key, &checksum, &rebuilt, home_bytes.as_deref())?;
        let mut s = self.stats.lock().expect("repair stats");
        s.healed_chunks += 1;
        s.repaired_chunks += 1;
        s.rebuilt_bytes += rebuilt.len() as u64;
        s.recent.push_back((Instant::now(), rebuilt.len() as u64));
        tracing::info!(version = %key.version, stripe = key.stripe_idx.0, chunk = key.chunk_idx.0, "corrupt chunk rebuilt in place from its siblings");
        Ok(())
    }

    /// Every sibling said "not found": the version was deleted or never committed, or its
    /// siblings moved since this index entry was written. The records decide: a slot they
    /// still place here is repaired from the record (which knows where the siblings are now);
    /// else the chunk is garbage.
    async fn heal_stale_index(
        &self,
        key: &ChunkKey,
        home: &ChunkHome,
        home_bytes: Vec<u8>,
        too_few: impl FnOnce() -> RepairError,
    ) -> Result<(), RepairError> {
        let Some(record) = home.record.clone() else {
            return Err(too_few());
        };
        if self
            .still_referenced(&record.partition, &record.key, key.version, key.chunk_idx.0)
            .await?
        {
            self.enqueue(&record.partition, &record.key)?;
            tracing::info!(version = %key.version, "corrupt chunk whose index entry is stale: repaired from its record");
        } else {
            let condition = DropIf::IndexIs {
                written_ms: None,
                home: home_bytes,
            };
            self.store
                .drop_moved_chunks(&key.version, key.chunk_idx.0, condition)?;
            tracing::info!(version = %key.version, "corrupt chunk no record places here dropped");
        }
        Ok(())
    }

    /// The answers of every sibling of the chunk `key` (none asked of the chunk itself).
    async fn read_siblings(&self, key: &ChunkKey, home: &ChunkHome) -> Vec<Sibling> {
        let me_idx = usize::from(key.chunk_idx.0);
        let reads = (0..home.layout.n_chunks()).map(|j| {
            let node = home.placement.get(j).copied().flatten();
            let sibling = ChunkKey {
                chunk_idx: ChunkIdx(j as u8),
                ..*key
            };
            async move { self.read_sibling(j != me_idx, node, sibling).await }
        });
        futures::future::join_all(reads).await
    }

    /// One sibling chunk for a heal: its bytes, and whether its node said it does not exist.
    async fn read_sibling(&self, wanted: bool, node: Option<NodeId>, key: ChunkKey) -> Sibling {
        let Some(node) = node.filter(|_| wanted) else {
            return (None, false);
        };
        if node == self.me {
            let store = self.store.clone();
            return match tokio::task::spawn_blocking(move || store.get_chunk(&key)).await {
                Ok(Ok((_, bytes))) => (Some(bytes), false),
                Ok(Err(crate::store::StoreError::NotFound)) => (None, true),
                _ => (None, false),
            };
        }
        if self.detector.state(node) == NodeState::Down {
            return (None, false);
        }
        match self
            .client
            .call(node, &Request::GetChunk { key }, Bytes::new())
            .await
        {
            Ok((Response::Chunk { checksum }, bytes))
                if blake3::hash(&bytes).as_bytes() == &checksum =>
            {
                (Some(bytes), false)
            }
            Err(RpcError::Remote {
                kind: dmpstore_common::rpc::ErrorKind::NotFound,
                ..
            }) => (None, true),
            _ => (None, false),
        }
    }
}

/// Chunk `me_idx` of a stripe rebuilt from the siblings' answers (at least `k` of them).
fn rebuild_from_siblings(
    home: &ChunkHome,
    me_idx: usize,
    answers: Vec<Sibling>,
) -> Result<Bytes, RepairError> {
    let lens: HashSet<usize> = answers
        .iter()
        .filter_map(|(c, _)| c.as_ref().map(Bytes::len))
        .collect();
    if lens.len() != 1 {
        return Err(RepairError::Codec("sibling chunks differ in length".into()));
    }
    let codec = Codec::new(home.layout).map_err(|e| RepairError::Codec(e.to_string()))?;
    let all = codec
        .rebuild_chunks(answers.into_iter().map(|(c, _)| c).collect())
        .map_err(|e| RepairError::Codec(e.to_string()))?;
    Ok(all[me_idx].clone())
}
