//! Lifecycle configurations (S3's PutBucketLifecycleConfiguration): the rules as stored, their
//! validation, and the pure decisions of what the rules do to one object version or one
//! multipart upload at a given time. The worker that applies them is the gateway's
//! (`gateway/src/lifecycle.rs`, ADR 0009); nothing here reads or writes anything.
//!
//! The types keep the shape S3 gives a configuration (a legacy `Prefix` or a `Filter`, each
//! action optional), so GetBucketLifecycleConfiguration answers what was put. Their JSON form
//! (PascalCase) is the aws cli's, which the console speaks.

use serde::{Deserialize, Serialize};

/// Rules a configuration may hold (S3's limit).
pub const MAX_RULES: usize = 1000;
/// Longest rule id (S3's limit).
pub const MAX_RULE_ID_CHARS: usize = 255;
/// Largest `NewerNoncurrentVersions` (S3's limit).
pub const MAX_NEWER_NONCURRENT: u32 = 100;

/// A bucket's lifecycle configuration as stored (in the [`LIFECYCLE_PARTITION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LifecycleConfiguration {
    pub rules: Vec<LifecycleRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LifecycleRule {
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    pub status: RuleStatus,
    /// The legacy form of a prefix filter (a rule has this or `filter`, not both).
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub filter: Option<RuleFilter>,
    #[serde(default)]
    pub expiration: Option<Expiration>,
    #[serde(default)]
    pub noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    #[serde(default)]
    pub abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleStatus {
    Enabled,
    Disabled,
}

/// Exactly one of its fields is set, or none (the rule applies to every object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RuleFilter {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tag: Option<Tag>,
    #[serde(default)]
    pub object_size_greater_than: Option<u64>,
    #[serde(default)]
    pub object_size_less_than: Option<u64>,
    #[serde(default)]
    pub and: Option<FilterAnd>,
}

/// Every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FilterAnd {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub object_size_greater_than: Option<u64>,
    #[serde(default)]
    pub object_size_less_than: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Exactly one of its fields is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Expiration {
    #[serde(default)]
    pub days: Option<u32>,
    /// Midnight UTC, as RFC 3339 (`2027-01-01T00:00:00Z`); kept as ms since the epoch.
    #[serde(default, with = "date_ms")]
    pub date: Option<u64>,
    #[serde(default)]
    pub expired_object_delete_marker: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NoncurrentVersionExpiration {
    #[serde(default)]
    pub noncurrent_days: Option<u32>,
    #[serde(default)]
    pub newer_noncurrent_versions: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AbortIncompleteMultipartUpload {
    pub days_after_initiation: u32,
}

/// Why a configuration was refused, with S3's error code for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// `MalformedXML`: the configuration's shape is wrong.
    #[error("{0}")]
    Malformed(String),
    /// `InvalidArgument`: a value is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// `InvalidRequest`: a combination S3 does not allow.
    #[error("{0}")]
    InvalidRequest(String),
}

const DAY_MS: u64 = 86_400_000;

impl LifecycleConfiguration {
    /// Checks the configuration as S3 does before storing it.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        use LifecycleError::*;
        if self.rules.is_empty() {
            return Err(Malformed(
                "a lifecycle configuration needs at least one rule".into(),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(InvalidRequest(format!(
                "a lifecycle configuration holds at most {MAX_RULES} rules"
            )));
        }
        let mut ids = std::collections::HashSet::new();
        for rule in &self.rules {
            if let Some(id) = &rule.id {
                if id.chars().count() > MAX_RULE_ID_CHARS {
                    return Err(InvalidArgument(format!(
                        "ID length should not exceed allowed limit of {MAX_RULE_ID_CHARS}"
                    )));
                }
                if !ids.insert(id.as_str()) {
                    return Err(InvalidArgument(
                        "Rule ID must be unique. Found same ID for more than one rule".into(),
                    ));
                }
            }
            rule.validate()?;
        }
        Ok(())
    }
}

impl LifecycleRule {
    fn validate(&self) -> Result<(), LifecycleError> {
        use LifecycleError::*;
        if self.prefix.is_some() && self.filter.is_some() {
            return Err(Malformed(
                "a rule has either Prefix or Filter, not both".into(),
            ));
        }
        if let Some(f) = &self.filter {
            f.validate()?;
        }
        let tagged = !self.tags().is_empty();
        if self.expiration.is_none()
            && self.noncurrent_version_expiration.is_none()
            && self.abort_incomplete_multipart_upload.is_none()
        {
            return Err(InvalidRequest(
                "At least one action needs to be specified in a rule".into(),
            ));
        }
        if let Some(e) = &self.expiration {
            let set = [
                e.days.is_some(),
                e.date.is_some(),
                e.expired_object_delete_marker.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(Malformed(
                    "Expiration has exactly one of Days, Date and ExpiredObjectDeleteMarker".into(),
                ));
            }
            if e.days == Some(0) {
                return Err(InvalidArgument(
                    "'Days' for Expiration action must be a positive integer".into(),
                ));
            }
            if e.date.is_some_and(|d| d % DAY_MS != 0) {
                return Err(InvalidArgument("'Date' must be at midnight GMT".into()));
            }
            if e.expired_object_delete_marker.is_some() && tagged {
                return Err(InvalidRequest(
                    "ExpiredObjectDeleteMarker cannot be specified with tags".into(),
                ));
            }
        }
        if let Some(n) = &self.noncurrent_version_expiration {
            match n.noncurrent_days {
                None => {
                    return Err(Malformed(
                        "NoncurrentVersionExpiration needs NoncurrentDays".into(),
                    ))
                }
                Some(0) => {
                    return Err(InvalidArgument(
                        "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer"
                            .into(),
                    ))
                }
                Some(_) => {}
            }
            if n.newer_noncurrent_versions
                .is_some_and(|v| v == 0 || v > MAX_NEWER_NONCURRENT)
            {
                return Err(InvalidArgument(format!(
                    "'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_NONCURRENT}"
                )));
            }
        }
        if let Some(a) = &self.abort_incomplete_multipart_upload {
            if a.days_after_initiation == 0 {
                return Err(InvalidArgument(
                    "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer"
                        .into(),
                ));
            }
            if tagged || self.size_bounds() != (None, None) {
                return Err(InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with tags or object size filters"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.status == RuleStatus::Enabled
    }

    /// The key prefix the rule applies to (empty: every key).
    pub fn key_prefix(&self) -> &str {
        let f = self.filter.as_ref();
        self.prefix
            .as_deref()
            .or_else(|| f.and_then(|f| f.prefix.as_deref()))
            .or_else(|| f.and_then(|f| f.and.as_ref()?.prefix.as_deref()))
            .unwrap_or("")
    }

    /// The tags an object must carry for the rule to apply.
    pub fn tags(&self) -> Vec<&Tag> {
        let Some(f) = &self.filter else {
            return Vec::new();
        };
        f.tag
            .iter()
            .chain(f.and.iter().flat_map(|a| a.tags.iter()))
            .collect()
    }

    /// `(greater than, less than)` bounds on the object's size, in bytes.
    fn size_bounds(&self) -> (Option<u64>, Option<u64>) {
        let Some(f) = &self.filter else {
            return (None, None);
        };
        let a = f.and.as_ref();
        (
            f.object_size_greater_than
                .or_else(|| a.and_then(|a| a.object_size_greater_than)),
            f.object_size_less_than
                .or_else(|| a.and_then(|a| a.object_size_less_than)),
        )
    }

    /// Whether the rule applies to an object version of `key` with `size_bytes` and `tags`
    /// (`None`: the caller did not read them; only valid when [`Self::tags`] is empty).
    pub fn matches(&self, key: &str, size_bytes: u64, tags: Option<&[(String, String)]>) -> bool {
        if !key.starts_with(self.key_prefix()) {
            return false;
        }
        let (gt, lt) = self.size_bounds();
        if gt.is_some_and(|g| size_bytes <= g) || lt.is_some_and(|l| size_bytes >= l) {
            return false;
        }
        let wanted = self.tags();
        wanted.is_empty()
            || tags.is_some_and(|have| {
                wanted
                    .iter()
                    .all(|t| have.iter().any(|(k, v)| *k == t.key && *v == t.value))
            })
    }
}

impl RuleFilter {
    fn validate(&self) -> Result<(), LifecycleError> {
        let set = [
            self.prefix.is_some(),
            self.tag.is_some(),
            self.object_size_greater_than.is_some(),
            self.object_size_less_than.is_some(),
            self.and.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(LifecycleError::Malformed(
                "a Filter holds one of Prefix, Tag, ObjectSizeGreaterThan, ObjectSizeLessThan and And"
                    .into(),
            ));
        }
        if let Some(a) = &self.and {
            let (gt, lt) = (a.object_size_greater_than, a.object_size_less_than);
            if let (Some(g), Some(l)) = (gt, lt) {
                if g >= l {
                    return Err(LifecycleError::InvalidArgument(
                        "ObjectSizeGreaterThan must be less than ObjectSizeLessThan".into(),
                    ));
                }
            }
            let mut keys = std::collections::HashSet::new();
            if !a.tags.iter().all(|t| keys.insert(&t.key)) {
                return Err(LifecycleError::InvalidRequest(
                    "Duplicate Tag Keys are not allowed".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The moment an object written at `since_ms` is `days` lifecycle days old, rounded up to the
/// start of the next lifecycle day as S3 rounds to the next midnight UTC. `day_ms` is a real
/// day unless a test shortened it.
pub fn due_ms(since_ms: u64, days: u32, day_ms: u64) -> u64 {
    let at = since_ms.saturating_add((days as u64).saturating_mul(day_ms));
    at.div_ceil(day_ms).saturating_mul(day_ms)
}

/// What the rules do to a key's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentAction {
    Keep,
    /// Expire it: delete it (unversioned bucket) or put a delete marker on it.
    Expire,
}

/// What the rules do to a current object version written at `modified_ms`, now.
pub fn current_object(
    rules: &[LifecycleRule],
    (key, size_bytes, tags): (&str, u64, Option<&[(String, String)]>),
    modified_ms: u64,
    (now_ms, day_ms): (u64, u64),
) -> CurrentAction {
    let expires = rules.iter().filter(|r| r.enabled()).any(|r| {
        let Some(e) = &r.expiration else {
            return false;
        };
        let due = match (e.days, e.date) {
            (Some(days), _) => due_ms(modified_ms, days, day_ms),
            (None, Some(date)) => date,
            _ => return false,
        };
        now_ms >= due && r.matches(key, size_bytes, tags)
    });
    if expires {
        CurrentAction::Expire
    } else {
        CurrentAction::Keep
    }
}

/// Whether a delete marker of `key` that is its only version is removed: a rule for the key
/// with `ExpiredObjectDeleteMarker` or (as in S3) an expiration by age.
pub fn removes_lone_marker(rules: &[LifecycleRule], key: &str) -> bool {
    rules.iter().filter(|r| r.enabled()).any(|r| {
        let by_rule = r
            .expiration
            .as_ref()
            .is_some_and(|e| e.expired_object_delete_marker == Some(true) || e.days.is_some());
        by_rule && r.tags().is_empty() && key.starts_with(r.key_prefix())
    })
}

/// Whether a noncurrent version is expired: it became noncurrent at `noncurrent_since_ms`
/// and `newer_noncurrent` noncurrent versions of its key are newer than it.
pub fn noncurrent_expires(
    rules: &[LifecycleRule],
    (key, size_bytes, tags): (&str, u64, Option<&[(String, String)]>),
    (noncurrent_since_ms, newer_noncurrent): (u64, u32),
    (now_ms, day_ms): (u64, u64),
) -> bool {
    rules.iter().filter(|r| r.enabled()).any(|r| {
        let Some(n) = &r.noncurrent_version_expiration else {
            return false;
        };
        let Some(days) = n.noncurrent_days else {
            return false;
        };
        now_ms >= due_ms(noncurrent_since_ms, days, day_ms)
            && newer_noncurrent >= n.newer_noncurrent_versions.unwrap_or(0)
            && r.matches(key, size_bytes, tags)
    })
}

/// Whether a multipart upload of `key` started at `initiated_ms` is aborted now.
pub fn aborts_upload(
    rules: &[LifecycleRule],
    key: &str,
    initiated_ms: u64,
    (now_ms, day_ms): (u64, u64),
) -> bool {
    rules.iter().filter(|r| r.enabled()).any(|r| {
        r.abort_incomplete_multipart_upload
            .as_ref()
            .is_some_and(|a| now_ms >= due_ms(initiated_ms, a.days_after_initiation, day_ms))
            && key.starts_with(r.key_prefix())
    })
}

/// Whether any enabled rule filters by tags (then the worker reads each version's tags).
pub fn needs_tags(rules: &[LifecycleRule]) -> bool {
    rules.iter().any(|r| r.enabled() && !r.tags().is_empty())
}

/// `Date` as RFC 3339 text in JSON and as ms since the epoch in the stored record.
mod date_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return serde::Serialize::serialize(v, s);
        }
        match v {
            None => s.serialize_none(),
            Some(ms) => {
                let t = time::OffsetDateTime::from_unix_timestamp_nanos(*ms as i128 * 1_000_000)
                    .map_err(serde::ser::Error::custom)?;
                let text = t
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(serde::ser::Error::custom)?;
                s.serialize_some(&text)
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        if !d.is_human_readable() {
            return Option::<u64>::deserialize(d);
        }
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| serde::de::Error::custom(format!("Date {text:?}: {e}")))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> LifecycleRule {
        serde_json::from_str(json).expect("rule json")
    }

    fn config(rules: &[&str]) -> LifecycleConfiguration {
        LifecycleConfiguration {
            rules: rules.iter().map(|r| rule(r)).collect(),
        }
    }

    #[test]
    fn validation_refuses_what_s3_refuses() {
        let ok =
            r#"{"ID":"a","Status":"Enabled","Filter":{"Prefix":"logs/"},"Expiration":{"Days":30}}"#;
        assert_eq!(config(&[ok]).validate(), Ok(()));
        let cases = [
            (r#"{"Status":"Enabled","Filter":{}}"#, "At least one action"),
            (
                r#"{"Status":"Enabled","Expiration":{"Days":0}}"#,
                "positive",
            ),
            (
                r#"{"Status":"Enabled","Expiration":{"Days":1,"ExpiredObjectDeleteMarker":true}}"#,
                "exactly one",
            ),
            (
                r#"{"Status":"Enabled","Expiration":{"Date":"2027-01-01T10:00:00Z"}}"#,
                "midnight",
            ),
            (
                r#"{"Status":"Enabled","Prefix":"a","Filter":{"Prefix":"b"},"Expiration":{"Days":1}}"#,
                "not both",
            ),
            (
                r#"{"Status":"Enabled","Filter":{"Prefix":"a","Tag":{"Key":"k","Value":"v"}},"Expiration":{"Days":1}}"#,
                "one of",
            ),
            (
                r#"{"Status":"Enabled","Filter":{"Tag":{"Key":"k","Value":"v"}},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}"#,
                "AbortIncompleteMultipartUpload",
            ),
            (
                r#"{"Status":"Enabled","NoncurrentVersionExpiration":{"NoncurrentDays":1,"NewerNoncurrentVersions":101}}"#,
                "NewerNoncurrentVersions",
            ),
            (
                r#"{"Status":"Enabled","Filter":{"And":{"ObjectSizeGreaterThan":10,"ObjectSizeLessThan":10}},"Expiration":{"Days":1}}"#,
                "less than",
            ),
        ];
        for (json, why) in cases {
            let err = config(&[json]).validate().expect_err(json);
            assert!(err.to_string().contains(why), "{json}: {err}");
        }
        let dup = config(&[ok, ok]).validate().expect_err("duplicate ids");
        assert!(dup.to_string().contains("unique"));
    }

    #[test]
    fn expiry_rounds_up_to_the_next_day() {
        let day = 1000;
        assert_eq!(due_ms(0, 1, day), 1000);
        assert_eq!(due_ms(1, 1, day), 2000);
        assert_eq!(due_ms(999, 2, day), 3000);
    }

    #[test]
    fn filters_select_by_prefix_size_and_tags() {
        let r = rule(
            r#"{"Status":"Enabled","Filter":{"And":{"Prefix":"logs/","Tags":[{"Key":"t","Value":"x"}],"ObjectSizeGreaterThan":10}},"Expiration":{"Days":1}}"#,
        );
        let tags = vec![("t".to_string(), "x".to_string())];
        assert!(r.matches("logs/a", 11, Some(&tags)));
        assert!(!r.matches("logs/a", 10, Some(&tags)), "size is exclusive");
        assert!(!r.matches("data/a", 11, Some(&tags)));
        assert!(!r.matches("logs/a", 11, Some(&[])));
        assert!(!r.matches("logs/a", 11, None));
        let rules = [r];
        let now = (4_999, 1_000);
        assert_eq!(
            current_object(&rules, ("logs/a", 11, Some(&tags)), 3_500, now),
            CurrentAction::Keep,
            "written at 3 500: a day later is 4 500, rounded up to 5 000"
        );
        assert_eq!(
            current_object(&rules, ("logs/a", 11, Some(&tags)), 3_000, now),
            CurrentAction::Expire
        );
    }

    #[test]
    fn disabled_rules_do_nothing() {
        let r = rule(r#"{"Status":"Disabled","Expiration":{"Days":1}}"#);
        assert_eq!(
            current_object(&[r], ("k", 1, None), 0, (10_000, 1_000)),
            CurrentAction::Keep
        );
    }

    #[test]
    fn noncurrent_versions_keep_the_newest_ones() {
        let r = rule(
            r#"{"Status":"Enabled","NoncurrentVersionExpiration":{"NoncurrentDays":1,"NewerNoncurrentVersions":2}}"#,
        );
        let rules = [r];
        let now = (10_000, 1_000);
        assert!(!noncurrent_expires(&rules, ("k", 1, None), (0, 1), now));
        assert!(noncurrent_expires(&rules, ("k", 1, None), (0, 2), now));
        assert!(!noncurrent_expires(&rules, ("k", 1, None), (9_500, 5), now));
    }

    #[test]
    fn uploads_abort_by_prefix_and_age() {
        let r = rule(
            r#"{"Status":"Enabled","Filter":{"Prefix":"tmp/"},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}"#,
        );
        let rules = [r];
        assert!(aborts_upload(&rules, "tmp/x", 0, (1_000, 1_000)));
        assert!(!aborts_upload(&rules, "tmp/x", 1, (1_000, 1_000)));
        assert!(!aborts_upload(&rules, "data/x", 0, (9_000, 1_000)));
    }

    #[test]
    fn the_stored_form_round_trips_and_json_keeps_dates_readable() {
        let c = config(&[
            r#"{"ID":"d","Status":"Enabled","Expiration":{"Date":"2027-01-01T00:00:00Z"}}"#,
        ]);
        let bytes = postcard::to_allocvec(&c).expect("encode");
        let back: LifecycleConfiguration = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, c);
        let json = serde_json::to_string(&c).expect("json");
        assert!(json.contains("2027-01-01T00:00:00Z"), "{json}");
    }
}
