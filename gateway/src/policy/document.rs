//! The bucket policy document: JSON in, a validated [`Policy`] out, refusing what
//! PutBucketPolicy refuses (the messages are those of S3's `MalformedPolicy` where we know
//! them).
//!
//! Accepted: `Version` "2012-10-17" or "2008-10-17" (absent means "2008-10-17", as in IAM;
//! only "2012-10-17" substitutes `${...}` policy variables), `Id`, and `Statement` as one
//! object or a non-empty list. A statement needs `Effect`, exactly one of
//! `Principal`/`NotPrincipal`, of `Action`/`NotAction` and of `Resource`/`NotResource`;
//! `Sid`s are unique. Actions are `*` or `s3:...`; resources are the bucket's ARN or ARNs
//! under `arn:aws:s3:::<bucket>/`. Unknown fields are refused.

use super::condition::{self, Condition};
use super::pattern::{self, Pattern, Template};
use super::{PolicyError, MAX_POLICY_BYTES};
use serde_json::{Map, Value};

/// A parsed and validated bucket policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(crate) statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list that a statement either names (`Action`) or excludes (`NotAction`).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub negated: bool,
}

/// One principal of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalId {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous included.
    Everyone,
    /// A dmpstore user by name (a bare name or an IAM user ARN).
    User(String),
    /// Accounts, roles, services, federated identities: valid, but never a dmpstore user.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principals: Listed<PrincipalId>,
    /// Lowercased: actions match case-insensitively.
    pub actions: Listed<Pattern>,
    pub resources: Listed<Template>,
    pub conditions: Vec<Condition>,
}

const TOP_FIELDS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

impl Policy {
    /// Parses and validates a bucket policy document for `bucket` (PutBucketPolicy).
    pub fn parse(json: &str, bucket: &str) -> Result<Policy, PolicyError> {
        if json.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::new(
                "Policy exceeds the maximum allowed document size.",
            ));
        }
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(json) else {
            return Err(PolicyError::new(
                "Policies must be valid JSON and the first byte must be '{'",
            ));
        };
        check_fields(&top, TOP_FIELDS)?;
        let variables = parse_version(top.get("Version"))?;
        if top.get("Id").is_some_and(|id| !id.is_string()) {
            return Err(PolicyError::new("Id must be a string"));
        }
        let statements = match top.get("Statement") {
            Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(PolicyError::new("Missing required field Statement")),
        };
        let statements = statements
            .into_iter()
            .map(|s| parse_statement(s, bucket, variables))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_sids(&statements)?;
        Ok(Policy { statements })
    }
}

/// Whether policy variables are substituted: only in version 2012-10-17.
fn parse_version(version: Option<&Value>) -> Result<bool, PolicyError> {
    match version {
        None => Ok(false),
        Some(Value::String(v)) if v == "2008-10-17" => Ok(false),
        Some(Value::String(v)) if v == "2012-10-17" => Ok(true),
        Some(other) => Err(PolicyError::new(format!(
            "Invalid policy version {other}: use \"2012-10-17\" or \"2008-10-17\""
        ))),
    }
}

fn check_fields(object: &Map<String, Value>, known: &[&str]) -> Result<(), PolicyError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(PolicyError::new(format!("Unknown field {unknown}"))),
        None => Ok(()),
    }
}

fn check_unique_sids(statements: &[Statement]) -> Result<(), PolicyError> {
    for (i, statement) in statements.iter().enumerate() {
        let Some(sid) = &statement.sid else { continue };
        if statements[..i].iter().any(|s| s.sid.as_ref() == Some(sid)) {
            return Err(PolicyError::new(
                "Statement IDs (SID) in a single policy must be unique",
            ));
        }
    }
    Ok(())
}

fn parse_statement(value: &Value, bucket: &str, variables: bool) -> Result<Statement, PolicyError> {
    let Value::Object(fields) = value else {
        return Err(PolicyError::new("Each Statement must be an object"));
    };
    check_fields(fields, STATEMENT_FIELDS)?;
    let sid = match fields.get("Sid") {
        None => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(_) => return Err(PolicyError::new("Sid must be a string")),
    };
    let effect = match fields.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => return Err(PolicyError::new(format!("Invalid effect: {other}"))),
        None => return Err(PolicyError::new("Missing required field Effect")),
    };
    let (principals, negated) = one_of(fields, "Principal", "NotPrincipal")?;
    let principals = Listed {
        items: parse_principals(principals)?,
        negated,
    };
    let (actions, negated) = one_of(fields, "Action", "NotAction")?;
    let actions = Listed {
        items: parse_actions(actions)?,
        negated,
    };
    let (resources, negated) = one_of(fields, "Resource", "NotResource")?;
    let resources = Listed {
        items: parse_resources(resources, bucket, variables)?,
        negated,
    };
    let conditions = match fields.get("Condition") {
        Some(block) => condition::parse_block(block, variables)?,
        None => Vec::new(),
    };
    Ok(Statement {
        sid,
        effect,
        principals,
        actions,
        resources,
        conditions,
    })
}

/// The value of exactly one of `field` / `not_field`, and whether it was `not_field`.
fn one_of<'a>(
    fields: &'a Map<String, Value>,
    field: &str,
    not_field: &str,
) -> Result<(&'a Value, bool), PolicyError> {
    match (fields.get(field), fields.get(not_field)) {
        (Some(value), None) => Ok((value, false)),
        (None, Some(value)) => Ok((value, true)),
        (Some(_), Some(_)) => Err(PolicyError::new(format!(
            "A statement cannot have both {field} and {not_field}"
        ))),
        (None, None) => Err(PolicyError::new(format!("Missing required field {field}"))),
    }
}

/// A string or a non-empty list of strings.
fn strings<'a>(value: &'a Value, field: &str) -> Result<Vec<&'a str>, PolicyError> {
    let invalid = || PolicyError::new(format!("{field} must be a string or a list of strings"));
    match value {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

fn parse_principals(value: &Value) -> Result<Vec<PrincipalId>, PolicyError> {
    let invalid = || PolicyError::new("Invalid principal in policy");
    let Value::Object(kinds) = value else {
        return match value.as_str() {
            Some("*") => Ok(vec![PrincipalId::Everyone]),
            _ => Err(invalid()),
        };
    };
    if kinds.is_empty() {
        return Err(invalid());
    }
    let mut ids = Vec::new();
    for (kind, names) in kinds {
        for name in strings(names, "Principal").map_err(|_| invalid())? {
            ids.push(principal_id(kind, name).ok_or_else(invalid)?);
        }
    }
    Ok(ids)
}

/// `None` for a principal that S3 would refuse (an empty one, partial wildcards, an unknown
/// principal type).
fn principal_id(kind: &str, name: &str) -> Option<PrincipalId> {
    let has_wildcard = name.contains(['*', '?']);
    if name.is_empty() || (has_wildcard && name != "*") {
        return None;
    }
    match kind {
        "AWS" | "CanonicalUser" if name == "*" => Some(PrincipalId::Everyone),
        "AWS" => Some(aws_principal(name)),
        "CanonicalUser" => Some(PrincipalId::User(name.to_owned())),
        "Service" | "Federated" => Some(PrincipalId::Other),
        _ => None,
    }
}

/// A bare name is a user; so is `arn:aws:iam::<any account>:user/[path/]<name>`. Other ARNs
/// (accounts, roles, root) name no dmpstore user.
fn aws_principal(name: &str) -> PrincipalId {
    if !name.starts_with("arn:") {
        return PrincipalId::User(name.to_owned());
    }
    match name.split_once(":user/") {
        Some((prefix, path)) if prefix.starts_with("arn:aws:iam::") => {
            let user = path.rsplit('/').next().unwrap_or(path);
            PrincipalId::User(user.to_owned())
        }
        _ => PrincipalId::Other,
    }
}

fn parse_actions(value: &Value) -> Result<Vec<Pattern>, PolicyError> {
    let mut actions = Vec::new();
    for action in strings(value, "Action")? {
        let lower = action.to_ascii_lowercase();
        let valid = lower == "*" || lower.strip_prefix("s3:").is_some_and(|a| !a.is_empty());
        if !valid {
            return Err(PolicyError::new("Policy has invalid action"));
        }
        actions.push(pattern::wildcard(&lower));
    }
    Ok(actions)
}

fn parse_resources(
    value: &Value,
    bucket: &str,
    variables: bool,
) -> Result<Vec<Template>, PolicyError> {
    let bucket_arn = super::resource_arn(bucket, None);
    let mut resources = Vec::new();
    for resource in strings(value, "Resource")? {
        let in_bucket = match resource.strip_prefix(&bucket_arn) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        };
        if !in_bucket {
            return Err(PolicyError::new("Policy has invalid resource"));
        }
        resources.push(Template::parse(resource, variables));
    }
    Ok(resources)
}
