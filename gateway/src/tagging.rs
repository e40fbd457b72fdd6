//! Object tags. Tags given with the write (`x-amz-tagging`) are part of the object record; a
//! later PutObjectTagging or DeleteObjectTagging writes the version's tag set to the bucket's
//! tags partition instead of rewriting the object record, so a tag change racing with an
//! overwrite can never bring the replaced version back. An overwrite starts with fresh tags.

use crate::error::GatewayError;
use crate::get;
use crate::meta;
use crate::state::GatewayState;
use dmpstore_common::limits::{MAX_TAGS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS};
use dmpstore_common::record::{tags_partition, tags_sort_key, MetaValue, ObjectRecord};
use std::sync::Arc;

pub type Tags = Vec<(String, String)>;

/// S3's limits: at most 10 tags, unique keys of 1..=128 and values of up to 256 characters.
pub fn validate(tags: &Tags) -> Result<(), GatewayError> {
    let invalid = |m: String| Err(GatewayError::InvalidTag(m));
    if tags.len() > MAX_TAGS {
        return invalid(format!("at most {MAX_TAGS} tags per object"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY_CHARS {
            return invalid(format!(
                "tag keys must have 1 to {MAX_TAG_KEY_CHARS} characters"
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return invalid(format!(
                "tag values must have at most {MAX_TAG_VALUE_CHARS} characters"
            ));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return invalid(format!("tag key {k} appears twice"));
        }
    }
    Ok(())
}

/// Parses the `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
pub fn parse_header(header: Option<&str>) -> Result<Tags, GatewayError> {
    let tags: Tags = match header {
        None => Vec::new(),
        Some(h) => form_urlencoded::parse(h.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    validate(&tags)?;
    Ok(tags)
}

/// The tags of the object's current version.
pub async fn effective(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    record: &ObjectRecord,
) -> Result<Tags, GatewayError> {
    match meta::get(state, &tags_partition(bucket), &tags_sort_key(key, record)).await? {
        Some(MetaValue::Tags(t)) => Ok(t),
        _ => Ok(record.tags.clone()),
    }
}

pub async fn get_tags(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Tags, GatewayError> {
    let (record, _) = get::head_version(state, bucket, key, version_id).await?;
    effective(state, bucket, key, &record).await
}

/// Replaces the tag set of the object's current version, or of version `version_id` (an
/// empty set deletes the tags).
pub async fn put_tags(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    tags: Tags,
) -> Result<(), GatewayError> {
    validate(&tags)?;
    let (record, _) = get::head_version(state, bucket, key, version_id).await?;
    meta::put(
        state,
        &tags_partition(bucket),
        &tags_sort_key(key, &record),
        &MetaValue::Tags(tags),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_headers_parse_and_limits_hold() {
        assert_eq!(
            parse_header(Some("team=dmp&note=a%20b%26c")).unwrap(),
            vec![
                ("team".into(), "dmp".into()),
                ("note".into(), "a b&c".into())
            ]
        );
        assert!(parse_header(None).unwrap().is_empty());
        assert!(parse_header(Some("a=1&a=2")).is_err());
        assert!(parse_header(Some("=v")).is_err());
        let many: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert!(parse_header(Some(&many)).is_err());
        assert!(parse_header(Some(&format!("k={}", "v".repeat(257)))).is_err());
    }
}
