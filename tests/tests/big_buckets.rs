//! Buckets of realistic size (DESIGN 16): every scan page is bounded in bytes, so listing,
//! version-listing, bulk deletion and DeleteBucket work whatever the mix of body sizes, and an
//! upload of 10,000 parts lists and completes into one object that reads back whole.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use dmpstore_tests::{get_bytes, md5_hex, test_data, Cluster};
use futures::stream::{self, StreamExt};

/// The body size of object `i`: 0 B, 4 KiB, 16 KiB (inline at the limit) and, for one in
/// thirty, 1 MiB (erasure-coded).
fn size_of(i: usize) -> usize {
    match i % 30 {
        0 => 1024 * 1024,
        n if n % 3 == 0 => 0,
        n if n % 3 == 1 => 4 * 1024,
        _ => 16 * 1024,
    }
}

fn key_of(i: usize) -> String {
    format!("segments/day={:02}/part-{i:05}.parquet", i % 7)
}

async fn list_all(
    c: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> (Vec<(String, i64)>, Vec<String>) {
    let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .map(|o| (o.key().unwrap().to_string(), o.size().unwrap())),
        );
        prefixes.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return (keys, prefixes),
        }
    }
}

async fn count_versions(c: &Client, bucket: &str) -> usize {
    let mut n = 0;
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = c
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        n += page.versions().len() + page.delete_markers().len();
        if page.is_truncated() != Some(true) {
            return n;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_of_3000_mixed_objects_lists_versions_and_deletes() {
    const N: usize = 3000;
    let cluster = Cluster::start(6, 2).unwrap();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("big").send().await.unwrap();
    stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let c = if i % 2 == 0 { c0.clone() } else { c1.clone() };
            async move {
                c.put_object()
                    .bucket("big")
                    .key(key_of(i))
                    .body(ByteStream::from(test_data(i as u64, size_of(i))))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {i}: {e:?}"));
            }
        })
        .await;

    // Every key, in order, with its size, through the other gateway.
    let (listed, _) = list_all(&c1, "big", "", None).await;
    let mut expected: Vec<(String, i64)> = (0..N).map(|i| (key_of(i), size_of(i) as i64)).collect();
    expected.sort();
    assert_eq!(listed.len(), N);
    assert_eq!(listed, expected);
    // Delimited: the seven day= prefixes, then one of them whole.
    let (keys, prefixes) = list_all(&c0, "big", "segments/", Some("/")).await;
    assert!(keys.is_empty());
    assert_eq!(prefixes.len(), 7);
    let (day3, _) = list_all(&c0, "big", "segments/day=03/", Some("/")).await;
    assert_eq!(day3.len(), (0..N).filter(|i| i % 7 == 3).count());

    // Turning versioning on records all 3000 as null versions; every one lists.
    c0.put_bucket_versioning()
        .bucket("big")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(count_versions(&c1, "big").await, N);

    // DeleteBucket refuses while anything is left, then bulk deletes of every version.
    let err = c0.delete_bucket().bucket("big").send().await.unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("BucketNotEmpty")
    );
    let all: Vec<usize> = (0..N).collect();
    for batch in all.chunks(1000) {
        let ids: Vec<ObjectIdentifier> = batch
            .iter()
            .map(|&i| {
                ObjectIdentifier::builder()
                    .key(key_of(i))
                    .version_id("null")
                    .build()
                    .unwrap()
            })
            .collect();
        let out = c1
            .delete_objects()
            .bucket("big")
            .delete(
                Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert!(out.errors().is_empty(), "{:?}", out.errors());
    }
    assert_eq!(count_versions(&c0, "big").await, 0);
    assert!(list_all(&c0, "big", "", None).await.0.is_empty());
    c0.delete_bucket().bucket("big").send().await.unwrap();
    cluster.assert_no_error_logs();
}

/// The Complete request for parts `numbers` as uploaded below (64 bytes of `test_data(n)`).
fn part_list(numbers: std::ops::RangeInclusive<i32>) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            numbers
                .map(|n| {
                    CompletedPart::builder()
                        .part_number(n)
                        .e_tag(md5_hex(&test_data(n as u64, 64)))
                        .build()
                })
                .collect(),
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_of_10000_parts_lists_every_part_and_completes() {
    const PARTS: i32 = 10_000;
    let mut cluster = Cluster::start(6, 2).unwrap();
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.create_bucket().bucket("parts").send().await.unwrap();
    let upload = c0
        .create_multipart_upload()
        .bucket("parts")
        .key("huge.parquet")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_string();
    stream::iter(1..=PARTS)
        .for_each_concurrent(32, |n| {
            let c = if n % 2 == 0 { c0.clone() } else { c1.clone() };
            let id = id.clone();
            async move {
                c.upload_part()
                    .bucket("parts")
                    .key("huge.parquet")
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(test_data(n as u64, 64)))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("part {n}: {e:?}"));
            }
        })
        .await;
    // ListParts pages through all 10,000 in order.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c1
            .list_parts()
            .bucket("parts")
            .key("huge.parquet")
            .upload_id(&id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(page.parts().iter().map(|p| p.part_number().unwrap()));
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = page.next_part_number_marker().map(str::to_string);
    }
    assert_eq!(seen, (1..=PARTS).collect::<Vec<_>>());
    // Completing with parts under 5 MiB is refused and leaves the upload as it was.
    let err = c0
        .complete_multipart_upload()
        .bucket("parts")
        .key("huge.parquet")
        .upload_id(&id)
        .multipart_upload(part_list(1..=2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("EntityTooSmall")
    );
    let uploads = c1
        .list_multipart_uploads()
        .bucket("parts")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    // Through a gateway that accepts small parts, all 10,000 complete into one object whose
    // record lists every part.
    cluster
        .reconfigure_gateway(1, "min_part_size_bytes = 1\n", None)
        .unwrap();
    let c1 = cluster.client(1);
    c1.complete_multipart_upload()
        .bucket("parts")
        .key("huge.parquet")
        .upload_id(&id)
        .multipart_upload(part_list(1..=PARTS))
        .send()
        .await
        .unwrap();
    let whole: Vec<u8> = (1..=PARTS).flat_map(|n| test_data(n as u64, 64)).collect();
    let head = c0
        .head_object()
        .bucket("parts")
        .key("huge.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    assert!(head.e_tag().unwrap().ends_with("-10000\""));
    assert!(get_bytes(&c0, "parts", "huge.parquet").await.unwrap() == whole);
    // A range across part boundaries, deep in the list.
    let ranged = c1
        .get_object()
        .bucket("parts")
        .key("huge.parquet")
        .range("bytes=639900-639999")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(ranged[..] == whole[639_900..640_000]);
    let uploads = c0
        .list_multipart_uploads()
        .bucket("parts")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the upload is over");
    let listed = c0.list_objects_v2().bucket("parts").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1);
    assert_eq!(listed.contents()[0].size(), Some(whole.len() as i64));
    c0.delete_object()
        .bucket("parts")
        .key("huge.parquet")
        .send()
        .await
        .unwrap();
    c0.delete_bucket().bucket("parts").send().await.unwrap();
    cluster.assert_no_error_logs();
}
