//! AWS's example bucket policies ("Examples of Amazon S3 bucket policies", "Bucket policy
//! examples using condition keys", the IAM "Condition operators" page), each with the requests
//! it allows, denies or leaves to others.

use super::check;
use crate::policy::Decision::{Allow, Deny, NoOpinion};
use crate::policy::Principal::{Anonymous, User};

#[test]
fn public_read_for_anonymous_users() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow",
        "Principal":"*","Action":["s3:GetObject","s3:GetObjectVersion"],
        "Resource":["arn:aws:s3:::amzn-s3-demo-bucket/*"]}]}"#;
    check(
        policy,
        &[
            (Anonymous, "s3:GetObject", Some("photo.jpg"), &[], Allow),
            (Anonymous, "s3:GetObjectVersion", Some("a/b/c"), &[], Allow),
            (User("bob"), "s3:GetObject", Some("photo.jpg"), &[], Allow),
            (Anonymous, "s3:PutObject", Some("photo.jpg"), &[], NoOpinion),
            (Anonymous, "s3:ListBucket", None, &[], NoOpinion),
            (Anonymous, "s3:GetObject", None, &[], NoOpinion),
        ],
    );
}

#[test]
fn deny_outside_ip_ranges_ipv4_and_ipv6() {
    let policy = r#"{"Version":"2012-10-17","Id":"S3PolicyId1","Statement":[{"Sid":"IPAllow",
        "Effect":"Deny","Principal":"*","Action":"s3:*",
        "Resource":["arn:aws:s3:::amzn-s3-demo-bucket","arn:aws:s3:::amzn-s3-demo-bucket/*"],
        "Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:DB8:1234:5678::/64"]}}}]}"#;
    let ip = "aws:SourceIp";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "192.0.2.10")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "203.0.113.1")],
                Deny,
            ),
            (
                User("a"),
                "s3:ListBucket",
                None,
                &[(ip, "2001:db8:1234:5678::7")],
                NoOpinion,
            ),
            (
                User("a"),
                "s3:ListBucket",
                None,
                &[(ip, "2001:db8:1234:5679::1")],
                Deny,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "::ffff:192.0.2.9")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "not an address")],
                Deny,
            ),
            // NotIpAddress on an absent key holds: the deny applies.
            (Anonymous, "s3:GetObject", Some("k"), &[], Deny),
        ],
    );
}

#[test]
fn allow_a_range_except_one_address() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:*","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"},
                     "NotIpAddress":{"aws:SourceIp":"192.0.2.188/32"}}}]}"#;
    let ip = "aws:SourceIp";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "192.0.2.5")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "192.0.2.188")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(ip, "10.0.0.1")],
                NoOpinion,
            ),
            (Anonymous, "s3:GetObject", Some("k"), &[], NoOpinion),
        ],
    );
}

#[test]
fn deny_requests_without_tls() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"RestrictToTLSRequestsOnly",
        "Action":"s3:*","Effect":"Deny",
        "Resource":["arn:aws:s3:::amzn-s3-demo-bucket","arn:aws:s3:::amzn-s3-demo-bucket/*"],
        "Condition":{"Bool":{"aws:SecureTransport":"false"}},"Principal":"*"}]}"#;
    let tls = "aws:SecureTransport";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(tls, "false")],
                Deny,
            ),
            (User("a"), "s3:ListBucket", None, &[(tls, "FALSE")], Deny),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(tls, "true")],
                NoOpinion,
            ),
            (Anonymous, "s3:GetObject", Some("k"), &[], NoOpinion),
        ],
    );
}

const HOME_FOLDERS: &str = r#"{"Version":"2012-10-17","Statement":[
    {"Sid":"AllowListingOfUserFolder","Effect":"Allow",
     "Principal":{"AWS":["arn:aws:iam::111122223333:user/alice","arn:aws:iam::111122223333:user/bob"]},
     "Action":"s3:ListBucket","Resource":"arn:aws:s3:::amzn-s3-demo-bucket",
     "Condition":{"StringLike":{"s3:prefix":["home/${aws:username}/*","home/${aws:username}"]}}},
    {"Sid":"AllowAllS3ActionsInUserFolder","Effect":"Allow",
     "Principal":{"AWS":["arn:aws:iam::111122223333:user/alice","arn:aws:iam::111122223333:user/bob"]},
     "Action":"s3:*","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*"}]}"#;

#[test]
fn list_and_use_only_ones_home_folder() {
    let prefix = "s3:prefix";
    check(
        HOME_FOLDERS,
        &[
            (
                User("alice"),
                "s3:ListBucket",
                None,
                &[(prefix, "home/alice/")],
                Allow,
            ),
            (
                User("alice"),
                "s3:ListBucket",
                None,
                &[(prefix, "home/alice")],
                Allow,
            ),
            (
                User("alice"),
                "s3:ListBucket",
                None,
                &[(prefix, "home/bob/")],
                NoOpinion,
            ),
            (User("alice"), "s3:ListBucket", None, &[], NoOpinion),
            (
                User("alice"),
                "s3:PutObject",
                Some("home/alice/notes.txt"),
                &[],
                Allow,
            ),
            (
                User("bob"),
                "s3:GetObject",
                Some("home/bob/a/b.txt"),
                &[],
                Allow,
            ),
            (
                User("alice"),
                "s3:GetObject",
                Some("home/bob/notes.txt"),
                &[],
                NoOpinion,
            ),
            (
                User("carol"),
                "s3:GetObject",
                Some("home/carol/x"),
                &[],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("home/alice/x"),
                &[],
                NoOpinion,
            ),
        ],
    );
}

#[test]
fn read_only_objects_with_a_tag() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::111122223333:user/JohnDoe"},
        "Action":["s3:GetObject","s3:GetObjectVersion"],
        "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"StringEquals":{"s3:ExistingObjectTag/environment":"production"}}}]}"#;
    let john = User("JohnDoe");
    check(
        policy,
        &[
            (
                john,
                "s3:GetObject",
                Some("k"),
                &[("s3:ExistingObjectTag/environment", "production")],
                Allow,
            ),
            (
                john,
                "s3:GetObject",
                Some("k"),
                &[("S3:existingobjecttag/environment", "production")],
                Allow,
            ),
            (
                john,
                "s3:GetObject",
                Some("k"),
                &[("s3:ExistingObjectTag/Environment", "production")],
                NoOpinion,
            ),
            (
                john,
                "s3:GetObject",
                Some("k"),
                &[("s3:ExistingObjectTag/environment", "staging")],
                NoOpinion,
            ),
            (john, "s3:GetObject", Some("k"), &[], NoOpinion),
            (
                User("jane"),
                "s3:GetObject",
                Some("k"),
                &[("s3:ExistingObjectTag/environment", "production")],
                NoOpinion,
            ),
        ],
    );
}

#[test]
fn restrict_and_require_request_tag_keys() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"OnlyTheseKeys","Effect":"Allow","Principal":{"AWS":"JohnDoe"},
         "Action":["s3:PutObject","s3:PutObjectTagging"],"Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"ForAllValues:StringLike":{"s3:RequestObjectTagKeys":["Owner","CreationDate"]}}},
        {"Sid":"AtLeastProject","Effect":"Allow","Principal":{"AWS":"JaneDoe"},
         "Action":"s3:PutObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"ForAnyValue:StringEquals":{"s3:RequestObjectTagKeys":"Project"}}}]}"#;
    let keys = "s3:RequestObjectTagKeys";
    let (john, jane) = (User("JohnDoe"), User("JaneDoe"));
    check(
        policy,
        &[
            (john, "s3:PutObject", Some("k"), &[(keys, "Owner")], Allow),
            (
                john,
                "s3:PutObject",
                Some("k"),
                &[(keys, "Owner"), (keys, "CreationDate")],
                Allow,
            ),
            (
                john,
                "s3:PutObject",
                Some("k"),
                &[(keys, "Owner"), (keys, "Project")],
                NoOpinion,
            ),
            // ForAllValues over no values holds (the pitfall the IAM guide warns about).
            (john, "s3:PutObject", Some("k"), &[], Allow),
            (
                jane,
                "s3:PutObject",
                Some("k"),
                &[(keys, "Owner"), (keys, "Project")],
                Allow,
            ),
            (
                jane,
                "s3:PutObject",
                Some("k"),
                &[(keys, "Owner")],
                NoOpinion,
            ),
            (jane, "s3:PutObject", Some("k"), &[], NoOpinion),
        ],
    );
}

#[test]
fn not_principal_with_deny() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::444455556666:user/Bob",
            "arn:aws:iam::444455556666:root"]},"Action":"s3:*",
         "Resource":["arn:aws:s3:::amzn-s3-demo-bucket","arn:aws:s3:::amzn-s3-demo-bucket/*"]},
        {"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}"#;
    check(
        policy,
        &[
            (User("Bob"), "s3:GetObject", Some("k"), &[], Allow),
            (User("Bob"), "s3:PutObject", Some("k"), &[], NoOpinion),
            (User("alice"), "s3:GetObject", Some("k"), &[], Deny),
            (Anonymous, "s3:GetObject", Some("k"), &[], Deny),
            (Anonymous, "s3:ListBucket", None, &[], Deny),
        ],
    );
}

#[test]
fn require_bucket_owner_full_control_on_upload() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowPutWithFullControl",
        "Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/ExampleUser"},
        "Action":"s3:PutObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"StringEquals":{"s3:x-amz-acl":"bucket-owner-full-control"}}}]}"#;
    let user = User("ExampleUser");
    check(
        policy,
        &[
            (
                user,
                "s3:PutObject",
                Some("k"),
                &[("s3:x-amz-acl", "bucket-owner-full-control")],
                Allow,
            ),
            (
                user,
                "s3:PutObject",
                Some("k"),
                &[("s3:x-amz-acl", "public-read")],
                NoOpinion,
            ),
            (user, "s3:PutObject", Some("k"), &[], NoOpinion),
        ],
    );
}

#[test]
fn restrict_to_http_referer() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowGetRequestsFromReferer",
        "Effect":"Allow","Principal":"*","Action":["s3:GetObject","s3:GetObjectVersion"],
        "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"StringLike":{"aws:Referer":["https://www.example.com/*","https://example.com/*"]}}}]}"#;
    let referer = "aws:Referer";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(referer, "https://www.example.com/p/q")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(referer, "https://example.com/")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(referer, "https://evil.example/")],
                NoOpinion,
            ),
            (Anonymous, "s3:GetObject", Some("k"), &[], NoOpinion),
        ],
    );
}

#[test]
fn require_signature_version_4() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"DenyOtherSignatures","Effect":"Deny","Principal":"*","Action":"s3:*",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"StringNotEquals":{"s3:signatureversion":"AWS4-HMAC-SHA256"}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}"#;
    let sig = "s3:signatureversion";
    check(
        policy,
        &[
            (
                User("a"),
                "s3:GetObject",
                Some("k"),
                &[(sig, "AWS4-HMAC-SHA256")],
                Allow,
            ),
            (User("a"), "s3:GetObject", Some("k"), &[(sig, "AWS")], Deny),
            // StringNotEquals on an absent key holds.
            (Anonymous, "s3:GetObject", Some("k"), &[], Deny),
        ],
    );
}

#[test]
fn limit_max_keys_of_a_listing() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::123456789012:user/Dave"},"Action":"s3:ListBucket",
        "Resource":"arn:aws:s3:::amzn-s3-demo-bucket",
        "Condition":{"NumericLessThanEquals":{"s3:max-keys":"10"}}}]}"#;
    let max = "s3:max-keys";
    check(
        policy,
        &[
            (User("Dave"), "s3:ListBucket", None, &[(max, "5")], Allow),
            (User("Dave"), "s3:ListBucket", None, &[(max, "10")], Allow),
            (
                User("Dave"),
                "s3:ListBucket",
                None,
                &[(max, "11")],
                NoOpinion,
            ),
            (
                User("Dave"),
                "s3:ListBucket",
                None,
                &[(max, "ten")],
                NoOpinion,
            ),
            (User("Dave"), "s3:ListBucket", None, &[], NoOpinion),
        ],
    );
}

#[test]
fn retrieve_only_a_specific_version() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"statement1","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/Dave"},
         "Action":"s3:GetObjectVersion","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/HappyFace.jpg"},
        {"Sid":"statement2","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/Dave"},
         "Action":"s3:GetObjectVersion","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/HappyFace.jpg",
         "Condition":{"StringNotEquals":{"s3:VersionId":"AaaHbAQitwiL_h47_44lRO2DDfLlBO5e"}}}]}"#;
    let (dave, face, v) = (User("Dave"), Some("HappyFace.jpg"), "s3:VersionId");
    check(
        policy,
        &[
            (
                dave,
                "s3:GetObjectVersion",
                face,
                &[(v, "AaaHbAQitwiL_h47_44lRO2DDfLlBO5e")],
                Allow,
            ),
            (dave, "s3:GetObjectVersion", face, &[(v, "other")], Deny),
            (dave, "s3:GetObjectVersion", face, &[], Deny),
            (
                dave,
                "s3:GetObjectVersion",
                Some("Sad.jpg"),
                &[(v, "other")],
                NoOpinion,
            ),
        ],
    );
}

#[test]
fn allow_within_a_date_range() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
        "Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-04-01T00:00:00Z"},
                     "DateLessThan":{"aws:CurrentTime":"2020-06-30T23:59:59Z"}}}]}"#;
    let now = "aws:CurrentTime";
    check(
        policy,
        &[
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "2020-05-01T12:00:00Z")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "2020-05-01T12:00:00.125+02:00")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "1588334400")],
                Allow,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "2020-07-01T00:00:00Z")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "2020-06-30T23:59:59-01:00")],
                NoOpinion,
            ),
            (
                Anonymous,
                "s3:GetObject",
                Some("k"),
                &[(now, "2020-04-01")],
                NoOpinion,
            ),
            (Anonymous, "s3:GetObject", Some("k"), &[], NoOpinion),
        ],
    );
}

#[test]
fn require_server_side_encryption() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"DenyIncorrectEncryptionHeader","Effect":"Deny","Principal":"*","Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"AES256"}}},
        {"Sid":"DenyUnEncryptedObjectUploads","Effect":"Deny","Principal":"*","Action":"s3:PutObject",
         "Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*",
         "Condition":{"Null":{"s3:x-amz-server-side-encryption":true}}}]}"#;
    let sse = "s3:x-amz-server-side-encryption";
    check(
        policy,
        &[
            (
                User("a"),
                "s3:PutObject",
                Some("k"),
                &[(sse, "AES256")],
                NoOpinion,
            ),
            (
                User("a"),
                "s3:PutObject",
                Some("k"),
                &[(sse, "aws:kms")],
                Deny,
            ),
            (User("a"), "s3:PutObject", Some("k"), &[], Deny),
            (User("a"), "s3:GetObject", Some("k"), &[], NoOpinion),
        ],
    );
}
