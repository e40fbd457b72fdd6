//! The S3 API: the `s3s` trait implemented over the gateway's paths. Each method only translates
//! between S3 types and the path functions; operations not listed here get s3s's
//! `501 NotImplemented`.

use crate::buckets;
use crate::checksum::{ChecksumCheck, HeaderChecksums};
use crate::copy::{self, CopyRequest};
use crate::error::GatewayError;
use crate::get;
use crate::list::{self, ListParams};
use crate::multipart;
use crate::preconditions::{self, ReadConditions, WriteConditions};
use crate::put::{self, PutRequest};
use crate::state::GatewayState;
use crate::tagging;
use crate::versions::{self, VersionListParams};
use dmpstore_common::limits::{
    DELETE_OBJECTS_CONCURRENCY, MAX_DELETE_OBJECTS_KEYS, MAX_LIST_KEYS, MAX_PARTS,
};
use dmpstore_common::record::{
    part_sort_key, parts_partition, version_sort_key, versions_partition, ChecksumAlgorithm,
    MetaValue, ObjectChecksum, ObjectRecord, Versioning,
};
use dmpstore_common::rpc::RecordRef;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct DmpS3 {
    state: Arc<GatewayState>,
}

impl DmpS3 {
    pub fn new(state: Arc<GatewayState>) -> DmpS3 {
        DmpS3 { state }
    }
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

fn etag(record: &ObjectRecord) -> ETag {
    ETag::Strong(record.etag.clone())
}

fn user_metadata(record: &ObjectRecord) -> Option<Metadata> {
    (!record.user_metadata.is_empty()).then(|| record.user_metadata.iter().cloned().collect())
}

/// S3's `encoding-type=url`: keys are percent-encoded in the response (the aws cli asks for it).
fn encode_key(s: &str, url: bool) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    if url {
        percent_encoding::utf8_percent_encode(s, KEEP).to_string()
    } else {
        s.to_string()
    }
}

fn max_keys(requested: Option<i32>) -> Result<usize, GatewayError> {
    match requested {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(GatewayError::InvalidArgument(
            "max-keys must not be negative".into(),
        )),
        Some(n) => Ok((n as usize).min(MAX_LIST_KEYS)),
    }
}

fn listed_objects(listing: &list::Listing, url: bool) -> Vec<Object> {
    listing
        .objects
        .iter()
        .map(|(key, r)| Object {
            key: Some(encode_key(key, url)),
            size: Some(r.size_bytes as i64),
            e_tag: Some(etag(r)),
            last_modified: Some(timestamp(r.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn listed_prefixes(listing: &list::Listing, url: bool) -> Vec<CommonPrefix> {
    listing
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode_key(p, url)),
        })
        .collect()
}

fn wants_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn sorted_metadata(m: Option<Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.unwrap_or_default().into_iter().collect();
    v.sort();
    v
}

/// Bucket, key and version id of an `x-amz-copy-source`.
fn copy_source(src: &CopySource) -> Result<(String, String, Option<String>), GatewayError> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        )),
        _ => Err(GatewayError::NotImplemented("copy from an access point")),
    }
}

/// `x-amz-copy-source-range: bytes=first-last`, which (unlike a GET range) must lie wholly
/// inside the source.
fn copy_source_range(header: &str, size_bytes: u64) -> Result<std::ops::Range<u64>, GatewayError> {
    match Range::parse(header) {
        Ok(Range::Int {
            first,
            last: Some(last),
        }) if first <= last => {
            if last >= size_bytes {
                return Err(GatewayError::InvalidRange { size_bytes });
            }
            Ok(first..last + 1)
        }
        _ => Err(GatewayError::InvalidArgument(format!(
            "x-amz-copy-source-range must be bytes=first-last, got {header}"
        ))),
    }
}

/// The `x-amz-checksum-*` response fields for one stored checksum.
#[derive(Default)]
struct ChecksumFields {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
}

impl ChecksumFields {
    fn of(c: Option<&ObjectChecksum>) -> ChecksumFields {
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
fn requested_checksum<'r>(
    record: &'r ObjectRecord,
    mode: Option<&ChecksumMode>,
    whole_body: bool,
) -> Option<&'r ObjectChecksum> {
    let enabled = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    record.checksum.as_ref().filter(|_| enabled && whole_body)
}

fn content_length(n: Option<i64>) -> Result<Option<u64>, GatewayError> {
    match n {
        Some(n) if n < 0 => Err(GatewayError::InvalidArgument(
            "negative Content-Length".into(),
        )),
        other => Ok(other.map(|n| n as u64)),
    }
}

fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
}

#[async_trait::async_trait]
impl S3 for DmpS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        buckets::create(&self.state, &bucket).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::ensure_exists(&self.state, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.state.config.region.clone()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete(&self.state, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = buckets::list(&self.state)
            .await?
            .into_iter()
            .map(|(name, b)| Bucket {
                name: Some(name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.state.config.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("dmpstore".into()),
                id: Some("dmpstore".into()),
            }),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let S3Request {
            input,
            headers,
            trailing_headers,
            ..
        } = req;
        let values = HeaderChecksums {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
        };
        let checksum = ChecksumCheck::from_request(&headers, &values, trailing_headers)?;
        let tags = tagging::parse_header(input.tagging.as_deref())?;
        let content_length = match input.content_length {
            Some(n) if n < 0 => {
                return Err(GatewayError::InvalidArgument("negative Content-Length".into()).into())
            }
            other => other.map(|n| n as u64),
        };
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
        });
        let mut user_metadata: Vec<(String, String)> =
            input.metadata.unwrap_or_default().into_iter().collect();
        user_metadata.sort();
        let result = put::put_object(
            &self.state,
            PutRequest {
                bucket: input.bucket,
                key: input.key,
                body,
                content_length,
                content_md5: input.content_md5,
                content_type: input.content_type,
                user_metadata,
                conditions: WriteConditions {
                    if_match: input.if_match,
                    if_none_match: input.if_none_match,
                },
                checksum,
                tags,
            },
        )
        .await?;
        let sums = ChecksumFields::of(result.checksum.as_ref());
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(result.etag)),
            size: Some(result.size_bytes as i64),
            version_id: result.version_id,
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (record, version_id) = get::head_version(
            &self.state,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
        )
        .await?;
        preconditions::check_read(
            &record,
            &ReadConditions {
                if_match: input.if_match,
                if_none_match: input.if_none_match,
                if_modified_since: input.if_modified_since,
                if_unmodified_since: input.if_unmodified_since,
            },
        )?;
        // A full-object checksum describes the whole body only: none on range responses.
        let whole = input.range.is_none();
        let sums = ChecksumFields::of(requested_checksum(
            &record,
            input.checksum_mode.as_ref(),
            whole,
        ));
        let size = record.size_bytes;
        let range = get::resolve_range(input.range.as_ref(), size)?;
        let content_range = range
            .as_ref()
            .map(|r| format!("bytes {}-{}/{size}", r.start, r.end - 1));
        let range = range.unwrap_or(0..size);
        let origin = match input.version_id.as_deref() {
            None => Some((input.bucket.clone(), input.key.clone())),
            Some(versions::NULL) => None,
            Some(id) => Some((
                versions_partition(&input.bucket),
                version_sort_key(&input.key, id),
            )),
        };
        let body = get::body(&self.state, &record.data, size, range.clone(), origin);
        self.state.metrics.bytes_out.inc_by(range.end - range.start);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: record.content_type.clone(),
            metadata: user_metadata(&record),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            version_id,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (record, version_id) = get::head_version(
            &self.state,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
        )
        .await?;
        let sums = ChecksumFields::of(requested_checksum(
            &record,
            input.checksum_mode.as_ref(),
            true,
        ));
        preconditions::check_read(
            &record,
            &ReadConditions {
                if_match: input.if_match,
                if_none_match: input.if_none_match,
                if_modified_since: input.if_modified_since,
                if_unmodified_since: input.if_unmodified_since,
            },
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(record.size_bytes as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: record.content_type.clone(),
            metadata: user_metadata(&record),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            version_id,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let deleted = versions::delete(
            &self.state,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
        )
        .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker.then_some(true),
            version_id: deleted.version_id,
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let versioning = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3s::S3Error::with_message(
                    s3s::S3ErrorCode::IllegalVersioningConfigurationException,
                    "the versioning status must be Enabled or Suspended",
                ))
            }
        };
        if input
            .versioning_configuration
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(GatewayError::NotImplemented("MFA delete").into());
        }
        versions::set_versioning(&self.state, &input.bucket, versioning).await?;
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let b = buckets::ensure_exists(&self.state, &req.input.bucket).await?;
        let status = match b.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let url = wants_url(&input.encoding_type);
        let max = max_keys(input.max_keys)?;
        let params = VersionListParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone(),
            version_id_marker: input.version_id_marker.clone(),
            max_keys: max,
        };
        let listing = versions::list(&self.state, &input.bucket, &params).await?;
        let owner = Owner {
            display_name: Some("dmpstore".into()),
            id: Some("dmpstore".into()),
        };
        let mut versions_out = Vec::new();
        let mut markers = Vec::new();
        for v in listing.versions {
            let key = Some(encode_key(&v.key, url));
            match v.value {
                MetaValue::Object(r) => versions_out.push(ObjectVersion {
                    e_tag: Some(etag(&r)),
                    is_latest: Some(v.is_latest),
                    key,
                    last_modified: Some(timestamp(r.last_modified_ms)),
                    owner: Some(owner.clone()),
                    size: Some(r.size_bytes as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(versions::shown(r.version_id.as_deref())),
                    ..Default::default()
                }),
                MetaValue::DeleteMarker(m) => markers.push(DeleteMarkerEntry {
                    is_latest: Some(v.is_latest),
                    key,
                    last_modified: Some(timestamp(m.deleted_ms)),
                    owner: Some(owner.clone()),
                    version_id: Some(versions::shown(m.version_id.as_deref())),
                }),
                _ => {}
            }
        }
        let common_prefixes = listing
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode_key(p, url)),
            })
            .collect();
        let (next_key_marker, next_version_id_marker) = match listing.next.clone() {
            Some((k, v)) => (Some(encode_key(&k, url)), v),
            None => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            key_marker: input.key_marker,
            version_id_marker: input.version_id_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(listing.next.is_some()),
            next_key_marker,
            next_version_id_marker,
            versions: Some(versions_out),
            delete_markers: Some(markers),
            common_prefixes: Some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = wants_url(&input.encoding_type);
        let start_after = match &input.continuation_token {
            Some(token) => hex::decode(token).map_err(|_| {
                GatewayError::InvalidArgument("the continuation token is not valid".into())
            })?,
            None => input.start_after.clone().unwrap_or_default().into_bytes(),
        };
        let params = ListParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            start_after,
            max_keys: max_keys(input.max_keys)?,
        };
        let listing = list::list(&self.state, &input.bucket, &params).await?;
        let contents = listed_objects(&listing, url);
        let prefixes = listed_prefixes(&listing, url);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_key(&params.prefix, url)),
            delimiter: input.delimiter.map(|d| encode_key(&d, url)),
            max_keys: Some(params.max_keys as i32),
            key_count: Some((contents.len() + prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(|s| encode_key(&s, url)),
            is_truncated: Some(listing.next_cursor.is_some()),
            next_continuation_token: listing.next_cursor.as_ref().map(hex::encode),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = wants_url(&input.encoding_type);
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.clone().unwrap_or_default();
        // A marker that is a common prefix (V1's NextMarker with a delimiter) continues past it.
        let marker_is_prefix = input.delimiter.as_deref().is_some_and(|d| {
            !d.is_empty()
                && marker.starts_with(prefix.as_str())
                && marker[prefix.len()..].ends_with(d)
        });
        let start_after = if marker_is_prefix {
            list::past_prefix(&marker)
        } else {
            marker.clone().into_bytes()
        };
        let params = ListParams {
            prefix: prefix.clone(),
            delimiter: input.delimiter.clone(),
            start_after,
            max_keys: max_keys(input.max_keys)?,
        };
        let listing = list::list(&self.state, &input.bucket, &params).await?;
        let truncated = listing.next_cursor.is_some();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_key(&prefix, url)),
            marker: Some(encode_key(&marker, url)),
            delimiter: input.delimiter.clone().map(|d| encode_key(&d, url)),
            max_keys: Some(params.max_keys as i32),
            is_truncated: Some(truncated),
            next_marker: if truncated {
                listing.last_item.as_deref().map(|k| encode_key(k, url))
            } else {
                None
            },
            contents: Some(listed_objects(&listing, url)),
            common_prefixes: Some(listed_prefixes(&listing, url)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let upload_id = multipart::create(
            &self.state,
            &input.bucket,
            &input.key,
            input.content_type,
            sorted_metadata(input.metadata),
            tagging::parse_header(input.tagging.as_deref())?,
        )
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request {
            input,
            headers,
            trailing_headers,
            ..
        } = req;
        let part_number = multipart::check_part_number(input.part_number)?;
        let values = HeaderChecksums {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
        };
        let checksum = ChecksumCheck::from_request(&headers, &values, trailing_headers)?;
        let body = input.body.unwrap_or_else(empty_body);
        let part_ref = RecordRef {
            partition: parts_partition(&input.bucket),
            key: part_sort_key(&input.upload_id, part_number),
        };
        let stored = put::store_body(
            &self.state,
            body,
            content_length(input.content_length)?,
            input.content_md5.as_deref(),
            checksum,
            &part_ref,
        )
        .await?;
        let checksum = stored.checksum.clone();
        self.state.metrics.bytes_in.inc_by(stored.size_bytes);
        let etag = multipart::record_part(
            &self.state,
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            stored,
        )
        .await?;
        let sums = ChecksumFields::of(checksum.as_ref());
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let part_number = multipart::check_part_number(input.part_number)?;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        let conditions = ReadConditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        };
        let src_at = (
            src_bucket.as_str(),
            src_key.as_str(),
            src_version.as_deref(),
        );
        let (src, copy_source_version_id) = copy::source(&self.state, src_at, &conditions).await?;
        let range = match input.copy_source_range.as_deref() {
            None => 0..src.size_bytes,
            Some(r) => copy_source_range(r, src.size_bytes)?,
        };
        let part_ref = RecordRef {
            partition: parts_partition(&input.bucket),
            key: part_sort_key(&input.upload_id, part_number),
        };
        let stored = copy::copy_range(
            &self.state,
            &src.data,
            src.size_bytes,
            range,
            &src.etag,
            &part_ref,
        )
        .await?;
        let etag = multipart::record_part(
            &self.state,
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            stored,
        )
        .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(GatewayState::now_ms())),
                ..Default::default()
            }),
            copy_source_version_id,
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let mut requested = Vec::new();
        for p in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let number = multipart::check_part_number(p.part_number.unwrap_or(0))?;
            let etag = p.e_tag.map(|e| e.value().to_string()).unwrap_or_default();
            requested.push((number, etag));
        }
        let conditions = WriteConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
        };
        let (etag, version_id) = multipart::complete(
            &self.state,
            &input.bucket,
            &input.key,
            &input.upload_id,
            requested,
            &conditions,
        )
        .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            version_id,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        multipart::abort(&self.state, &input.bucket, &input.key, &input.upload_id).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input
            .part_number_marker
            .unwrap_or(0)
            .clamp(0, MAX_PARTS as i32) as u32;
        buckets::ensure_exists(&self.state, &input.bucket).await?;
        let (parts, truncated) =
            multipart::parts(&self.state, &input.bucket, &input.upload_id, marker, max).await?;
        if parts.is_empty() && marker == 0 {
            // Distinguish an upload without parts from one that does not exist.
            multipart::get_upload(&self.state, &input.bucket, &input.key, &input.upload_id).await?;
        }
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            is_truncated: Some(truncated),
            next_part_number_marker: parts.last().map(|p| p.part_number as i32),
            parts: Some(
                parts
                    .iter()
                    .map(|p| Part {
                        part_number: Some(p.part_number as i32),
                        e_tag: Some(ETag::Strong(p.part.etag.clone())),
                        size: Some(p.part.size_bytes as i64),
                        last_modified: Some(timestamp(p.last_modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let listing = multipart::list_uploads(
            &self.state,
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            input.key_marker.as_deref().unwrap_or(""),
            input.upload_id_marker.as_deref().unwrap_or(""),
            max,
        )
        .await?;
        // The page's last entry, an upload or a common prefix, is where the next one starts.
        let last_upload = listing
            .uploads
            .last()
            .map(|u| (u.key.clone(), Some(u.upload_id.clone())));
        let last_prefix = listing.common_prefixes.last().map(|p| (p.clone(), None));
        let last = last_upload
            .into_iter()
            .chain(last_prefix)
            .max_by(|a, b| a.0.cmp(&b.0));
        let (next_key_marker, next_upload_id_marker) = match (listing.truncated, last) {
            (true, Some((key, id))) => (Some(key), id),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(listing.truncated),
            next_key_marker,
            next_upload_id_marker,
            common_prefixes: Some(
                listing
                    .common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            uploads: Some(
                listing
                    .uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.record.initiated_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key, src_version_id) = copy_source(&input.copy_source)?;
        let replace_metadata = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(GatewayError::InvalidArgument(format!(
                    "unknown metadata directive {other}"
                ))
                .into())
            }
        };
        let copied = copy::copy_object(
            &self.state,
            CopyRequest {
                src_bucket,
                src_key,
                src_version_id,
                dst_bucket: input.bucket,
                dst_key: input.key,
                replace_metadata,
                content_type: input.content_type,
                user_metadata: sorted_metadata(input.metadata),
                source_conditions: ReadConditions {
                    if_match: input.copy_source_if_match,
                    if_none_match: input.copy_source_if_none_match,
                    if_modified_since: input.copy_source_if_modified_since,
                    if_unmodified_since: input.copy_source_if_unmodified_since,
                },
            },
        )
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&copied.record)),
                last_modified: Some(timestamp(copied.record.last_modified_ms)),
                ..Default::default()
            }),
            version_id: copied.version_id,
            copy_source_version_id: copied.source_version_id,
            ..Default::default()
        }))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let objects = input.delete.objects;
        if objects.len() > MAX_DELETE_OBJECTS_KEYS {
            return Err(GatewayError::InvalidRequest(format!(
                "at most {MAX_DELETE_OBJECTS_KEYS} keys per request"
            ))
            .into());
        }
        buckets::ensure_exists(&self.state, &input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = &input.bucket;
        type Outcome = (
            String,
            Option<String>,
            Result<versions::Deleted, GatewayError>,
        );
        let results: Vec<Outcome> = futures::stream::iter(objects)
            .map(|o| async move {
                let result =
                    versions::delete(&self.state, bucket, &o.key, o.version_id.as_deref()).await;
                (o.key, o.version_id, result)
            })
            .buffered(DELETE_OBJECTS_CONCURRENCY)
            .collect()
            .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, asked_version, result) in results {
            match result {
                Ok(_) if quiet => {}
                Ok(d) => deleted.push(if asked_version.is_some() {
                    DeletedObject {
                        key: Some(key),
                        version_id: d.version_id,
                        delete_marker: d.delete_marker.then_some(true),
                        ..Default::default()
                    }
                } else {
                    DeletedObject {
                        key: Some(key),
                        delete_marker: d.delete_marker.then_some(true),
                        delete_marker_version_id: d.version_id.filter(|_| d.delete_marker),
                        ..Default::default()
                    }
                }),
                Err(e) => {
                    let s3 = s3s::S3Error::from(e);
                    errors.push(Error {
                        code: Some(s3.code().as_str().to_string()),
                        message: s3.message().map(str::to_string),
                        key: Some(key),
                        version_id: asked_version,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::ensure_exists(&self.state, &req.input.bucket).await?;
        // S3 answers an empty constraint for us-east-1.
        let region = &self.state.config.region;
        let location_constraint =
            (region != "us-east-1").then(|| BucketLocationConstraint::from(region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        let version = input.version_id.as_deref();
        tagging::put_tags(&self.state, &input.bucket, &input.key, version, tags).await?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: input.version_id,
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let version = input.version_id.as_deref();
        let tags = tagging::get_tags(&self.state, &input.bucket, &input.key, version).await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tags
                .into_iter()
                .map(|(k, v)| Tag {
                    key: Some(k),
                    value: Some(v),
                })
                .collect(),
            version_id: input.version_id,
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let version = input.version_id.as_deref();
        tagging::put_tags(&self.state, &input.bucket, &input.key, version, Vec::new()).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: input.version_id,
        }))
    }
}
