//! The S3 API: the `s3s` trait implemented over the gateway's paths. Each method only translates
//! between S3 types and the path functions; operations not listed here get s3s's
//! `501 NotImplemented`.

use crate::buckets;
use crate::delete;
use crate::error::GatewayError;
use crate::get;
use crate::list::{self, ListParams};
use crate::put::{self, PutRequest};
use crate::state::GatewayState;
use dmpstore_common::limits::MAX_LIST_KEYS;
use dmpstore_common::record::ObjectRecord;
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
        let input = req.input;
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
            },
        )
        .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(result.etag)),
            size: Some(result.size_bytes as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let record = get::head(&self.state, &input.bucket, &input.key).await?;
        let size = record.size_bytes;
        let range = get::resolve_range(input.range.as_ref(), size)?;
        let content_range = range
            .as_ref()
            .map(|r| format!("bytes {}-{}/{size}", r.start, r.end - 1));
        let range = range.unwrap_or(0..size);
        let body = get::body(&self.state, &record, range.clone());
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: record.content_type.clone(),
            metadata: user_metadata(&record),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let record = get::head(&self.state, &input.bucket, &input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(record.size_bytes as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: record.content_type.clone(),
            metadata: user_metadata(&record),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(&self.state, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
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
}
