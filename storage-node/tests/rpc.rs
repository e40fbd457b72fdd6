//! The node RPC over real TCP: the cluster secret is required, malformed frames are refused
//! without harm, and chunks and records round-trip with their checksums and clocks.

use bytes::Bytes;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, Hlc, StripeIdx, VersionId};
use dmpstore_common::record::Versioned;
use dmpstore_common::rpc::{
    decode_frame, encode_frame, ErrorKind, LeaseCheck, Request, Response, RPC_PATH, SECRET_HEADER,
};
use dmpstore_storage_node::config::NodeConfig;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-cluster-secret-0123456789";

struct Node {
    addr: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = NodeConfig {
        node_id: 1,
        listen_addr: addr,
        health_listen_addr: None,
        data_dir: dir.path().join("db"),
        cluster_secret: SECRET.into(),
        rpc_tls: None,
        insecure_plaintext_rpc: true,
        zone: "z".into(),
        parity_chunks: 2,
        max_clock_offset_ms: 500,
        min_free_bytes: dmpstore_storage_node::config::DEFAULT_MIN_FREE_BYTES,
        failure_detector: Default::default(),
        repair: Default::default(),
        scrub: Default::default(),
        nodes: Vec::new(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dmpstore_storage_node::server::run(
        listener,
        config,
        shutdown.clone(),
    ));
    Node {
        addr: addr.to_string(),
        shutdown,
        task,
        _dir: dir,
    }
}

/// Sends raw bytes as an RPC body; returns the HTTP status and the decoded response.
async fn send(node: &Node, secret: Option<&str>, body: Bytes) -> (u16, Response, Bytes) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::post(format!("http://{}{}", node.addr, RPC_PATH));
    if let Some(s) = secret {
        req = req.header(SECRET_HEADER, s);
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let (response, payload) = decode_frame(body).unwrap();
    (status, response, payload)
}

fn error_kind(r: &Response) -> Option<ErrorKind> {
    match r {
        Response::Error { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn calls_without_the_cluster_secret_are_refused() {
    let node = start().await;
    let frame = encode_frame(&Request::Health, b"");
    for secret in [None, Some("wrong-secret-of-the-same-len!!"), Some("short")] {
        let (status, response, _) = send(&node, secret, frame.clone()).await;
        assert_eq!(status, 401, "{secret:?}");
        assert_eq!(error_kind(&response), Some(ErrorKind::Unauthorized));
    }
    let (status, response, _) = send(&node, Some(SECRET), frame).await;
    assert_eq!(status, 200);
    assert!(matches!(response, Response::Health(h) if h.node_id.0 == 1));
    node.shutdown.cancel();
    node.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_node_keeps_serving() {
    let node = start().await;
    for garbage in [
        &b""[..],
        b"\x00\x00",
        b"\x00\x00\x00\x05abc",
        b"\xff\xff\xff\xffxxxx",
        b"\x00\x00\x00\x02\x01\xff",
    ] {
        let (status, response, _) =
            send(&node, Some(SECRET), Bytes::copy_from_slice(garbage)).await;
        assert_eq!(status, 400, "{garbage:?}");
        assert_eq!(error_kind(&response), Some(ErrorKind::BadRequest));
    }
    let (status, _, _) = send(&node, Some(SECRET), encode_frame(&Request::Health, b"")).await;
    assert_eq!(status, 200);
    node.shutdown.cancel();
    node.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn chunks_and_records_round_trip_and_bad_checksums_are_refused() {
    let node = start().await;
    let key = ChunkKey {
        version: VersionId([7; 16]),
        stripe_idx: StripeIdx(3),
        chunk_idx: ChunkIdx(5),
    };
    let data = vec![0xAB; 100_000];
    let checksum = *blake3::hash(&data).as_bytes();
    let (_, r, _) = send(
        &node,
        Some(SECRET),
        encode_frame(
            &Request::PutChunk {
                key,
                checksum: [0; 32],
                home: None,
            },
            &data,
        ),
    )
    .await;
    assert_eq!(
        error_kind(&r),
        Some(ErrorKind::BadRequest),
        "a payload not matching its checksum is refused"
    );
    let (_, r, _) = send(
        &node,
        Some(SECRET),
        encode_frame(&Request::GetChunk { key }, b""),
    )
    .await;
    assert_eq!(error_kind(&r), Some(ErrorKind::NotFound));
    let (_, r, _) = send(
        &node,
        Some(SECRET),
        encode_frame(
            &Request::PutChunk {
                key,
                checksum,
                home: None,
            },
            &data,
        ),
    )
    .await;
    assert_eq!(r, Response::Done);
    let (_, r, payload) = send(
        &node,
        Some(SECRET),
        encode_frame(&Request::GetChunk { key }, b""),
    )
    .await;
    assert_eq!(r, Response::Chunk { checksum });
    assert_eq!(&payload[..], &data[..]);

    let record = |h: u64| Versioned {
        hlc: Hlc(h),
        value: format!("v{h}").into_bytes(),
    };
    let put = |h: u64| Request::MetaPut {
        partition: "bkt".into(),
        key: "k".into(),
        record: record(h),
        expect: None,
        lease: LeaseCheck::Ignore,
    };
    let (_, r, _) = send(&node, Some(SECRET), encode_frame(&put(10), b"")).await;
    assert_eq!(
        r,
        Response::MetaPut {
            applied: true,
            replaced: None,
            holds: None,
        }
    );
    let (_, r, _) = send(&node, Some(SECRET), encode_frame(&put(9), b"")).await;
    assert_eq!(
        r,
        Response::MetaPut {
            applied: false,
            replaced: None,
            holds: Some(Hlc(10)),
        },
        "an older record loses, and the node says what it holds"
    );
    // A record stamped far in the node's future (a writer whose clock runs ahead) is refused.
    let ahead_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 10_000;
    let future = Request::MetaPut {
        partition: "bkt".into(),
        key: "k".into(),
        record: Versioned {
            hlc: Hlc::from_parts(ahead_ms, 0),
            value: b"from the future".to_vec(),
        },
        expect: None,
        lease: LeaseCheck::Ignore,
    };
    let (_, r, _) = send(&node, Some(SECRET), encode_frame(&future, b"")).await;
    assert!(
        matches!(
            r,
            Response::Error {
                kind: dmpstore_common::rpc::ErrorKind::ClockOffset,
                ..
            }
        ),
        "{r:?}"
    );
    let get = Request::MetaGet {
        partition: "bkt".into(),
        key: "k".into(),
    };
    let (_, r, _) = send(&node, Some(SECRET), encode_frame(&get, b"")).await;
    assert_eq!(r, Response::MetaValue(Some(record(10))));
    node.shutdown.cancel();
    node.task.await.unwrap().unwrap();
}
