//! The S3 surface of the core cluster, through `aws-sdk-s3` against real storage-node and
//! gateway processes: round trips, ranges, listing, overwrite, delete, bucket and auth errors.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use dmpstore_tests::{client, md5_hex, test_data, Cluster};
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeSet;

async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let out = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    out.e_tag().expect("PUT returns an ETag").to_string()
}

async fn get(c: &Client, bucket: &str, key: &str, range: Option<&str>) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key} {range:?}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec()
}

/// The S3 error code and HTTP status of a failed call.
fn code<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("<none>").to_string(), status)
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_of_every_size_class_round_trip_with_one_etag_everywhere() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("sizes").send().await.unwrap();
    for (seed, size) in [0usize, 1, 16 * 1024, 1024 * 1024 + 1, 100 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let key = format!("object-{size}");
        let data = test_data(seed as u64, size);
        let expected_etag = format!("\"{}\"", md5_hex(&data));
        assert_eq!(
            put(&a, "sizes", &key, &data).await,
            expected_etag,
            "PUT ETag of {size} B"
        );
        // Read through the other gateway: nothing is cached in the one that wrote.
        let back = get(&b, "sizes", &key, None).await;
        assert_eq!(back.len(), data.len(), "length of {size} B");
        assert!(back == data, "bytes of {size} B object differ");
        let head = b
            .head_object()
            .bucket("sizes")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(size as i64));
        assert_eq!(head.e_tag(), Some(expected_etag.as_str()));
        let got = b
            .get_object()
            .bucket("sizes")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(got.e_tag(), Some(expected_etag.as_str()));
        let listed = b
            .list_objects_v2()
            .bucket("sizes")
            .prefix(&key)
            .send()
            .await
            .unwrap();
        let obj = &listed.contents()[0];
        assert_eq!(
            (obj.key(), obj.size(), obj.e_tag()),
            (
                Some(key.as_str()),
                Some(size as i64),
                Some(expected_etag.as_str())
            )
        );
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_and_user_metadata_are_kept() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("meta").send().await.unwrap();
    for size in [10usize, 2 * 1024 * 1024] {
        let key = format!("m-{size}");
        c.put_object()
            .bucket("meta")
            .key(&key)
            .content_type("application/vnd.apache.parquet")
            .metadata("segment", "sports-fans")
            .metadata("rows", "1000")
            .body(ByteStream::from(test_data(1, size)))
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket("meta")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("application/vnd.apache.parquet"));
        let meta = head.metadata().unwrap();
        assert_eq!(meta.get("segment").map(String::as_str), Some("sports-fans"));
        assert_eq!(meta.get("rows").map(String::as_str), Some("1000"));
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_read_exact_bytes_and_unsatisfiable_ranges_are_416() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("ranges").send().await.unwrap();
    let size = 3 * 1024 * 1024 + 5;
    let data = test_data(7, size);
    put(&c, "ranges", "big", &data).await;
    let small = test_data(8, 1000);
    put(&c, "ranges", "small", &small).await;
    let stripe = 1024 * 1024;
    let cases: Vec<(&str, String, std::ops::Range<usize>)> = vec![
        ("big", "bytes=0-0".into(), 0..1),
        ("big", "bytes=100-200".into(), 100..201),
        (
            "big",
            format!("bytes={}-{}", stripe - 10, stripe + 10),
            stripe - 10..stripe + 11,
        ),
        (
            "big",
            format!("bytes={}-{}", 262_140, 262_150),
            262_140..262_151,
        ), // across a chunk boundary
        ("big", format!("bytes={}-", size - 7), size - 7..size),
        ("big", "bytes=-10".into(), size - 10..size),
        ("big", format!("bytes=-{}", size + 100), 0..size),
        ("big", format!("bytes=5-{}", size + 1000), 5..size),
        ("small", "bytes=10-19".into(), 10..20),
        ("small", "bytes=-1".into(), 999..1000),
    ];
    for (key, range, want) in cases {
        let full = if key == "big" { &data } else { &small };
        let out = c
            .get_object()
            .bucket("ranges")
            .key(key)
            .range(&range)
            .send()
            .await
            .unwrap();
        let expected_cr = format!("bytes {}-{}/{}", want.start, want.end - 1, full.len());
        assert_eq!(
            out.content_range(),
            Some(expected_cr.as_str()),
            "{key} {range}"
        );
        assert_eq!(
            out.content_length(),
            Some(want.len() as i64),
            "{key} {range}"
        );
        let body = out.body.collect().await.unwrap().into_bytes();
        assert!(body[..] == full[want.clone()], "{key} {range}: wrong bytes");
    }
    for (key, range) in [
        ("big", format!("bytes={}-", size)),
        ("big", format!("bytes={}-{}", size + 5, size + 10)),
        ("small", "bytes=1000-".into()),
    ] {
        let err = c
            .get_object()
            .bucket("ranges")
            .key(key)
            .range(&range)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code(err),
            ("InvalidRange".to_string(), 416),
            "{key} {range}"
        );
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_and_delimits_over_2500_keys() {
    let cluster = Cluster::start(6, 2).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("list").send().await.unwrap();
    let keys: Vec<String> = (0..2500)
        .map(|i| {
            if i % 10 == 0 {
                format!("top-{i:04}")
            } else {
                format!("dir{}/sub{}/file-{i:04}", i % 5, i % 7)
            }
        })
        .collect();
    futures::stream::iter(keys.iter())
        .map(|k| {
            let c = c.clone();
            async move {
                c.put_object()
                    .bucket("list")
                    .key(k)
                    .body(ByteStream::from(k.as_bytes().to_vec()))
                    .send()
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let sorted: BTreeSet<String> = keys.iter().cloned().collect();
    let other = cluster.client(1);

    // Full listing in pages of 1000 with continuation tokens, through the other gateway.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = other
            .list_objects_v2()
            .bucket("list")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_string);
        } else {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, sorted.iter().cloned().collect::<Vec<_>>());

    // The same with small pages through the paginator, V1 markers, and start-after.
    let small_pages: Vec<String> = other
        .list_objects_v2()
        .bucket("list")
        .max_keys(333)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .unwrap()
        .iter()
        .flat_map(|p| p.contents().iter().map(|o| o.key().unwrap().to_string()))
        .collect();
    assert_eq!(small_pages, seen);
    let mut v1 = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .list_objects()
            .bucket("list")
            .max_keys(700)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        v1.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = v1.last().cloned();
    }
    assert_eq!(v1, seen);
    let after = c
        .list_objects_v2()
        .bucket("list")
        .start_after("dir4/")
        .max_keys(5)
        .send()
        .await
        .unwrap();
    let want: Vec<String> = sorted
        .iter()
        .filter(|k| k.as_str() > "dir4/")
        .take(5)
        .cloned()
        .collect();
    assert_eq!(
        after
            .contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        want
    );

    // Delimiter at the root: five directories and 250 top-level objects.
    let root = c
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = root
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["dir0/", "dir1/", "dir2/", "dir3/", "dir4/"]);
    assert_eq!(root.contents().len(), 250);
    assert_eq!(root.key_count(), Some(255));

    // Delimiter under a prefix, paged two entries at a time (prefixes count as entries).
    let mut sub = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("list")
            .prefix("dir1/")
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        sub.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        assert!(out.contents().is_empty());
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    let want: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("dir1/"))
        .map(|k| k.split('/').take(2).collect::<Vec<_>>().join("/") + "/")
        .collect();
    assert_eq!(sub, want.into_iter().collect::<Vec<_>>());

    // V1 with a delimiter continues past a common prefix given as marker.
    let v1d = c
        .list_objects()
        .bucket("list")
        .delimiter("/")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    assert_eq!(
        v1d.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["dir0/", "dir1/", "dir2/"]
    );
    assert_eq!(v1d.next_marker(), Some("dir2/"));
    let v1d2 = c
        .list_objects()
        .bucket("list")
        .delimiter("/")
        .max_keys(3)
        .marker("dir2/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v1d2.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["dir3/", "dir4/"]
    );
    assert_eq!(v1d2.contents()[0].key(), Some("top-0000"));
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_and_delete_are_seen_at_once_by_every_gateway() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("overwrite").send().await.unwrap();
    for (size_1, size_2) in [
        (100usize, 3 * 1024 * 1024),
        (2 * 1024 * 1024, 10),
        (5 * 1024 * 1024, 1024 * 1024),
    ] {
        let key = format!("k-{size_1}-{size_2}");
        let v1 = test_data(1, size_1);
        let v2 = test_data(2, size_2);
        put(&a, "overwrite", &key, &v1).await;
        let etag_2 = put(&b, "overwrite", &key, &v2).await;
        assert!(
            get(&a, "overwrite", &key, None).await == v2,
            "{key}: overwrite not visible"
        );
        let listed = a
            .list_objects_v2()
            .bucket("overwrite")
            .prefix(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.contents().len(), 1);
        assert_eq!(listed.contents()[0].e_tag(), Some(etag_2.as_str()));
        assert_eq!(listed.contents()[0].size(), Some(size_2 as i64));

        b.delete_object()
            .bucket("overwrite")
            .key(&key)
            .send()
            .await
            .unwrap();
        let err = a
            .get_object()
            .bucket("overwrite")
            .key(&key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(err), ("NoSuchKey".into(), 404));
        let err = a
            .head_object()
            .bucket("overwrite")
            .key(&key)
            .send()
            .await
            .unwrap_err();
        assert!(
            err.as_service_error().is_some_and(|e| e.is_not_found()),
            "HEAD after delete"
        );
        let listed = a
            .list_objects_v2()
            .bucket("overwrite")
            .prefix(&key)
            .send()
            .await
            .unwrap();
        assert!(listed.contents().is_empty(), "deleted key still listed");
    }
    // Deleting a key that does not exist succeeds, as in S3.
    a.delete_object()
        .bucket("overwrite")
        .key("never-written")
        .send()
        .await
        .unwrap();
    // The bucket is empty right after the last delete, on the other gateway too.
    b.delete_bucket().bucket("overwrite").send().await.unwrap();
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_errors_have_the_right_codes() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    let err = a
        .get_object()
        .bucket("nope")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchBucket".into(), 404));
    let err = a
        .put_object()
        .bucket("nope")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchBucket".into(), 404));
    let err = a.list_objects_v2().bucket("nope").send().await.unwrap_err();
    assert_eq!(code(err), ("NoSuchBucket".into(), 404));
    let err = a.head_bucket().bucket("nope").send().await.unwrap_err();
    assert!(err.as_service_error().is_some_and(|e| e.is_not_found()));

    a.create_bucket().bucket("mine").send().await.unwrap();
    let err = b.create_bucket().bucket("mine").send().await.unwrap_err();
    assert_eq!(code(err), ("BucketAlreadyOwnedByYou".into(), 409));
    b.head_bucket().bucket("mine").send().await.unwrap();
    let names: Vec<String> = b
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .map(|x| x.name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mine"]);

    put(&a, "mine", "k", b"data").await;
    let err = b
        .get_object()
        .bucket("mine")
        .key("other")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchKey".into(), 404));
    let err = b.delete_bucket().bucket("mine").send().await.unwrap_err();
    assert_eq!(code(err), ("BucketNotEmpty".into(), 409));
    b.delete_object()
        .bucket("mine")
        .key("k")
        .send()
        .await
        .unwrap();
    a.delete_bucket().bucket("mine").send().await.unwrap();
    let err = b.head_bucket().bucket("mine").send().await.unwrap_err();
    assert!(err.as_service_error().is_some_and(|e| e.is_not_found()));
    assert!(b.list_buckets().send().await.unwrap().buckets().is_empty());
    let err = a.delete_bucket().bucket("mine").send().await.unwrap_err();
    assert_eq!(code(err), ("NoSuchBucket".into(), 404));

    for bad in ["ab", "Upper", "foo..bar", "192.168.1.1", &"x".repeat(64)] {
        let err = a.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(code(err).0, "InvalidBucketName", "{bad}");
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_signatures_and_unknown_keys_are_refused() {
    let cluster = Cluster::start(6, 1).unwrap();
    let info = &cluster.info;
    let good = cluster.client(0);
    good.create_bucket().bucket("auth").send().await.unwrap();
    let wrong_secret = client(
        &info.s3_endpoints[0],
        &info.access_key,
        "not-the-secret",
        &info.region,
    );
    let err = wrong_secret
        .list_objects_v2()
        .bucket("auth")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("SignatureDoesNotMatch".into(), 403));
    let err = wrong_secret
        .put_object()
        .bucket("auth")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("SignatureDoesNotMatch".into(), 403));
    let unknown = client(
        &info.s3_endpoints[0],
        "AKIDUNKNOWN",
        &info.secret_key,
        &info.region,
    );
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(code(err), ("InvalidAccessKeyId".into(), 403));
    // Nothing was written by the refused PUT.
    assert!(good
        .list_objects_v2()
        .bucket("auth")
        .send()
        .await
        .unwrap()
        .contents()
        .is_empty());
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_streaming_a_version_finishes_even_if_it_is_overwritten_meanwhile() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("streaming").send().await.unwrap();
    let v1 = test_data(1, 24 * 1024 * 1024);
    put(&a, "streaming", "obj", &v1).await;
    // Start reading v1 through one gateway, overwrite and delete through the other, then read on.
    let mut body = b
        .get_object()
        .bucket("streaming")
        .key("obj")
        .send()
        .await
        .unwrap()
        .body;
    let mut got = body
        .try_next()
        .await
        .unwrap()
        .expect("first piece")
        .to_vec();
    assert!(
        got.len() < v1.len() / 4,
        "the test needs most of the body still unread"
    );
    put(&a, "streaming", "obj", &test_data(2, 1000)).await;
    a.delete_object()
        .bucket("streaming")
        .key("obj")
        .send()
        .await
        .unwrap();
    while let Some(piece) = body.try_next().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert!(
        got == v1,
        "the in-flight GET did not return the version it started on"
    );
    let err = b
        .get_object()
        .bucket("streaming")
        .key("obj")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).0, "NoSuchKey");
    cluster.assert_no_error_logs();
}
