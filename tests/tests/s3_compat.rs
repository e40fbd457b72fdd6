//! The S3 surface real clients rely on beyond single PUT/GET: multipart uploads across
//! gateways, copies that keep ETags, bulk deletes, conditional requests, keys ending in `/`,
//! and 501 for what is not implemented. Driven by `aws-sdk-s3` with its default settings.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use dmpstore_tests::{get_bytes, md5_hex, put_bytes, test_data, Cluster};
use md5::Digest;

const MIB: usize = 1024 * 1024;

fn code<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("<none>").to_string(), status)
}

async fn upload_part(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    n: i32,
    data: &[u8],
) -> CompletedPart {
    let out = c
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
    CompletedPart::builder()
        .part_number(n)
        .e_tag(out.e_tag().unwrap())
        .build()
}

fn expected_multipart_etag(parts: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend(md5::Md5::digest(p));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_work_across_gateways_and_keep_one_etag() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("mpu").send().await.unwrap();
    let parts: Vec<Vec<u8>> = vec![
        test_data(1, 5 * MIB),
        test_data(2, 5 * MIB + 7),
        test_data(3, MIB + 3),
    ];
    let whole: Vec<u8> = parts.concat();

    // Start on gateway A, upload parts through both (out of order), complete through B.
    let id = a
        .create_multipart_upload()
        .bucket("mpu")
        .key("out/part-0000.parquet")
        .content_type("application/octet-stream")
        .metadata("job", "42")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let p3 = upload_part(&b, "mpu", "out/part-0000.parquet", &id, 3, &parts[2]).await;
    let p1 = upload_part(&a, "mpu", "out/part-0000.parquet", &id, 1, &parts[0]).await;
    let p2 = upload_part(&b, "mpu", "out/part-0000.parquet", &id, 2, &parts[1]).await;

    let listed = b
        .list_multipart_uploads()
        .bucket("mpu")
        .prefix("out/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.uploads().len(), 1);
    assert_eq!(listed.uploads()[0].upload_id(), Some(id.as_str()));
    let lp = a
        .list_parts()
        .bucket("mpu")
        .key("out/part-0000.parquet")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lp.parts()
            .iter()
            .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            (1, 5 * MIB as i64),
            (2, 5 * MIB as i64 + 7),
            (3, MIB as i64 + 3)
        ]
    );

    let done = b
        .complete_multipart_upload()
        .bucket("mpu")
        .key("out/part-0000.parquet")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(p1)
                .parts(p2)
                .parts(p3)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let etag = expected_multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    assert_eq!(done.e_tag(), Some(etag.as_str()));
    assert!(get_bytes(&a, "mpu", "out/part-0000.parquet").await.unwrap() == whole);
    let head = a
        .head_object()
        .bucket("mpu")
        .key("out/part-0000.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (head.e_tag(), head.content_length()),
        (Some(etag.as_str()), Some(whole.len() as i64))
    );
    assert_eq!(
        head.metadata().unwrap().get("job").map(String::as_str),
        Some("42")
    );
    let list = b.list_objects_v2().bucket("mpu").send().await.unwrap();
    assert_eq!(list.contents()[0].e_tag(), Some(etag.as_str()));
    assert!(b
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap()
        .uploads()
        .is_empty());

    // Ranged reads across part boundaries.
    for (start, end) in [
        (5 * MIB - 3, 5 * MIB + 3),
        (10 * MIB, 10 * MIB + 20),
        (0, whole.len() - 1),
        (whole.len() - 9, whole.len() - 1),
    ] {
        let got = a
            .get_object()
            .bucket("mpu")
            .key("out/part-0000.parquet")
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert!(
            got.body.collect().await.unwrap().into_bytes()[..] == whole[start..=end],
            "range {start}-{end}"
        );
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_errors_have_the_right_codes() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("mpu-errors").send().await.unwrap();
    let id = c
        .create_multipart_upload()
        .bucket("mpu-errors")
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let small = upload_part(&c, "mpu-errors", "k", &id, 1, &test_data(1, 1000)).await;
    let last = upload_part(&c, "mpu-errors", "k", &id, 2, &test_data(2, 1000)).await;
    let complete = |parts: Vec<CompletedPart>, id: String| {
        let c = c.clone();
        async move {
            c.complete_multipart_upload()
                .bucket("mpu-errors")
                .key("k")
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
        }
    };
    let err = complete(vec![small.clone(), last.clone()], id.clone())
        .await
        .unwrap_err();
    assert_eq!(code(err), ("EntityTooSmall".into(), 400));
    let err = complete(vec![last.clone(), small.clone()], id.clone())
        .await
        .unwrap_err();
    assert_eq!(code(err), ("InvalidPartOrder".into(), 400));
    let wrong = CompletedPart::builder()
        .part_number(1)
        .e_tag("\"00000000000000000000000000000000\"")
        .build();
    let err = complete(vec![wrong], id.clone()).await.unwrap_err();
    assert_eq!(code(err), ("InvalidPart".into(), 400));
    let err = c
        .upload_part()
        .bucket("mpu-errors")
        .key("k")
        .upload_id("no-such-upload")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchUpload".into(), 404));

    // A single small part is a valid upload (only parts before the last have a minimum).
    complete(vec![small.clone()], id.clone()).await.unwrap();
    let err = complete(vec![small], id).await.unwrap_err();
    assert_eq!(code(err), ("NoSuchUpload".into(), 404));

    let id = c
        .create_multipart_upload()
        .bucket("mpu-errors")
        .key("aborted")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    upload_part(&c, "mpu-errors", "aborted", &id, 1, &test_data(3, 2 * MIB)).await;
    c.abort_multipart_upload()
        .bucket("mpu-errors")
        .key("aborted")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert!(c
        .list_multipart_uploads()
        .bucket("mpu-errors")
        .send()
        .await
        .unwrap()
        .uploads()
        .is_empty());
    let err = c
        .list_parts()
        .bucket("mpu-errors")
        .key("aborted")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchUpload".into(), 404));
    let err = c
        .get_object()
        .bucket("mpu-errors")
        .key("aborted")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchKey".into(), 404));
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_keep_etags_and_follow_metadata_directives_and_conditions() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    for bucket in ["copy-src", "copy-dst"] {
        a.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let single = test_data(10, 3 * MIB + 1);
    a.put_object()
        .bucket("copy-src")
        .key("single")
        .content_type("text/csv")
        .metadata("k", "v")
        .body(ByteStream::from(single.clone()))
        .send()
        .await
        .unwrap();
    let small = test_data(11, 100);
    put_bytes(&a, "copy-src", "small", &small).await.unwrap();
    let id = a
        .create_multipart_upload()
        .bucket("copy-src")
        .key("multi")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let (m1, m2) = (test_data(12, 5 * MIB), test_data(13, 2 * MIB));
    let c1 = upload_part(&a, "copy-src", "multi", &id, 1, &m1).await;
    let c2 = upload_part(&a, "copy-src", "multi", &id, 2, &m2).await;
    let multi_etag = a
        .complete_multipart_upload()
        .bucket("copy-src")
        .key("multi")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(c1)
                .parts(c2)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();

    for (src, data) in [
        ("single", single.clone()),
        ("small", small.clone()),
        ("multi", [m1.clone(), m2.clone()].concat()),
    ] {
        let src_etag = a
            .head_object()
            .bucket("copy-src")
            .key(src)
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .to_string();
        let out = b
            .copy_object()
            .bucket("copy-dst")
            .key(format!("{src}-copy"))
            .copy_source(format!("copy-src/{src}"))
            .copy_source_if_match(&src_etag)
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.copy_object_result().and_then(|r| r.e_tag()),
            Some(src_etag.as_str()),
            "{src}: copy result ETag"
        );
        let head = a
            .head_object()
            .bucket("copy-dst")
            .key(format!("{src}-copy"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.e_tag(),
            Some(src_etag.as_str()),
            "{src}: copied object's ETag"
        );
        assert!(
            get_bytes(&a, "copy-dst", &format!("{src}-copy"))
                .await
                .unwrap()
                == data,
            "{src}: copied bytes"
        );
    }
    assert_eq!(
        a.head_object()
            .bucket("copy-dst")
            .key("multi-copy")
            .send()
            .await
            .unwrap()
            .e_tag(),
        Some(multi_etag.as_str())
    );

    // COPY keeps content type and metadata; REPLACE takes the request's.
    let head = a
        .head_object()
        .bucket("copy-dst")
        .key("single-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/csv"));
    assert_eq!(
        head.metadata().unwrap().get("k").map(String::as_str),
        Some("v")
    );
    b.copy_object()
        .bucket("copy-src")
        .key("single")
        .copy_source("copy-src/single")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("k2", "v2")
        .send()
        .await
        .unwrap();
    let head = a
        .head_object()
        .bucket("copy-src")
        .key("single")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.metadata().unwrap().get("k2").map(String::as_str),
        Some("v2")
    );
    assert!(!head.metadata().unwrap().contains_key("k"));
    assert!(get_bytes(&a, "copy-src", "single").await.unwrap() == single);

    // Deleting the source leaves the copy intact (no shared chunks).
    a.delete_object()
        .bucket("copy-src")
        .key("multi")
        .send()
        .await
        .unwrap();
    assert!(
        get_bytes(&b, "copy-dst", "multi-copy").await.unwrap() == [m1.clone(), m2.clone()].concat()
    );

    let err = b
        .copy_object()
        .bucket("copy-dst")
        .key("x")
        .copy_source("copy-src/small")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("PreconditionFailed".into(), 412));
    let err = b
        .copy_object()
        .bucket("copy-dst")
        .key("x")
        .copy_source("copy-src/small")
        .copy_source_if_none_match(md5_hex(&small))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 412);
    let err = b
        .copy_object()
        .bucket("copy-dst")
        .key("x")
        .copy_source("copy-src/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchKey".into(), 404));
    let err = b
        .copy_object()
        .bucket("copy-src")
        .key("small")
        .copy_source("copy-src/small")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("InvalidRequest".into(), 400));

    // UploadPartCopy with ranges assembles a new object from pieces of a source.
    let id = a
        .create_multipart_upload()
        .bucket("copy-dst")
        .key("assembled")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut parts = Vec::new();
    for (n, (start, end)) in [(1, (0usize, 5 * MIB - 1)), (2, (2 * MIB, 3 * MIB))].into_iter() {
        let out = b
            .upload_part_copy()
            .bucket("copy-dst")
            .key("assembled")
            .upload_id(&id)
            .part_number(n)
            .copy_source("copy-src/single")
            .copy_source_range(format!("bytes={start}-{end}"))
            .send()
            .await;
        // The source is 3 MiB + 1 byte: the first range is beyond its end.
        if n == 1 {
            assert_eq!(code(out.unwrap_err()).1, 416);
            let fixed = b
                .upload_part_copy()
                .bucket("copy-dst")
                .key("assembled")
                .upload_id(&id)
                .part_number(n)
                .copy_source("copy-dst/multi-copy")
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(fixed.copy_part_result().unwrap().e_tag().unwrap())
                    .build(),
            );
        } else {
            let out = out.unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.copy_part_result().unwrap().e_tag().unwrap())
                    .build(),
            );
        }
    }
    a.complete_multipart_upload()
        .bucket("copy-dst")
        .key("assembled")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let expected = [&m1[..5 * MIB], &single[2 * MIB..=3 * MIB]].concat();
    assert!(get_bytes(&b, "copy-dst", "assembled").await.unwrap() == expected);
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_removes_keys_in_bulk_and_reports_them() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("bulk").send().await.unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("tmp/_temporary/{i:03}")).collect();
    for k in &keys {
        put_bytes(&a, "bulk", k, k.as_bytes()).await.unwrap();
    }
    put_bytes(&a, "bulk", "keep", b"keep").await.unwrap();
    let ids = |ks: &[String]| {
        ks.iter()
            .map(|k| ObjectIdentifier::builder().key(k).build().unwrap())
            .collect::<Vec<_>>()
    };
    let loud = b
        .delete_objects()
        .bucket("bulk")
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&keys[..250])))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(loud.deleted().len(), 250);
    assert!(loud.errors().is_empty());
    let quiet = b
        .delete_objects()
        .bucket("bulk")
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&keys[250..])))
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(quiet.deleted().is_empty() && quiet.errors().is_empty());
    let left = a.list_objects_v2().bucket("bulk").send().await.unwrap();
    assert_eq!(
        left.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        ["keep"]
    );
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_reads_and_writes() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("cond").send().await.unwrap();
    let data = test_data(20, 2 * MIB);
    let etag = put_bytes(&c, "cond", "obj", &data).await.unwrap();

    let ok = c
        .get_object()
        .bucket("cond")
        .key("obj")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.e_tag(), Some(etag.as_str()));
    let err = c
        .get_object()
        .bucket("cond")
        .key("obj")
        .if_match("\"other\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("PreconditionFailed".into(), 412));
    let err = c
        .get_object()
        .bucket("cond")
        .key("obj")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 304);
    let err = c
        .head_object()
        .bucket("cond")
        .key("obj")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 304);
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    let err = c
        .get_object()
        .bucket("cond")
        .key("obj")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 304);
    c.get_object()
        .bucket("cond")
        .key("obj")
        .if_modified_since(past)
        .send()
        .await
        .unwrap();
    let err = c
        .get_object()
        .bucket("cond")
        .key("obj")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 412);

    // If-None-Match: * creates only when absent; If-Match replaces only the expected version.
    let err = c
        .put_object()
        .bucket("cond")
        .key("obj")
        .if_none_match("*")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("PreconditionFailed".into(), 412));
    assert!(
        get_bytes(&c, "cond", "obj").await.unwrap() == data,
        "a refused write changed the object"
    );
    c.put_object()
        .bucket("cond")
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap();
    let err = c
        .put_object()
        .bucket("cond")
        .key("obj")
        .if_match("\"stale\"")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 412);
    c.put_object()
        .bucket("cond")
        .key("obj")
        .if_match(&etag)
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, "cond", "obj").await.unwrap(), b"v2");
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_markers_list_beside_children_and_unsupported_calls_get_501() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("dirs").send().await.unwrap();
    for k in ["a/b", "a/b/", "a/b/c", "a/bc"] {
        put_bytes(&c, "dirs", k, k.as_bytes()).await.unwrap();
    }
    assert_eq!(get_bytes(&c, "dirs", "a/b/").await.unwrap(), b"a/b/");
    assert_eq!(get_bytes(&c, "dirs", "a/b").await.unwrap(), b"a/b");
    let all = c.list_objects_v2().bucket("dirs").send().await.unwrap();
    assert_eq!(
        all.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        ["a/b", "a/b/", "a/b/c", "a/bc"]
    );
    let under = c
        .list_objects_v2()
        .bucket("dirs")
        .prefix("a/b/")
        .max_keys(2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        under
            .contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        ["a/b/", "a/b/c"]
    );
    let delimited = c
        .list_objects_v2()
        .bucket("dirs")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        delimited
            .contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        ["a/b", "a/bc"]
    );
    assert_eq!(
        delimited
            .common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["a/b/"]
    );

    let err = c.get_bucket_cors().bucket("dirs").send().await.unwrap_err();
    assert_eq!(code(err), ("NotImplemented".into(), 501));
    let err = c
        .get_object_retention()
        .bucket("dirs")
        .key("a/b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NotImplemented".into(), 501));
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn checksums_are_verified_stored_and_returned() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
    use base64::Engine;
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("sums").send().await.unwrap();
    for size in [10usize, 3 * MIB + 5] {
        let data = test_data(30, size);
        let crc =
            base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&data).to_be_bytes());
        // The SDK's default: a CRC32 it computes itself (sent as a header or an aws-chunked trailer).
        let out = c
            .put_object()
            .bucket("sums")
            .key(format!("k{size}"))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.checksum_crc32(),
            Some(crc.as_str()),
            "PUT echoes the verified checksum"
        );
        let got = c
            .get_object()
            .bucket("sums")
            .key(format!("k{size}"))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(got.checksum_crc32(), Some(crc.as_str()));
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == data[..]);
        // A range response carries no full-object checksum (the SDK would reject the pair).
        let ranged = c
            .get_object()
            .bucket("sums")
            .key(format!("k{size}"))
            .range("bytes=2-5")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.checksum_crc32(), None);
        assert!(ranged.body.collect().await.unwrap().into_bytes()[..] == data[2..6]);
        let head = c
            .head_object()
            .bucket("sums")
            .key(format!("k{size}"))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.checksum_crc32(), Some(crc.as_str()));

        // A checksum that does not match the body is refused and changes nothing.
        let err = c
            .put_object()
            .bucket("sums")
            .key(format!("k{size}"))
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from(test_data(31, size)))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(err), ("BadDigest".into(), 400));
        assert!(get_bytes(&c, "sums", &format!("k{size}")).await.unwrap() == data);
    }
    // A body streamed from a file goes as aws-chunked with the CRC32 in a trailer.
    let file = cluster.dir.path().join("streamed.bin");
    let data = test_data(32, 2 * MIB + 1);
    std::fs::write(&file, &data).unwrap();
    let body = ByteStream::from_path(&file).await.unwrap();
    let out = c
        .put_object()
        .bucket("sums")
        .key("streamed")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(body)
        .send()
        .await
        .unwrap();
    let crc =
        base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&data).to_be_bytes());
    assert_eq!(out.checksum_crc32(), Some(crc.as_str()));
    assert!(get_bytes(&c, "sums", "streamed").await.unwrap() == data);
    assert!(
        cluster
            .gateway_log(0)
            .contains("checksum expected in an aws-chunked trailer"),
        "the streamed PUT did not use a trailer"
    );

    // Content-MD5 is verified too.
    let err = c
        .put_object()
        .bucket("sums")
        .key("md5")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(ByteStream::from_static(b"not empty"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("BadDigest".into(), 400));
    let err = c
        .get_object()
        .bucket("sums")
        .key("md5")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err).1, 404);
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn object_tags_follow_the_object_version() {
    use aws_sdk_s3::types::{Tag, Tagging};
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("tags").send().await.unwrap();
    let tags_of = |c: Client, key: &'static str| async move {
        let out = c
            .get_object_tagging()
            .bucket("tags")
            .key(key)
            .send()
            .await
            .unwrap();
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect::<Vec<_>>()
    };
    a.put_object()
        .bucket("tags")
        .key("obj")
        .tagging("team=dmp&stage=raw%20data")
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(b.clone(), "obj").await,
        vec![
            ("team".into(), "dmp".into()),
            ("stage".into(), "raw data".into())
        ]
    );

    let set = Tagging::builder()
        .tag_set(Tag::builder().key("stage").value("clean").build().unwrap())
        .build()
        .unwrap();
    b.put_object_tagging()
        .bucket("tags")
        .key("obj")
        .tagging(set)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(a.clone(), "obj").await,
        vec![("stage".into(), "clean".into())]
    );
    b.copy_object()
        .bucket("tags")
        .key("copy")
        .copy_source("tags/obj")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(a.clone(), "copy").await,
        vec![("stage".into(), "clean".into())]
    );
    a.delete_object_tagging()
        .bucket("tags")
        .key("obj")
        .send()
        .await
        .unwrap();
    assert!(tags_of(b.clone(), "obj").await.is_empty());

    // A new version of the object starts with its own tags.
    b.put_object_tagging()
        .bucket("tags")
        .key("obj")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("k").value("v").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    a.put_object()
        .bucket("tags")
        .key("obj")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert!(tags_of(b.clone(), "obj").await.is_empty());

    let err = a
        .put_object()
        .bucket("tags")
        .key("bad")
        .tagging("a=1&a=2")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("InvalidTag".into(), 400));
    let err = a
        .get_object_tagging()
        .bucket("tags")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(err), ("NoSuchKey".into(), 404));
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_creates_racing_through_two_gateways_have_exactly_one_winner() {
    let cluster = Cluster::start(6, 2).unwrap();
    let (a, b) = (cluster.client(0), cluster.client(1));
    a.create_bucket().bucket("race").send().await.unwrap();
    let create = |c: Client, key: String, body: Vec<u8>| async move {
        c.put_object()
            .bucket("race")
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await
    };
    for round in 0..20u64 {
        let key = format!("terraform.tfstate.lock-{round}");
        let (body_a, body_b) = (
            test_data(round * 2, 100 + round as usize),
            test_data(round * 2 + 1, 5000),
        );
        let (ra, rb) = tokio::join!(
            create(a.clone(), key.clone(), body_a.clone()),
            create(b.clone(), key.clone(), body_b.clone())
        );
        let winner = match (ra, rb) {
            (Ok(_), Err(e)) => {
                let (code, status) = code(e);
                assert!(
                    status == 412 || code == "ConditionalRequestConflict",
                    "round {round}: loser got {code} {status}"
                );
                body_a
            }
            (Err(e), Ok(_)) => {
                let (code, status) = code(e);
                assert!(
                    status == 412 || code == "ConditionalRequestConflict",
                    "round {round}: loser got {code} {status}"
                );
                body_b
            }
            (Ok(_), Ok(_)) => panic!("round {round}: both conditional creates succeeded"),
            (Err(x), Err(y)) => panic!("round {round}: both failed: {:?} / {:?}", code(x), code(y)),
        };
        assert!(
            get_bytes(&b, "race", &key).await.unwrap() == winner,
            "round {round}: stored bytes are not the winner's"
        );
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_multipart_uploads_rolls_up_prefixes_and_pages() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("uploads").send().await.unwrap();
    let mut ids = Vec::new();
    for key in ["logs/2026/a", "logs/2026/b", "logs/2027/c", "logs/d", "top"] {
        let id = c
            .create_multipart_upload()
            .bucket("uploads")
            .key(key)
            .send()
            .await
            .unwrap();
        ids.push((key, id.upload_id().unwrap().to_string()));
    }
    let out = c
        .list_multipart_uploads()
        .bucket("uploads")
        .prefix("logs/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["logs/2026/", "logs/2027/"]
    );
    assert_eq!(
        out.uploads()
            .iter()
            .map(|u| u.key().unwrap())
            .collect::<Vec<_>>(),
        ["logs/d"]
    );

    // Paging from the returned markers: one entry a page with a delimiter (the marker is then a
    // common prefix), two a page without (upload-id markers).
    for (delimiter, per_page, want) in [
        (Some("/"), 1, vec!["logs/", "top"]),
        (
            None,
            2,
            vec!["logs/2026/a", "logs/2026/b", "logs/2027/c", "logs/d", "top"],
        ),
    ] {
        let mut seen = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        let mut pages = 0;
        loop {
            let page = c
                .list_multipart_uploads()
                .bucket("uploads")
                .set_delimiter(delimiter.map(str::to_string))
                .max_uploads(per_page)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .unwrap();
            pages += 1;
            seen.extend(
                page.common_prefixes()
                    .iter()
                    .map(|p| p.prefix().unwrap().to_string()),
            );
            seen.extend(page.uploads().iter().map(|u| u.key().unwrap().to_string()));
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
        assert_eq!(seen, want, "delimiter {delimiter:?}");
        assert!(pages >= want.len() / per_page as usize, "{pages} pages");
    }
    let all = c
        .list_multipart_uploads()
        .bucket("uploads")
        .send()
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = all
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    assert_eq!(
        listed,
        ids.iter()
            .map(|(k, i)| (*k, i.as_str()))
            .collect::<Vec<_>>()
    );
    cluster.assert_no_error_logs();
}
