//! The erasure codec: Reed-Solomon over GF(2^8) from `reed-solomon-erasure` (SIMD build).
//! Everything else sees only [`Codec::encode_stripe`] and [`Codec::decode_stripe`], so the
//! library can be swapped by measurement (DESIGN 2).

use crate::stripe::StripeLayout;
use bytes::Bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid erasure profile RS({k},{m}): {reason}")]
    InvalidProfile { k: u8, m: u8, reason: String },
    #[error("cannot rebuild stripe: {available} chunks available, {needed} needed")]
    TooFewChunks { available: usize, needed: usize },
    #[error("chunk {chunk_idx} has {actual} bytes, expected {expected}")]
    ChunkLength {
        chunk_idx: usize,
        actual: usize,
        expected: usize,
    },
    #[error("reed-solomon: {0:?}")]
    Rs(reed_solomon_erasure::Error),
}

#[derive(Debug)]
pub struct Codec {
    layout: StripeLayout,
    rs: ReedSolomon,
}

impl Codec {
    pub fn new(layout: StripeLayout) -> Result<Codec, CodecError> {
        let invalid = |reason: &str| CodecError::InvalidProfile {
            k: layout.k,
            m: layout.m,
            reason: reason.to_string(),
        };
        if usize::from(layout.k) > crate::limits::MAX_DATA_CHUNKS || layout.k == 0 {
            return Err(invalid("k must be between 1 and MAX_DATA_CHUNKS"));
        }
        if usize::from(layout.m) > crate::limits::MAX_PARITY_CHUNKS || layout.m == 0 {
            return Err(invalid("m must be between 1 and MAX_PARITY_CHUNKS"));
        }
        let rs = ReedSolomon::new(usize::from(layout.k), usize::from(layout.m))
            .map_err(CodecError::Rs)?;
        Ok(Codec { layout, rs })
    }

    pub fn layout(&self) -> StripeLayout {
        self.layout
    }

    /// Encodes one stripe (at most `k * chunk_size` bytes, at least one) into `k + m` chunks of
    /// equal length. Data chunks are the stripe's bytes in order (zero-copy slices of `stripe`
    /// when it fills them exactly; the last one zero-padded otherwise).
    pub fn encode_stripe(&self, stripe: &Bytes) -> Result<Vec<Bytes>, CodecError> {
        let k = usize::from(self.layout.k);
        let chunk_len = self.layout.chunk_len(stripe.len() as u64);
        let padded = if stripe.len() == k * chunk_len {
            stripe.clone()
        } else {
            let mut buf = vec![0u8; k * chunk_len];
            buf[..stripe.len()].copy_from_slice(stripe);
            Bytes::from(buf)
        };
        let data: Vec<Bytes> = (0..k)
            .map(|i| padded.slice(i * chunk_len..(i + 1) * chunk_len))
            .collect();
        let mut parity = vec![vec![0u8; chunk_len]; usize::from(self.layout.m)];
        self.rs
            .encode_sep(&data, &mut parity)
            .map_err(CodecError::Rs)?;
        Ok(data
            .into_iter()
            .chain(parity.into_iter().map(Bytes::from))
            .collect())
    }

    /// Rebuilds the data of one stripe of `stripe_len` bytes from any `k` of its chunks
    /// (`chunks[i]` is chunk `i` if it was read). Returns the stripe's bytes, without padding.
    pub fn decode_stripe(
        &self,
        chunks: Vec<Option<Bytes>>,
        stripe_len: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let k = usize::from(self.layout.k);
        let chunk_len = self.layout.chunk_len(stripe_len as u64);
        let available = chunks.iter().filter(|c| c.is_some()).count();
        if available < k {
            return Err(CodecError::TooFewChunks {
                available,
                needed: k,
            });
        }
        for (i, c) in chunks.iter().enumerate() {
            if let Some(c) = c {
                if c.len() != chunk_len {
                    return Err(CodecError::ChunkLength {
                        chunk_idx: i,
                        actual: c.len(),
                        expected: chunk_len,
                    });
                }
            }
        }
        let all_data_present = chunks[..k].iter().all(Option::is_some);
        let data: Vec<Bytes> = if all_data_present {
            chunks
                .into_iter()
                .take(k)
                .map(|c| c.expect("checked present"))
                .collect()
        } else {
            let mut shards: Vec<Option<Vec<u8>>> =
                chunks.into_iter().map(|c| c.map(|b| b.to_vec())).collect();
            self.rs
                .reconstruct_data(&mut shards)
                .map_err(CodecError::Rs)?;
            shards
                .into_iter()
                .take(k)
                .map(|s| Bytes::from(s.expect("reconstruct_data fills every data shard")))
                .collect()
        };
        let mut out = Vec::with_capacity(stripe_len);
        for d in data {
            let take = (stripe_len - out.len()).min(d.len());
            out.extend_from_slice(&d[..take]);
        }
        Ok(out)
    }

    /// Rebuilds every missing chunk (data and parity) of a stripe from any `k` of them. Used by
    /// repair, which must write back exactly the chunk that was lost.
    pub fn rebuild_chunks(&self, chunks: Vec<Option<Bytes>>) -> Result<Vec<Bytes>, CodecError> {
        let available = chunks.iter().filter(|c| c.is_some()).count();
        let k = usize::from(self.layout.k);
        if available < k {
            return Err(CodecError::TooFewChunks {
                available,
                needed: k,
            });
        }
        let mut shards: Vec<Option<Vec<u8>>> =
            chunks.into_iter().map(|c| c.map(|b| b.to_vec())).collect();
        self.rs.reconstruct(&mut shards).map_err(CodecError::Rs)?;
        Ok(shards
            .into_iter()
            .map(|s| Bytes::from(s.expect("reconstruct fills every shard")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subsets_of_size(n: usize, k: usize, seed: u64) -> Vec<bool> {
        // A pseudo-random choice of exactly `k` present chunks out of `n`.
        let mut present = vec![false; n];
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for &i in &order[..k] {
            present[i] = true;
        }
        present
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_k_of_k_plus_m_chunks_rebuild_the_stripe(
            k in 1u8..=8, m in 1u8..=4, data in proptest::collection::vec(any::<u8>(), 1..4096), seed in any::<u64>()
        ) {
            let layout = StripeLayout { k, m, chunk_size_bytes: 1024 };
            let data = Bytes::copy_from_slice(&data[..data.len().min(layout.stripe_size_bytes() as usize)]);
            let codec = Codec::new(layout).unwrap();
            let chunks = codec.encode_stripe(&data).unwrap();
            prop_assert_eq!(chunks.len(), layout.n_chunks());
            let present = subsets_of_size(layout.n_chunks(), usize::from(k), seed);
            let partial: Vec<Option<Bytes>> = chunks
                .iter()
                .zip(&present)
                .map(|(c, &p)| p.then(|| c.clone()))
                .collect();
            let decoded = codec.decode_stripe(partial.clone(), data.len()).unwrap();
            prop_assert_eq!(&decoded[..], &data[..]);
            let rebuilt = codec.rebuild_chunks(partial).unwrap();
            prop_assert_eq!(rebuilt, chunks);
        }

        #[test]
        fn fewer_than_k_chunks_is_an_error(k in 2u8..=8, m in 1u8..=4, seed in any::<u64>()) {
            let layout = StripeLayout { k, m, chunk_size_bytes: 64 };
            let codec = Codec::new(layout).unwrap();
            let data = Bytes::from(vec![7u8; 100.min(layout.stripe_size_bytes() as usize)]);
            let chunks = codec.encode_stripe(&data).unwrap();
            let present = subsets_of_size(layout.n_chunks(), usize::from(k) - 1, seed);
            let partial: Vec<Option<Bytes>> = chunks.iter().zip(&present).map(|(c, &p)| p.then(|| c.clone())).collect();
            let is_too_few = matches!(codec.decode_stripe(partial, data.len()), Err(CodecError::TooFewChunks { .. }));
            prop_assert!(is_too_few);
        }
    }
}
