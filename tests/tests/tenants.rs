//! Tenant isolation through real gateways: users and keys created with `gateway admin`, every S3
//! operation of one user on another's bucket refused with 403 AccessDenied (and allowed once a
//! policy grants it), scoped and read-only keys kept to their limits, keys that stop working
//! when disabled, deleted or expired, presigned URLs bounded by their signer's rights and
//! expiry, and anonymous requests refused.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use dmpstore_tests::{client, Cluster};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The S3 error code and HTTP status of a call, or `("ok", 200)`.
fn outcome<T, E: ProvideErrorMetadata, R>(r: Result<T, SdkError<E, R>>) -> (String, u16)
where
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => ("ok".into(), 200),
        Err(e) => {
            let status = match &e {
                SdkError::ServiceError(s) => status_of(s.raw()),
                _ => 0,
            };
            (e.code().unwrap_or("<none>").to_string(), status)
        }
    }
}

fn status_of<R: std::fmt::Debug>(raw: &R) -> u16 {
    // The raw response's Debug form starts with its status; the SDK's generic R has no accessor.
    let text = format!("{raw:?}");
    text.split("StatusCode(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Polls `cond` until it holds; panics after `deadline`.
async fn eventually<F, Fut>(deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Key {
    access_key: String,
    secret_key: String,
}

fn create_user(cluster: &Cluster, name: &str) -> Key {
    let out = cluster
        .admin(&["user", "create", "--name", name, "--json"])
        .unwrap();
    parse_key(&out)
}

fn parse_key(json: &str) -> Key {
    let v: serde_json::Value = serde_json::from_str(json).expect("admin prints JSON");
    Key {
        access_key: v["access_key"].as_str().unwrap().to_string(),
        secret_key: v["secret_key"].as_str().unwrap().to_string(),
    }
}

fn client_of(cluster: &Cluster, gateway: usize, key: &Key) -> aws_sdk_s3::Client {
    client(
        &cluster.info.s3_endpoints[gateway],
        &key.access_key,
        &key.secret_key,
        &cluster.info.region,
    )
}

/// One raw HTTP request (no signature, or a presigned URL); its status and body.
fn raw(url: &str, method: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = if path.is_empty() { "/" } else { path };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Everything `c` can try on `bucket` (holding `key`, with multipart upload `upload`),
/// each as (operation, outcome).
fn every_operation<'a>(
    c: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
    upload: &'a str,
    own_bucket: &'a str,
) -> Vec<(&'static str, BoxFuture<'a, (String, u16)>)> {
    let b = bucket.to_string();
    let src = format!("{bucket}/{key}");
    let own_src = format!("{own_bucket}/own");
    vec![
        (
            "GetObject",
            c.get_object()
                .bucket(&b)
                .key(key)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "HeadObject",
            c.head_object()
                .bucket(&b)
                .key(key)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "PutObject",
            c.put_object()
                .bucket(&b)
                .key("intruder")
                .body(ByteStream::from_static(b"x"))
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "DeleteObject",
            c.delete_object()
                .bucket(&b)
                .key(key)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "DeleteObjects",
            c.delete_objects()
                .bucket(&b)
                .delete(
                    Delete::builder()
                        .objects(ObjectIdentifier::builder().key(key).build().unwrap())
                        .build()
                        .unwrap(),
                )
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "ListObjectsV2",
            c.list_objects_v2().bucket(&b).send().map(outcome).boxed(),
        ),
        (
            "ListObjects",
            c.list_objects().bucket(&b).send().map(outcome).boxed(),
        ),
        (
            "ListObjectVersions",
            c.list_object_versions()
                .bucket(&b)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "CopyObject from",
            c.copy_object()
                .bucket(own_bucket)
                .key("stolen")
                .copy_source(&src)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "CopyObject into",
            c.copy_object()
                .bucket(&b)
                .key("planted")
                .copy_source(&own_src)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "CreateMultipartUpload",
            c.create_multipart_upload()
                .bucket(&b)
                .key("mpu")
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "UploadPart",
            c.upload_part()
                .bucket(&b)
                .key(key)
                .upload_id(upload)
                .part_number(1)
                .body(ByteStream::from_static(b"x"))
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "UploadPartCopy",
            c.upload_part_copy()
                .bucket(&b)
                .key(key)
                .upload_id(upload)
                .part_number(1)
                .copy_source(&own_src)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "CompleteMultipartUpload",
            c.complete_multipart_upload()
                .bucket(&b)
                .key(key)
                .upload_id(upload)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(CompletedPart::builder().part_number(1).e_tag("x").build())
                        .build(),
                )
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "ListParts",
            c.list_parts()
                .bucket(&b)
                .key(key)
                .upload_id(upload)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "ListMultipartUploads",
            c.list_multipart_uploads()
                .bucket(&b)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "AbortMultipartUpload",
            c.abort_multipart_upload()
                .bucket(&b)
                .key(key)
                .upload_id(upload)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "GetObjectTagging",
            c.get_object_tagging()
                .bucket(&b)
                .key(key)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "PutObjectTagging",
            c.put_object_tagging()
                .bucket(&b)
                .key(key)
                .tagging(
                    aws_sdk_s3::types::Tagging::builder()
                        .set_tag_set(Some(vec![]))
                        .build()
                        .unwrap(),
                )
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "DeleteObjectTagging",
            c.delete_object_tagging()
                .bucket(&b)
                .key(key)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "GetBucketVersioning",
            c.get_bucket_versioning()
                .bucket(&b)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "PutBucketVersioning",
            c.put_bucket_versioning()
                .bucket(&b)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "GetBucketLocation",
            c.get_bucket_location()
                .bucket(&b)
                .send()
                .map(outcome)
                .boxed(),
        ),
        (
            "HeadBucket",
            c.head_bucket().bucket(&b).send().map(outcome).boxed(),
        ),
        (
            "DeleteBucket",
            c.delete_bucket().bucket(&b).send().map(outcome).boxed(),
        ),
    ]
}

async fn bucket_names(c: &aws_sdk_s3::Client) -> Vec<String> {
    let out = c.list_buckets().send().await.unwrap();
    out.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_reach_only_their_own_buckets_within_their_keys_limits() {
    let cluster = Cluster::start(6, 2).unwrap();
    let admin = cluster.client(0);
    let alice_key = create_user(&cluster, "alice");
    let bob_key = create_user(&cluster, "bob");
    // Keys are cluster-wide: alice works through gateway 0, bob through gateway 1.
    let alice = client_of(&cluster, 0, &alice_key);
    let bob = client_of(&cluster, 1, &bob_key);

    alice
        .create_bucket()
        .bucket("alice-data")
        .send()
        .await
        .unwrap();
    bob.create_bucket().bucket("bob-data").send().await.unwrap();
    for (c, b, k) in [
        (&alice, "alice-data", "report.csv"),
        (&bob, "bob-data", "own"),
    ] {
        c.put_object()
            .bucket(b)
            .key(k)
            .body(ByteStream::from_static(b"secret rows"))
            .send()
            .await
            .unwrap();
    }
    let upload = alice
        .create_multipart_upload()
        .bucket("alice-data")
        .key("report.csv")
        .send()
        .await
        .unwrap();
    let upload = upload.upload_id().unwrap().to_string();

    // Every operation of bob on alice's bucket: 403 AccessDenied.
    let mut wrong = Vec::new();
    for (op, call) in every_operation(&bob, "alice-data", "report.csv", &upload, "bob-data") {
        let got = call.await;
        // A HEAD response has no body to carry the code.
        let code_ok = got.0 == "AccessDenied" || (op.starts_with("Head") && got.0 == "<none>");
        if !(code_ok && got.1 == 403) {
            wrong.push(format!("{op}: {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "bob reached alice's bucket: {wrong:#?}");
    let taken = bob.create_bucket().bucket("alice-data").send().await;
    assert_eq!(outcome(taken), ("BucketAlreadyExists".to_string(), 409));
    // Nothing of alice's changed.
    let body = alice
        .get_object()
        .bucket("alice-data")
        .key("report.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &body.body.collect().await.unwrap().into_bytes()[..],
        b"secret rows"
    );
    let listed = alice
        .list_objects_v2()
        .bucket("alice-data")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1, "bob planted or deleted objects");

    // ListBuckets: each user its own, the administrator every bucket.
    assert_eq!(bucket_names(&alice).await, ["alice-data"]);
    assert_eq!(bucket_names(&bob).await, ["bob-data"]);
    assert_eq!(bucket_names(&admin).await, ["alice-data", "bob-data"]);

    // The owner does all of it on its own bucket (the same list, as alice).
    let mut refused = Vec::new();
    for (op, call) in every_operation(&alice, "alice-data", "report.csv", &upload, "alice-data") {
        let (code, status) = call.await;
        if code == "AccessDenied" || status == 403 {
            refused.push(format!("{op}: {code}"));
        }
    }
    assert!(refused.is_empty(), "the owner was refused: {refused:#?}");
    alice
        .put_object()
        .bucket("alice-data")
        .key("report.csv")
        .body(ByteStream::from_static(b"secret rows"))
        .send()
        .await
        .unwrap();

    // Anonymous requests and presigned URLs.
    let endpoint = &cluster.info.s3_endpoints[0];
    alice
        .put_object()
        .bucket("alice-data")
        .key("p")
        .body(ByteStream::from_static(b"presigned"))
        .send()
        .await
        .unwrap();
    let (status, body) = raw(&format!("{endpoint}/alice-data/p"), "GET");
    assert_eq!(status, 403, "anonymous GET: {body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert_eq!(
        raw(&format!("{endpoint}/"), "GET").0,
        403,
        "anonymous ListBuckets"
    );
    let presign = |secs| PresigningConfig::expires_in(Duration::from_secs(secs)).unwrap();
    let url = alice
        .get_object()
        .bucket("alice-data")
        .key("p")
        .presigned(presign(60))
        .await
        .unwrap();
    assert_eq!(raw(url.uri(), "GET"), (200, "presigned".to_string()));
    let by_bob = bob
        .get_object()
        .bucket("alice-data")
        .key("p")
        .presigned(presign(60))
        .await
        .unwrap();
    assert_eq!(
        raw(by_bob.uri(), "GET").0,
        403,
        "bob's presigned URL reached alice's object"
    );
    let short = alice
        .get_object()
        .bucket("alice-data")
        .key("p")
        .presigned(presign(3))
        .await
        .unwrap();
    assert_eq!(raw(short.uri(), "GET").0, 200, "refused before it expired");
    eventually(Duration::from_secs(15), || async {
        raw(short.uri(), "GET").0 == 403
    })
    .await;

    // A key scoped to a prefix, and a read-only key.
    let scoped = parse_key(
        &cluster
            .admin(&[
                "key",
                "create",
                "--user",
                "alice",
                "--prefix",
                "alice-data/reports/",
                "--json",
            ])
            .unwrap(),
    );
    let scoped = client_of(&cluster, 1, &scoped);
    let put = |c: &aws_sdk_s3::Client, k: &str| {
        c.put_object()
            .bucket("alice-data")
            .key(k)
            .body(ByteStream::from_static(b"r"))
            .send()
    };
    assert_eq!(outcome(put(&scoped, "reports/2026.csv").await).0, "ok");
    assert_eq!(outcome(put(&scoped, "other.csv").await).0, "AccessDenied");
    assert_eq!(
        outcome(
            scoped
                .get_object()
                .bucket("alice-data")
                .key("report.csv")
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    assert_eq!(
        outcome(
            scoped
                .list_objects_v2()
                .bucket("alice-data")
                .prefix("reports/")
                .send()
                .await
        )
        .0,
        "ok"
    );
    assert_eq!(
        outcome(scoped.list_objects_v2().bucket("alice-data").send().await).0,
        "AccessDenied"
    );
    assert_eq!(bucket_names(&scoped).await, ["alice-data"]);
    let read_only = parse_key(
        &cluster
            .admin(&["key", "create", "--user", "alice", "--read-only", "--json"])
            .unwrap(),
    );
    let ro = client_of(&cluster, 0, &read_only);
    assert_eq!(
        outcome(
            ro.get_object()
                .bucket("alice-data")
                .key("report.csv")
                .send()
                .await
        )
        .0,
        "ok"
    );
    assert_eq!(outcome(put(&ro, "x").await).0, "AccessDenied");
    assert_eq!(
        outcome(
            ro.delete_object()
                .bucket("alice-data")
                .key("report.csv")
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    assert_eq!(
        outcome(ro.create_bucket().bucket("alice-more").send().await).0,
        "AccessDenied"
    );

    // Disabled, enabled, deleted and expiring keys, seen by both gateways.
    let keys = cluster
        .admin(&["key", "list", "--user", "alice", "--json"])
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{keys}");
    assert!(
        !keys.contains(&alice_key.secret_key),
        "key list shows secrets"
    );
    cluster
        .admin(&[
            "key",
            "disable",
            "--user",
            "alice",
            "--access-key",
            &read_only.access_key,
        ])
        .unwrap();
    let ro_on_1 = client_of(&cluster, 1, &read_only);
    for c in [&ro, &ro_on_1] {
        eventually(Duration::from_secs(20), || async {
            outcome(c.get_bucket_location().bucket("alice-data").send().await).0
                == "InvalidAccessKeyId"
        })
        .await;
    }
    cluster
        .admin(&[
            "key",
            "enable",
            "--user",
            "alice",
            "--access-key",
            &read_only.access_key,
        ])
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        ro.head_bucket().bucket("alice-data").send().await.is_ok()
    })
    .await;
    cluster
        .admin(&[
            "key",
            "delete",
            "--user",
            "alice",
            "--access-key",
            &read_only.access_key,
        ])
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        outcome(
            ro_on_1
                .get_bucket_location()
                .bucket("alice-data")
                .send()
                .await,
        )
        .0 == "InvalidAccessKeyId"
    })
    .await;
    let expiring = parse_key(
        &cluster
            .admin(&[
                "key",
                "create",
                "--user",
                "alice",
                "--expires-in-secs",
                "3",
                "--json",
            ])
            .unwrap(),
    );
    let exp = client_of(&cluster, 0, &expiring);
    assert_eq!(
        outcome(exp.head_bucket().bucket("alice-data").send().await).0,
        "ok"
    );
    eventually(Duration::from_secs(20), || async {
        outcome(exp.get_bucket_location().bucket("alice-data").send().await).0
            == "InvalidAccessKeyId"
    })
    .await;

    // A user who owns buckets cannot be deleted; one who owns none can, with its keys.
    assert!(cluster
        .admin(&["user", "delete", "--name", "alice"])
        .is_err());
    let carol = create_user(&cluster, "carol");
    assert!(
        cluster
            .admin(&["user", "create", "--name", "carol"])
            .is_err(),
        "a user created twice"
    );
    assert!(
        cluster
            .admin(&["user", "create", "--name", "admin"])
            .is_err(),
        "a user took the administrator's name"
    );
    let users = cluster.admin(&["user", "list"]).unwrap();
    assert!(
        ["alice", "bob", "carol"].iter().all(|u| users.contains(u)),
        "{users}"
    );
    cluster
        .admin(&["user", "delete", "--name", "carol"])
        .unwrap();
    let carol = client_of(&cluster, 1, &carol);
    eventually(Duration::from_secs(20), || async {
        outcome(carol.list_buckets().send().await).0 == "InvalidAccessKeyId"
    })
    .await;
}

async fn get_code(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    outcome(c.get_object().bucket(bucket).key(key).send().await).0
}

async fn put_policy(c: &aws_sdk_s3::Client, bucket: &str, policy: serde_json::Value) -> String {
    outcome(
        c.put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send()
            .await,
    )
    .0
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_and_acls_grant_what_the_owner_allows_and_nothing_more() {
    let cluster = Cluster::start(6, 1).unwrap();
    let alice = client_of(&cluster, 0, &create_user(&cluster, "alice"));
    let bob = client_of(&cluster, 0, &create_user(&cluster, "bob"));
    let carol = client_of(&cluster, 0, &create_user(&cluster, "carol"));
    let endpoint = cluster.info.s3_endpoints[0].clone();
    alice.create_bucket().bucket("shared").send().await.unwrap();
    for key in ["public/a.csv", "private/b.csv", "tagged/c.csv"] {
        let put = alice
            .put_object()
            .bucket("shared")
            .key(key)
            .body(ByteStream::from_static(b"rows"));
        let put = if key.starts_with("tagged") {
            put.tagging("classification=public")
        } else {
            put
        };
        put.send().await.unwrap();
    }
    assert_eq!(
        get_code(&bob, "shared", "public/a.csv").await,
        "AccessDenied"
    );

    // A grant to bob of reads under public/ and listings of that prefix only.
    let grant = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::000000000000:user/bob"]},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/public/*"},
            {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:ListBucket",
             "Resource": "arn:aws:s3:::shared", "Condition": {"StringLike": {"s3:prefix": "public/*"}}},
            {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::shared/*",
             "Condition": {"StringEquals": {"s3:ExistingObjectTag/classification": "public"}}}
        ]
    });
    assert_eq!(put_policy(&alice, "shared", grant.clone()).await, "ok");
    assert_eq!(
        outcome(
            bob.put_bucket_policy()
                .bucket("shared")
                .policy(grant.to_string())
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    assert_eq!(
        outcome(bob.get_bucket_policy().bucket("shared").send().await).0,
        "AccessDenied"
    );
    let stored = alice
        .get_bucket_policy()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(stored.policy().unwrap()).unwrap(),
        grant
    );
    assert_eq!(get_code(&bob, "shared", "public/a.csv").await, "ok");
    assert_eq!(
        get_code(&bob, "shared", "private/b.csv").await,
        "AccessDenied"
    );
    assert_eq!(
        get_code(&bob, "shared", "tagged/c.csv").await,
        "ok",
        "s3:ExistingObjectTag"
    );
    assert_eq!(
        outcome(
            bob.list_objects_v2()
                .bucket("shared")
                .prefix("public/")
                .send()
                .await
        )
        .0,
        "ok"
    );
    assert_eq!(
        outcome(bob.list_objects_v2().bucket("shared").send().await).0,
        "AccessDenied"
    );
    assert_eq!(
        outcome(
            bob.put_object()
                .bucket("shared")
                .key("public/x")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    assert_eq!(
        get_code(&carol, "shared", "public/a.csv").await,
        "AccessDenied"
    );

    // A source address outside the allowed range; an explicit Deny that binds even the owner.
    let by_ip = serde_json::json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::shared/*"}
    ]});
    assert_eq!(put_policy(&alice, "shared", by_ip).await, "ok");
    assert_eq!(
        get_code(&bob, "shared", "public/a.csv").await,
        "AccessDenied"
    );
    assert_eq!(
        outcome(
            alice
                .delete_object()
                .bucket("shared")
                .key("public/a.csv")
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    let bad = outcome(
        alice
            .put_bucket_policy()
            .bucket("shared")
            .policy("{\"Statement\": [{\"Effect\": \"Maybe\"}]}")
            .send()
            .await,
    );
    assert_eq!(bad, ("MalformedPolicy".to_string(), 400));
    let elsewhere = serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}]});
    assert_eq!(
        put_policy(&alice, "shared", elsewhere).await,
        "MalformedPolicy"
    );

    // Anonymous reads: refused while Block Public Access is on (the default), then allowed by
    // a public policy for public/ only.
    let public = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/public/*"}]});
    assert_eq!(
        put_policy(&alice, "shared", public.clone()).await,
        "AccessDenied",
        "BlockPublicPolicy"
    );
    assert_eq!(
        raw(&format!("{endpoint}/shared/public/a.csv"), "GET").0,
        403
    );
    alice
        .delete_public_access_block()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    let gone = outcome(
        alice
            .get_public_access_block()
            .bucket("shared")
            .send()
            .await,
    );
    assert_eq!(
        gone,
        ("NoSuchPublicAccessBlockConfiguration".to_string(), 404)
    );
    assert_eq!(put_policy(&alice, "shared", public).await, "ok");
    let status = alice
        .get_bucket_policy_status()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.policy_status().and_then(|s| s.is_public()),
        Some(true)
    );
    assert_eq!(
        raw(&format!("{endpoint}/shared/public/a.csv"), "GET"),
        (200, "rows".to_string())
    );
    assert_eq!(
        raw(&format!("{endpoint}/shared/private/b.csv"), "GET").0,
        403
    );
    assert_eq!(raw(&format!("{endpoint}/shared/public/new"), "PUT").0, 403);
    assert_eq!(raw(&format!("{endpoint}/shared?list-type=2"), "GET").0, 403);
    // RestrictPublicBuckets turns the public grant off again.
    let restrict = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .restrict_public_buckets(true)
        .build();
    alice
        .put_public_access_block()
        .bucket("shared")
        .public_access_block_configuration(restrict)
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw(&format!("{endpoint}/shared/public/a.csv"), "GET").0,
        403
    );
    alice
        .delete_bucket_policy()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(
        outcome(alice.get_bucket_policy().bucket("shared").send().await),
        ("NoSuchBucketPolicy".to_string(), 404)
    );

    // ACLs: refused while Object Ownership is BucketOwnerEnforced; once ACLs are on, a READ
    // grant on the bucket lets carol list, not read objects.
    let read_for_carol = || {
        alice
            .put_bucket_acl()
            .bucket("shared")
            .grant_read("id=\"carol\"")
            .send()
    };
    assert_eq!(
        outcome(read_for_carol().await),
        ("AccessControlListNotSupported".to_string(), 400)
    );
    let rule = aws_sdk_s3::types::OwnershipControlsRule::builder()
        .object_ownership(aws_sdk_s3::types::ObjectOwnership::BucketOwnerPreferred)
        .build()
        .unwrap();
    let controls = aws_sdk_s3::types::OwnershipControls::builder()
        .rules(rule)
        .build()
        .unwrap();
    alice
        .put_bucket_ownership_controls()
        .bucket("shared")
        .ownership_controls(controls)
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(read_for_carol().await).0, "ok");
    let acl = alice
        .get_bucket_acl()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    let grantees: Vec<_> = acl
        .grants()
        .iter()
        .map(|g| {
            (
                g.grantee().and_then(|e| e.id()).unwrap_or(""),
                g.permission().map(|p| p.as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(grantees, [("alice", "FULL_CONTROL"), ("carol", "READ")]);
    assert_eq!(
        outcome(carol.list_objects_v2().bucket("shared").send().await).0,
        "ok"
    );
    assert_eq!(
        get_code(&carol, "shared", "public/a.csv").await,
        "AccessDenied"
    );
    assert_eq!(
        get_code(&bob, "shared", "public/a.csv").await,
        "AccessDenied"
    );
    assert_eq!(
        outcome(carol.get_bucket_acl().bucket("shared").send().await).0,
        "AccessDenied"
    );
    // A canned public-read ACL lets anyone list, and IgnorePublicAcls takes it back.
    alice
        .delete_public_access_block()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    alice
        .put_bucket_acl()
        .bucket("shared")
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(raw(&format!("{endpoint}/shared?list-type=2"), "GET").0, 200);
    let ignore = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .ignore_public_acls(true)
        .build();
    alice
        .put_public_access_block()
        .bucket("shared")
        .public_access_block_configuration(ignore)
        .send()
        .await
        .unwrap();
    assert_eq!(raw(&format!("{endpoint}/shared?list-type=2"), "GET").0, 403);
}

fn ownership(o: aws_sdk_s3::types::ObjectOwnership) -> aws_sdk_s3::types::OwnershipControls {
    let rule = aws_sdk_s3::types::OwnershipControlsRule::builder()
        .object_ownership(o)
        .build()
        .unwrap();
    aws_sdk_s3::types::OwnershipControls::builder()
        .rules(rule)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn object_acls_grant_one_version_of_one_object() {
    use aws_sdk_s3::types::{ObjectCannedAcl, ObjectOwnership};
    let cluster = Cluster::start(6, 1).unwrap();
    let alice = client_of(&cluster, 0, &create_user(&cluster, "alice"));
    let bob = client_of(&cluster, 0, &create_user(&cluster, "bob"));
    let endpoint = cluster.info.s3_endpoints[0].clone();
    alice.create_bucket().bucket("media").send().await.unwrap();
    for key in ["shared.parquet", "private.parquet"] {
        alice
            .put_object()
            .bucket("media")
            .key(key)
            .body(ByteStream::from_static(b"rows"))
            .send()
            .await
            .unwrap();
    }
    let grant_bob_read = || {
        alice
            .put_object_acl()
            .bucket("media")
            .key("shared.parquet")
            .grant_read("id=\"bob\"")
            .send()
    };

    // ACLs disabled (BucketOwnerEnforced, the default): refused, and bob reads nothing.
    assert_eq!(
        outcome(grant_bob_read().await),
        ("AccessControlListNotSupported".to_string(), 400)
    );
    assert_eq!(
        get_code(&bob, "media", "shared.parquet").await,
        "AccessDenied"
    );
    let put_public = || {
        alice
            .put_object()
            .bucket("media")
            .key("public-at-once.parquet")
            .acl(ObjectCannedAcl::PublicRead)
            .body(ByteStream::from_static(b"rows"))
            .send()
    };
    assert_eq!(
        outcome(put_public().await),
        ("AccessControlListNotSupported".to_string(), 400)
    );
    assert_eq!(
        get_code(&alice, "media", "public-at-once.parquet").await,
        "NoSuchKey",
        "a refused ACL writes nothing"
    );
    assert_eq!(
        outcome(
            alice
                .put_object_acl()
                .bucket("media")
                .key("shared.parquet")
                .acl(ObjectCannedAcl::BucketOwnerFullControl)
                .send()
                .await
        )
        .0,
        "ok"
    );

    // ACLs on: a READ grant lets bob get and head that object, and nothing more.
    alice
        .put_bucket_ownership_controls()
        .bucket("media")
        .ownership_controls(ownership(ObjectOwnership::ObjectWriter))
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(grant_bob_read().await).0, "ok");
    let acl = alice
        .get_object_acl()
        .bucket("media")
        .key("shared.parquet")
        .send()
        .await
        .unwrap();
    let grantees: Vec<_> = acl
        .grants()
        .iter()
        .map(|g| {
            (
                g.grantee().and_then(|e| e.id()).unwrap_or("").to_string(),
                g.permission().map(|p| p.as_str()).unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        grantees,
        [
            ("alice".to_string(), "FULL_CONTROL".to_string()),
            ("bob".to_string(), "READ".to_string())
        ]
    );
    let got = bob
        .get_object()
        .bucket("media")
        .key("shared.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"rows");
    assert_eq!(
        outcome(
            bob.head_object()
                .bucket("media")
                .key("shared.parquet")
                .send()
                .await
        )
        .0,
        "ok"
    );
    assert_eq!(
        get_code(&bob, "media", "private.parquet").await,
        "AccessDenied"
    );
    assert_eq!(
        outcome(
            bob.put_object()
                .bucket("media")
                .key("shared.parquet")
                .body(ByteStream::from_static(b"overwritten"))
                .send()
                .await
        )
        .0,
        "AccessDenied"
    );
    for denied in [
        outcome(
            bob.get_object_acl()
                .bucket("media")
                .key("shared.parquet")
                .send()
                .await,
        )
        .0,
        outcome(
            bob.put_object_acl()
                .bucket("media")
                .key("shared.parquet")
                .grant_read("id=\"bob\"")
                .send()
                .await,
        )
        .0,
        outcome(
            bob.delete_object()
                .bucket("media")
                .key("shared.parquet")
                .send()
                .await,
        )
        .0,
        outcome(bob.list_objects_v2().bucket("media").send().await).0,
    ] {
        assert_eq!(denied, "AccessDenied");
    }
    assert_eq!(
        raw(&format!("{endpoint}/media/shared.parquet"), "GET").0,
        403
    );

    // public-read: blocked while Block Public Access blocks public ACLs; once set, anyone
    // reads that object; IgnorePublicAcls takes it back.
    let public = || {
        alice
            .put_object_acl()
            .bucket("media")
            .key("shared.parquet")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
    };
    assert_eq!(outcome(public().await), ("AccessDenied".to_string(), 403));
    alice
        .delete_public_access_block()
        .bucket("media")
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(public().await).0, "ok");
    assert_eq!(
        raw(&format!("{endpoint}/media/shared.parquet"), "GET").0,
        200
    );
    assert_eq!(outcome(put_public().await).0, "ok");
    assert_eq!(
        raw(&format!("{endpoint}/media/public-at-once.parquet"), "GET").0,
        200
    );
    assert_eq!(
        raw(&format!("{endpoint}/media/private.parquet"), "GET").0,
        403
    );
    assert_eq!(get_code(&bob, "media", "shared.parquet").await, "ok");
    let ignore = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .ignore_public_acls(true)
        .build();
    alice
        .put_public_access_block()
        .bucket("media")
        .public_access_block_configuration(ignore)
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw(&format!("{endpoint}/media/shared.parquet"), "GET").0,
        403
    );
    alice
        .delete_public_access_block()
        .bucket("media")
        .send()
        .await
        .unwrap();

    // A new version starts private, as in S3; an explicit Deny beats the ACL.
    alice
        .put_object()
        .bucket("media")
        .key("shared.parquet")
        .body(ByteStream::from_static(b"rows v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw(&format!("{endpoint}/media/shared.parquet"), "GET").0,
        403
    );
    assert_eq!(
        get_code(&bob, "media", "shared.parquet").await,
        "AccessDenied"
    );
    assert_eq!(outcome(grant_bob_read().await).0, "ok");
    assert_eq!(get_code(&bob, "media", "shared.parquet").await, "ok");
    let deny = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::media/*"}]});
    assert_eq!(put_policy(&alice, "media", deny).await, "ok");
    assert_eq!(
        get_code(&bob, "media", "shared.parquet").await,
        "AccessDenied"
    );

    // Back to BucketOwnerEnforced: stored object grants stop applying.
    alice
        .delete_bucket_policy()
        .bucket("media")
        .send()
        .await
        .unwrap();
    assert_eq!(get_code(&bob, "media", "shared.parquet").await, "ok");
    alice
        .put_bucket_ownership_controls()
        .bucket("media")
        .ownership_controls(ownership(ObjectOwnership::BucketOwnerEnforced))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get_code(&bob, "media", "shared.parquet").await,
        "AccessDenied"
    );
}
