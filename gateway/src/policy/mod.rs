//! Bucket policies and ACLs: parsing, validation and evaluation, with no I/O.
//!
//! The gateway asks three questions here: which IAM action an S3 operation needs
//! ([`action_for`]), what a bucket policy says about a request ([`Policy::evaluate`]) and what
//! an ACL grants ([`acl::Acl::allows`]). Combining the answers (owner, explicit deny, public
//! access block) is the caller's business.
//!
//! - [`document`]: the policy JSON, validated as PutBucketPolicy validates it.
//! - [`pattern`]: `*`/`?` wildcards and `${...}` policy variables.
//! - [`condition`]: the `Condition` block: operators, qualifiers, `IfExists`, `Null`.
//! - [`operand`]: typed condition values (numbers, dates, CIDRs).
//! - [`eval`]: statement matching, the deny-wins rule and AWS's notion of a public policy.
//! - [`actions`]: S3 operation -> IAM action.
//! - [`acl`]: grants, canned ACLs and the ACL -> action mapping.
//!
//! Principals: dmpstore has users, not AWS accounts. A policy principal names a user either by
//! its bare name (`"alice"`, in `AWS` or `CanonicalUser`) or by an IAM user ARN of any account
//! (`arn:aws:iam::123456789012:user/alice`, also with a path: `.../user/team/alice`). Account
//! ids, root and role ARNs, `Service` and `Federated` principals parse but match nobody.
//!
//! **Invariant:** no I/O, no clock, no globals: the request's facts (time, source address,
//! TLS, tags) come in through [`Context`].

pub mod acl;
pub mod actions;
pub mod condition;
pub mod document;
pub mod eval;
pub mod operand;
pub mod pattern;

#[cfg(test)]
mod tests;

pub use actions::{action_for, Action};
pub use document::Policy;

use std::collections::HashMap;

/// AWS's size limit for a bucket policy document.
pub const MAX_POLICY_BYTES: usize = dmpstore_common::limits::MAX_BUCKET_POLICY_BYTES;

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    /// An unsigned request.
    Anonymous,
    /// A dmpstore user, by name.
    User(&'a str),
}

/// What a policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A matching statement allows it and none denies it.
    Allow,
    /// A matching statement denies it (an explicit deny: nothing else can allow it).
    Deny,
    /// No statement matches.
    NoOpinion,
}

/// A policy or ACL that cannot be accepted; the message is fit for S3's `MalformedPolicy`
/// (or `InvalidArgument` for a canned ACL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> PolicyError {
        PolicyError(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The facts of a request that conditions and policy variables read, by condition key
/// (`aws:SourceIp`, `s3:prefix`, `s3:ExistingObjectTag/<key>`, ...).
///
/// Key names are case-insensitive up to the first `/`; what follows it (a tag key) is kept as
/// given. A key may hold several values (`s3:RequestObjectTagKeys`); a key with no value is
/// absent. `aws:username` defaults to the name of a [`Principal::User`].
#[derive(Debug, Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// Sets `key` to the single value `value`, replacing what it held.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Context {
        self.values.insert(normalize_key(key), vec![value.into()]);
        self
    }

    /// Sets `key` to `values`, replacing what it held.
    pub fn with_values<I, S>(mut self, key: &str, values: I) -> Context
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let values = values.into_iter().map(Into::into).collect();
        self.values.insert(normalize_key(key), values);
        self
    }

    /// Adds `value` to the values of `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(normalize_key(key))
            .or_default()
            .push(value.into());
    }

    /// The values of `key`; `None` when it has none.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&normalize_key(key))
            .map(Vec::as_slice)
            .filter(|values| !values.is_empty())
    }
}

/// Condition keys compare case-insensitively, except for the part after the first `/` (the
/// tag key of `s3:ExistingObjectTag/<key>`).
pub(crate) fn normalize_key(key: &str) -> String {
    match key.split_once('/') {
        Some((name, rest)) => format!("{}/{rest}", name.to_ascii_lowercase()),
        None => key.to_ascii_lowercase(),
    }
}

/// The ARN of a bucket (`key` = `None`) or of an object in it, as policies name them.
pub fn resource_arn(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}
