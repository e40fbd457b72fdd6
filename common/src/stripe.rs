//! All stripe arithmetic: how an object's bytes map to stripes and chunks (DESIGN 3).
//!
//! An object of `size` bytes is cut into stripes of `k * chunk_size` bytes; the last stripe may be
//! shorter. A stripe of `len` bytes is split into `k` data chunks of `ceil(len / k)` bytes each
//! (the last data chunk zero-padded), plus `m` parity chunks of the same length.

use crate::ids::StripeIdx;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The erasure profile and chunk size of one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeLayout {
    pub k: u8,
    pub m: u8,
    pub chunk_size_bytes: u32,
}

impl StripeLayout {
    pub fn n_chunks(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    pub fn stripe_size_bytes(&self) -> u64 {
        u64::from(self.k) * u64::from(self.chunk_size_bytes)
    }

    pub fn n_stripes(&self, object_size_bytes: u64) -> u32 {
        let n = object_size_bytes.div_ceil(self.stripe_size_bytes());
        u32::try_from(n).expect("object size is bounded by limits::MAX_PUT_OBJECT_BYTES")
    }

    /// Byte range of the object covered by stripe `idx`.
    pub fn stripe_range(&self, idx: StripeIdx, object_size_bytes: u64) -> Range<u64> {
        let start = u64::from(idx.0) * self.stripe_size_bytes();
        let end = (start + self.stripe_size_bytes()).min(object_size_bytes);
        start.min(end)..end
    }

    /// Length of each chunk (data and parity) of a stripe holding `stripe_len` bytes.
    pub fn chunk_len(&self, stripe_len: u64) -> usize {
        usize::try_from(stripe_len.div_ceil(u64::from(self.k))).expect("stripe fits in memory")
    }

    /// Stripes that hold any byte of `range` (a non-empty range within the object).
    pub fn stripes_covering(&self, range: &Range<u64>) -> Range<u32> {
        if range.is_empty() {
            return 0..0;
        }
        let first = range.start / self.stripe_size_bytes();
        let last = (range.end - 1) / self.stripe_size_bytes();
        let first = u32::try_from(first).expect("bounded object size");
        let last = u32::try_from(last).expect("bounded object size");
        first..last + 1
    }

    /// Data chunks of a stripe (of `stripe_len` bytes) that hold any byte of `within`, a range
    /// relative to the stripe's start.
    pub fn data_chunks_covering(&self, stripe_len: u64, within: &Range<u64>) -> Range<u8> {
        let chunk_len = self.chunk_len(stripe_len) as u64;
        if within.is_empty() || chunk_len == 0 {
            return 0..0;
        }
        let first = within.start / chunk_len;
        let last = (within.end - 1) / chunk_len;
        (first as u8)..(last as u8 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout() -> impl Strategy<Value = StripeLayout> {
        (1u8..=8, 1u8..=4, 1u32..=64).prop_map(|(k, m, c)| StripeLayout {
            k,
            m,
            chunk_size_bytes: c * 16,
        })
    }

    proptest! {
        #[test]
        fn stripes_tile_the_object_exactly(l in layout(), size in 0u64..200_000) {
            let n = l.n_stripes(size);
            let mut next = 0;
            for s in 0..n {
                let r = l.stripe_range(StripeIdx(s), size);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                prop_assert!(r.end - r.start <= l.stripe_size_bytes());
                prop_assert!(l.chunk_len(r.end - r.start) * usize::from(l.k) >= (r.end - r.start) as usize);
                next = r.end;
            }
            prop_assert_eq!(next, size);
        }

        #[test]
        fn covering_stripes_are_exactly_those_touched(l in layout(), size in 1u64..100_000, a in 0u64..100_000, b in 0u64..100_000) {
            let (a, b) = (a % size, b % size);
            let range = a.min(b)..a.max(b) + 1;
            let covering = l.stripes_covering(&range);
            for s in 0..l.n_stripes(size) {
                let sr = l.stripe_range(StripeIdx(s), size);
                let touches = sr.start < range.end && range.start < sr.end;
                prop_assert_eq!(covering.contains(&s), touches);
            }
        }

        #[test]
        fn covering_data_chunks_hold_the_range(l in layout(), len in 1u64..5000, a in 0u64..5000, b in 0u64..5000) {
            let len = len.min(l.stripe_size_bytes());
            let (a, b) = (a % len, b % len);
            let within = a.min(b)..a.max(b) + 1;
            let chunks = l.data_chunks_covering(len, &within);
            let cl = l.chunk_len(len) as u64;
            prop_assert!(u64::from(chunks.start) * cl <= within.start);
            prop_assert!(u64::from(chunks.end) * cl >= within.end);
            prop_assert!(chunks.end <= l.k);
        }
    }
}
