//! What PutBucketPolicy refuses and accepts, and which policies are public.

use super::B;
use crate::policy::{Policy, MAX_POLICY_BYTES};

/// A statement around `fields`, for the parse and is_public tables.
fn statement(fields: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{{{fields}}}]}}"#)
}

const OBJECTS: &str = r#""Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*""#;

fn condition(block: &str) -> String {
    statement(&format!(
        r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject",{OBJECTS},"Condition":{{{block}}}"#
    ))
}

#[test]
fn malformed_policies_are_refused() {
    let allow = r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject""#;
    let huge = format!(
        r#"{{"Id":"{}","Statement":[]}}"#,
        "x".repeat(MAX_POLICY_BYTES)
    );
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "valid JSON"),
        ("[]".into(), "valid JSON"),
        (huge, "maximum allowed document size"),
        ("{}".into(), "Missing required field Statement"),
        (
            r#"{"Statement":[]}"#.into(),
            "Missing required field Statement",
        ),
        (
            r#"{"Statement":"x"}"#.into(),
            "Missing required field Statement",
        ),
        (
            r#"{"Version":"2013-01-01","Statement":{}}"#.into(),
            "Invalid policy version",
        ),
        (r#"{"Foo":1,"Statement":[]}"#.into(), "Unknown field Foo"),
        (
            statement(r#""Effect":"Allow","Principal":"*","Actions":"s3:*""#),
            "Unknown field Actions",
        ),
        (
            statement(&format!(r#""Principal":"*","Action":"s3:*",{OBJECTS}"#)),
            "Missing required field Effect",
        ),
        (
            statement(&format!(
                r#""Effect":"allow","Principal":"*","Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid effect",
        ),
        (
            statement(&format!(r#""Effect":"Allow","Action":"s3:*",{OBJECTS}"#)),
            "Missing required field Principal",
        ),
        (
            statement(&format!(r#""Effect":"Allow","Principal":"*",{OBJECTS}"#)),
            "Missing required field Action",
        ),
        (
            statement(&format!(r#"{allow},"NotAction":"s3:PutObject",{OBJECTS}"#)),
            "both Action and NotAction",
        ),
        (statement(allow), "Missing required field Resource"),
        (
            statement(&format!(
                r#"{allow},"Resource":"arn:aws:s3:::other-bucket/*""#
            )),
            "invalid resource",
        ),
        (
            statement(&format!(
                r#"{allow},"Resource":"arn:aws:s3:::amzn-s3-demo-bucket-2/*""#
            )),
            "invalid resource",
        ),
        (
            statement(&format!(r#"{allow},"Resource":"*""#)),
            "invalid resource",
        ),
        (
            statement(&format!(r#"{allow},"Resource":[]"#)),
            "Resource must be",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":"*","Action":"iam:PassRole",{OBJECTS}"#
            )),
            "invalid action",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":"*","Action":"s3:",{OBJECTS}"#
            )),
            "invalid action",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":"alice","Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid principal",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::*:user/x"}},"Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid principal",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":{{"Foo":"x"}},"Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid principal",
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","Principal":{{}},"Action":"s3:*",{OBJECTS}"#
            )),
            "Invalid principal",
        ),
        (
            condition(r#""StringEqualz":{"aws:Referer":"x"}"#),
            "Invalid Condition type : StringEqualz",
        ),
        (
            condition(r#""NullIfExists":{"aws:Referer":"true"}"#),
            "Invalid Condition type",
        ),
        (
            condition(r#""ForSomeValues:StringEquals":{"aws:Referer":"x"}"#),
            "Invalid Condition type",
        ),
        (
            condition(r#""IpAddress":{"aws:SourceIp":"not-an-ip"}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""IpAddress":{"aws:SourceIp":"10.0.0.0/33"}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""NumericLessThan":{"s3:max-keys":"ten"}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""DateLessThan":{"aws:CurrentTime":"tomorrow"}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""Null":{"aws:Referer":"maybe"}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""StringEquals":{"aws:Referer":{}}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""StringEquals":{"aws:Referer":[]}"#),
            "Invalid Condition value",
        ),
        (
            condition(r#""StringEquals":"x""#),
            "must map condition keys",
        ),
        (
            format!(
                r#"{{"Statement":[{{"Sid":"a",{allow},{OBJECTS}}},{{"Sid":"a",{allow},{OBJECTS}}}]}}"#
            ),
            "must be unique",
        ),
    ];
    for (policy, expected) in cases {
        match Policy::parse(&policy, B) {
            Ok(_) => panic!("accepted: {policy}"),
            Err(e) => assert!(e.message().contains(expected), "{e} <- {policy}"),
        }
    }
}

#[test]
fn valid_forms_are_accepted() {
    let allow = r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject""#;
    let cases = [
        format!(r#"{{"Statement":{{{allow},{OBJECTS}}}}}"#),
        format!(r#"{{"Version":"2008-10-17","Id":"x","Statement":[{{{allow},{OBJECTS}}}]}}"#),
        statement(&format!(
            r#"{allow},"Resource":"arn:aws:s3:::amzn-s3-demo-bucket""#
        )),
        statement(&format!(
            r#""Effect":"Deny","Principal":"*","Action":"*",{OBJECTS}"#
        )),
        condition(
            r#""NumericGreaterThanEquals":{"s3:max-keys":[1, "2.5"]},"Bool":{"aws:SecureTransport":true}"#,
        ),
        condition(r#""DateGreaterThanIfExists":{"aws:EpochTime":1700000000}"#),
        condition(
            r#""ArnLike":{"aws:SourceArn":"arn:aws:s3:::x/*"},"ForAllValues:StringLikeIfExists":{"s3:RequestObjectTagKeys":"a*"}"#,
        ),
    ];
    for policy in cases {
        if let Err(e) = Policy::parse(&policy, B) {
            panic!("{e} <- {policy}");
        }
    }
}

#[test]
fn public_policies() {
    let grant = |principal: &str, extra: &str| {
        statement(&format!(
            r#""Effect":"Allow","Principal":{principal},"Action":"s3:GetObject",{OBJECTS}{extra}"#
        ))
    };
    let cases = [
        (grant(r#""*""#, ""), true),
        (grant(r#"{"AWS":"*"}"#, ""), true),
        (grant(r#"{"AWS":["alice","*"]}"#, ""), true),
        (
            grant(r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#, ""),
            false,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            ),
            false,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","0.0.0.0/0"]}}"#,
            ),
            true,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            ),
            true,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"StringEquals":{"aws:SourceVpc":"vpc-91237329"}}"#,
            ),
            false,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"StringLike":{"aws:SourceVpc":"vpc-*"}}"#,
            ),
            true,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"StringEqualsIfExists":{"aws:SourceArn":"arn:aws:sns:x"}}"#,
            ),
            true,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#,
            ),
            false,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"StringEquals":{"aws:Referer":"https://example.com/"}}"#,
            ),
            true,
        ),
        (
            grant(
                r#""*""#,
                r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#,
            ),
            true,
        ),
        (
            statement(&format!(
                r#""Effect":"Deny","Principal":"*","Action":"s3:*",{OBJECTS}"#
            )),
            false,
        ),
        (
            statement(&format!(
                r#""Effect":"Allow","NotPrincipal":{{"AWS":"bob"}},"Action":"s3:*",{OBJECTS}"#
            )),
            true,
        ),
    ];
    for (policy, public) in cases {
        let parsed = Policy::parse(&policy, B).unwrap_or_else(|e| panic!("{e} <- {policy}"));
        assert_eq!(parsed.is_public(), public, "{policy}");
    }
}
