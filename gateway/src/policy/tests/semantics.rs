//! Evaluation rules beyond the worked examples: policy variables, qualifiers with negated
//! operators, `IfExists`, `NotAction`/`NotResource`, wildcards, deny-wins, principal forms.

use super::{check, Row};
use crate::policy::Decision::{self, Allow, Deny, NoOpinion};
use crate::policy::Principal::{self, Anonymous, User};

#[test]
fn policy_variables_substitute_literally() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":[
          "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*",
          "arn:aws:s3:::amzn-s3-demo-bucket/team/${aws:PrincipalTag/team, 'shared'}/*",
          "arn:aws:s3:::amzn-s3-demo-bucket/literal${*}${?}${$}"]}]}"#;
    let team = "aws:PrincipalTag/team";
    check(
        policy,
        &[
            (User("a*"), "s3:GetObject", Some("home/a*/x"), &[], Allow),
            (
                User("a*"),
                "s3:GetObject",
                Some("home/abc/x"),
                &[],
                NoOpinion,
            ),
            // aws:username from the context wins over the principal's name.
            (
                User("x"),
                "s3:GetObject",
                Some("home/y/k"),
                &[("aws:username", "y")],
                Allow,
            ),
            // No variable, no match: an anonymous request has no aws:username.
            (Anonymous, "s3:GetObject", Some("home//x"), &[], NoOpinion),
            (
                User("u"),
                "s3:GetObject",
                Some("team/red/k"),
                &[(team, "red")],
                Allow,
            ),
            (User("u"), "s3:GetObject", Some("team/shared/k"), &[], Allow),
            (User("u"), "s3:GetObject", Some("literal*?$"), &[], Allow),
            (
                User("u"),
                "s3:GetObject",
                Some("literalab$"),
                &[],
                NoOpinion,
            ),
        ],
    );
}

#[test]
fn version_2008_takes_variables_literally() {
    for version in [r#""Version":"2008-10-17","#, ""] {
        let policy = format!(
            r#"{{{version}"Statement":{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
            "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/${{aws:username}}/*"}}}}"#
        );
        check(
            &policy,
            &[
                (
                    User("alice"),
                    "s3:GetObject",
                    Some("alice/x"),
                    &[],
                    NoOpinion,
                ),
                (
                    User("alice"),
                    "s3:GetObject",
                    Some("${aws:username}/x"),
                    &[],
                    Allow,
                ),
            ],
        );
    }
}

#[test]
fn negated_operators_with_qualifiers() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"any"},"Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"ForAnyValue:StringNotEquals":{"s3:RequestObjectTagKeys":["a","b"]}}},
        {"Effect":"Allow","Principal":{"AWS":"all"},"Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"ForAllValues:StringNotEquals":{"s3:RequestObjectTagKeys":["a","b"]}}}]}"#;
    let keys = "s3:RequestObjectTagKeys";
    check(
        policy,
        &[
            (
                User("any"),
                "s3:PutObject",
                Some("k"),
                &[(keys, "a"), (keys, "c")],
                Allow,
            ),
            (
                User("any"),
                "s3:PutObject",
                Some("k"),
                &[(keys, "a"), (keys, "b")],
                NoOpinion,
            ),
            (User("any"), "s3:PutObject", Some("k"), &[], NoOpinion),
            (
                User("all"),
                "s3:PutObject",
                Some("k"),
                &[(keys, "c"), (keys, "d")],
                Allow,
            ),
            (
                User("all"),
                "s3:PutObject",
                Some("k"),
                &[(keys, "a"), (keys, "c")],
                NoOpinion,
            ),
            (User("all"), "s3:PutObject", Some("k"), &[], Allow),
        ],
    );
}

#[test]
fn if_exists_checks_only_present_keys() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"StringEqualsIfExists":{"s3:x-amz-storage-class":"STANDARD"}}},
        {"Effect":"Deny","Principal":"*","Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/locked/*",
         "Condition":{"StringNotEqualsIgnoreCaseIfExists":{"s3:x-amz-acl":"private"}}}]}"#;
    let class = "s3:x-amz-storage-class";
    let acl = "s3:x-amz-acl";
    check(
        policy,
        &[
            (Anonymous, "s3:PutObject", Some("k"), &[], Allow),
            (
                Anonymous,
                "s3:PutObject",
                Some("k"),
                &[(class, "STANDARD")],
                Allow,
            ),
            (
                Anonymous,
                "s3:PutObject",
                Some("k"),
                &[(class, "GLACIER")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:PutObject",
                Some("locked/k"),
                &[(acl, "PRIVATE")],
                Allow,
            ),
            (
                Anonymous,
                "s3:PutObject",
                Some("locked/k"),
                &[(acl, "public-read")],
                Deny,
            ),
            (Anonymous, "s3:PutObject", Some("locked/k"), &[], Deny),
        ],
    );
}

#[test]
fn not_action_and_not_resource() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","Principal":"*","NotAction":["s3:GetObject","s3:List*"],
         "Resource":["arn:aws:s3:::amzn-s3-demo-bucket","arn:aws:s3:::amzn-s3-demo-bucket/*"]},
        {"Effect":"Allow","Principal":"*","Action":"s3:*",
         "NotResource":"arn:aws:s3:::amzn-s3-demo-bucket/private/*"}]}"#;
    check(
        policy,
        &[
            (Anonymous, "s3:GetObject", Some("public/x"), &[], Allow),
            (Anonymous, "S3:GETOBJECT", Some("public/x"), &[], Allow),
            (Anonymous, "s3:GetObject", Some("private/x"), &[], NoOpinion),
            (Anonymous, "s3:PutObject", Some("public/x"), &[], Deny),
            (Anonymous, "s3:ListBucketVersions", None, &[], Allow),
            (Anonymous, "s3:DeleteBucket", None, &[], Deny),
        ],
    );
}

#[test]
fn wildcards_in_actions_and_resources() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":["S3:Get*","s3:List?ucket"],
        "Resource":["arn:aws:s3:::amzn-s3-demo-bucket/*.jpg","arn:aws:s3:::amzn-s3-demo-bucket/img-??.png",
                    "arn:aws:s3:::amzn-s3-demo-bucket"]}]}"#;
    check(
        policy,
        &[
            (Anonymous, "s3:GetObject", Some("a/b/c.jpg"), &[], Allow),
            (Anonymous, "s3:getobjecttagging", Some("c.jpg"), &[], Allow),
            (Anonymous, "s3:GetObject", Some("c.JPG"), &[], NoOpinion),
            (Anonymous, "s3:GetObject", Some("img-01.png"), &[], Allow),
            (Anonymous, "s3:GetObject", Some("img-1.png"), &[], NoOpinion),
            (Anonymous, "s3:ListBucket", None, &[], Allow),
            (Anonymous, "s3:ListBucketVersions", None, &[], NoOpinion),
            (Anonymous, "s3:PutObject", Some("c.jpg"), &[], NoOpinion),
        ],
    );
}

#[test]
fn explicit_deny_wins() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:*",
         "Resource":["arn:aws:s3:::amzn-s3-demo-bucket","arn:aws:s3:::amzn-s3-demo-bucket/*"]},
        {"Effect":"Deny","Principal":{"CanonicalUser":"mallory"},"Action":"s3:Delete*",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}"#;
    check(
        policy,
        &[
            (User("mallory"), "s3:DeleteObject", Some("k"), &[], Deny),
            (User("mallory"), "s3:GetObject", Some("k"), &[], Allow),
            (User("alice"), "s3:DeleteObject", Some("k"), &[], Allow),
        ],
    );
}

#[test]
fn principal_forms() {
    let cases: &[(&str, Principal, Decision)] = &[
        (r#""*""#, Anonymous, Allow),
        (r#"{"AWS":"*"}"#, Anonymous, Allow),
        (r#"{"AWS":["*"]}"#, User("x"), Allow),
        (r#"{"AWS":"alice"}"#, User("alice"), Allow),
        (r#"{"AWS":"alice"}"#, User("Alice"), NoOpinion),
        (r#"{"AWS":"alice"}"#, Anonymous, NoOpinion),
        (r#"{"CanonicalUser":"alice"}"#, User("alice"), Allow),
        (
            r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#,
            User("alice"),
            Allow,
        ),
        (
            r#"{"AWS":"arn:aws:iam::111122223333:user/division/alice"}"#,
            User("alice"),
            Allow,
        ),
        (
            r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
            User("root"),
            NoOpinion,
        ),
        (
            r#"{"AWS":"arn:aws:iam::111122223333:role/alice"}"#,
            User("alice"),
            NoOpinion,
        ),
        (r#"{"AWS":"111122223333"}"#, User("111122223333"), Allow),
        (
            r#"{"Service":"cloudtrail.amazonaws.com"}"#,
            User("cloudtrail.amazonaws.com"),
            NoOpinion,
        ),
        (
            r#"{"Federated":"cognito-identity.amazonaws.com"}"#,
            Anonymous,
            NoOpinion,
        ),
        (
            r#"{"AWS":["bob","alice"],"Service":"s3.amazonaws.com"}"#,
            User("alice"),
            Allow,
        ),
    ];
    for (principal_json, principal, expected) in cases {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{principal_json},
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}}}}"#
        );
        let rows: [Row; 1] = [(*principal, "s3:GetObject", Some("k"), &[], *expected)];
        check(&policy, &rows);
    }
}

#[test]
fn arn_operators_take_wildcards() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:PutObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:*:111122223333:topic-?"}}}]}"#;
    let arn = "aws:SourceArn";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:PutObject",
                Some("k"),
                &[(arn, "arn:aws:sns:eu-west-1:111122223333:topic-a")],
                Allow,
            ),
            (
                Anonymous,
                "s3:PutObject",
                Some("k"),
                &[(arn, "arn:aws:sns:eu-west-1:444455556666:topic-a")],
                NoOpinion,
            ),
            (Anonymous, "s3:PutObject", Some("k"), &[], NoOpinion),
        ],
    );
}
