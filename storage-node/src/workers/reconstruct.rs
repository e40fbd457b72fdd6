//! How one queued record is repaired (DESIGN 11, 12, 15):
//!
//! 1. [`NodeContext::repair_record`] reads the record with a quorum read, and for each of its
//!    erasure-coded pieces
//! 2. [`NodeContext::repair_piece`] chooses where each chunk slot goes ([`targets::targets`]:
//!    a new node for an empty slot or a dead one, a desired node for a misplaced one), then
//!    for each stripe
//! 3. [`NodeContext::rebuild_stripe`] reads every chunk it can (checksums checked), rebuilds
//!    the missing and moving ones from any `k`, and writes them to their targets, paced to
//!    `max_rate_mib_per_s`.
//! 4. If a placement changed, [`NodeContext::rewrite_record`] writes the record back as a
//!    compare-and-set one stamp above the one repaired, so a client write always wins over
//!    it, and
//! 5. [`NodeContext::drop_vacated`] asks the nodes the chunks moved off to drop them after the
//!    grace (garbage collection, [`super::gc`]).

use super::context::{erasure_pieces_mut, NodeContext, RepairError};
use crate::peers::NodeState;
use bytes::Bytes;
use dmpstore_common::codec::Codec;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, NodeId, StripeIdx, VersionId};
use dmpstore_common::record::{ErasureData, MetaValue, Versioned};
use dmpstore_common::rpc::{ChunkHome, RecordRef, Request, Response};
use dmpstore_common::targets;
use std::collections::HashSet;
use std::time::Instant;

/// Slots that moved off a node: `(version, chunk index, node)`.
type Vacated = Vec<(VersionId, u8, NodeId)>;

impl NodeContext {
    /// Repairs every erasure-coded piece a record references and rewrites the record if a
    /// placement changed.
    pub(super) async fn repair_record(
        &self,
        partition: &str,
        key: &str,
    ) -> Result<(), RepairError> {
        let Some(current) = self.meta_get(partition, key).await? else {
            return Ok(()); // gone: nothing to repair
        };
        let Ok(mut value) = MetaValue::decode(&current.value) else {
            return Ok(());
        };
        let record_ref = RecordRef {
            partition: partition.to_string(),
            key: key.to_string(),
        };
        let (changed, rebuilt, vacated) = self.repair_pieces(&mut value, &record_ref).await?;
        if changed {
            if !self
                .rewrite_record(partition, key, &current, &value)
                .await?
            {
                return Ok(());
            }
            self.drop_vacated(partition, key, vacated).await;
        }
        if changed || rebuilt > 0 {
            let mut s = self.stats.lock().expect("repair stats");
            s.repaired_versions += 1;
            tracing::info!(
                partition,
                key,
                chunks = rebuilt,
                moved = changed,
                "version repaired"
            );
        }
        Ok(())
    }

    /// Repairs each piece of `value` in turn: whether any placement changed, the chunks
    /// written, and the slots that moved off a node.
    async fn repair_pieces(
        &self,
        value: &mut MetaValue,
        record: &RecordRef,
    ) -> Result<(bool, u64, Vacated), RepairError> {
        let dead = self.dead();
        let mut changed = false;
        let mut rebuilt = 0u64;
        let mut vacated = Vec::new();
        for (piece, size_bytes) in erasure_pieces_mut(value) {
            let (moved, chunks, left) = self.repair_piece(piece, size_bytes, &dead, record).await?;
            changed |= moved;
            rebuilt += chunks;
            vacated.extend(
                left.into_iter()
                    .map(|(idx, node)| (piece.version, idx, node)),
            );
        }
        Ok((changed, rebuilt, vacated))
    }

    /// Writes the repaired record back: a compare-and-set one stamp above the record repaired.
    /// It lands only where no client wrote the key meanwhile, so a repair never overrides a
    /// client's write (a client write that meets it goes above it, DESIGN 15). Returns
    /// whether it landed.
    async fn rewrite_record(
        &self,
        partition: &str,
        key: &str,
        current: &Versioned,
        value: &MetaValue,
    ) -> Result<bool, RepairError> {
        if !self
            .meta
            .replace(partition, key, current.hlc, value.encode())
            .await?
        {
            tracing::info!(
                partition,
                key,
                "record changed while it was repaired; the client's write stands (its rebuilt chunks become orphans)"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// The nodes the chunks moved off (drained, or no longer picked) drop them after the
    /// grace. A node that is down keeps them: garbage it cannot be told about.
    async fn drop_vacated(&self, partition: &str, key: &str, vacated: Vacated) {
        for (version, chunk_idx, node) in vacated {
            if self.detector.state(node) == NodeState::Down {
                continue;
            }
            let request = Request::DropMovedChunk {
                version,
                chunk_idx,
                partition: partition.to_string(),
                key: key.to_string(),
            };
            let sent = if node == self.me {
                self.schedule_drop(version, chunk_idx, partition.to_string(), key.to_string())
                    .map_err(|e| e.to_string())
            } else {
                self.client
                    .call(node, &request, Bytes::new())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = sent {
                tracing::debug!(%node, %version, error = %e, "could not schedule the drop of a moved chunk; it stays as garbage");
            }
        }
    }

    /// Rebuilds the missing chunks of one erasure-coded piece, stripe by stripe. Returns
    /// whether the placement changed, how many chunks were written, and the slots that moved
    /// off a node (the piece's placement is updated).
    async fn repair_piece(
        &self,
        piece: &mut ErasureData,
        size_bytes: u64,
        dead: &HashSet<NodeId>,
        record: &RecordRef,
    ) -> Result<(bool, u64, Vec<(u8, NodeId)>), RepairError> {
        // Nodes removed from the cluster map are as dead as any.
        let map_now = self.client.map();
        let mut dead = dead.clone();
        dead.extend(
            piece
                .placement
                .iter()
                .flatten()
                .filter(|n| map_now.get(**n).is_none()),
        );
        let dead = &dead;
        let codec = Codec::new(piece.layout).map_err(|e| RepairError::Codec(e.to_string()))?;
        // A slot on a node that is Down but not past the delay in this node's view (views
        // differ by up to a heartbeat): try again later rather than decide now.
        if let Some(node) = piece
            .placement
            .iter()
            .flatten()
            .copied()
            .find(|n| self.detector.state(*n) == NodeState::Down && !dead.contains(n))
        {
            return Err(RepairError::Waiting(node));
        }
        // Where each slot's chunks go: a new node for empty slots and dead nodes, and
        // rebalance: a chunk on a node rendezvous placement no longer picks moves to a picked
        // Up node that holds none (a node was added, or came back).
        let map = self.client.map();
        let targets::Targets {
            placement: target,
            moved,
        } = targets::targets(
            &map,
            piece,
            |n| !dead.contains(&n),
            // Up and with room: a node whose disk is full receives no chunks.
            |n| self.detector.state(n) == NodeState::Up && !self.client.is_read_only(n),
        );
        let mut written = 0u64;
        for s in 0..piece.layout.n_stripes(size_bytes) {
            let stripe = Stripe {
                piece,
                target: &target,
                stripe_idx: StripeIdx(s),
                size_bytes,
            };
            written += self.rebuild_stripe(&stripe, &codec, record).await?;
        }
        let mut vacated = Vec::new();
        if moved {
            vacated = targets::vacated(&piece.placement, &target);
            piece.placement = target;
        }
        Ok((moved, written, vacated))
    }

    /// Reads one stripe, rebuilds its missing chunks and the ones that move, and writes them
    /// to their targets. Returns how many chunks were written.
    async fn rebuild_stripe(
        &self,
        stripe: &Stripe<'_>,
        codec: &Codec,
        record: &RecordRef,
    ) -> Result<u64, RepairError> {
        let (piece, target) = (stripe.piece, stripe.target);
        let n = piece.layout.n_chunks();
        let chunks = self.read_stripe(stripe).await;
        // A slot that moves must get every stripe on its new node before the record may
        // name that node: if the new node is not Up now, the whole repair waits.
        if let Some(node) = (0..n).find_map(|i| {
            let node = target[i]?;
            (target[i] != piece.placement[i] && self.detector.state(node) != NodeState::Up)
                .then_some(node)
        }) {
            return Err(RepairError::Waiting(node));
        }
        // Chunks to write: missing ones whose target can take them (a chunk on a node
        // that is Down but not past the delay waits for it to come back).
        let to_write: Vec<(usize, NodeId)> = (0..n)
            .filter_map(|i| {
                let node = target[i]?;
                let missing = chunks[i].is_none() || target[i] != piece.placement[i];
                (missing && self.detector.state(node) == NodeState::Up).then_some((i, node))
            })
            .collect();
        if to_write.is_empty() {
            return Ok(0);
        }
        let have = chunks.iter().filter(|c| c.is_some()).count();
        let k = usize::from(piece.layout.k);
        if have < k {
            return Err(RepairError::TooFewChunks {
                version: piece.version.to_string(),
                stripe: stripe.stripe_idx.0,
                have,
                k,
            });
        }
        let all = codec
            .rebuild_chunks(chunks)
            .map_err(|e| RepairError::Codec(e.to_string()))?;
        let mut written = 0u64;
        for (i, node) in to_write {
            self.write_rebuilt(stripe, i, node, all[i].clone(), record)
                .await?;
            written += 1;
        }
        Ok(written)
    }

    /// Every chunk of the stripe its current placement holds and this node can read now, with
    /// the expected length and a matching checksum (`None` for the others).
    async fn read_stripe(&self, stripe: &Stripe<'_>) -> Vec<Option<Bytes>> {
        let piece = stripe.piece;
        let layout = piece.layout;
        let range = layout.stripe_range(stripe.stripe_idx, stripe.size_bytes);
        let chunk_len = layout.chunk_len(range.end - range.start);
        let reads = (0..layout.n_chunks()).map(|i| {
            let node = piece.placement[i];
            let key = ChunkKey {
                version: piece.version,
                stripe_idx: stripe.stripe_idx,
                chunk_idx: ChunkIdx(i as u8),
            };
            async move {
                let node = node.filter(|n| self.detector.state(*n) != NodeState::Down)?;
                match self
                    .client
                    .call(node, &Request::GetChunk { key }, Bytes::new())
                    .await
                {
                    Ok((Response::Chunk { checksum }, bytes))
                        if bytes.len() == chunk_len
                            && blake3::hash(&bytes).as_bytes() == &checksum =>
                    {
                        Some(bytes)
                    }
                    _ => None,
                }
            }
        });
        futures::future::join_all(reads).await
    }

    /// Writes rebuilt chunk `i` of the stripe to `node`, with the piece's new home (paced).
    async fn write_rebuilt(
        &self,
        stripe: &Stripe<'_>,
        i: usize,
        node: NodeId,
        bytes: Bytes,
        record: &RecordRef,
    ) -> Result<(), RepairError> {
        let key = ChunkKey {
            version: stripe.piece.version,
            stripe_idx: stripe.stripe_idx,
            chunk_idx: ChunkIdx(i as u8),
        };
        let checksum = *blake3::hash(&bytes).as_bytes();
        self.rebuild_pace.pace(bytes.len() as u64).await;
        let request = Request::PutChunk {
            key,
            checksum,
            home: Some(ChunkHome {
                layout: stripe.piece.layout,
                placement: stripe.target.to_vec(),
                record: Some(record.clone()),
            }),
        };
        self.client
            .call(node, &request, bytes.clone())
            .await
            .map_err(|error| RepairError::Write { node, error })?;
        let mut st = self.stats.lock().expect("repair stats");
        st.repaired_chunks += 1;
        st.rebuilt_bytes += bytes.len() as u64;
        st.recent.push_back((Instant::now(), bytes.len() as u64));
        Ok(())
    }
}

/// One stripe of a piece being repaired: where its chunks are and where they go.
struct Stripe<'a> {
    piece: &'a ErasureData,
    target: &'a [Option<NodeId>],
    stripe_idx: StripeIdx,
    size_bytes: u64,
}
