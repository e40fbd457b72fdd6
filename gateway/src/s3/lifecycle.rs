//! Put/Get/DeleteBucketLifecycleConfiguration: translation between s3s' lifecycle types and
//! the stored configuration ([`dmpstore_common::lifecycle`]); validation and storage are
//! [`crate::lifecycle`]'s.

use super::convert::timestamp;
use crate::error::GatewayError;
use crate::lifecycle;
use crate::state::GatewayState;
use dmpstore_common::lifecycle as lc;
use s3s::dto;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

pub(super) async fn put_bucket_lifecycle_configuration(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
    let i = req.input;
    let Some(c) = i.lifecycle_configuration else {
        return Err(GatewayError::MalformedXml("no LifecycleConfiguration".into()).into());
    };
    let rules = c
        .rules
        .into_iter()
        .map(rule_from)
        .collect::<Result<Vec<_>, _>>()?;
    lifecycle::put_rules(state, &i.bucket, lc::LifecycleConfiguration { rules }).await?;
    Ok(S3Response::new(
        dto::PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub(super) async fn get_bucket_lifecycle_configuration(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<dto::GetBucketLifecycleConfigurationOutput>> {
    let c = lifecycle::get_rules(state, &req.input.bucket).await?;
    Ok(S3Response::new(
        dto::GetBucketLifecycleConfigurationOutput {
            rules: Some(c.rules.into_iter().map(rule_to).collect()),
            ..Default::default()
        },
    ))
}

pub(super) async fn delete_bucket_lifecycle(
    state: &Arc<GatewayState>,
    req: S3Request<dto::DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<dto::DeleteBucketLifecycleOutput>> {
    lifecycle::delete_rules(state, &req.input.bucket).await?;
    Ok(S3Response::new(dto::DeleteBucketLifecycleOutput {}))
}

/// A count the configuration gives as a signed number: negative is refused, as S3 does.
fn count(v: Option<i32>, what: &str) -> Result<Option<u32>, GatewayError> {
    v.map(|v| {
        u32::try_from(v).map_err(|_| {
            GatewayError::InvalidArgument(format!("'{what}' must be a positive integer"))
        })
    })
    .transpose()
}

fn size(v: Option<i64>, what: &str) -> Result<Option<u64>, GatewayError> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| GatewayError::InvalidArgument(format!("'{what}' must not be negative")))
    })
    .transpose()
}

fn tag_from(t: dto::Tag) -> lc::Tag {
    lc::Tag {
        key: t.key.unwrap_or_default(),
        value: t.value.unwrap_or_default(),
    }
}

fn rule_from(r: dto::LifecycleRule) -> Result<lc::LifecycleRule, GatewayError> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(GatewayError::NotImplemented(
            "lifecycle transitions (dmpstore has one storage class)",
        ));
    }
    let status = match r.status.as_str() {
        dto::ExpirationStatus::ENABLED => lc::RuleStatus::Enabled,
        dto::ExpirationStatus::DISABLED => lc::RuleStatus::Disabled,
        other => {
            return Err(GatewayError::MalformedXml(format!(
                "Status must be Enabled or Disabled, not {other:?}"
            )))
        }
    };
    let filter = match r.filter {
        None => None,
        Some(f) => Some(lc::RuleFilter {
            prefix: f.prefix,
            tag: f.tag.map(tag_from),
            object_size_greater_than: size(f.object_size_greater_than, "ObjectSizeGreaterThan")?,
            object_size_less_than: size(f.object_size_less_than, "ObjectSizeLessThan")?,
            and: match f.and {
                None => None,
                Some(a) => Some(lc::FilterAnd {
                    prefix: a.prefix,
                    tags: a
                        .tags
                        .unwrap_or_default()
                        .into_iter()
                        .map(tag_from)
                        .collect(),
                    object_size_greater_than: size(
                        a.object_size_greater_than,
                        "ObjectSizeGreaterThan",
                    )?,
                    object_size_less_than: size(a.object_size_less_than, "ObjectSizeLessThan")?,
                }),
            },
        }),
    };
    let expiration = match r.expiration {
        None => None,
        Some(e) => Some(lc::Expiration {
            days: count(e.days, "Days")?,
            date: e.date.map(date_ms).transpose()?,
            expired_object_delete_marker: e.expired_object_delete_marker,
        }),
    };
    let noncurrent = match r.noncurrent_version_expiration {
        None => None,
        Some(n) => Some(lc::NoncurrentVersionExpiration {
            noncurrent_days: count(n.noncurrent_days, "NoncurrentDays")?,
            newer_noncurrent_versions: count(
                n.newer_noncurrent_versions,
                "NewerNoncurrentVersions",
            )?,
        }),
    };
    let abort = match r.abort_incomplete_multipart_upload {
        None => None,
        Some(a) => Some(lc::AbortIncompleteMultipartUpload {
            days_after_initiation: count(a.days_after_initiation, "DaysAfterInitiation")?
                .ok_or_else(|| {
                    GatewayError::MalformedXml(
                        "AbortIncompleteMultipartUpload needs DaysAfterInitiation".into(),
                    )
                })?,
        }),
    };
    Ok(lc::LifecycleRule {
        id: r.id,
        status,
        prefix: r.prefix,
        filter,
        expiration,
        noncurrent_version_expiration: noncurrent,
        abort_incomplete_multipart_upload: abort,
    })
}

fn date_ms(t: dto::Timestamp) -> Result<u64, GatewayError> {
    let t: time::OffsetDateTime = t.into();
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| GatewayError::InvalidArgument("'Date' must be after 1970".into()))
}

fn tag_to(t: lc::Tag) -> dto::Tag {
    dto::Tag {
        key: Some(t.key),
        value: Some(t.value),
    }
}

fn rule_to(r: lc::LifecycleRule) -> dto::LifecycleRule {
    let as_i64 = |v: Option<u64>| v.map(|v| v as i64);
    let as_i32 = |v: Option<u32>| v.map(|v| v as i32);
    dto::LifecycleRule {
        id: r.id,
        status: dto::ExpirationStatus::from_static(match r.status {
            lc::RuleStatus::Enabled => dto::ExpirationStatus::ENABLED,
            lc::RuleStatus::Disabled => dto::ExpirationStatus::DISABLED,
        }),
        prefix: r.prefix,
        filter: r.filter.map(|f| dto::LifecycleRuleFilter {
            prefix: f.prefix,
            tag: f.tag.map(tag_to),
            object_size_greater_than: as_i64(f.object_size_greater_than),
            object_size_less_than: as_i64(f.object_size_less_than),
            and: f.and.map(|a| dto::LifecycleRuleAndOperator {
                prefix: a.prefix,
                tags: Some(a.tags.into_iter().map(tag_to).collect()),
                object_size_greater_than: as_i64(a.object_size_greater_than),
                object_size_less_than: as_i64(a.object_size_less_than),
            }),
        }),
        expiration: r.expiration.map(|e| dto::LifecycleExpiration {
            days: as_i32(e.days),
            date: e.date.map(timestamp),
            expired_object_delete_marker: e.expired_object_delete_marker,
        }),
        noncurrent_version_expiration: r.noncurrent_version_expiration.map(|n| {
            dto::NoncurrentVersionExpiration {
                noncurrent_days: as_i32(n.noncurrent_days),
                newer_noncurrent_versions: as_i32(n.newer_noncurrent_versions),
            }
        }),
        abort_incomplete_multipart_upload: r.abort_incomplete_multipart_upload.map(|a| {
            dto::AbortIncompleteMultipartUpload {
                days_after_initiation: Some(a.days_after_initiation as i32),
            }
        }),
        noncurrent_version_transitions: None,
        transitions: None,
    }
}
