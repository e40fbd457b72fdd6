//! `x-amz-checksum-*` on writes: the algorithm comes from a checksum header or from the
//! `x-amz-trailer` the client declared (current AWS SDKs send CRC32 as an aws-chunked trailer by
//! default). The digest is computed while the body streams in and compared at the end; a
//! mismatch is `BadDigest` and nothing is stored. s3s decodes the chunked body and verifies
//! chunk and trailer signatures, but leaves this comparison to us.

use crate::error::GatewayError;
use dmpstore_common::record::{ChecksumAlgorithm, ObjectChecksum};
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::TrailingHeaders;

const ALGORITHMS: [(ChecksumAlgorithm, &str); 5] = [
    (ChecksumAlgorithm::Crc32, "x-amz-checksum-crc32"),
    (ChecksumAlgorithm::Crc32c, "x-amz-checksum-crc32c"),
    (ChecksumAlgorithm::Crc64Nvme, "x-amz-checksum-crc64nvme"),
    (ChecksumAlgorithm::Sha1, "x-amz-checksum-sha1"),
    (ChecksumAlgorithm::Sha256, "x-amz-checksum-sha256"),
];

/// The checksum values a request carried in headers (from the s3s input).
#[derive(Debug, Default, Clone)]
pub struct HeaderChecksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

impl HeaderChecksums {
    fn get(&self, a: ChecksumAlgorithm) -> Option<&String> {
        match a {
            ChecksumAlgorithm::Crc32 => self.crc32.as_ref(),
            ChecksumAlgorithm::Crc32c => self.crc32c.as_ref(),
            ChecksumAlgorithm::Crc64Nvme => self.crc64nvme.as_ref(),
            ChecksumAlgorithm::Sha1 => self.sha1.as_ref(),
            ChecksumAlgorithm::Sha256 => self.sha256.as_ref(),
        }
    }
}

enum Expected {
    Header(String),
    Trailer(TrailingHeaders, &'static str),
}

pub struct ChecksumCheck {
    algorithm: ChecksumAlgorithm,
    expected: Expected,
    hasher: ChecksumHasher,
}

impl std::fmt::Debug for ChecksumCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksumCheck")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl ChecksumCheck {
    /// The check a request asks for, if any.
    pub fn from_request(
        headers: &http::HeaderMap,
        values: &HeaderChecksums,
        trailing: Option<TrailingHeaders>,
    ) -> Result<Option<ChecksumCheck>, GatewayError> {
        for (algorithm, _) in ALGORITHMS {
            if let Some(v) = values.get(algorithm) {
                tracing::debug!(?algorithm, "checksum expected from a header");
                return Ok(Some(Self::new(algorithm, Expected::Header(v.clone()))));
            }
        }
        let declared = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let Some(declared) = declared else {
            return Ok(None);
        };
        let Some((algorithm, name)) = ALGORITHMS
            .iter()
            .find(|(_, n)| declared.trim() == *n)
            .copied()
        else {
            return Err(GatewayError::InvalidRequest(format!(
                "unsupported x-amz-trailer {declared}"
            )));
        };
        let Some(trailing) = trailing else {
            return Err(GatewayError::InvalidRequest(
                "x-amz-trailer without an aws-chunked body".into(),
            ));
        };
        tracing::debug!(?algorithm, "checksum expected in an aws-chunked trailer");
        Ok(Some(Self::new(
            algorithm,
            Expected::Trailer(trailing, name),
        )))
    }

    fn new(algorithm: ChecksumAlgorithm, expected: Expected) -> ChecksumCheck {
        let mut hasher = ChecksumHasher::default();
        match algorithm {
            ChecksumAlgorithm::Crc32 => hasher.crc32 = Some(Crc32::new()),
            ChecksumAlgorithm::Crc32c => hasher.crc32c = Some(Crc32c::new()),
            ChecksumAlgorithm::Crc64Nvme => hasher.crc64nvme = Some(Crc64Nvme::new()),
            ChecksumAlgorithm::Sha1 => hasher.sha1 = Some(Sha1::new()),
            ChecksumAlgorithm::Sha256 => hasher.sha256 = Some(Sha256::new()),
        }
        ChecksumCheck {
            algorithm,
            expected,
            hasher,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Compares the digest of everything received with the expected value (call once the body
    /// has been read to its end, so the trailer has arrived).
    pub fn finish(self) -> Result<ObjectChecksum, GatewayError> {
        let sums = self.hasher.finalize();
        let actual = match self.algorithm {
            ChecksumAlgorithm::Crc32 => sums.checksum_crc32,
            ChecksumAlgorithm::Crc32c => sums.checksum_crc32c,
            ChecksumAlgorithm::Crc64Nvme => sums.checksum_crc64nvme,
            ChecksumAlgorithm::Sha1 => sums.checksum_sha1,
            ChecksumAlgorithm::Sha256 => sums.checksum_sha256,
        }
        .expect("the hasher for the chosen algorithm is set");
        let expected = match self.expected {
            Expected::Header(v) => v,
            Expected::Trailer(trailing, name) => trailing
                .read(|h| {
                    h.get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten()
                .ok_or_else(|| {
                    GatewayError::InvalidRequest(format!("the {name} trailer is missing"))
                })?,
        };
        if expected.trim() != actual {
            return Err(GatewayError::BadDigest);
        }
        Ok(ObjectChecksum {
            algorithm: self.algorithm,
            value: actual,
        })
    }
}
