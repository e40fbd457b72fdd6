//! Property tests: the wildcard matcher against its obvious definition, and parsing and
//! evaluation never panic on arbitrary input.

use crate::policy::pattern::{matches, wildcard};
use crate::policy::{operand, Context, Decision, Policy, Principal};
use proptest::prelude::*;

/// The obvious exponential definition, for short inputs.
fn reference(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
    }
}

/// A JSON value built from policy words, so that parsing gets past the first checks.
fn policy_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let words = prop::sample::select(vec![
        "Version",
        "2012-10-17",
        "Statement",
        "Effect",
        "Allow",
        "Deny",
        "Principal",
        "NotPrincipal",
        "AWS",
        "*",
        "Action",
        "NotAction",
        "s3:*",
        "s3:Get*",
        "Resource",
        "NotResource",
        "arn:aws:s3:::amzn-s3-demo-bucket/*",
        "arn:aws:s3:::amzn-s3-demo-bucket",
        "arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/${x",
        "Condition",
        "StringLike",
        "ForAllValues:StringNotEqualsIfExists",
        "Null",
        "IpAddress",
        "NotIpAddress",
        "DateLessThan",
        "NumericEquals",
        "Bool",
        "aws:SourceIp",
        "aws:CurrentTime",
        "s3:max-keys",
        "10.0.0.0/8",
        "::/0",
        "true",
        "2020-01-01T00:00:00Z",
        "1.5e3",
        "Sid",
    ]);
    let leaf = prop_oneof![
        words.clone().prop_map(|w| Value::String(w.to_owned())),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..6).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// One statement from pools of valid (and a few invalid) values of each field.
fn statement_json() -> impl Strategy<Value = String> {
    let pick = |items: &'static [&'static str]| prop::sample::select(items);
    let effect = pick(&["Allow", "Deny"]);
    let principal = pick(&[
        r#""*""#,
        r#"{"AWS":"u"}"#,
        r#"{"AWS":["v","arn:aws:iam::1:user/u"]}"#,
    ]);
    let action = pick(&[
        r#""s3:*""#,
        r#""s3:Get*""#,
        r#"["s3:PutObject","s3:GetObject"]"#,
    ]);
    let action_field = pick(&["Action", "NotAction"]);
    let resource = pick(&[
        r#""arn:aws:s3:::amzn-s3-demo-bucket/*""#,
        r#""arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/*""#,
        r#""arn:aws:s3:::amzn-s3-demo-bucket/k?""#,
    ]);
    let condition = pick(&[
        "",
        r#","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
        r#","Condition":{"NotIpAddress":{"aws:SourceIp":["::/0"]}}"#,
        r#","Condition":{"StringLike":{"s3:prefix":"${aws:username}/*"}}"#,
        r#","Condition":{"ForAllValues:StringEquals":{"s3:max-keys":["7"]}}"#,
        r#","Condition":{"NumericLessThanIfExists":{"s3:max-keys":"8"}}"#,
        r#","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}"#,
        r#","Condition":{"Null":{"aws:Referer":"true"}}"#,
    ]);
    (effect, principal, action_field, action, resource, condition).prop_map(
        |(effect, principal, action_field, action, resource, condition)| {
            format!(
                r#"{{"Effect":"{effect}","Principal":{principal},"{action_field}":{action},"Resource":{resource}{condition}}}"#
            )
        },
    )
}

fn policy_of(statements: &[String]) -> Policy {
    let json = format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    );
    Policy::parse(&json, "amzn-s3-demo-bucket").expect("generated policies are valid")
}

proptest! {
    #[test]
    fn matcher_agrees_with_reference(
        pattern in "[ab/*?]{0,8}",
        text in "[ab/]{0,10}",
    ) {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        prop_assert_eq!(matches(&wildcard(&pattern), &text), reference(&p, &t));
    }

    #[test]
    fn parse_never_panics_on_strings(s in "\\PC*") {
        let _ = Policy::parse(&s, "b");
        let _ = operand::parse_date(&s);
        let _ = operand::Cidr::parse(&s);
    }

    #[test]
    fn parse_and_evaluate_never_panic(value in policy_json(), ip in "[0-9a-f.:]{0,20}") {
        let json = value.to_string();
        if let Ok(policy) = Policy::parse(&json, "amzn-s3-demo-bucket") {
            let cx = Context::new()
                .with("aws:SourceIp", ip.clone())
                .with("aws:CurrentTime", ip)
                .with_values("s3:max-keys", ["7", "x"]);
            for principal in [Principal::Anonymous, Principal::User("u")] {
                let _ = policy.evaluate(&principal, "s3:GetObject",
                    "arn:aws:s3:::amzn-s3-demo-bucket/k", &cx);
                let _ = policy.is_public();
            }
        }
    }

    /// A policy decides as its statements do one by one: any Deny, else any Allow.
    #[test]
    fn policy_decision_combines_statement_decisions(
        statements in prop::collection::vec(statement_json(), 1..5),
        user in prop::sample::select(vec!["u", "v", "w"]),
        action in prop::sample::select(vec!["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
        key in prop::sample::select(vec!["k", "k1", "u/x", "v/y"]),
        ip in prop::sample::select(vec!["10.1.2.3", "192.0.2.1", "2001:db8::1"]),
        now in prop::sample::select(vec!["2019-06-01T00:00:00Z", "2021-06-01T00:00:00Z"]),
    ) {
        let cx = Context::new()
            .with("aws:SourceIp", ip)
            .with("aws:CurrentTime", now)
            .with("s3:max-keys", "7");
        let resource = crate::policy::resource_arn("amzn-s3-demo-bucket", Some(key));
        let principals = [Principal::Anonymous, Principal::User(user)];
        for principal in principals {
            let whole = policy_of(&statements).evaluate(&principal, action, &resource, &cx);
            let each: Vec<Decision> = statements
                .iter()
                .map(|s| policy_of(std::slice::from_ref(s)).evaluate(&principal, action, &resource, &cx))
                .collect();
            let expected = if each.contains(&Decision::Deny) {
                Decision::Deny
            } else if each.contains(&Decision::Allow) {
                Decision::Allow
            } else {
                Decision::NoOpinion
            };
            prop_assert_eq!(whole, expected);
        }
    }
}
