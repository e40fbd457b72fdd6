//! The write path (DESIGN 6-8): the body is cut into stripes while it arrives; each stripe is
//! encoded and its chunks written to their nodes; the metadata record is written last, and only
//! it makes the object exist.

use crate::buckets;
use crate::checksum::ChecksumCheck;
use crate::error::GatewayError;
use crate::meta;
use crate::nodes::RpcError;
use crate::preconditions;
pub use crate::reclaim::discard;
use crate::reclaim::discard_chunks;
use crate::state::GatewayState;
use crate::versions;
use bytes::{Bytes, BytesMut};
use dmpstore_common::ids::{ChunkIdx, ChunkKey, NodeId, StripeIdx, VersionId};
use dmpstore_common::limits::{MAX_PUT_OBJECT_BYTES, PUT_STRIPES_IN_FLIGHT};
use dmpstore_common::placement;
use dmpstore_common::record::{
    ErasureData, MetaValue, ObjectChecksum, ObjectData, ObjectRecord, Versioning,
};
use dmpstore_common::rpc::{ChunkHome, RecordRef, Request};
use futures::stream::{FuturesOrdered, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use std::sync::Arc;

#[derive(Debug)]
pub struct PutRequest {
    pub bucket: String,
    pub key: String,
    pub body: StreamingBlob,
    pub content_length: Option<u64>,
    /// Base64 MD5 the client sent in `Content-MD5`, if any.
    pub content_md5: Option<String>,
    pub content_type: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub conditions: preconditions::WriteConditions,
    pub checksum: Option<ChecksumCheck>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct PutResult {
    pub etag: String,
    /// The new version's id, in a bucket that has versioning on.
    pub version_id: Option<String>,
    pub size_bytes: u64,
    pub checksum: Option<ObjectChecksum>,
    /// The new version's [`ObjectRecord::version_token`].
    pub version_token: String,
}

/// PutObject: receive and store the data, then commit the record.
pub async fn put_object(
    state: &Arc<GatewayState>,
    req: PutRequest,
) -> Result<PutResult, GatewayError> {
    // Refused before any chunk is written if this gateway's clock is known to be off.
    state.meta.check_clock()?;
    let bucket = buckets::writable(state, &req.bucket).await?;
    let record_ref = RecordRef {
        partition: req.bucket.clone(),
        key: req.key.clone(),
    };
    let stored = store_body(
        state,
        req.body,
        req.content_length,
        req.content_md5.as_deref(),
        req.checksum,
        &record_ref,
    )
    .await?;
    let record = ObjectRecord {
        size_bytes: stored.size_bytes,
        etag: stored.etag.clone(),
        content_type: req.content_type,
        user_metadata: req.user_metadata,
        last_modified_ms: GatewayState::now_ms(),
        data: stored.data,
        checksum: stored.checksum.clone(),
        tags: req.tags,
        version_id: None,
    };
    let target = (req.bucket.as_str(), bucket.versioning, req.key.as_str());
    let repair_owner = degraded_owner(state, &record.data);
    let version_token = record.version_token();
    let version_id = match commit_object_if(state, target, record, &req.conditions).await {
        Ok(v) => v,
        Err(CommitFailure::Refused(e, data)) => {
            discard(state, &data);
            return Err(e);
        }
        Err(CommitFailure::Failed(e)) => return Err(e),
    };
    if let Some(owner) = repair_owner {
        request_repair(state, owner, &req.bucket, &req.key);
    }
    state.metrics.bytes_in.inc_by(stored.size_bytes);
    Ok(PutResult {
        version_id,
        etag: stored.etag,
        size_bytes: stored.size_bytes,
        checksum: stored.checksum,
        version_token,
    })
}

/// Why a conditional commit did not happen.
#[derive(Debug)]
pub enum CommitFailure {
    /// Refused before anything was written (condition false, lease conflict): the record's
    /// data is handed back, unreferenced.
    Refused(GatewayError, ObjectData),
    /// The commit itself failed and may have reached some replicas.
    Failed(GatewayError),
}

/// Commits `record` if `conditions` hold, deciding under a majority of leases on the key so
/// that conditional writers racing through different gateways are serialized (exactly one
/// `If-None-Match: *` writer wins). Unconditional writes skip the leases.
pub async fn commit_object_if(
    state: &Arc<GatewayState>,
    target: (&str, Versioning, &str),
    record: ObjectRecord,
    conditions: &preconditions::WriteConditions,
) -> Result<Option<String>, CommitFailure> {
    let (bucket, versioning, key) = target;
    // Under the key's leases: conditional writes (one decision per key at a time), and every
    // write in a Suspended bucket, whose null version is written in two records that
    // concurrent writers must not interleave.
    if conditions.is_empty() && versioning != Versioning::Suspended {
        return commit_object(state, target, record, None)
            .await
            .map_err(CommitFailure::Failed);
    }
    let lease = match meta::lease(state, bucket, key).await {
        Ok(lease) => lease,
        Err(e) => return Err(CommitFailure::Refused(e, record.data)),
    };
    // The commit is fenced by the lease: if this writer stalls past it, its record cannot
    // land after the next holder decided (ADR 0005).
    let result = meta::holding(&lease, async {
        match preconditions::check_write(state, bucket, key, conditions).await {
            Err(e) => Err(CommitFailure::Refused(e, record.data)),
            Ok(()) => commit_object(state, target, record, Some(&lease))
                .await
                .map_err(CommitFailure::Failed),
        }
    })
    .await;
    meta::release(state, lease).await;
    result
}

/// Writes the record that makes an object version exist (in a bucket `(name, versioning,
/// key)`), then drops the data of what it replaced where versioning says so; returns the
/// version id to report. A failed commit may still have reached some replicas, so its data is
/// left for GC rather than deleted: a record must never point at missing data (DESIGN 7).
pub async fn commit_object(
    state: &Arc<GatewayState>,
    (bucket, versioning, key): (&str, Versioning, &str),
    record: ObjectRecord,
    lease: Option<&meta::KeyLease>,
) -> Result<Option<String>, GatewayError> {
    versions::commit(
        state,
        bucket,
        versioning,
        key,
        MetaValue::Object(record),
        lease,
    )
    .await
}

/// For data stored with chunks missing (DESIGN 8): its repair owner, the first Up node of its
/// placement.
fn degraded_owner(state: &GatewayState, data: &ObjectData) -> Option<NodeId> {
    let pieces = data.erasure_pieces();
    let degraded = pieces
        .iter()
        .any(|e| e.placement.iter().any(Option::is_none));
    if !degraded {
        return None;
    }
    pieces[0]
        .placement
        .iter()
        .flatten()
        .copied()
        .find(|&n| state.nodes.is_up(n))
}

/// Asks `owner` to repair the versions `partition/key` references, without waiting for its
/// periodic scan (best effort: the scan finds it anyway).
pub fn request_repair(state: &Arc<GatewayState>, owner: NodeId, partition: &str, key: &str) {
    let request = Request::RepairEnqueue {
        partition: partition.to_string(),
        key: key.to_string(),
    };
    let st = state.clone();
    state.spawn(async move {
        match st.nodes.call(owner, &request, Bytes::new()).await {
            Ok(_) => tracing::info!(%owner, "stored with chunks missing: repair requested"),
            Err(e) => {
                tracing::debug!(%owner, error = %e, "repair request failed; the scan will find it")
            }
        }
    });
}

/// Bytes received and stored durably, not yet referenced by any record.
#[derive(Debug)]
pub struct Stored {
    pub data: ObjectData,
    /// Hex MD5 of the bytes.
    pub etag: String,
    pub size_bytes: u64,
    /// The verified `x-amz-checksum-*`, if the client sent one.
    pub checksum: Option<ObjectChecksum>,
}

/// Receives a body and stores it: inline if it fits `inline_max_bytes`, else erasure-coded
/// stripe by stripe while it arrives. Checks the length and the Content-MD5; on any failure
/// the chunks written so far are dropped. `record` is where the record that will reference
/// the data lives (the nodes keep it beside the chunks for garbage collection).
pub async fn store_body(
    state: &Arc<GatewayState>,
    body: StreamingBlob,
    content_length: Option<u64>,
    content_md5: Option<&str>,
    checksum: Option<ChecksumCheck>,
    record: &RecordRef,
) -> Result<Stored, GatewayError> {
    let expected_md5 = content_md5.map(parse_content_md5).transpose()?;
    let mut body = BodyReader::new(body, content_length, checksum)?;
    let stripe_size = state.layout.stripe_size_bytes() as usize;
    let first = body.next_stripe(stripe_size).await?;
    let data = if first.len() < stripe_size && first.len() <= state.config.inline_max_bytes {
        ObjectData::Inline(first.to_vec())
    } else {
        ObjectData::Erasure(write_erasure(state, first, &mut body, record).await?)
    };
    let (md5, size_bytes, checksum) = body.finish();
    let verified = if expected_md5.is_some_and(|e| e != md5) {
        Err(GatewayError::BadDigest)
    } else {
        checksum.map(ChecksumCheck::finish).transpose()
    };
    let checksum = verified.inspect_err(|_| discard(state, &data))?;
    Ok(Stored {
        data,
        etag: hex::encode(md5),
        size_bytes,
        checksum,
    })
}

fn parse_content_md5(b64: &str) -> Result<[u8; 16], GatewayError> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| GatewayError::InvalidDigest)?;
    raw.try_into().map_err(|_| GatewayError::InvalidDigest)
}

/// Writes every stripe of the body as erasure-coded chunks and returns where they are.
async fn write_erasure(
    state: &Arc<GatewayState>,
    first: Bytes,
    body: &mut BodyReader,
    record: &RecordRef,
) -> Result<ErasureData, GatewayError> {
    let version = VersionId::random();
    let (mut placement, spares) = choose_placement(state, &version)?;
    let stripe_size = state.layout.stripe_size_bytes() as usize;

    // The first stripe is written alone: a node that fails it is replaced by a spare before
    // the placement is fixed for the rest of the object.
    write_first_stripe(state, version, first, &mut placement, spares, record).await?;
    let mut in_flight = FuturesOrdered::new();
    let mut stripe_idx = 0u32;
    loop {
        let stripe = match body.next_stripe(stripe_size).await {
            Ok(s) if s.is_empty() => break,
            Ok(s) => s,
            Err(e) => {
                discard_chunks(state, version, &placement);
                return Err(e);
            }
        };
        stripe_idx += 1;
        in_flight.push_back(write_stripe(
            state,
            version,
            StripeIdx(stripe_idx),
            stripe,
            placement.clone(),
            record,
        ));
        if in_flight.len() >= PUT_STRIPES_IN_FLIGHT {
            let outcome = in_flight.next().await.expect("queue is not empty");
            settle(state, version, &mut placement, outcome)?;
        }
    }
    while let Some(outcome) = in_flight.next().await {
        settle(state, version, &mut placement, outcome)?;
    }
    Ok(ErasureData {
        version,
        layout: state.layout,
        placement,
    })
}

/// Picks `k + m` Up nodes by rendezvous order (with spares after them), DESIGN 4 and 8.
fn choose_placement(
    state: &GatewayState,
    version: &VersionId,
) -> Result<(Vec<Option<NodeId>>, Vec<NodeId>), GatewayError> {
    let layout = state.layout;
    let nodes = &state.nodes;
    let usable = |id| nodes.takes_new_chunks(id);
    let map = nodes.map();
    let chosen = placement::choose(
        &map,
        &version.0,
        layout.n_chunks(),
        usize::from(layout.m),
        usable,
    );
    if chosen.len() < usize::from(layout.k) + 1 {
        return Err(GatewayError::Unavailable(format!(
            "only {} of {} storage nodes are reachable; a write needs at least {}",
            chosen.len(),
            map.len(),
            layout.k + 1
        )));
    }
    let spares = placement::rank(&map, &version.0)
        .into_iter()
        .map(|n| n.id)
        .filter(|id| !chosen.contains(id) && nodes.takes_new_chunks(*id))
        .collect();
    let mut slots: Vec<Option<NodeId>> = chosen.into_iter().map(Some).collect();
    slots.resize(layout.n_chunks(), None);
    Ok((slots, spares))
}

type StripeOutcome = Vec<(usize, Result<(), RpcError>)>;

async fn write_first_stripe(
    state: &Arc<GatewayState>,
    version: VersionId,
    stripe: Bytes,
    placement: &mut [Option<NodeId>],
    mut spares: Vec<NodeId>,
    record: &RecordRef,
) -> Result<(), GatewayError> {
    let chunks = state
        .codec
        .encode_stripe(&stripe)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let outcome = write_chunks(
        state,
        version,
        StripeIdx(0),
        &chunks,
        placement,
        placement,
        record,
    )
    .await;
    for (idx, result) in outcome {
        let Err(first_error) = result else { continue };
        tracing::warn!(error = %first_error, chunk = idx, "chunk write failed; trying a spare node");
        placement[idx] = None;
        while !spares.is_empty() {
            let spare = spares.remove(0);
            let mut home = placement.to_vec();
            home[idx] = Some(spare);
            let one = write_chunks(
                state,
                version,
                StripeIdx(0),
                &chunks,
                &slot_only(idx, spare, chunks.len()),
                &home,
                record,
            )
            .await;
            if one.iter().all(|(_, r)| r.is_ok()) {
                placement[idx] = Some(spare);
                break;
            }
        }
    }
    check_redundancy(state, version, placement)
}

fn slot_only(idx: usize, node: NodeId, n: usize) -> Vec<Option<NodeId>> {
    let mut v = vec![None; n];
    v[idx] = Some(node);
    v
}

async fn write_stripe(
    state: &Arc<GatewayState>,
    version: VersionId,
    stripe_idx: StripeIdx,
    stripe: Bytes,
    placement: Vec<Option<NodeId>>,
    record: &RecordRef,
) -> StripeOutcome {
    match state.codec.encode_stripe(&stripe) {
        Ok(chunks) => {
            write_chunks(
                state, version, stripe_idx, &chunks, &placement, &placement, record,
            )
            .await
        }
        Err(e) => {
            let err = RpcError::Protocol {
                node: NodeId(0),
                message: format!("encode: {e}"),
            };
            (0..placement.len())
                .map(|i| (i, Err(err.clone())))
                .collect()
        }
    }
}

/// Writes chunk `i` to `placement[i]` for every placed slot, in parallel. `home` is the
/// version's whole placement, recorded in each node's index.
async fn write_chunks(
    state: &Arc<GatewayState>,
    version: VersionId,
    stripe_idx: StripeIdx,
    chunks: &[Bytes],
    placement: &[Option<NodeId>],
    home: &[Option<NodeId>],
    record: &RecordRef,
) -> StripeOutcome {
    let home = ChunkHome {
        layout: state.layout,
        placement: home.to_vec(),
        record: Some(record.clone()),
    };
    let writes = placement.iter().enumerate().filter_map(|(i, node)| {
        let node = (*node)?;
        let chunk = chunks[i].clone();
        let key = ChunkKey {
            version,
            stripe_idx,
            chunk_idx: ChunkIdx(i as u8),
        };
        let checksum = *blake3::hash(&chunk).as_bytes();
        let request = Request::PutChunk {
            key,
            checksum,
            home: Some(home.clone()),
        };
        Some(async move {
            let result = state.nodes.call(node, &request, chunk).await;
            (i, result.map(|_| ()))
        })
    });
    futures::future::join_all(writes).await
}

/// Folds one stripe's outcome into the placement: a slot whose node failed holds no chunks
/// from then on, and the object is refused if fewer than `k + 1` slots remain.
fn settle(
    state: &Arc<GatewayState>,
    version: VersionId,
    placement: &mut [Option<NodeId>],
    outcome: StripeOutcome,
) -> Result<(), GatewayError> {
    for (idx, result) in outcome {
        if let Err(e) = result {
            if let Some(node) = placement[idx].take() {
                tracing::warn!(error = %e, chunk = idx, %version, "chunk write failed; object stays degraded until repair");
                // The slot's earlier stripes on that node are garbage now (best effort: a
                // node that cannot be reached is left to the orphan scan).
                discard_chunks(state, version, &[Some(node)]);
            }
        }
    }
    check_redundancy(state, version, placement)
}

fn check_redundancy(
    state: &Arc<GatewayState>,
    version: VersionId,
    placement: &[Option<NodeId>],
) -> Result<(), GatewayError> {
    let written = placement.iter().flatten().count();
    if written < usize::from(state.layout.k) + 1 {
        discard_chunks(state, version, placement);
        return Err(GatewayError::Unavailable(format!(
            "only {written} chunks per stripe could be written; at least {} are required",
            state.layout.k + 1
        )));
    }
    Ok(())
}

/// Reads the request body in stripe-sized pieces while computing its MD5 and length.
struct BodyReader {
    body: StreamingBlob,
    pending: Bytes,
    md5: Md5,
    received: u64,
    expected: Option<u64>,
    /// The body stream returned its end; it must not be polled again.
    ended: bool,
    checksum: Option<ChecksumCheck>,
}

impl BodyReader {
    fn new(
        body: StreamingBlob,
        expected: Option<u64>,
        checksum: Option<ChecksumCheck>,
    ) -> Result<BodyReader, GatewayError> {
        if let Some(len) = expected {
            if len > MAX_PUT_OBJECT_BYTES {
                return Err(GatewayError::EntityTooLarge {
                    limit: MAX_PUT_OBJECT_BYTES,
                });
            }
        }
        Ok(BodyReader {
            body,
            pending: Bytes::new(),
            md5: Md5::new(),
            received: 0,
            expected,
            ended: false,
            checksum,
        })
    }

    /// The next `stripe_size` bytes, fewer only at the end of the body; empty at the end.
    async fn next_stripe(&mut self, stripe_size: usize) -> Result<Bytes, GatewayError> {
        let mut buf = BytesMut::new();
        while buf.len() < stripe_size {
            if self.pending.is_empty() {
                if self.ended {
                    break;
                }
                match self.body.next().await {
                    Some(Ok(bytes)) => self.pending = bytes,
                    Some(Err(e)) => return Err(GatewayError::from_body(&*e)),
                    None => {
                        self.ended = true;
                        break;
                    }
                }
                continue;
            }
            let take = self.pending.len().min(stripe_size - buf.len());
            let piece = self.pending.split_to(take);
            self.received += piece.len() as u64;
            if self.received > self.expected.unwrap_or(MAX_PUT_OBJECT_BYTES) {
                return Err(match self.expected {
                    Some(_) => GatewayError::InvalidArgument(
                        "the body is longer than its Content-Length".into(),
                    ),
                    None => GatewayError::EntityTooLarge {
                        limit: MAX_PUT_OBJECT_BYTES,
                    },
                });
            }
            self.md5.update(&piece);
            if let Some(c) = &mut self.checksum {
                c.update(&piece);
            }
            if buf.is_empty() && piece.len() == stripe_size {
                return Ok(piece);
            }
            if buf.capacity() == 0 {
                buf.reserve(stripe_size);
            }
            buf.extend_from_slice(&piece);
        }
        if buf.len() < stripe_size {
            self.check_complete()?;
        }
        Ok(buf.freeze())
    }

    fn check_complete(&self) -> Result<(), GatewayError> {
        match self.expected {
            Some(expected) if expected != self.received => Err(GatewayError::IncompleteBody {
                expected,
                received: self.received,
            }),
            _ => Ok(()),
        }
    }

    fn finish(self) -> ([u8; 16], u64, Option<ChecksumCheck>) {
        (self.md5.finalize().into(), self.received, self.checksum)
    }
}
