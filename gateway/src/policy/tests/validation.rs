//! What PutBucketPolicy refuses and accepts, and which policies are public.

use super::B;
use crate::policy::{Policy, MAX_POLICY_BYTES};

const OBJECTS: &str = r#""Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*""#;
const ALLOW_GET: &str = r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject""#;

/// A policy of one statement with `fields`.
fn statement(fields: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{{{fields}}}]}}"#)
}

/// A policy of one statement granting to `principal` with extra `fields`.
fn grant(principal: &str, fields: &str) -> String {
    statement(&format!(
        r#""Effect":"Allow","Principal":{principal},"Action":"s3:GetObject",{OBJECTS}{fields}"#
    ))
}

/// A policy granting GetObject to everyone under the condition `block`.
fn condition(block: &str) -> String {
    grant(r#""*""#, &format!(r#","Condition":{{{block}}}"#))
}

/// Each policy is refused with a message containing the given text.
fn refused(cases: &[(String, &str)]) {
    for (policy, expected) in cases {
        match Policy::parse(policy, B) {
            Ok(_) => panic!("accepted: {policy}"),
            Err(e) => assert!(e.message().contains(expected), "{e} <- {policy}"),
        }
    }
}

#[test]
fn malformed_documents_are_refused() {
    let huge = format!(r#"{{"Id":"{}"}}"#, "x".repeat(MAX_POLICY_BYTES));
    let sid = |s: &str| format!(r#"{{"Sid":"{s}",{ALLOW_GET},{OBJECTS}}}"#);
    let missing = "Missing required field Statement";
    refused(&[
        ("not json".into(), "valid JSON"),
        ("[]".into(), "valid JSON"),
        (huge, "maximum allowed document size"),
        ("{}".into(), missing),
        (r#"{"Statement":[]}"#.into(), missing),
        (r#"{"Statement":"x"}"#.into(), missing),
        (
            r#"{"Version":"2013-01-01","Statement":{}}"#.into(),
            "Invalid policy version",
        ),
        (r#"{"Foo":1,"Statement":[]}"#.into(), "Unknown field Foo"),
        (
            format!(r#"{{"Statement":[{},{}]}}"#, sid("a"), sid("a")),
            "must be unique",
        ),
    ]);
}

#[test]
fn malformed_statements_are_refused() {
    let s = |fields: &str| statement(fields);
    refused(&[
        (
            s(r#""Effect":"Allow","Principal":"*","Actions":"s3:*""#),
            "Unknown field Actions",
        ),
        (
            s(&format!(r#""Principal":"*","Action":"s3:*",{OBJECTS}"#)),
            "field Effect",
        ),
        (
            s(&format!(
                r#""Effect":"allow","Principal":"*","Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid effect",
        ),
        (
            s(&format!(r#""Effect":"Allow","Action":"s3:*",{OBJECTS}"#)),
            "field Principal",
        ),
        (
            s(&format!(r#""Effect":"Allow","Principal":"*",{OBJECTS}"#)),
            "field Action",
        ),
        (
            s(&format!(
                r#"{ALLOW_GET},"NotAction":"s3:PutObject",{OBJECTS}"#
            )),
            "both Action and NotAction",
        ),
        (s(ALLOW_GET), "Missing required field Resource"),
        (
            s(&format!(
                r#"{ALLOW_GET},"Resource":"arn:aws:s3:::other-bucket/*""#
            )),
            "invalid resource",
        ),
        (
            s(&format!(
                r#"{ALLOW_GET},"Resource":"arn:aws:s3:::amzn-s3-demo-bucket-2/*""#
            )),
            "invalid resource",
        ),
        (
            s(&format!(r#"{ALLOW_GET},"Resource":"*""#)),
            "invalid resource",
        ),
        (
            s(&format!(r#"{ALLOW_GET},"Resource":[]"#)),
            "Resource must be",
        ),
        (
            s(&format!(
                r#""Effect":"Allow","Principal":"*","Action":"iam:PassRole",{OBJECTS}"#
            )),
            "invalid action",
        ),
        (
            s(&format!(
                r#""Effect":"Allow","Principal":"*","Action":"s3:",{OBJECTS}"#
            )),
            "invalid action",
        ),
    ]);
}

#[test]
fn invalid_principals_are_refused() {
    refused(&[
        (grant(r#""alice""#, ""), "Invalid principal"),
        (
            grant(r#"{"AWS":"arn:aws:iam::*:user/x"}"#, ""),
            "Invalid principal",
        ),
        (grant(r#"{"Foo":"x"}"#, ""), "Invalid principal"),
        (grant("{}", ""), "Invalid principal"),
    ]);
}

#[test]
fn malformed_conditions_are_refused() {
    let c = condition;
    let value = "Invalid Condition value";
    refused(&[
        (
            c(r#""StringEqualz":{"aws:Referer":"x"}"#),
            "Invalid Condition type : StringEqualz",
        ),
        (
            c(r#""NullIfExists":{"aws:Referer":"true"}"#),
            "Invalid Condition type",
        ),
        (
            c(r#""ForSomeValues:StringEquals":{"aws:Referer":"x"}"#),
            "Invalid Condition type",
        ),
        (c(r#""IpAddress":{"aws:SourceIp":"not-an-ip"}"#), value),
        (c(r#""IpAddress":{"aws:SourceIp":"10.0.0.0/33"}"#), value),
        (c(r#""NumericLessThan":{"s3:max-keys":"ten"}"#), value),
        (c(r#""DateLessThan":{"aws:CurrentTime":"tomorrow"}"#), value),
        (c(r#""Null":{"aws:Referer":"maybe"}"#), value),
        (c(r#""StringEquals":{"aws:Referer":{}}"#), value),
        (c(r#""StringEquals":{"aws:Referer":[]}"#), value),
        (c(r#""StringEquals":"x""#), "must map condition keys"),
    ]);
}

#[test]
fn valid_forms_are_accepted() {
    let cases = [
        format!(r#"{{"Statement":{{{ALLOW_GET},{OBJECTS}}}}}"#),
        format!(r#"{{"Version":"2008-10-17","Id":"x","Statement":[{{{ALLOW_GET},{OBJECTS}}}]}}"#),
        statement(&format!(
            r#"{ALLOW_GET},"Resource":"arn:aws:s3:::amzn-s3-demo-bucket""#
        )),
        statement(&format!(
            r#""Effect":"Deny","Principal":"*","Action":"*",{OBJECTS}"#
        )),
        condition(r#""NumericGreaterThanEquals":{"s3:max-keys":[1, "2.5"]}"#),
        condition(r#""Bool":{"aws:SecureTransport":true}"#),
        condition(r#""DateGreaterThanIfExists":{"aws:EpochTime":1700000000}"#),
        condition(r#""ArnLike":{"aws:SourceArn":"arn:aws:s3:::x/*"}"#),
        condition(r#""ForAllValues:StringLikeIfExists":{"s3:RequestObjectTagKeys":"a*"}"#),
    ];
    for policy in cases {
        if let Err(e) = Policy::parse(&policy, B) {
            panic!("{e} <- {policy}");
        }
    }
}

fn assert_public(cases: &[(String, bool)]) {
    for (policy, public) in cases {
        let parsed = Policy::parse(policy, B).unwrap_or_else(|e| panic!("{e} <- {policy}"));
        assert_eq!(parsed.is_public(), *public, "{policy}");
    }
}

#[test]
fn public_by_principal() {
    let deny = format!(r#""Effect":"Deny","Principal":"*","Action":"s3:*",{OBJECTS}"#);
    let not_bob =
        format!(r#""Effect":"Allow","NotPrincipal":{{"AWS":"bob"}},"Action":"s3:*",{OBJECTS}"#);
    assert_public(&[
        (grant(r#""*""#, ""), true),
        (grant(r#"{"AWS":"*"}"#, ""), true),
        (grant(r#"{"AWS":["alice","*"]}"#, ""), true),
        (
            grant(r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#, ""),
            false,
        ),
        (statement(&deny), false),
        (statement(&not_bob), true),
    ]);
}

#[test]
fn public_unless_a_condition_pins_the_caller() {
    let c = condition;
    assert_public(&[
        (c(r#""IpAddress":{"aws:SourceIp":"192.0.2.0/24"}"#), false),
        (
            c(r#""IpAddress":{"aws:SourceIp":["192.0.2.0/24","0.0.0.0/0"]}"#),
            true,
        ),
        (c(r#""NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}"#), true),
        (
            c(r#""StringEquals":{"aws:SourceVpc":"vpc-91237329"}"#),
            false,
        ),
        (c(r#""StringLike":{"aws:SourceVpc":"vpc-*"}"#), true),
        (
            c(r#""StringEqualsIfExists":{"aws:SourceArn":"arn:aws:sns:x"}"#),
            true,
        ),
        (
            c(r#""ArnEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:1:topic"}"#),
            false,
        ),
        (
            c(r#""StringEquals":{"aws:PrincipalAccount":"111122223333"}"#),
            false,
        ),
        (
            c(r#""StringEquals":{"aws:Referer":"https://example.com/"}"#),
            true,
        ),
        (c(r#""Bool":{"aws:SecureTransport":"true"}"#), true),
    ]);
}
