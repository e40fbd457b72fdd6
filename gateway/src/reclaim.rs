//! Freeing object data (the gateway's part of garbage collection, DESIGN 7): chunks of a
//! version that was never committed are dropped at once ([`discard`]); chunks of data that a
//! write replaced or a delete removed are dropped after a grace period, so GETs already
//! streaming them finish, and only if no record of the key then uses them on any replica
//! ([`drop_data_later`]). The re-check is what keeps concurrent writers of one key (two
//! completions of one upload, two PUTs in a Suspended bucket, a part uploaded again while its
//! upload completes) from freeing data that the record which won still points at.
//!
//! What this misses (a gateway that stops during the grace, a record that cannot be proven
//! unused) is left to the storage nodes' orphan scan.

use crate::state::GatewayState;
use bytes::Bytes;
use dmpstore_common::ids::{NodeId, VersionId};
use dmpstore_common::limits::MAX_SCAN_ENTRIES;
use dmpstore_common::record::{
    versions_of_key_prefix, versions_partition, ErasureData, MetaValue, ObjectData, Versioned,
};
use dmpstore_common::rpc::Request;
use dmpstore_storage_node::meta_client::MetaError;
use std::collections::HashSet;
use std::sync::Arc;

/// Deletes the chunks of a version that will never be committed (best effort; GC reclaims what
/// this misses).
pub fn discard_chunks(state: &Arc<GatewayState>, version: VersionId, placement: &[Option<NodeId>]) {
    for node in placement.iter().flatten().copied() {
        let st = state.clone();
        state.spawn(async move {
            if let Err(e) = st.nodes.call(node, &Request::DeleteChunks { version }, Bytes::new()).await {
                tracing::debug!(%node, error = %e, "could not drop chunks of an uncommitted version");
            }
        });
    }
}

/// Drops every chunk of `data` now (data no record was ever given; best effort).
pub fn discard(state: &Arc<GatewayState>, data: &ObjectData) {
    for e in data.erasure_pieces() {
        discard_chunks(state, e.version, &e.placement);
    }
}

/// Drops, after the grace, the data of records a committed write to `bucket`/`key` replaced
/// (objects and parts; for a part, `key` is its upload's key).
pub fn drop_replaced_data(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    replaced: Vec<Versioned>,
) {
    let old: Vec<ObjectData> = replaced
        .iter()
        .filter_map(|v| match MetaValue::decode(&v.value) {
            Ok(MetaValue::Object(r)) => Some(r.data),
            Ok(MetaValue::Part(p)) => Some(p.part.data),
            _ => None,
        })
        .collect();
    drop_data_later(state, bucket, key, old);
}

/// Drops the chunks of `data` after the configured grace (`replaced_data_grace_secs`),
/// except those that a record of `bucket`/`key` (its current record or any of its versions,
/// on any replica) references by then.
pub fn drop_data_later(state: &Arc<GatewayState>, bucket: &str, key: &str, data: Vec<ObjectData>) {
    let pieces: Vec<ErasureData> = data
        .iter()
        .flat_map(|d| d.erasure_pieces())
        .cloned()
        .collect();
    if pieces.is_empty() {
        return;
    }
    let (st, bucket, key) = (state.clone(), bucket.to_string(), key.to_string());
    let grace = std::time::Duration::from_secs(state.config.replaced_data_grace_secs);
    state.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(grace) => {}
            () = st.shutdown.cancelled() => {
                tracing::debug!("shutting down: replaced chunks left for GC");
                return;
            }
        }
        let in_use = match versions_in_use(&st, &bucket, &key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(bucket, key, error = %e, "cannot prove replaced data unused; left for GC");
                return;
            }
        };
        let (kept, dropped): (Vec<&ErasureData>, Vec<&ErasureData>) =
            pieces.iter().partition(|e| in_use.contains(&e.version));
        if !kept.is_empty() {
            tracing::info!(bucket, key, versions = kept.len(), "replaced data is still used by the key's records: kept");
        }
        let drops = dropped.iter().flat_map(|e| {
            let st = &st;
            e.placement.iter().flatten().map(move |&node| async move {
                let request = Request::DeleteChunks { version: e.version };
                if let Err(e) = st.nodes.call(node, &request, Bytes::new()).await {
                    tracing::debug!(%node, error = %e, "could not drop replaced chunks; GC will");
                }
            })
        });
        futures::future::join_all(drops).await;
        if !dropped.is_empty() {
            tracing::info!(versions = dropped.len(), "dropped the chunks of replaced data");
        }
    });
}

/// Every data version that some record of `bucket`/`key` (current or among its versions)
/// references on some replica. Fails unless every replica answered.
async fn versions_in_use(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
) -> Result<HashSet<VersionId>, MetaError> {
    let mut records = state.meta.get_every(bucket, key).await?;
    let versions = versions_partition(bucket);
    match state
        .meta
        .scan_every(&versions, &versions_of_key_prefix(key), MAX_SCAN_ENTRIES)
        .await?
    {
        Some(entries) => records.extend(entries.into_iter().map(|(_, v)| v)),
        None => {
            return Err(MetaError::NoQuorum {
                what: "scan of a key's versions in one page",
                partition: versions,
                detail: "more versions than one page".into(),
            })
        }
    }
    Ok(records
        .iter()
        .filter_map(|r| match MetaValue::decode(&r.value) {
            Ok(MetaValue::Object(o)) => Some(o.data),
            _ => None,
        })
        .flat_map(|d| {
            d.erasure_pieces()
                .into_iter()
                .map(|e| e.version)
                .collect::<Vec<_>>()
        })
        .collect())
}
