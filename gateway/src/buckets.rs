//! Bucket operations. Bucket records live in the [`BUCKETS_PARTITION`]; a bucket's objects in
//! the partition named after it.

use crate::error::GatewayError;
use crate::meta;
use crate::state::GatewayState;
use dmpstore_common::limits::MAX_SCAN_ENTRIES;
use dmpstore_common::record::{BucketRecord, MetaValue, Versioning, BUCKETS_PARTITION};
use std::sync::Arc;

pub async fn create(state: &Arc<GatewayState>, bucket: &str) -> Result<(), GatewayError> {
    if let Some(MetaValue::Bucket(_)) = meta::get(state, BUCKETS_PARTITION, bucket).await? {
        return Err(GatewayError::BucketAlreadyOwnedByYou);
    }
    let record = MetaValue::Bucket(BucketRecord {
        created_ms: GatewayState::now_ms(),
        versioning: Versioning::Unversioned,
    });
    meta::put(state, BUCKETS_PARTITION, bucket, &record).await?;
    Ok(())
}

pub async fn ensure_exists(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<BucketRecord, GatewayError> {
    match meta::get(state, BUCKETS_PARTITION, bucket).await? {
        Some(MetaValue::Bucket(b)) => Ok(b),
        _ => Err(GatewayError::NoSuchBucket),
    }
}

pub async fn delete(state: &Arc<GatewayState>, bucket: &str) -> Result<(), GatewayError> {
    ensure_exists(state, bucket).await?;
    if has_live_objects(state, bucket).await?
        || crate::versions::has_versions(state, bucket).await?
    {
        return Err(GatewayError::BucketNotEmpty);
    }
    let tombstone = MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    };
    meta::put(state, BUCKETS_PARTITION, bucket, &tombstone).await?;
    Ok(())
}

/// Whether any object of the bucket is live, judged on the merged (newest) record of each key,
/// never on one replica's view.
async fn has_live_objects(state: &Arc<GatewayState>, bucket: &str) -> Result<bool, GatewayError> {
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            bucket,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        if page.entries.iter().any(|(_, v)| v.is_version()) {
            return Ok(true);
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(false),
        }
    }
}

/// All live buckets with their creation time, in name order.
pub async fn list(state: &Arc<GatewayState>) -> Result<Vec<(String, BucketRecord)>, GatewayError> {
    let mut out = Vec::new();
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            BUCKETS_PARTITION,
            "",
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        for (name, value) in page.entries {
            if let MetaValue::Bucket(b) = value {
                out.push((name, b));
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
}
