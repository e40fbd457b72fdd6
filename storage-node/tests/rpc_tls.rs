//! The internal RPC's mutual TLS over real TCP (DESIGN 13): a node serves only callers that
//! show a certificate of the cluster CA, callers accept only node certificates of it, and a
//! connection recorded on the wire can be neither replayed nor altered.

use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::cluster::NodeInfo;
use dmpstore_common::ids::{ChunkIdx, ChunkKey, NodeId, StripeIdx, VersionId};
use dmpstore_common::rpc::{encode_frame, ErrorKind, Request, Response, RPC_PATH, SECRET_HEADER};
use dmpstore_storage_node::config::{NodeConfig, RpcTlsConfig};
use dmpstore_storage_node::peers::{Marking, NodeClient, RpcError};
use dmpstore_storage_node::pki::{ClusterCa, Role};
use dmpstore_storage_node::tls::RpcTls;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-cluster-secret-0123456789";

struct Node {
    addr: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A storage node (id 1) serving with `tls`.
async fn start(tls: RpcTlsConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = NodeConfig {
        node_id: 1,
        listen_addr: addr,
        health_listen_addr: None,
        data_dir: dir.path().join("db"),
        cluster_secret: SECRET.into(),
        rpc_tls: Some(tls),
        insecure_plaintext_rpc: false,
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

/// A cluster CA in `dir` with a certificate for node 1 and one for gateway "g1".
fn cluster_certs(dir: &Path) -> (ClusterCa, RpcTlsConfig, RpcTlsConfig) {
    let ca = ClusterCa::generate().unwrap();
    ca.save(dir).unwrap();
    let node = ca.issue_into(dir, &Role::Node(1)).unwrap();
    let gateway = ca.issue_into(dir, &Role::Gateway("g1".into())).unwrap();
    (ca, node, gateway)
}

/// A client of node 1 at `addr`, with `tls` as its certificate.
fn client(addr: &str, tls: Option<&RpcTlsConfig>) -> NodeClient {
    let map = ClusterMap::new(
        1,
        vec![NodeInfo {
            id: NodeId(1),
            addr: addr.to_string(),
            zone: "z".into(),
            weight: 1,
        }],
    )
    .unwrap();
    let tls = tls.map(|t| RpcTls::load(&t.ca_cert, &t.cert, &t.key).unwrap().client);
    NodeClient::new(Arc::new(map), SECRET, Marking::ByDetector, tls).unwrap()
}

fn key(n: u8) -> ChunkKey {
    ChunkKey {
        version: VersionId([n; 16]),
        stripe_idx: StripeIdx(0),
        chunk_idx: ChunkIdx(0),
    }
}

async fn put_chunk(c: &NodeClient, key: ChunkKey, data: &[u8]) -> Result<Response, RpcError> {
    let checksum = *blake3::hash(data).as_bytes();
    let request = Request::PutChunk {
        key,
        checksum,
        home: None,
    };
    c.call(NodeId(1), &request, Bytes::copy_from_slice(data))
        .await
        .map(|(r, _)| r)
}

/// Whether node 1 holds the chunk `key` (asked over a good connection).
async fn holds(c: &NodeClient, key: ChunkKey) -> bool {
    match c
        .call(NodeId(1), &Request::GetChunk { key }, Bytes::new())
        .await
    {
        Ok((Response::Chunk { .. }, _)) => true,
        Err(RpcError::Remote {
            kind: ErrorKind::NotFound,
            ..
        }) => false,
        other => panic!("unexpected answer to GetChunk: {other:?}"),
    }
}

/// A raw rustls client config trusting `ca`, presenting `cert` if given.
fn raw_tls(ca: &Path, cert: Option<&RpcTlsConfig>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(dmpstore_storage_node::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    match cert {
        None => builder.with_no_client_auth(),
        Some(t) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(&t.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&t.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// One Health RPC over TLS with `config`, the server's name checked as a node's: the status
/// line, or the error that ended the attempt.
async fn health_over(addr: &str, config: rustls::ClientConfig) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(dmpstore_storage_node::tls::RPC_NODE_NAME).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let frame = encode_frame(&Request::Health, b"");
    let head = format!(
        "POST {RPC_PATH} HTTP/1.1\r\nhost: n1\r\n{SECRET_HEADER}: {SECRET}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        frame.len()
    );
    let io = async {
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(&frame).await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn only_certificates_of_the_cluster_ca_are_served() {
    let certs = tempfile::tempdir().unwrap();
    let (_ca, node_tls, gateway_tls) = cluster_certs(certs.path());
    let rogue = tempfile::tempdir().unwrap();
    let (_, rogue_node, rogue_gateway) = cluster_certs(rogue.path());
    let node = start(node_tls.clone()).await;

    // A gateway of the cluster is served, through the product's client and a raw one.
    let good = client(&node.addr, Some(&gateway_tls));
    assert!(matches!(
        good.call(NodeId(1), &Request::Health, Bytes::new()).await,
        Ok((Response::Health(_), _))
    ));
    let status = health_over(&node.addr, raw_tls(&node_tls.ca_cert, Some(&gateway_tls))).await;
    assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"));

    // Plain HTTP with the right cluster secret: no answer.
    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("http://{}{RPC_PATH}", node.addr))
        .header(SECRET_HEADER, SECRET)
        .body(Full::new(encode_frame(&Request::Health, b"")))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), plain.request(request))
        .await
        .expect("the node closes a plain-HTTP connection at once");
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    let plain_client = client(&node.addr, None);
    assert!(matches!(
        plain_client
            .call(NodeId(1), &Request::Health, Bytes::new())
            .await,
        Err(RpcError::Unreachable { .. })
    ));

    // TLS without a client certificate, and with one from another CA: refused.
    let anonymous = health_over(&node.addr, raw_tls(&node_tls.ca_cert, None)).await;
    assert!(
        anonymous.is_err(),
        "served without a certificate: {anonymous:?}"
    );
    let foreign = health_over(&node.addr, raw_tls(&node_tls.ca_cert, Some(&rogue_gateway))).await;
    assert!(
        foreign.is_err(),
        "served a foreign CA's certificate: {foreign:?}"
    );

    // A node of another cluster, and a process with a gateway's certificate posing as a
    // node, are not called: the caller checks the server's certificate too.
    for impostor_tls in [rogue_node, gateway_tls.clone()] {
        let impostor = start(impostor_tls).await;
        let c = client(&impostor.addr, Some(&gateway_tls));
        let answer = c.call(NodeId(1), &Request::Health, Bytes::new()).await;
        assert!(
            matches!(answer, Err(RpcError::Unreachable { .. })),
            "{answer:?}"
        );
        impostor.stop().await;
    }

    // The node kept serving the cluster through all of it.
    assert!(good
        .call(NodeId(1), &Request::Health, Bytes::new())
        .await
        .is_ok());
    node.stop().await;
}

/// What the proxy does to the bytes a client sends.
#[derive(Clone, Copy)]
enum Tamper {
    None,
    /// Flip one bit of the byte at this offset of each connection's client stream.
    FlipAt(usize),
}

/// A TCP proxy to `upstream` that records every connection's client-to-server bytes.
async fn proxy(upstream: String, tamper: Tamper) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let recorded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = recorded.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let index = {
                    let mut l = log.lock().unwrap();
                    l.push(Vec::new());
                    l.len() - 1
                };
                let (mut server_read, mut server_write) = server.into_split();
                let (mut client_read, mut client_write) = client.split();
                let upward = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut offset = 0usize;
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        log.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                        if let Tamper::FlipAt(at) = tamper {
                            if (offset..offset + n).contains(&at) {
                                buf[at - offset] ^= 0x01;
                            }
                        }
                        offset += n;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downward = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(upward, downward);
            });
        }
    });
    (addr, recorded)
}

#[tokio::test]
async fn recorded_connections_cannot_be_replayed_or_altered() {
    let certs = tempfile::tempdir().unwrap();
    let (_ca, node_tls, gateway_tls) = cluster_certs(certs.path());
    let node = start(node_tls).await;
    let direct = client(&node.addr, Some(&gateway_tls));
    let data = vec![0x5A; 100_000];

    // A chunk written through a recording proxy, then deleted.
    let (via, recorded) = proxy(node.addr.clone(), Tamper::None).await;
    let observed = client(&via, Some(&gateway_tls));
    assert_eq!(
        put_chunk(&observed, key(1), &data).await.unwrap(),
        Response::Done
    );
    assert!(holds(&direct, key(1)).await);
    let (r, _) = direct
        .call(
            NodeId(1),
            &Request::DeleteChunks {
                version: key(1).version,
            },
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r, Response::Done);
    assert!(!holds(&direct, key(1)).await);

    // Replaying the recorded bytes on new connections writes nothing: each handshake has
    // fresh keys, so the old records do not authenticate.
    let recording = recorded.lock().unwrap().clone();
    assert!(recording.iter().any(|c| c.len() > data.len()));
    for bytes in recording {
        let mut conn = TcpStream::connect(&node.addr).await.unwrap();
        let _ = conn.write_all(&bytes).await;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("the node ends a replayed connection by itself")
            .ok();
    }
    assert!(
        !holds(&direct, key(1)).await,
        "a replayed PutChunk was applied"
    );

    // One bit changed in the middle of a chunk on the wire: the call fails, nothing is
    // written, and the node serves the next honest call.
    let (via, _) = proxy(node.addr.clone(), Tamper::FlipAt(50_000)).await;
    let altered = client(&via, Some(&gateway_tls));
    let answer = put_chunk(&altered, key(2), &data).await;
    assert!(
        matches!(answer, Err(RpcError::Unreachable { .. })),
        "{answer:?}"
    );
    assert!(
        !holds(&direct, key(2)).await,
        "an altered PutChunk was applied"
    );
    assert_eq!(
        put_chunk(&direct, key(2), &data).await.unwrap(),
        Response::Done
    );
    assert!(holds(&direct, key(2)).await);
    node.stop().await;
}
