//! Races where S3 requires one outcome (ADR 0004), driven through two real gateways at once:
//! concurrent and retried CompleteMultipartUpload, Abort racing Complete, a part uploaded
//! again while its upload completes, and concurrent PUTs in a Suspended bucket. After each
//! race the surviving object must read back whole for several replaced-data grace periods
//! (the cluster runs with a 1 s grace), so any data freed by the loser is caught.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use dmpstore_tests::{get_bytes, test_data, Cluster};
use std::time::{Duration, Instant};

const GRACE_SECS: u64 = 1;
const PART: usize = 5 * 1024 * 1024;

fn cluster() -> Cluster {
    Cluster::start_with(6, 2, &["--replaced-data-grace", &GRACE_SECS.to_string()]).unwrap()
}

/// Reads `key` again and again for four grace periods; every read must return `expected`.
async fn stays_intact(c: &Client, bucket: &str, key: &str, expected: &[u8]) {
    let window = Duration::from_secs(4 * GRACE_SECS + 2);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while start.elapsed() < window {
        tick.tick().await;
        let head = c
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(expected.len() as i64));
        let body = get_bytes(c, bucket, key).await.unwrap();
        assert!(
            body == expected,
            "{key}: the body changed after {:?}",
            start.elapsed()
        );
    }
}

async fn upload_part(c: &Client, bucket: &str, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    c.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string()
}

async fn start_upload(c: &Client, bucket: &str, key: &str) -> String {
    c.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string()
}

fn part_list(etags: &[(i32, String)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            etags
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                .collect(),
        ))
        .build()
}

/// Complete's outcome: its ETag, or the S3 error code.
async fn complete(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: CompletedMultipartUpload,
) -> Result<String, String> {
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .map(|o| o.e_tag().unwrap_or_default().to_string())
        .map_err(|e| e.code().unwrap_or("<none>").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completes_give_one_object_and_drop_nothing_it_uses() {
    let cluster = cluster();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("mpu").send().await.unwrap();
    let (a, b) = (test_data(1, PART), test_data(2, PART));
    let id = start_upload(&c0, "mpu", "obj").await;
    let etags = vec![
        (1, upload_part(&c0, "mpu", "obj", &id, 1, &a).await),
        (2, upload_part(&c1, "mpu", "obj", &id, 2, &b).await),
    ];
    let outcomes = futures::future::join_all(
        [&c0, &c1, &c0]
            .into_iter()
            .map(|c| complete(c, "mpu", "obj", &id, part_list(&etags))),
    )
    .await;
    let ok: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert!(!ok.is_empty(), "no Complete succeeded: {outcomes:?}");
    assert!(
        ok.iter().all(|e| *e == ok[0]),
        "one object, one ETag: {outcomes:?}"
    );
    for o in &outcomes {
        if let Err(code) = o {
            assert!(
                code == "NoSuchUpload" || code == "ConditionalRequestConflict",
                "a losing Complete says why: {outcomes:?}"
            );
        }
    }
    let whole = [a, b].concat();
    stays_intact(&c1, "mpu", "obj", &whole).await;
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_racing_complete_leaves_the_whole_object_or_an_aborted_upload() {
    let cluster = cluster();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("mpu").send().await.unwrap();
    let mut completed = 0;
    for round in 0..4u64 {
        let key = format!("obj-{round}");
        let (a, b) = (test_data(10 + round, PART), test_data(20 + round, 1000));
        let id = start_upload(&c0, "mpu", &key).await;
        let etags = vec![
            (1, upload_part(&c0, "mpu", &key, &id, 1, &a).await),
            (2, upload_part(&c1, "mpu", &key, &id, 2, &b).await),
        ];
        let abort = c1
            .abort_multipart_upload()
            .bucket("mpu")
            .key(&key)
            .upload_id(&id)
            .send();
        let (done, aborted) =
            tokio::join!(complete(&c0, "mpu", &key, &id, part_list(&etags)), abort);
        match done {
            Ok(_) => {
                completed += 1;
                stays_intact(&c0, "mpu", &key, &[a, b].concat()).await;
            }
            Err(code) => {
                assert!(
                    aborted.is_ok(),
                    "neither Complete ({code}) nor Abort succeeded"
                );
                let head = c0.head_object().bucket("mpu").key(&key).send().await;
                assert!(head.is_err(), "an aborted upload leaves no object");
            }
        }
        let uploads = c1
            .list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap();
        assert!(
            uploads.uploads().is_empty(),
            "the upload is over either way"
        );
    }
    println!("abort racing complete: {completed} of 4 rounds completed");
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_uploaded_again_during_complete_never_frees_the_objects_data() {
    let cluster = cluster();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("mpu").send().await.unwrap();
    for round in 0..3u64 {
        let key = format!("obj-{round}");
        let (a, again, tail) = (
            test_data(30 + round, PART),
            test_data(40 + round, PART),
            test_data(50 + round, 777),
        );
        let id = start_upload(&c0, "mpu", &key).await;
        let etags = vec![
            (1, upload_part(&c0, "mpu", &key, &id, 1, &a).await),
            (2, upload_part(&c0, "mpu", &key, &id, 2, &tail).await),
        ];
        let reupload = c1
            .upload_part()
            .bucket("mpu")
            .key(&key)
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(again.clone()))
            .send();
        let (done, _) = tokio::join!(complete(&c0, "mpu", &key, &id, part_list(&etags)), reupload);
        match done {
            // The completion used the part as listed: its data must stay.
            Ok(_) => stays_intact(&c1, "mpu", &key, &[a, tail].concat()).await,
            // The new part landed first: the listed ETag no longer matches.
            Err(code) => assert_eq!(code, "InvalidPart"),
        }
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_in_a_suspended_bucket_leave_one_readable_null_version() {
    let cluster = cluster();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("susp").send().await.unwrap();
    for status in [
        BucketVersioningStatus::Enabled,
        BucketVersioningStatus::Suspended,
    ] {
        c0.put_bucket_versioning()
            .bucket("susp")
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .unwrap();
    }
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| test_data(60 + i, 300 * 1024)).collect();
    let puts = bodies.iter().enumerate().map(|(i, body)| {
        let c = if i % 2 == 0 { &c0 } else { &c1 };
        c.put_object()
            .bucket("susp")
            .key("k")
            .body(ByteStream::from(body.clone()))
            .send()
    });
    for r in futures::future::join_all(puts).await {
        let out = r.unwrap();
        assert_eq!(out.version_id(), Some("null"));
    }
    let current = get_bytes(&c1, "susp", "k").await.unwrap();
    assert!(
        bodies.contains(&current),
        "the current body is one of the writes"
    );
    let null = c0
        .get_object()
        .bucket("susp")
        .key("k")
        .version_id("null")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(null == current, "the null version is the current one");
    let versions = c0
        .list_object_versions()
        .bucket("susp")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "exactly one null version");
    assert_eq!(versions.versions()[0].version_id(), Some("null"));
    stays_intact(&c0, "susp", "k", &current).await;
    cluster.assert_no_error_logs();
}

/// DeleteBucket racing PUTs through another gateway, round after round with the PUTs started
/// at staggered moments around the deletion. A PUT either fails or lands in a bucket that
/// still exists: if the deletion succeeded, no PUT may have been acknowledged; if it did not,
/// every acknowledged PUT reads back. Then the name is created again and must be empty: no
/// object of the deleted bucket reappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_bucket_racing_puts_never_keeps_or_revives_an_object() {
    let cluster = cluster();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    let body = test_data(80, 64 * 1024);
    let (mut deleted_rounds, mut kept_rounds) = (0, 0);
    c0.create_bucket().bucket("race").send().await.unwrap();
    for round in 0..24u64 {
        let puts = (0..6u64).map(|i| {
            let (c1, body) = (&c1, body.clone());
            async move {
                // Staggered so that some PUTs overlap each phase of the deletion.
                tokio::time::sleep(Duration::from_millis(i * (round % 4 + 1))).await;
                let key = format!("r{round}-k{i}");
                let r = c1
                    .put_object()
                    .bucket("race")
                    .key(&key)
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                (
                    key,
                    r.map_err(|e| e.into_service_error().code().map(str::to_string)),
                )
            }
        });
        let delete = async {
            tokio::time::sleep(Duration::from_millis(2 + round % 5)).await;
            c0.delete_bucket().bucket("race").send().await
        };
        let (put_results, deleted) = tokio::join!(futures::future::join_all(puts), delete);
        let acked: Vec<&String> = put_results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| k)
            .collect();
        for (key, r) in &put_results {
            if let Err(code) = r {
                assert!(
                    matches!(
                        code.as_deref(),
                        Some("NoSuchBucket") | Some("ServiceUnavailable")
                    ),
                    "round {round}: PUT {key} failed without a clear reason: {code:?}"
                );
            }
        }
        match deleted {
            Ok(_) => {
                deleted_rounds += 1;
                assert!(
                    acked.is_empty(),
                    "round {round}: DeleteBucket succeeded, yet PUTs of {acked:?} were acknowledged"
                );
            }
            Err(e) => {
                let code = e.into_service_error().code().map(str::to_string);
                assert_eq!(code.as_deref(), Some("BucketNotEmpty"), "round {round}");
                kept_rounds += 1;
                for key in &acked {
                    assert!(
                        get_bytes(&c0, "race", key).await.unwrap() == body,
                        "round {round}: acknowledged {key} reads back"
                    );
                }
                // Empty it (every key that may exist, acknowledged or not) and delete it.
                for (key, _) in &put_results {
                    c0.delete_object()
                        .bucket("race")
                        .key(key)
                        .send()
                        .await
                        .unwrap();
                }
                c0.delete_bucket().bucket("race").send().await.unwrap();
            }
        }
        c1.create_bucket().bucket("race").send().await.unwrap();
        let listed = c0.list_objects_v2().bucket("race").send().await.unwrap();
        assert!(
            listed.contents().is_empty(),
            "round {round}: objects of the deleted bucket reappeared: {:?}",
            listed
                .contents()
                .iter()
                .map(|o| o.key())
                .collect::<Vec<_>>()
        );
    }
    eprintln!("{deleted_rounds} rounds deleted the bucket, {kept_rounds} found it not empty");
    cluster.assert_no_error_logs();
}
