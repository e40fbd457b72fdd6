//! Lifecycle rules (ADR 0009) through real S3 clients on a 6-node, 2-gateway cluster whose
//! lifecycle "day" is 2 seconds (`[lifecycle] day_secs`): configurations validated and answered
//! as S3 does, then the worker of both gateways applying them: expiration by prefix, tag and
//! size, noncurrent versions beyond the newest ones kept, lone delete markers removed, and
//! incomplete multipart uploads aborted, while everything no rule selects stays byte for byte.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator,
    LifecycleRuleFilter, NoncurrentVersionExpiration, Tag, Transition, TransitionStorageClass,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use dmpstore_tests::{get_bytes, put_bytes, test_data, Cluster};
use std::time::Duration;

/// A lifecycle day of 2 s and a pass every second, so rules act within seconds.
const FAST_DAYS: &str = "[lifecycle]\nday_secs = 2\npass_interval_secs = 1\n";
/// How long a test waits for the worker to reach the expected state.
const PATIENCE: Duration = Duration::from_secs(90);

/// Polls `cond` until it holds; fails the test after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not reached within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn code<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("<none>").to_string(), status)
}

fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
}

fn prefix(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

fn expire_days(days: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(days).build()
}

async fn put_rules(
    c: &Client,
    bucket: &str,
    rules: Vec<LifecycleRule>,
) -> Result<(), (String, u16)> {
    c.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .expect("rules"),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(code)
}

async fn keys(c: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// `(version id, is delete marker)` of every version of `key`, newest first.
async fn versions(c: &Client, bucket: &str, key: &str) -> Vec<(String, bool)> {
    let out = c
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .expect("list versions");
    let mut all: Vec<(String, bool, i64)> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| {
            let at = v.last_modified().map_or(0, |t| t.to_millis().unwrap_or(0));
            (v.version_id().unwrap_or("").to_string(), false, at)
        })
        .chain(
            out.delete_markers()
                .iter()
                .filter(|m| m.key() == Some(key))
                .map(|m| {
                    let at = m.last_modified().map_or(0, |t| t.to_millis().unwrap_or(0));
                    (m.version_id().unwrap_or("").to_string(), true, at)
                }),
        )
        .collect();
    all.sort_by_key(|v| std::cmp::Reverse(v.2));
    all.into_iter()
        .map(|(id, marker, _)| (id, marker))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configurations_are_validated_stored_and_answered_as_s3_does() {
    let cluster = Cluster::start_with(6, 2, &["--gateway-toml", FAST_DAYS]).unwrap();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("rules").send().await.unwrap();

    let missing = c0
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .map_err(code)
        .expect_err("no rules yet");
    assert_eq!(missing, ("NoSuchLifecycleConfiguration".to_string(), 404));

    let rules = vec![
        rule("logs")
            .filter(prefix("logs/"))
            .expiration(expire_days(30))
            .build()
            .unwrap(),
        rule("tmp-uploads")
            .filter(prefix("tmp/"))
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .unwrap(),
        rule("old-versions")
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("data/")
                            .tags(
                                Tag::builder()
                                    .key("class")
                                    .value("scratch")
                                    .build()
                                    .unwrap(),
                            )
                            .object_size_greater_than(1024)
                            .build(),
                    )
                    .build(),
            )
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(7)
                    .newer_noncurrent_versions(2)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&c0, "rules", rules.clone())
        .await
        .expect("valid rules");
    // Read back through the other gateway: the configuration as it was put.
    let got = c1
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .expect("rules stored");
    assert_eq!(got.rules(), rules.as_slice());

    // What S3 refuses, with S3's code and status; the stored rules stay as they were.
    let refused = [
        (
            vec![rule("zero")
                .expiration(expire_days(0))
                .filter(prefix(""))
                .build()
                .unwrap()],
            ("InvalidArgument", 400),
        ),
        (
            vec![rule("none").filter(prefix("x/")).build().unwrap()],
            ("InvalidRequest", 400),
        ),
        (
            vec![
                rule("same")
                    .expiration(expire_days(1))
                    .filter(prefix(""))
                    .build()
                    .unwrap(),
                rule("same")
                    .expiration(expire_days(2))
                    .filter(prefix(""))
                    .build()
                    .unwrap(),
            ],
            ("InvalidArgument", 400),
        ),
        (
            vec![rule("tier")
                .filter(prefix(""))
                .transitions(
                    Transition::builder()
                        .days(30)
                        .storage_class(TransitionStorageClass::Glacier)
                        .build(),
                )
                .build()
                .unwrap()],
            ("NotImplemented", 501),
        ),
    ];
    for (bad, (want_code, want_status)) in refused {
        let e = put_rules(&c1, "rules", bad.clone())
            .await
            .expect_err("refused");
        assert_eq!((e.0.as_str(), e.1), (want_code, want_status), "{bad:?}");
    }
    let still = c0
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .unwrap();
    assert_eq!(still.rules(), rules.as_slice());

    let e = put_rules(&c0, "no-such-bucket", rules.clone())
        .await
        .expect_err("no bucket");
    assert_eq!(e, ("NoSuchBucket".to_string(), 404));

    // A user who does not own the bucket may neither read nor change its rules.
    let (ak, sk) = create_user(&cluster, "stranger");
    let stranger = cluster.client_as(0, &ak, &sk);
    let e = put_rules(&stranger, "rules", rules.clone())
        .await
        .expect_err("not the owner");
    assert_eq!(e, ("AccessDenied".to_string(), 403));

    c1.delete_bucket_lifecycle()
        .bucket("rules")
        .send()
        .await
        .unwrap();
    let gone = c0
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .map_err(code)
        .expect_err("deleted");
    assert_eq!(gone.0, "NoSuchLifecycleConfiguration");

    // A bucket deleted and created again does not inherit its predecessor's rules.
    put_rules(&c0, "rules", rules.clone()).await.unwrap();
    c0.delete_bucket().bucket("rules").send().await.unwrap();
    c0.create_bucket().bucket("rules").send().await.unwrap();
    let fresh = c1
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .map_err(code)
        .expect_err("a new bucket has no rules");
    assert_eq!(fresh.0, "NoSuchLifecycleConfiguration");
    cluster.assert_no_error_logs();
}

fn create_user(cluster: &Cluster, name: &str) -> (String, String) {
    let out = cluster
        .admin(&["user", "create", "--name", name, "--json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["access_key"].as_str().unwrap().to_string(),
        v["secret_key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_expire_what_they_select_and_nothing_else() {
    let cluster = Cluster::start_with(6, 2, &["--gateway-toml", FAST_DAYS]).unwrap();
    let c = cluster.client(0);
    let b = "events";
    c.create_bucket().bucket(b).send().await.unwrap();

    // Bodies of every kind of size: inline, one stripe, several stripes.
    let sizes = [0usize, 1, 3000, 70_000, 1_100_000];
    let mut kept = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        put_bytes(
            &c,
            b,
            &format!("logs/2026/{i}"),
            &test_data(i as u64, *size),
        )
        .await
        .unwrap();
        let data = test_data(100 + i as u64, *size);
        put_bytes(&c, b, &format!("segments/{i}"), &data)
            .await
            .unwrap();
        kept.push((format!("segments/{i}"), data));
    }
    // By tag: only the tagged one under scratch/ goes.
    for (key, tagging) in [
        ("scratch/tagged", Some("temp=yes")),
        ("scratch/plain", None),
    ] {
        let data = test_data(7, 2000);
        let mut put = c.put_object().bucket(b).key(key).body(data.clone().into());
        if let Some(t) = tagging {
            put = put.tagging(t);
        } else {
            kept.push((key.to_string(), data));
        }
        put.send().await.unwrap();
    }
    // By size: only the one above 10 000 bytes under big/ goes.
    put_bytes(&c, b, "big/large", &test_data(8, 20_000))
        .await
        .unwrap();
    let small = test_data(9, 500);
    put_bytes(&c, b, "big/small", &small).await.unwrap();
    kept.push(("big/small".to_string(), small));
    // An upload a failed task left behind, and one outside the rule's prefix.
    let stale = c
        .create_multipart_upload()
        .bucket(b)
        .key("tmp/part-0001")
        .send()
        .await
        .unwrap();
    c.upload_part()
        .bucket(b)
        .key("tmp/part-0001")
        .upload_id(stale.upload_id().unwrap())
        .part_number(1)
        .body(test_data(10, 5000).into())
        .send()
        .await
        .unwrap();
    let other = c
        .create_multipart_upload()
        .bucket(b)
        .key("segments/in-progress")
        .send()
        .await
        .unwrap();

    let rules = vec![
        rule("logs")
            .filter(prefix("logs/"))
            .expiration(expire_days(1))
            .build()
            .unwrap(),
        rule("scratch")
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("scratch/")
                            .tags(Tag::builder().key("temp").value("yes").build().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .expiration(expire_days(1))
            .build()
            .unwrap(),
        rule("big")
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("big/")
                            .object_size_greater_than(10_000)
                            .build(),
                    )
                    .build(),
            )
            .expiration(expire_days(1))
            .build()
            .unwrap(),
        rule("uploads")
            .filter(prefix("tmp/"))
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .unwrap(),
        // Disabled rules do nothing.
        LifecycleRule::builder()
            .id("off")
            .status(ExpirationStatus::Disabled)
            .filter(prefix("segments/"))
            .expiration(expire_days(1))
            .build()
            .unwrap(),
    ];
    put_rules(&c, b, rules).await.unwrap();

    until("the worker expires what the rules select", || {
        let c = c.clone();
        async move {
            let uploads = c.list_multipart_uploads().bucket(b).send().await.unwrap();
            keys(&c, b, "logs/").await.is_empty()
                && keys(&c, b, "scratch/").await == ["scratch/plain"]
                && keys(&c, b, "big/").await == ["big/small"]
                && uploads.uploads().len() == 1
        }
    })
    .await;

    let uploads = c.list_multipart_uploads().bucket(b).send().await.unwrap();
    assert_eq!(uploads.uploads()[0].upload_id(), other.upload_id());
    for (key, data) in &kept {
        assert_eq!(
            &get_bytes(&c, b, key).await.unwrap(),
            data,
            "{key} kept intact"
        );
    }
    let status = cluster.admin_status().unwrap();
    let lc = status["lifecycle"]
        .as_array()
        .expect("status lists lifecycle");
    let events = lc
        .iter()
        .find(|e| e["bucket"] == b)
        .expect("bucket in status");
    assert_eq!(events["expired"].as_u64(), Some(sizes.len() as u64 + 2));
    assert_eq!(events["uploads_aborted"].as_u64(), Some(1));
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_buckets_keep_the_newest_versions_and_lose_no_data() {
    let cluster = Cluster::start_with(6, 2, &["--gateway-toml", FAST_DAYS]).unwrap();
    let c = cluster.client(1);
    let b = "profiles";
    c.create_bucket().bucket(b).send().await.unwrap();
    c.put_bucket_versioning()
        .bucket(b)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let body = |i: u64| test_data(i, 1000 + i as usize * 40_000);
    for i in 1..=4 {
        put_bytes(&c, b, "nc/a", &body(i)).await.unwrap();
    }
    put_bytes(&c, b, "exp/x", &body(5)).await.unwrap();
    put_bytes(&c, b, "dm/k", &body(6)).await.unwrap();
    c.delete_object()
        .bucket(b)
        .key("dm/k")
        .send()
        .await
        .unwrap();
    let before_nc = versions(&c, b, "nc/a").await;
    let before_exp = versions(&c, b, "exp/x").await;
    assert_eq!(before_nc.len(), 4);

    let rules = vec![
        rule("noncurrent")
            .filter(prefix("nc/"))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .newer_noncurrent_versions(1)
                    .build(),
            )
            .build()
            .unwrap(),
        rule("expire")
            .filter(prefix("exp/"))
            .expiration(expire_days(1))
            .build()
            .unwrap(),
        rule("markers")
            .filter(prefix("dm/"))
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&c, b, rules).await.unwrap();

    until("the worker reaches the rules' end state", || {
        let c = c.clone();
        async move {
            versions(&c, b, "nc/a").await.len() == 2
                && versions(&c, b, "exp/x").await.len() == 2
                && versions(&c, b, "dm/k").await.is_empty()
        }
    })
    .await;

    // nc/a: the current version and the newest noncurrent one, bytes intact.
    let nc = versions(&c, b, "nc/a").await;
    assert_eq!(nc, before_nc[..2].to_vec());
    assert_eq!(get_bytes(&c, b, "nc/a").await.unwrap(), body(4));
    let v3 = c
        .get_object()
        .bucket(b)
        .key("nc/a")
        .version_id(&nc[1].0)
        .send()
        .await
        .unwrap();
    assert_eq!(
        v3.body.collect().await.unwrap().into_bytes().to_vec(),
        body(3)
    );
    // exp/x: hidden under a delete marker, its data still there by version id.
    let exp = versions(&c, b, "exp/x").await;
    assert!(exp[0].1, "a delete marker is current: {exp:?}");
    assert_eq!(exp[1], before_exp[0]);
    let e = c
        .get_object()
        .bucket(b)
        .key("exp/x")
        .send()
        .await
        .map_err(code)
        .unwrap_err();
    assert_eq!(e.0, "NoSuchKey");
    let kept = c
        .get_object()
        .bucket(b)
        .key("exp/x")
        .version_id(&exp[1].0)
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.body.collect().await.unwrap().into_bytes().to_vec(),
        body(5)
    );
    cluster.assert_no_error_logs();
}

/// One bucket's lifecycle line of `gateway admin status --json`.
fn progress_of(cluster: &Cluster, bucket: &str) -> Option<serde_json::Value> {
    let status = cluster.admin_status().ok()?;
    status["lifecycle"]
        .as_array()?
        .iter()
        .find(|e| e["bucket"] == bucket)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_resumes_from_its_checkpoint_after_its_gateway_dies() {
    // A slow pass (4 expirations a second), one pass only.
    let slow = "[lifecycle]\npass_interval_secs = 3600\nmax_actions_per_sec = 4\n";
    let cluster = Cluster::start_with(6, 2, &["--gateway-toml", slow]).unwrap();
    let c = cluster.client(0);
    let b = "spark-tmp";
    c.create_bucket().bucket(b).send().await.unwrap();
    const N: u64 = 48;
    for i in 0..N {
        put_bytes(&c, b, &format!("logs/{i:03}"), &test_data(i, 100))
            .await
            .unwrap();
    }
    // Expired by a date already past: every object is due at once.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let today_ms = now_ms / 86_400_000 * 86_400_000;
    let date = aws_sdk_s3::primitives::DateTime::from_millis(today_ms as i64);
    let by_date = rule("by-date")
        .filter(prefix("logs/"))
        .expiration(LifecycleExpiration::builder().date(date).build())
        .build()
        .unwrap();
    put_rules(&c, b, vec![by_date]).await.unwrap();

    // A checkpoint mid-pass, then the gateway running the pass dies.
    until("a checkpoint of the pass under way", || async {
        progress_of(&cluster, b).is_some_and(|p| p["expired"].as_u64().unwrap_or(0) > 0)
    })
    .await;
    let before = progress_of(&cluster, b).unwrap();
    assert_eq!(before["passes"], 0, "still in its first pass: {before}");
    let holder = (0..2)
        .find(|g| {
            cluster
                .gateway_log(*g)
                .lines()
                .any(|l| l.contains("lifecycle: pass started") && l.contains(b))
        })
        .expect("a gateway started the pass");
    cluster.kill_gateway(holder).unwrap();

    // The other gateway takes the pass over once the dead one's lease runs out, from the
    // checkpoint: it scans each key once in all (a restart from the first key would scan the
    // keys before the checkpoint twice).
    let survivor = cluster.client(1 - holder);
    let patience = Duration::from_secs(180);
    let start = std::time::Instant::now();
    while progress_of(&cluster, b).is_none_or(|p| p["passes"] != 1) {
        assert!(
            start.elapsed() < patience,
            "the pass did not finish: {:?}",
            progress_of(&cluster, b)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = progress_of(&cluster, b).unwrap();
    assert!(
        keys(&survivor, b, "logs/").await.is_empty(),
        "every object expired"
    );
    assert_eq!(
        after["scanned"].as_u64(),
        Some(N),
        "resumed, not restarted: {after}"
    );
    let (e0, e1) = (
        before["expired"].as_u64().unwrap(),
        after["expired"].as_u64().unwrap(),
    );
    assert!(
        e0 <= e1 && e1 <= N,
        "expired {e0} at the checkpoint, {e1} in all"
    );
}
