//! Object listing (ListObjectsV2 and V1) over the merged scan of a bucket's partition. With a
//! delimiter, keys under a common prefix are rolled up and the scan jumps past the prefix
//! instead of walking every key under it.

use crate::buckets;
use crate::error::GatewayError;
use crate::meta;
use crate::state::GatewayState;
use dmpstore_common::limits::MAX_SCAN_ENTRIES;
use dmpstore_common::record::{MetaValue, ObjectRecord};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive start of the listing, as raw key bytes (a cursor may point past a prefix).
    pub start_after: Vec<u8>,
    pub max_keys: usize,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<(String, ObjectRecord)>,
    pub common_prefixes: Vec<String>,
    /// Set when more entries follow: the cursor to continue after the last one returned.
    pub next_cursor: Option<Vec<u8>>,
    /// The last key or common prefix returned (S3 V1's NextMarker).
    pub last_item: Option<String>,
}

/// The cursor just past every key that starts with `prefix`: 0xFF never occurs in UTF-8.
pub fn past_prefix(prefix: &str) -> Vec<u8> {
    let mut c = prefix.as_bytes().to_vec();
    c.push(0xFF);
    c
}

/// The common prefix `key` rolls up into, if any.
pub fn rolled_up<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|pos| &key[..prefix.len() + pos + d.len()])
}

pub async fn list(
    state: &Arc<GatewayState>,
    bucket: &str,
    params: &ListParams,
) -> Result<Listing, GatewayError> {
    buckets::ensure_exists(state, bucket).await?;
    let mut out = Listing::default();
    if params.max_keys == 0 {
        return Ok(out);
    }
    let mut cursor = params.start_after.clone();
    let mut count = 0usize;
    loop {
        let page = meta::scan(
            state,
            bucket,
            &params.prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        let mut skip: Option<String> = None;
        for (key, value) in page.entries {
            if skip.as_deref().is_some_and(|p| key.starts_with(p)) {
                continue;
            }
            let MetaValue::Object(record) = value else {
                continue; // a tombstone: the key is deleted
            };
            if count == params.max_keys {
                return Ok(out); // one more live entry exists: truncated at next_cursor
            }
            count += 1;
            match rolled_up(&key, &params.prefix, params.delimiter.as_deref()) {
                Some(cp) => {
                    let cp = cp.to_string();
                    out.next_cursor = Some(past_prefix(&cp));
                    out.last_item = Some(cp.clone());
                    out.common_prefixes.push(cp.clone());
                    skip = Some(cp);
                }
                None => {
                    out.next_cursor = Some(key.clone().into_bytes());
                    out.last_item = Some(key.clone());
                    out.objects.push((key, record));
                }
            }
        }
        let Some(next) = page.next else { break };
        cursor = match skip {
            Some(cp) => next.max(past_prefix(&cp)),
            None => next,
        };
        if let Some(last) = &out.next_cursor {
            cursor = cursor.max(last.clone());
        }
    }
    out.next_cursor = None;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_roll_up_at_the_first_delimiter_after_the_prefix() {
        assert_eq!(rolled_up("a/b/c", "", Some("/")), Some("a/"));
        assert_eq!(rolled_up("a/b/c", "a/", Some("/")), Some("a/b/"));
        assert_eq!(rolled_up("a/b", "a/", Some("/")), None);
        assert_eq!(rolled_up("a/", "a/", Some("/")), None);
        assert_eq!(rolled_up("a/b", "", None), None);
        assert_eq!(rolled_up("a--b--c", "a", Some("--")), Some("a--"));
    }

    #[test]
    fn the_cursor_past_a_prefix_sorts_after_all_its_keys() {
        let c = past_prefix("a/");
        for k in ["a/", "a/b", "a/\u{10FFFF}", "a/zzz"] {
            assert!(k.as_bytes() < &c[..], "{k}");
        }
        assert!(&c[..] < "a0".as_bytes());
    }
}
