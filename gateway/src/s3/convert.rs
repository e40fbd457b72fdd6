//! Translations every S3 operation family shares: times, ETags, user metadata, lengths, and
//! the `x-amz-checksum-*` response fields.

use crate::error::GatewayError;
use dmpstore_common::record::{ChecksumAlgorithm, ObjectChecksum, ObjectRecord};
use s3s::dto::*;
use std::time::{Duration, UNIX_EPOCH};

pub(super) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(super) fn etag(record: &ObjectRecord) -> ETag {
    ETag::Strong(record.etag.clone())
}

pub(super) fn user_metadata(record: &ObjectRecord) -> Option<Metadata> {
    (!record.user_metadata.is_empty()).then(|| record.user_metadata.iter().cloned().collect())
}

pub(super) fn sorted_metadata(m: Option<Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.unwrap_or_default().into_iter().collect();
    v.sort();
    v
}

pub(super) fn content_length(n: Option<i64>) -> Result<Option<u64>, GatewayError> {
    match n {
        Some(n) if n < 0 => Err(GatewayError::InvalidArgument(
            "negative Content-Length".into(),
        )),
        other => Ok(other.map(|n| n as u64)),
    }
}

pub(super) fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
}

/// The `x-amz-checksum-*` response fields for one stored checksum.
#[derive(Default)]
pub(super) struct ChecksumFields {
    pub(super) crc32: Option<String>,
    pub(super) crc32c: Option<String>,
    pub(super) crc64nvme: Option<String>,
    pub(super) sha1: Option<String>,
    pub(super) sha256: Option<String>,
}

impl ChecksumFields {
    pub(super) fn of(c: Option<&ObjectChecksum>) -> ChecksumFields {
        let mut f = ChecksumFields::default();
        if let Some(c) = c {
            let slot = match c.algorithm {
                ChecksumAlgorithm::Crc32 => &mut f.crc32,
                ChecksumAlgorithm::Crc32c => &mut f.crc32c,
                ChecksumAlgorithm::Crc64Nvme => &mut f.crc64nvme,
                ChecksumAlgorithm::Sha1 => &mut f.sha1,
                ChecksumAlgorithm::Sha256 => &mut f.sha256,
            };
            *slot = Some(c.value.clone());
        }
        f
    }
}

/// The stored checksum, when the client asked for it (`x-amz-checksum-mode: ENABLED`) and the
/// response carries the whole body it describes.
pub(super) fn requested_checksum<'r>(
    record: &'r ObjectRecord,
    mode: Option<&ChecksumMode>,
    whole_body: bool,
) -> Option<&'r ObjectChecksum> {
    let enabled = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    record.checksum.as_ref().filter(|_| enabled && whole_body)
}
