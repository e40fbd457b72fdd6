//! DeleteObject: a tombstone record with a fresh clock, then the old version's chunks are
//! dropped. The tombstone keeps a returning stale replica from resurrecting the object.

use crate::buckets;
use crate::error::GatewayError;
use crate::meta;
use crate::put::drop_replaced_data;
use crate::state::GatewayState;
use dmpstore_common::record::MetaValue;
use std::sync::Arc;

pub async fn delete_object(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
) -> Result<(), GatewayError> {
    buckets::ensure_exists(state, bucket).await?;
    let tombstone = MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    };
    let replaced = meta::put(state, bucket, key, &tombstone).await?;
    drop_replaced_data(state, replaced);
    Ok(())
}
