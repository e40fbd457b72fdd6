//! The `Condition` block of a statement: `{"Operator": {"key": value-or-values}}`.
//!
//! All operators of a block are ANDed, all keys of an operator ANDed, the values given for one
//! key ORed. Our reading of the IAM "Condition operators" page:
//!
//! - A key absent from the request makes a condition false, except: a negated operator
//!   (`StringNotEquals`, `StringNotLike`, `NumericNotEquals`, `DateNotEquals`, `NotIpAddress`,
//!   `ArnNotEquals`, `ArnNotLike`) is then true; `...IfExists` is then true; `Null` tests
//!   exactly that; `ForAllValues:` is then true (every one of no values matches) and
//!   `ForAnyValue:` false.
//! - A negated operator is true when no request value matches any policy value. With
//!   `ForAnyValue:` it is true when some request value matches none; with `ForAllValues:`
//!   when every request value matches none.
//! - A positive operator without qualifier is true when some request value matches some
//!   policy value (for a single-valued key: the value matches one of them).
//! - A request value that does not parse (a number, date or address) matches nothing.
//! - A policy variable with no value makes the whole statement not apply.

use super::operand::{parse_date, parse_number, Cidr};
use super::pattern::{self, Template};
use super::{normalize_key, PolicyError};
use serde_json::Value;
use std::net::IpAddr;

/// How a request value is compared with a policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `StringEquals`, `BinaryEquals`: exact, case-sensitive.
    StringExact,
    /// `StringEqualsIgnoreCase`.
    StringIgnoreCase,
    /// `StringLike`, and `ArnLike` and `ArnEquals` (which IAM documents as taking wildcards
    /// too): `*` and `?` wildcards, case-sensitive, over the whole string (a `*` may cross an
    /// ARN's `:`, where IAM matches component by component).
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    /// `Bool`: `true` / `false`, case-insensitive.
    Bool,
    /// `IpAddress`: the request address is in a policy CIDR block.
    Ip,
    /// `Null`: `true` means the key is absent.
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Eq => ordering == Equal,
            Cmp::Lt => ordering == Less,
            Cmp::Le => ordering != Greater,
            Cmp::Gt => ordering == Greater,
            Cmp::Ge => ordering != Less,
        }
    }
}

/// `ForAnyValue:` / `ForAllValues:`, for keys that hold several values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

/// One policy value, parsed for its operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(Template),
    Number(f64),
    /// Nanoseconds since the Unix epoch.
    Date(i128),
    Cidr(Cidr),
    Flag(bool),
}

/// One (operator, key) pair of a condition block with its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub family: Family,
    pub negated: bool,
    pub if_exists: bool,
    pub qualifier: Qualifier,
    /// Normalized (see [`normalize_key`]).
    pub key: String,
    pub values: Vec<Operand>,
}

/// Parses an operator name such as `ForAnyValue:StringNotLikeIfExists`.
pub fn parse_operator(name: &str) -> Option<(Family, bool, bool, Qualifier)> {
    let (qualifier, rest) = match name.split_once(':') {
        Some(("ForAnyValue", rest)) => (Qualifier::ForAnyValue, rest),
        Some(("ForAllValues", rest)) => (Qualifier::ForAllValues, rest),
        Some(_) => return None,
        None => (Qualifier::None, name),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) if base != "Null" => (base, true),
        Some(_) => return None,
        None => (rest, false),
    };
    let (family, negated) = base_operator(base)?;
    Some((family, negated, if_exists, qualifier))
}

fn base_operator(name: &str) -> Option<(Family, bool)> {
    use Family::*;
    Some(match name {
        "StringEquals" | "BinaryEquals" => (StringExact, false),
        "StringNotEquals" => (StringExact, true),
        "StringEqualsIgnoreCase" => (StringIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringIgnoreCase, true),
        "StringLike" | "ArnLike" | "ArnEquals" => (StringLike, false),
        "StringNotLike" | "ArnNotLike" | "ArnNotEquals" => (StringLike, true),
        "Bool" => (Bool, false),
        "IpAddress" => (Ip, false),
        "NotIpAddress" => (Ip, true),
        "Null" => (Null, false),
        _ => {
            let (kind, cmp) = split_comparison(name)?;
            match (kind, cmp) {
                ("Numeric", (cmp, negated)) => (Numeric(cmp), negated),
                ("Date", (cmp, negated)) => (Date(cmp), negated),
                _ => return None,
            }
        }
    })
}

fn split_comparison(name: &str) -> Option<(&str, (Cmp, bool))> {
    let kind_len = if name.starts_with("Numeric") { 7 } else { 4 };
    let (kind, cmp) = name.split_at_checked(kind_len)?;
    let cmp = match cmp {
        "Equals" => (Cmp::Eq, false),
        "NotEquals" => (Cmp::Eq, true),
        "LessThan" => (Cmp::Lt, false),
        "LessThanEquals" => (Cmp::Le, false),
        "GreaterThan" => (Cmp::Gt, false),
        "GreaterThanEquals" => (Cmp::Ge, false),
        _ => return None,
    };
    Some((kind, cmp))
}

/// Parses a whole `Condition` block. `variables`: whether `${...}` is substituted (policy
/// version 2012-10-17).
pub fn parse_block(block: &Value, variables: bool) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(operators) = block else {
        return Err(PolicyError::new("Condition must be an object"));
    };
    let mut conditions = Vec::new();
    for (operator, keys) in operators {
        let (family, negated, if_exists, qualifier) = parse_operator(operator)
            .ok_or_else(|| PolicyError::new(format!("Invalid Condition type : {operator}")))?;
        let Value::Object(keys) = keys else {
            return Err(PolicyError::new(format!(
                "Condition {operator} must map condition keys to values"
            )));
        };
        for (key, values) in keys {
            let values = condition_strings(values, operator)?
                .iter()
                .map(|value| parse_operand(family, value, variables))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    PolicyError::new(format!("Invalid Condition value for {operator} {key}"))
                })?;
            if key.is_empty() {
                return Err(PolicyError::new(format!(
                    "Empty condition key in {operator}"
                )));
            }
            conditions.push(Condition {
                family,
                negated,
                if_exists,
                qualifier,
                key: normalize_key(key),
                values,
            });
        }
    }
    Ok(conditions)
}

/// Condition values as strings: a string, number or boolean, or a non-empty list of them.
fn condition_strings(value: &Value, operator: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let strings = match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(scalar).collect(),
        Value::Array(_) => None,
        other => scalar(other).map(|s| vec![s]),
    };
    strings.ok_or_else(|| PolicyError::new(format!("Invalid Condition value in {operator}")))
}

fn parse_operand(family: Family, value: &str, variables: bool) -> Option<Operand> {
    Some(match family {
        Family::StringExact | Family::StringIgnoreCase | Family::StringLike | Family::Bool => {
            Operand::Text(Template::parse(value, variables))
        }
        Family::Numeric(_) => Operand::Number(parse_number(value)?),
        Family::Date(_) => Operand::Date(parse_date(value)?),
        Family::Ip => Operand::Cidr(Cidr::parse(value)?),
        Family::Null => Operand::Flag(match value.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return None,
        }),
    })
}

/// Looks up the request's values of a (normalized) key.
pub type Values<'a> = &'a dyn Fn(&str) -> Vec<String>;
/// Looks up the single value of a policy variable.
pub type Variable<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Condition {
    /// Whether the condition holds; `None` when a policy variable has no value.
    pub fn holds(&self, values: Values, variable: Variable) -> Option<bool> {
        let request = values(&self.key);
        if self.family == Family::Null {
            let absent = request.is_empty();
            return Some(self.values.contains(&Operand::Flag(absent)));
        }
        if request.is_empty() {
            return Some(match self.qualifier {
                _ if self.if_exists => true,
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                Qualifier::None => self.negated,
            });
        }
        let mut hits = Vec::with_capacity(request.len());
        for value in &request {
            hits.push(self.matches_any(value, variable)?);
        }
        Some(match (self.qualifier, self.negated) {
            (Qualifier::None, false) => hits.iter().any(|hit| *hit),
            (Qualifier::None, true) => hits.iter().all(|hit| !*hit),
            (Qualifier::ForAnyValue, negated) => hits.iter().any(|hit| *hit != negated),
            (Qualifier::ForAllValues, negated) => hits.iter().all(|hit| *hit != negated),
        })
    }

    /// Whether one request value matches one of the policy values (before negation).
    fn matches_any(&self, value: &str, variable: Variable) -> Option<bool> {
        for operand in &self.values {
            if self.matches(value, operand, variable)? {
                return Some(true);
            }
        }
        Some(false)
    }

    fn matches(&self, value: &str, operand: &Operand, variable: Variable) -> Option<bool> {
        Some(match (self.family, operand) {
            (Family::StringExact, Operand::Text(t)) => t.expand_plain(variable)? == value,
            (Family::StringIgnoreCase | Family::Bool, Operand::Text(t)) => {
                t.expand_plain(variable)?.to_lowercase() == value.to_lowercase()
            }
            (Family::StringLike, Operand::Text(t)) => pattern::matches(&t.expand(variable)?, value),
            (Family::Numeric(cmp), Operand::Number(n)) => parse_number(value)
                .and_then(|v| v.partial_cmp(n))
                .is_some_and(|ordering| cmp.holds(ordering)),
            (Family::Date(cmp), Operand::Date(d)) => {
                parse_date(value).is_some_and(|v| cmp.holds(v.cmp(d)))
            }
            (Family::Ip, Operand::Cidr(cidr)) => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| cidr.contains(ip)),
            _ => false,
        })
    }

    /// Whether it restricts the key to values fixed in the policy, so that only requests
    /// carrying one of them pass (AWS's test for a non-public policy).
    pub fn pins_key(&self) -> bool {
        if self.negated || self.if_exists || self.qualifier == Qualifier::ForAllValues {
            return false;
        }
        match self.family {
            Family::StringExact | Family::StringIgnoreCase | Family::StringLike => {
                self.values.iter().all(|v| match v {
                    Operand::Text(t) => t.is_fixed(),
                    _ => false,
                })
            }
            Family::Ip => self.values.iter().all(|v| match v {
                Operand::Cidr(cidr) => !cidr.is_everything(),
                _ => false,
            }),
            _ => false,
        }
    }
}
