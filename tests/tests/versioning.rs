//! Bucket versioning through two gateways (ADR 0002): version ids, reads and deletes by id,
//! delete markers, ListObjectVersions with pagination, the null version before versioning and
//! while suspended, and that overwrites and deletes in a versioned bucket never drop data.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use dmpstore_tests::{get_bytes, put_bytes, test_data, wait_until, Cluster};
use std::time::Duration;

fn code<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("<none>").to_string(), status)
}

async fn set_versioning(c: &Client, bucket: &str, status: BucketVersioningStatus) {
    c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .unwrap();
}

async fn put_version(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap()
        .version_id()
        .expect("a versioned bucket reports the version id")
        .to_string()
}

async fn get_version(c: &Client, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key} version {version}: {e:?}"));
    assert_eq!(out.version_id(), Some(version));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// (key, version id, is latest, is delete marker) of every version, page by page with
/// `page_size` entries per request, checking the markers chain pages without repeats.
async fn all_versions(
    c: &Client,
    bucket: &str,
    prefix: &str,
    page_size: i32,
) -> Vec<(String, String, bool, bool)> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    for _ in 0..1000 {
        let page = c
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(page_size)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        let mut entries: Vec<(String, String, bool, bool)> = page
            .versions()
            .iter()
            .map(|v| {
                let key = v.key().unwrap().to_string();
                let id = v.version_id().unwrap().to_string();
                (key, id, v.is_latest().unwrap(), false)
            })
            .chain(page.delete_markers().iter().map(|m| {
                let key = m.key().unwrap().to_string();
                let id = m.version_id().unwrap().to_string();
                (key, id, m.is_latest().unwrap(), true)
            }))
            .collect();
        assert!(entries.len() <= page_size as usize);
        // S3 returns versions and markers in two lists; the order among a key's versions is
        // newest first, which the version ids of this store encode.
        entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out.extend(entries);
        if !page.is_truncated().unwrap() {
            return out;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    panic!("ListObjectVersions did not finish");
}

fn dropped_lines(cluster: &Cluster) -> usize {
    (0..2)
        .map(|g| {
            cluster
                .gateway_log(g)
                .matches("dropped the chunks of replaced data")
                .count()
        })
        .sum()
}

/// Waits until every drop of replaced data scheduled so far has happened: overwrites a canary
/// in an unversioned bucket and waits for its drop, which comes after every earlier one (one
/// grace period for all).
async fn wait_for_scheduled_drops(cluster: &Cluster, c: &Client) {
    let before = dropped_lines(cluster);
    put_bytes(c, "canary", "c", &test_data(1, 40_000))
        .await
        .unwrap();
    put_bytes(c, "canary", "c", &test_data(2, 40_000))
        .await
        .unwrap();
    wait_until(Duration::from_secs(60), || dropped_lines(cluster) > before).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_kept_read_deleted_and_listed_through_two_gateways() {
    let cluster = Cluster::start_with(6, 2, &["--replaced-data-grace", "1"]).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("ver").send().await.unwrap();
    a.create_bucket().bucket("canary").send().await.unwrap();

    // An object from before versioning becomes the null version.
    let pre = test_data(10, 50_000);
    put_bytes(&a, "ver", "pre", &pre).await.unwrap();
    let out = b
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), None, "a new bucket is unversioned");
    set_versioning(&a, "ver", BucketVersioningStatus::Enabled).await;
    let out = b
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), Some(&BucketVersioningStatus::Enabled));

    // Two versions written through different gateways; both stay readable by id.
    let (d1, d2) = (test_data(11, 300_000), test_data(12, 5_000));
    let v1 = put_version(&a, "ver", "k", &d1).await;
    let v2 = put_version(&b, "ver", "k", &d2).await;
    assert_ne!(v1, v2);
    assert!(get_bytes(&a, "ver", "k").await.unwrap() == d2);
    assert!(get_version(&b, "ver", "k", &v1).await == d1);
    assert!(get_version(&a, "ver", "k", &v2).await == d2);
    let head = a
        .head_object()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(d1.len() as i64));
    assert_eq!(head.version_id(), Some(v1.as_str()));

    // Overwriting the null version keeps it.
    let pre2 = test_data(13, 20_000);
    let pre_v = put_version(&b, "ver", "pre", &pre2).await;
    assert!(get_version(&a, "ver", "pre", "null").await == pre);
    assert!(get_bytes(&a, "ver", "pre").await.unwrap() == pre2);

    // DELETE without a version id writes a delete marker.
    let del = b
        .delete_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().unwrap().to_string();
    let err = a
        .get_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchKey".into(), 404));
    let err = a
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id(&marker)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 405, "GET of a delete marker by id");
    let listed = a
        .list_objects_v2()
        .bucket("ver")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        listed,
        ["pre"],
        "a key behind a delete marker is not listed"
    );

    // Nothing versioned may have lost its data when the drops of the grace period ran.
    wait_for_scheduled_drops(&cluster, &a).await;
    assert!(get_version(&b, "ver", "k", &v1).await == d1);
    assert!(get_version(&b, "ver", "k", &v2).await == d2);
    assert!(get_version(&b, "ver", "pre", "null").await == pre);

    let versions = all_versions(&b, "ver", "", 1000).await;
    let expected = vec![
        ("k".to_string(), marker.clone(), true, true),
        ("k".to_string(), v2.clone(), false, false),
        ("k".to_string(), v1.clone(), false, false),
        ("pre".to_string(), pre_v.clone(), true, false),
        ("pre".to_string(), "null".to_string(), false, false),
    ];
    // ("null" sorts after the ids, and is the oldest version of "pre" here.)
    let mut sorted_expected = expected.clone();
    sorted_expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(sorted_expected, expected);
    assert_eq!(versions, expected);
    // Page by page, one entry per page, the same versions come back.
    assert_eq!(all_versions(&a, "ver", "", 1).await, sorted_expected);
    assert_eq!(all_versions(&a, "ver", "k", 2).await.len(), 3);

    // Deleting the marker by id makes v2 current again; deleting v2 makes v1 current.
    let del = a
        .delete_object()
        .bucket("ver")
        .key("k")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    assert!(get_bytes(&b, "ver", "k").await.unwrap() == d2);
    b.delete_object()
        .bucket("ver")
        .key("k")
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert!(get_bytes(&a, "ver", "k").await.unwrap() == d1);
    let err = a
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id(&v2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchVersion".into(), 404));
    let err = a
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id("not-a-version")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("InvalidArgument".into(), 400));

    // A copy from a version id.
    let copied = b
        .copy_object()
        .bucket("ver")
        .key("copy")
        .copy_source("ver/pre?versionId=null")
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some("null"));
    assert!(copied.version_id().is_some());
    assert!(get_bytes(&a, "ver", "copy").await.unwrap() == pre);

    // Suspended: writes replace the null version only; versions with ids stay.
    set_versioning(&b, "ver", BucketVersioningStatus::Suspended).await;
    let (s1, s2) = (test_data(14, 40_000), test_data(15, 40_000));
    let out = a
        .put_object()
        .bucket("ver")
        .key("k")
        .body(ByteStream::from(s1.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some("null"));
    put_bytes(&b, "ver", "k", &s2).await.unwrap();
    assert!(get_version(&a, "ver", "k", "null").await == s2);
    let k_versions = all_versions(&a, "ver", "k", 1000).await;
    let ids: Vec<&str> = k_versions.iter().map(|v| v.1.as_str()).collect();
    assert_eq!(ids.iter().filter(|id| **id == "null").count(), 1, "{ids:?}");
    assert!(ids.contains(&v1.as_str()), "{ids:?}");
    let latest: Vec<&str> = k_versions
        .iter()
        .filter(|v| v.2)
        .map(|v| v.1.as_str())
        .collect();
    assert_eq!(latest, ["null"]);
    wait_for_scheduled_drops(&cluster, &a).await;
    assert!(get_version(&b, "ver", "k", &v1).await == d1);
    assert!(get_version(&b, "ver", "k", "null").await == s2);

    // A bucket holding versions is not empty; deleting every version empties it.
    let err = a.delete_bucket().bucket("ver").send().await.unwrap_err();
    assert_eq!(code(err), ("BucketNotEmpty".into(), 409));
    let everything = all_versions(&a, "ver", "", 1000).await;
    let ids: Vec<ObjectIdentifier> = everything
        .iter()
        .map(|(k, v, _, _)| {
            ObjectIdentifier::builder()
                .key(k)
                .version_id(v)
                .build()
                .unwrap()
        })
        .collect();
    let out = b
        .delete_objects()
        .bucket("ver")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    assert_eq!(out.deleted().len(), everything.len());
    assert!(all_versions(&a, "ver", "", 1000).await.is_empty());
    assert!(a
        .list_objects_v2()
        .bucket("ver")
        .send()
        .await
        .unwrap()
        .contents()
        .is_empty());
    a.delete_bucket().bucket("ver").send().await.unwrap();
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unversioned_bucket_lists_each_object_as_its_null_version() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("plain").send().await.unwrap();
    for key in ["a/1", "a/2", "b", "c"] {
        put_bytes(&c, "plain", key, key.as_bytes()).await.unwrap();
    }
    let out = c
        .put_object()
        .bucket("plain")
        .key("d")
        .body(ByteStream::from_static(b"d"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), None, "no version ids without versioning");
    let all = all_versions(&c, "plain", "", 2).await;
    let keys: Vec<&str> = all.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2", "b", "c", "d"]);
    assert!(all.iter().all(|v| v.1 == "null" && v.2 && !v.3));
    let page = c
        .list_object_versions()
        .bucket("plain")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["a/"]);
    assert_eq!(page.versions().len(), 3);
    let out = c
        .get_object()
        .bucket("plain")
        .key("b")
        .version_id("null")
        .send()
        .await
        .unwrap();
    assert_eq!(&out.body.collect().await.unwrap().into_bytes()[..], b"b");
    let err = c
        .put_bucket_versioning()
        .bucket("plain")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::from("Sometimes"))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 400);
    cluster.assert_no_error_logs();
}
