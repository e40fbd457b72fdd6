//! The read path (DESIGN 9): find the record, then stream the requested bytes stripe by stripe.
//! Data chunks are asked first (no decoding needed); a missing, corrupt or unreachable chunk
//! makes the stripe fall back to parity and reconstruction. Only the stripes, and within a
//! stripe only the data chunks, that the range covers are read. At most a few stripes are in
//! memory per request, whatever the object size.

use crate::buckets;
use crate::error::GatewayError;
use crate::meta;
use crate::nodes::RpcError;
use crate::state::GatewayState;
use crate::versions;
use bytes::{Bytes, BytesMut};
use dmpstore_common::ids::{ChunkIdx, ChunkKey, StripeIdx};
use dmpstore_common::limits::{GET_STRIPES_PREFETCH, READ_HEDGE_AFTER, RPC_TIMEOUT};
use dmpstore_common::quorum::quorum;
use dmpstore_common::record::{ErasureData, MetaValue, ObjectData, ObjectRecord};
use dmpstore_common::rpc::{Request, Response};
use futures::stream::StreamExt;
use s3s::dto::StreamingBlob;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The live record of `bucket/key`, or NoSuchKey / NoSuchBucket.
pub async fn head(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
) -> Result<ObjectRecord, GatewayError> {
    head_version(state, bucket, key, None).await.map(|(r, _)| r)
}

/// The record of `bucket/key`: the current version, or the version `version_id`. Also returns
/// the version id to report (none in a bucket that never had versioning on).
pub async fn head_version(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<(ObjectRecord, Option<String>), GatewayError> {
    if let Some(id) = version_id {
        let (b, r) = versions::get_object_version(state, bucket, key, id).await?;
        let shown = versions::reported(&b, r.version_id.as_deref());
        return Ok((r, shown));
    }
    let (bucket_check, record) = tokio::join!(
        buckets::ensure_exists(state, bucket),
        meta::get(state, bucket, key)
    );
    let b = bucket_check?;
    match record? {
        Some(MetaValue::Object(r)) => {
            let shown = versions::reported(&b, r.version_id.as_deref());
            Ok((r, shown))
        }
        _ => Err(GatewayError::NoSuchKey),
    }
}

/// Resolves an S3 Range against the object size (416 InvalidRange when unsatisfiable). A
/// suffix range of an empty object is satisfiable but selects nothing (RFC 9110 14.1.1): the
/// whole, empty object is sent (`None`), as no Content-Range can describe zero bytes.
pub fn resolve_range(
    range: Option<&s3s::dto::Range>,
    size_bytes: u64,
) -> Result<Option<Range<u64>>, GatewayError> {
    match range {
        None => Ok(None),
        Some(r) => match r.check(size_bytes) {
            Ok(r) if r.is_empty() => Ok(None),
            Ok(r) => Ok(Some(r)),
            Err(_) => Err(GatewayError::InvalidRange { size_bytes }),
        },
    }
}

/// One contiguous piece of an object's bytes as stored: a whole object, or one part of a
/// multipart object, with the byte range wanted from it.
enum Segment {
    Inline(Bytes),
    Erasure {
        data: ErasureData,
        size_bytes: u64,
        range: Range<u64>,
    },
}

/// The segments holding `range` of an object, in order.
fn segments(data: &ObjectData, size_bytes: u64, range: Range<u64>) -> Vec<Segment> {
    match data {
        ObjectData::Inline(bytes) => vec![Segment::Inline(Bytes::copy_from_slice(
            &bytes[range.start as usize..range.end as usize],
        ))],
        ObjectData::Erasure(e) => vec![Segment::Erasure {
            data: e.clone(),
            size_bytes,
            range,
        }],
        ObjectData::Multipart(parts) => {
            let mut out = Vec::new();
            let mut offset = 0u64;
            for part in parts {
                let part_range = offset..offset + part.size_bytes;
                offset = part_range.end;
                let (start, end) = (
                    range.start.max(part_range.start),
                    range.end.min(part_range.end),
                );
                if start < end {
                    let within = start - part_range.start..end - part_range.start;
                    out.extend(segments(&part.data, part.size_bytes, within));
                }
            }
            out
        }
    }
}

/// The bytes `range` of the object as a stream. A producer task (owned by the gateway's task
/// tracker) fetches up to [`GET_STRIPES_PREFETCH`] stripes ahead into a one-slot channel, so a
/// slow client holds back the fetching instead of filling memory.
///
/// `origin` (partition and key of the record) lets a read that had to reconstruct around a
/// missing or corrupt chunk ask the version's repair owner to fix it (DESIGN 11).
pub fn body(
    state: &Arc<GatewayState>,
    data: &ObjectData,
    size_bytes: u64,
    range: Range<u64>,
    origin: Option<(String, String)>,
) -> StreamingBlob {
    let mut segs = segments(data, size_bytes, range);
    if let [Segment::Inline(bytes)] = segs.as_mut_slice() {
        let part = std::mem::take(bytes);
        return StreamingBlob::wrap(futures::stream::iter([Ok::<_, GatewayError>(part)]));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let producer = state.clone();
    state.spawn(async move {
        for seg in segs {
            let sent = match seg {
                Segment::Inline(bytes) => tx.send(Ok(bytes)).await.is_ok(),
                Segment::Erasure {
                    data,
                    size_bytes,
                    range,
                } => send_stripes(&producer, &data, size_bytes, &range, &tx, origin.as_ref()).await,
            };
            if !sent {
                return;
            }
        }
    });
    StreamingBlob::wrap(ChannelBody(rx))
}

/// Streams the range of one erasure-coded segment; false if the stream ended early (the client
/// went away, or a stripe could not be read and the error was sent instead).
async fn send_stripes(
    state: &Arc<GatewayState>,
    data: &ErasureData,
    size_bytes: u64,
    range: &Range<u64>,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, GatewayError>>,
    origin: Option<&(String, String)>,
) -> bool {
    let stripes = data.layout.stripes_covering(range);
    let mut parts = futures::stream::iter(stripes)
        .map(|s| fetch_stripe_part(state, data, size_bytes, StripeIdx(s), range))
        .buffered(GET_STRIPES_PREFETCH);
    let mut repair_asked = false;
    while let Some(part) = parts.next().await {
        let failed = part.is_err();
        let part = part.map(|(bytes, missing)| {
            if !missing.is_empty() && !repair_asked {
                repair_asked = true;
                ask_repair(state, data, &missing, origin);
            }
            bytes
        });
        if tx.send(part).await.is_err() || failed {
            return false;
        }
    }
    true
}

/// A read found chunks missing or corrupt on nodes the gateway believes Up: the version's
/// repair owner (the first Up node of its placement) gets the record queued.
fn ask_repair(
    state: &Arc<GatewayState>,
    data: &ErasureData,
    missing: &[u8],
    origin: Option<&(String, String)>,
) {
    let Some((partition, key)) = origin else {
        return;
    };
    let on_up_nodes = missing.iter().any(|&i| {
        data.placement
            .get(usize::from(i))
            .copied()
            .flatten()
            .is_some_and(|n| state.nodes.is_up(n))
    });
    let owner = data
        .placement
        .iter()
        .flatten()
        .copied()
        .find(|&n| state.nodes.is_up(n));
    if let (true, Some(owner)) = (on_up_nodes, owner) {
        crate::put::request_repair(state, owner, partition, key);
    }
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, GatewayError>>);

impl futures::Stream for ChannelBody {
    type Item = Result<Bytes, GatewayError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The part of stripe `stripe_idx` that falls inside `range`, and the chunks of the fast path
/// that were missing, corrupt or unreachable.
async fn fetch_stripe_part(
    state: &Arc<GatewayState>,
    data: &ErasureData,
    size_bytes: u64,
    stripe_idx: StripeIdx,
    range: &Range<u64>,
) -> Result<(Bytes, Vec<u8>), GatewayError> {
    let layout = data.layout;
    let stripe = layout.stripe_range(stripe_idx, size_bytes);
    let stripe_len = stripe.end - stripe.start;
    let within =
        range.start.max(stripe.start) - stripe.start..range.end.min(stripe.end) - stripe.start;
    let chunk_len = layout.chunk_len(stripe_len);
    let wanted = layout.data_chunks_covering(stripe_len, &within);

    // Fast path: only the data chunks holding the range.
    let mut chunks: Vec<Option<Bytes>> = vec![None; layout.n_chunks()];
    let first_try: Vec<u8> = wanted.clone().collect();
    let wanted_n = first_try.len();
    let missing = fetch_chunks(
        state,
        data,
        stripe_idx,
        chunk_len,
        &first_try,
        wanted_n,
        Ask::UpNodesFor(READ_HEDGE_AFTER),
        &mut chunks,
    )
    .await;
    if missing.is_empty() {
        let mut joined = BytesMut::with_capacity(first_try.len() * chunk_len);
        for i in wanted.clone() {
            joined.extend_from_slice(chunks[usize::from(i)].as_ref().expect("fetched"));
        }
        let base = u64::from(wanted.start) * chunk_len as u64;
        let part = joined
            .freeze()
            .slice((within.start - base) as usize..(within.end - base) as usize);
        return Ok((part, missing));
    }

    // Degraded path: ask every other chunk (a data chunk that was too slow again too),
    // including nodes believed down, and go on as soon as `k` are in hand; a slow or hung node
    // cannot hold the read up.
    let rest: Vec<u8> = (0..layout.n_chunks() as u8)
        .filter(|&i| chunks[usize::from(i)].is_none())
        .collect();
    let have = chunks.iter().filter(|c| c.is_some()).count();
    let still_needed = usize::from(layout.k).saturating_sub(have);
    let _ = fetch_chunks(
        state,
        data,
        stripe_idx,
        chunk_len,
        &rest,
        still_needed,
        Ask::Every,
        &mut chunks,
    )
    .await;
    tracing::warn!(version = %data.version, stripe = stripe_idx.0, ?missing, "degraded read: reconstructing stripe from parity");
    state.metrics.degraded_reads.inc();
    let stripe_bytes = state
        .codec
        .decode_stripe(chunks, stripe_len as usize)
        .map_err(|e| {
            GatewayError::Unavailable(format!(
                "stripe {} of version {}: {e}",
                stripe_idx.0, data.version
            ))
        })?;
    let part = Bytes::from(stripe_bytes).slice(within.start as usize..within.end as usize);
    Ok((part, missing))
}

/// Whom [`fetch_chunks`] asks, and how long it waits.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// Nodes the gateway believes up, each for at most this long: a hung node (stopped, or
    /// stalled on its disk) that the gateway has not marked Down yet costs the read this
    /// much, not the RPC deadline, before parity is fetched (DESIGN 9).
    UpNodesFor(std::time::Duration),
    /// Every node, for the RPC deadline.
    Every,
}

/// Fetches chunks `indexes` in parallel into `chunks` and returns as soon as `needed` have
/// arrived intact (the rest are abandoned). Returns the indexes still missing.
#[allow(clippy::too_many_arguments)]
async fn fetch_chunks(
    state: &Arc<GatewayState>,
    data: &ErasureData,
    stripe_idx: StripeIdx,
    chunk_len: usize,
    indexes: &[u8],
    needed: usize,
    ask: Ask,
    chunks: &mut [Option<Bytes>],
) -> Vec<u8> {
    let (skip_down, patience) = match ask {
        Ask::UpNodesFor(patience) => (true, patience),
        Ask::Every => (false, RPC_TIMEOUT),
    };
    let mut calls = Vec::with_capacity(indexes.len());
    for &i in indexes {
        let Some(node) = data.placement.get(usize::from(i)).copied().flatten() else {
            continue; // no node holds this chunk (written degraded)
        };
        if skip_down && !state.nodes.is_up(node) {
            continue;
        }
        let key = ChunkKey {
            version: data.version,
            stripe_idx,
            chunk_idx: ChunkIdx(i),
        };
        calls.push((node, async move {
            // Given up here, not by the RPC client: a node merely slower than the hedge is
            // not marked Down for it (the health probes decide that).
            let request = Request::GetChunk { key };
            let call = state.nodes.call(node, &request, Bytes::new());
            let result = tokio::time::timeout(patience, call)
                .await
                .unwrap_or(Err(RpcError::Timeout(node)));
            verify_chunk(result, chunk_len)
                .map(|b| (i, b))
                .map_err(|e| (i, e))
        }));
    }
    let needed = needed.min(calls.len());
    let outcome = quorum(calls, needed).await;
    for (_, (i, bytes)) in outcome.successes {
        chunks[usize::from(i)] = Some(bytes);
    }
    for (node, (i, e)) in outcome.failures {
        tracing::debug!(chunk = i, stripe = stripe_idx.0, %node, error = %e, "chunk unavailable");
    }
    indexes
        .iter()
        .copied()
        .filter(|&i| chunks[usize::from(i)].is_none())
        .collect()
}

/// Checks a chunk read against its checksum and length again on arrival (the node checked it
/// against the disk; this catches anything that changed it in between).
fn verify_chunk(
    result: Result<(Response, Bytes), RpcError>,
    chunk_len: usize,
) -> Result<Bytes, String> {
    match result {
        Ok((Response::Chunk { checksum }, bytes)) => {
            if bytes.len() != chunk_len {
                Err(format!(
                    "chunk has {} bytes, expected {chunk_len}",
                    bytes.len()
                ))
            } else if blake3::hash(&bytes).as_bytes() != &checksum {
                Err("chunk checksum mismatch after transfer".into())
            } else {
                Ok(bytes)
            }
        }
        Ok((other, _)) => Err(format!("unexpected response {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inputs the `s3_headers` fuzz target crashed on (common/fuzz/regressions/s3_headers),
    /// with edge cases of RFC 9110 ranges: each resolves as the fuzz target requires.
    #[test]
    fn range_edge_cases_and_fuzz_regressions_resolve() {
        let mut inputs: Vec<(u64, String)> = vec![
            (0, "bytes=-5".into()),
            (0, "bytes=0-".into()),
            (10, "bytes=-0".into()),
            (10, "bytes=9-100".into()),
            (10, "bytes=10-".into()),
            (u64::MAX, "bytes=9223372036854775807-".into()),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../common/fuzz/regressions/s3_headers");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            if let Some((size, rest)) = bytes.split_first_chunk::<8>() {
                let size = u64::from_le_bytes(*size) >> (size[0] % 64);
                inputs.push((size, String::from_utf8_lossy(rest).into_owned()));
            }
        }
        for (size, header) in inputs {
            if let Ok(range) = s3s::dto::Range::parse(&header) {
                match resolve_range(Some(&range), size) {
                    Ok(Some(r)) => assert!(r.start < r.end && r.end <= size, "{header} on {size}"),
                    Ok(None) => assert_eq!(size, 0, "{header}"),
                    Err(GatewayError::InvalidRange { .. }) => {}
                    Err(e) => panic!("{header} on {size}: {e}"),
                }
            }
        }
        assert!(matches!(
            resolve_range(Some(&s3s::dto::Range::parse("bytes=-0").unwrap()), 10),
            Err(GatewayError::InvalidRange { size_bytes: 10 })
        ));
        assert_eq!(
            resolve_range(Some(&s3s::dto::Range::parse("bytes=-5").unwrap()), 0).unwrap(),
            None,
            "an empty object's suffix range sends the (empty) object"
        );
    }

    proptest! {
        /// Range headers as clients send them, and garbage: parsing never panics, and a range
        /// that parses resolves to a non-empty range inside the object, or to 416 (or, on an
        /// empty object, to the whole of it).
        #[test]
        fn range_headers_resolve_inside_the_object_or_to_416(
            header in prop_oneof![
                "bytes=[0-9]{0,21}-[0-9]{0,21}",
                "bytes=-[0-9]{0,21}",
                "bytes=[0-9, -]{0,24}",
                "[ -~]{0,40}",
            ],
            size in prop_oneof![Just(0u64), 0u64..100_000, any::<u64>()],
        ) {
            if let Ok(range) = s3s::dto::Range::parse(&header) {
                match resolve_range(Some(&range), size) {
                    Ok(Some(r)) => prop_assert!(r.start < r.end && r.end <= size, "{header} on {size} B: {r:?}"),
                    Ok(None) => prop_assert_eq!(size, 0, "only an empty object's range selects nothing"),
                    Err(GatewayError::InvalidRange { size_bytes }) => prop_assert_eq!(size_bytes, size),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
    }
}
