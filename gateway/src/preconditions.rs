//! Conditional requests (RFC 9110 section 13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since` on GET and HEAD (and on copy sources), and
//! `If-None-Match: *` / `If-Match` on writes.
//!
//! Write conditions are checked and committed under a majority of per-key leases
//! (`put::commit_object_if`), so conditional writers racing through different gateways are
//! serialized: exactly one `If-None-Match: *` create wins.

use crate::error::GatewayError;
use crate::meta;
use crate::state::GatewayState;
use dmpstore_common::record::{MetaValue, ObjectRecord};
use s3s::dto::{ETagCondition, Timestamp};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct ReadConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub struct WriteConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

impl WriteConditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }
}

fn matches(condition: &ETagCondition, record: &ObjectRecord) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == record.etag,
    }
}

fn unix_seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// HTTP dates have one-second resolution, so modification times compare in whole seconds.
fn modified_after(record: &ObjectRecord, t: &Timestamp) -> bool {
    (record.last_modified_ms / 1000) as i64 > unix_seconds(t)
}

/// Evaluates read preconditions in RFC 9110 order: 412 PreconditionFailed or 304 NotModified.
pub fn check_read(record: &ObjectRecord, c: &ReadConditions) -> Result<(), GatewayError> {
    if let Some(m) = &c.if_match {
        if !matches(m, record) {
            return Err(GatewayError::PreconditionFailed);
        }
    } else if let Some(t) = &c.if_unmodified_since {
        if modified_after(record, t) {
            return Err(GatewayError::PreconditionFailed);
        }
    }
    if let Some(m) = &c.if_none_match {
        if matches(m, record) {
            return Err(GatewayError::NotModified);
        }
    } else if let Some(t) = &c.if_modified_since {
        if !modified_after(record, t) {
            return Err(GatewayError::NotModified);
        }
    }
    Ok(())
}

/// The same conditions on a copy source: every failure is 412, as S3 answers.
pub fn check_copy_source(record: &ObjectRecord, c: &ReadConditions) -> Result<(), GatewayError> {
    check_read(record, c).map_err(|e| match e {
        GatewayError::NotModified => GatewayError::PreconditionFailed,
        other => other,
    })
}

/// Evaluates write preconditions against the current object.
pub async fn check_write(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    c: &WriteConditions,
) -> Result<(), GatewayError> {
    if c.is_empty() {
        return Ok(());
    }
    let current = match meta::get(state, bucket, key).await? {
        Some(MetaValue::Object(r)) => Some(r),
        _ => None,
    };
    if let Some(m) = &c.if_none_match {
        if current.as_ref().is_some_and(|r| matches(m, r)) {
            return Err(GatewayError::PreconditionFailed);
        }
    }
    if let Some(m) = &c.if_match {
        match &current {
            None => return Err(GatewayError::NoSuchKey),
            Some(r) if !matches(m, r) => return Err(GatewayError::PreconditionFailed),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpstore_common::record::ObjectData;
    use s3s::dto::ETag;
    use std::time::{Duration, UNIX_EPOCH};

    fn record() -> ObjectRecord {
        ObjectRecord {
            size_bytes: 1,
            etag: "abc".into(),
            content_type: None,
            user_metadata: vec![],
            last_modified_ms: 1_000_500,
            data: ObjectData::Inline(vec![1]),
            checksum: None,
            tags: vec![],
            version_id: None,
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn tag(v: &str) -> Option<ETagCondition> {
        Some(ETagCondition::ETag(ETag::Strong(v.into())))
    }

    #[test]
    fn read_preconditions_follow_rfc_9110() {
        let r = record();
        let check = |c: ReadConditions| check_read(&r, &c).map_err(|e| e.to_string());
        assert!(check(ReadConditions {
            if_match: tag("abc"),
            ..Default::default()
        })
        .is_ok());
        assert!(check(ReadConditions {
            if_match: tag("zzz"),
            ..Default::default()
        })
        .is_err());
        assert!(check(ReadConditions {
            if_none_match: tag("abc"),
            ..Default::default()
        })
        .is_err());
        assert!(check(ReadConditions {
            if_none_match: Some(ETagCondition::Any),
            ..Default::default()
        })
        .is_err());
        assert!(check(ReadConditions {
            if_modified_since: Some(at(1000)),
            ..Default::default()
        })
        .is_err());
        assert!(check(ReadConditions {
            if_modified_since: Some(at(999)),
            ..Default::default()
        })
        .is_ok());
        assert!(check(ReadConditions {
            if_unmodified_since: Some(at(999)),
            ..Default::default()
        })
        .is_err());
        // If-Match takes precedence over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert!(check(ReadConditions {
            if_match: tag("abc"),
            if_unmodified_since: Some(at(1)),
            ..Default::default()
        })
        .is_ok());
        assert!(check(ReadConditions {
            if_none_match: tag("zzz"),
            if_modified_since: Some(at(5000)),
            ..Default::default()
        })
        .is_ok());
        let not_modified = check_read(
            &r,
            &ReadConditions {
                if_none_match: tag("abc"),
                ..Default::default()
            },
        );
        assert!(matches!(not_modified, Err(GatewayError::NotModified)));
        let on_copy = check_copy_source(
            &r,
            &ReadConditions {
                if_none_match: tag("abc"),
                ..Default::default()
            },
        );
        assert!(matches!(on_copy, Err(GatewayError::PreconditionFailed)));
    }

    proptest::proptest! {
        /// Condition headers as clients send them, and garbage: parsing never panics, and a
        /// header that parses is evaluated to an answer (pass, 412 or 304), never a panic.
        /// `If-Match` with the object's own ETag always passes.
        #[test]
        fn condition_headers_parse_and_evaluate_without_panics(
            etag_header in proptest::prop_oneof![
                "\"[ -~]{0,34}\"",
                "W/\"[a-f0-9]{0,32}\"",
                "(\"[a-f0-9]{0,8}\", ?){0,4}\"[a-f0-9]{0,8}\"",
                "[ -~]{0,40}",
                proptest::strategy::Just("*".to_string()),
            ],
            date_header in proptest::prop_oneof![
                "(Mon|Tue|Sun|Xyz), [0-9]{1,2} (Jan|Feb|Dec|Foo) [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
                "[ -~]{0,40}",
            ],
            modified_ms in proptest::prelude::any::<u64>(),
        ) {
            let mut r = record();
            r.last_modified_ms = modified_ms;
            let etag = ETagCondition::parse_http_header(etag_header.as_bytes()).ok();
            let date = Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, &date_header).ok();
            for c in [
                ReadConditions { if_match: etag.clone(), if_unmodified_since: date.clone(), ..Default::default() },
                ReadConditions { if_none_match: etag.clone(), if_modified_since: date.clone(), ..Default::default() },
            ] {
                match check_read(&r, &c) {
                    Ok(()) | Err(GatewayError::PreconditionFailed) | Err(GatewayError::NotModified) => {}
                    Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
                }
                let _ = check_copy_source(&r, &c);
            }
            let own = ETagCondition::parse_http_header(format!("\"{}\"", r.etag).as_bytes()).unwrap();
            let own_match = ReadConditions { if_match: Some(own), ..Default::default() };
            proptest::prop_assert!(check_read(&r, &own_match).is_ok(), "If-Match of its own ETag passes");
        }
    }
}
