//! Newtypes for identifiers and indexes, so that a node id can never be passed where a chunk
//! index is expected (and so on).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A storage node's stable identity. Survives restarts and address changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Index of a chunk inside a stripe: data chunks are `0..k`, parity chunks `k..k+m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkIdx(pub u8);

/// Index of a stripe inside an object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StripeIdx(pub u32);

/// Hybrid logical clock timestamp: milliseconds since the Unix epoch in the high 44 bits and a
/// logical counter in the low 20 bits. Orders metadata versions; see [`crate::hlc`].
///
/// The low [`Hlc::REVISION_BITS`] of the logical counter belong to background rewrites of a
/// version (repair's compare-and-set, ADR 0004): a client write's stamp has them zero, and a
/// rewrite of the version stamped `h` is stamped [`Hlc::next_revision`], above `h` and below
/// every client stamp above `h`. So a rewrite never ties with a client write, and never
/// orders above one that was stamped after the version it rewrites was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    pub const LOGICAL_BITS: u32 = 20;
    /// Rewrites one version can take (255); clients have `2^(20 - 8)` stamps per millisecond.
    pub const REVISION_BITS: u32 = 8;
    const REVISION_MASK: u64 = (1 << Self::REVISION_BITS) - 1;

    /// How many times background work has rewritten this version (0 for a client's stamp).
    pub fn revision(self) -> u64 {
        self.0 & Self::REVISION_MASK
    }

    /// The stamp of a background rewrite of the version stamped `self`: above it and below
    /// every client stamp above it. `None` once the version has been rewritten
    /// 255 times.
    pub fn next_revision(self) -> Option<Hlc> {
        (self.revision() < Self::REVISION_MASK).then_some(Hlc(self.0 + 1))
    }

    /// The smallest client stamp above `self` and above every rewrite of it.
    pub fn next_client_stamp(self) -> Hlc {
        Hlc((self.0 | Self::REVISION_MASK) + 1)
    }

    pub fn from_parts(physical_ms: u64, logical: u64) -> Hlc {
        Hlc((physical_ms << Self::LOGICAL_BITS) | (logical & ((1 << Self::LOGICAL_BITS) - 1)))
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }
}

/// Identity of one written object version's data: the key prefix of all its chunks. Random, so
/// two gateways writing the same object key never share chunk keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub [u8; 16]);

impl VersionId {
    pub fn random() -> VersionId {
        VersionId(rand::random())
    }
}

impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionId({})", hex::encode(self.0))
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Address of one stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkKey {
    pub version: VersionId,
    pub stripe_idx: StripeIdx,
    pub chunk_idx: ChunkIdx,
}
