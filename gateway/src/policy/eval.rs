//! Evaluating a [`Policy`] against one request, and AWS's notion of a public policy.
//!
//! A statement applies when its principal, action, resource and every condition match; an
//! applying `Deny` decides the request, else an applying `Allow` allows it, else the policy
//! has no opinion. A statement that needs a policy variable the request does not have does
//! not apply.

use super::condition::Condition;
use super::document::{Effect, Listed, Policy, PrincipalId, Statement};
use super::pattern::{self, Pattern, Template};
use super::{normalize_key, Context, Decision, Principal};

/// Condition keys that, pinned to fixed values, make a statement non-public ("The meaning of
/// public" in the S3 user guide). Normalized.
const PINNING_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:sourceorgid",
    "aws:userid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalorgid",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
];

/// The request's facts as conditions and variables read them.
struct Request<'a> {
    principal: &'a Principal<'a>,
    cx: &'a Context,
}

impl Request<'_> {
    fn values(&self, key: &str) -> Vec<String> {
        if let Some(values) = self.cx.get(key) {
            return values.to_vec();
        }
        match (normalize_key(key).as_str(), self.principal) {
            ("aws:username", Principal::User(name)) => vec![(*name).to_owned()],
            _ => Vec::new(),
        }
    }

    /// A policy variable: a key with exactly one value.
    fn variable(&self, key: &str) -> Option<String> {
        let mut values = self.values(key);
        (values.len() == 1).then(|| values.pop()).flatten()
    }
}

impl Policy {
    /// What the policy says about `principal` doing `action` (`s3:GetObject`) on `resource`
    /// (`arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`).
    pub fn evaluate(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        cx: &Context,
    ) -> Decision {
        let request = Request { principal, cx };
        let action = action.to_ascii_lowercase();
        let mut allowed = false;
        for statement in &self.statements {
            if statement.applies(&request, &action, resource) != Some(true) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    /// Whether an `Allow` statement grants to everyone (`"*"`, `{"AWS": "*"}` or a
    /// `NotPrincipal`) without a condition pinning one of [`PINNING_KEYS`] to fixed values
    /// (no wildcard, no variable, not `...IfExists`, not negated; for `aws:SourceIp`, not
    /// `0.0.0.0/0` or `::/0`). Used for BlockPublicPolicy and RestrictPublicBuckets.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(Statement::is_public)
    }
}

impl Statement {
    /// `None` when a policy variable it needs has no value.
    fn applies(&self, request: &Request, action: &str, resource: &str) -> Option<bool> {
        let applies = self.principal_matches(request.principal)
            && listed_matches(&self.actions, |p: &Pattern| pattern::matches(p, action))
            && self.resource_matches(request, resource)?
            && self.conditions_hold(request)?;
        Some(applies)
    }

    fn principal_matches(&self, principal: &Principal) -> bool {
        listed_matches(&self.principals, |id: &PrincipalId| match (id, principal) {
            (PrincipalId::Everyone, _) => true,
            (PrincipalId::User(name), Principal::User(user)) => name == user,
            _ => false,
        })
    }

    fn resource_matches(&self, request: &Request, resource: &str) -> Option<bool> {
        let variable = |key: &str| request.variable(key);
        let mut patterns = Vec::with_capacity(self.resources.items.len());
        for template in &self.resources.items {
            patterns.push(Template::expand(template, &variable)?);
        }
        let hit = patterns.iter().any(|p| pattern::matches(p, resource));
        Some(hit != self.resources.negated)
    }

    fn conditions_hold(&self, request: &Request) -> Option<bool> {
        let values = |key: &str| request.values(key);
        let variable = |key: &str| request.variable(key);
        for condition in &self.conditions {
            if !condition.holds(&values, &variable)? {
                return Some(false);
            }
        }
        Some(true)
    }

    fn is_public(&self) -> bool {
        let to_everyone =
            self.principals.negated || self.principals.items.contains(&PrincipalId::Everyone);
        self.effect == Effect::Allow && to_everyone && !self.conditions.iter().any(pins)
    }
}

fn pins(condition: &Condition) -> bool {
    PINNING_KEYS.contains(&condition.key.as_str()) && condition.pins_key()
}

/// Whether `value` is in the list (for `Action`) or outside it (for `NotAction`).
fn listed_matches<T>(listed: &Listed<T>, is: impl Fn(&T) -> bool) -> bool {
    listed.items.iter().any(is) != listed.negated
}
