//! The metadata quorum client against three real nodes (RocksDB, TCP) in this process: the
//! write-order rule, the read write-back, and repair's compare-and-set (ADR 0004). A writer
//! with a slow clock is played by stamping records a little in the future directly on the
//! replicas, as a faster gateway would.

use bytes::Bytes;
use dmpstore_common::cluster::{ClusterMap, NodeInfo};
use dmpstore_common::ids::{Hlc, NodeId};
use dmpstore_common::record::Versioned;
use dmpstore_common::rpc::{LeaseCheck, Request, Response};
use dmpstore_storage_node::config::NodeConfig;
use dmpstore_storage_node::meta_client::{MetaClient, MetaError};
use dmpstore_storage_node::peers::{wall_ms, Marking, NodeClient};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SECRET: &str = "test-cluster-secret-0123456789";

struct Nodes {
    client: Arc<NodeClient>,
    stops: Vec<CancellationToken>,
    tasks: Vec<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    configs: Vec<NodeConfig>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Nodes {
    /// Stops node `i` (0-based) and waits until it has closed its store.
    async fn stop(&mut self, i: usize) {
        self.stops[i].cancel();
        if let Some(task) = self.tasks[i].take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Starts node `i` again on its address and its store.
    async fn start(&mut self, i: usize) {
        let config = self.configs[i].clone();
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        self.tasks[i] = Some(tokio::spawn(dmpstore_storage_node::server::run(
            listener,
            config,
            stop.clone(),
        )));
        self.stops[i] = stop;
    }
}

async fn three_nodes() -> Nodes {
    let (mut infos, mut stops, mut tasks, mut dirs) = (vec![], vec![], vec![], vec![]);
    let mut configs = Vec::new();
    for id in 1..=3u32 {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = NodeConfig {
            node_id: id,
            listen_addr: addr,
            health_listen_addr: None,
            data_dir: dir.path().join("db"),
            cluster_secret: SECRET.into(),
            rpc_tls: None,
            insecure_plaintext_rpc: true,
            zone: "z".into(),
            parity_chunks: 1,
            max_clock_offset_ms: 500,
            min_free_bytes: dmpstore_storage_node::config::DEFAULT_MIN_FREE_BYTES,
            failure_detector: Default::default(),
            repair: Default::default(),
            scrub: Default::default(),
            nodes: Vec::new(),
        };
        let stop = CancellationToken::new();
        configs.push(config.clone());
        tasks.push(Some(tokio::spawn(dmpstore_storage_node::server::run(
            listener,
            config,
            stop.clone(),
        ))));
        infos.push(NodeInfo {
            id: NodeId(id),
            addr: addr.to_string(),
            zone: "z".into(),
            weight: 1,
        });
        stops.push(stop);
        dirs.push(dir);
    }
    let map = Arc::new(ClusterMap::new(1, infos).unwrap());
    let client = Arc::new(NodeClient::new(map, SECRET, Marking::ByDetector, None).unwrap());
    Nodes {
        client,
        stops,
        tasks,
        configs,
        _dirs: dirs,
    }
}

fn meta(nodes: &Nodes) -> MetaClient {
    MetaClient::new(
        nodes.client.clone(),
        1,
        Duration::from_millis(500),
        TaskTracker::new(),
    )
}

/// Writes `record` straight to one node, as another writer would.
async fn raw_put(nodes: &Nodes, node: u32, record: &Versioned) {
    let req = Request::MetaPut {
        partition: "b".into(),
        key: "k".into(),
        record: record.clone(),
        expect: None,
        lease: LeaseCheck::Ignore,
    };
    let (r, _) = nodes
        .client
        .call(NodeId(node), &req, Bytes::new())
        .await
        .unwrap();
    assert!(
        matches!(r, Response::MetaPut { applied: true, .. }),
        "{r:?}"
    );
}

async fn raw_get(nodes: &Nodes, node: u32) -> Option<Versioned> {
    let req = Request::MetaGet {
        partition: "b".into(),
        key: "k".into(),
    };
    match nodes
        .client
        .call(NodeId(node), &req, Bytes::new())
        .await
        .unwrap()
    {
        (Response::MetaValue(v), _) => v,
        other => panic!("{other:?}"),
    }
}

/// A record stamped 300 ms ahead of this clock: what a gateway whose clock runs 0.3 s fast
/// writes.
fn from_a_faster_clock(value: &[u8]) -> Versioned {
    Versioned {
        hlc: Hlc::from_parts(wall_ms() + 300, 0),
        value: value.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_write_goes_above_a_newer_stamp_and_wins() {
    let nodes = three_nodes().await;
    let ahead = from_a_faster_clock(b"first, from the fast gateway");
    for n in 1..=3 {
        raw_put(&nodes, n, &ahead).await;
    }
    let client = meta(&nodes);
    let out = client
        .put("b", "k", b"second, from this one".to_vec())
        .await
        .unwrap();
    assert!(out.hlc > ahead.hlc, "the write went above the newer stamp");
    assert_eq!(out.replaced, vec![ahead.clone()]);
    let read = client.get("b", "k").await.unwrap().unwrap();
    assert_eq!(read.value, b"second, from this one");

    // The planted bug (refusals counted as success) acknowledges a write that lost.
    let ahead = from_a_faster_clock(b"third, from the fast gateway");
    for n in 1..=3 {
        raw_put(&nodes, n, &ahead).await;
    }
    let buggy = meta(&nodes).with_unsafe_ignore_refusals(true);
    buggy
        .put("b", "k", b"fourth, acknowledged".to_vec())
        .await
        .unwrap();
    let read = client.get("b", "k").await.unwrap().unwrap();
    assert_eq!(
        read.value, b"third, from the fast gateway",
        "the planted bug loses the write"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_on_a_minority_is_written_back_before_it_is_returned() {
    let nodes = three_nodes().await;
    let client = meta(&nodes);
    client.put("b", "k", b"old".to_vec()).await.unwrap();
    // A write that reached one replica only (its writer died), then one replica stops: a
    // read must now meet the lone copy.
    let half = Versioned {
        hlc: client.now(),
        value: b"half-written".to_vec(),
    };
    raw_put(&nodes, 1, &half).await;
    nodes.stops[2].cancel();
    let read = client.get("b", "k").await.unwrap().unwrap();
    assert_eq!(read, half);
    // Returned only once a majority holds it: node 2 has it now, so no later read can go back.
    assert_eq!(raw_get(&nodes, 2).await, Some(half));
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_compare_and_set_never_overrides_a_client_write() {
    let nodes = three_nodes().await;
    let client = meta(&nodes);
    let first = client.put("b", "k", b"v1".to_vec()).await.unwrap();
    client
        .put("b", "k", b"v2 by a client".to_vec())
        .await
        .unwrap();
    // Repair read v1 before the client's write and now rewrites it.
    let applied = client
        .replace("b", "k", first.hlc, b"v1 repaired".to_vec())
        .await
        .unwrap();
    assert!(!applied);
    assert_eq!(
        client.get("b", "k").await.unwrap().unwrap().value,
        b"v2 by a client"
    );
    // Without a write in between the rewrite lands, one stamp above.
    let current = client.get("b", "k").await.unwrap().unwrap();
    assert!(client
        .replace("b", "k", current.hlc, b"v2 repaired".to_vec())
        .await
        .unwrap());
    let after = client.get("b", "k").await.unwrap().unwrap();
    assert_eq!(after.hlc, current.hlc.next_revision().unwrap());
    // And a client write after it still wins, whatever its clock says.
    client.put("b", "k", b"v3".to_vec()).await.unwrap();
    assert_eq!(client.get("b", "k").await.unwrap().unwrap().value, b"v3");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repair_rewrite_left_on_one_replica_never_shadows_a_later_client_write() {
    let mut nodes = three_nodes().await;
    // A version written by a gateway whose clock runs ahead.
    let version = from_a_faster_clock(b"v1");
    for n in 1..=3 {
        raw_put(&nodes, n, &version).await;
    }
    // Repair rewrote it (new placement) on node 1 only, and node 1 went down.
    let rewrite = Versioned {
        hlc: version.hlc.next_revision().unwrap(),
        value: b"~v1 repaired (a value that sorts above the client's)".to_vec(),
    };
    raw_put(&nodes, 1, &rewrite).await;
    nodes.stop(0).await;
    // A client whose clock is behind overwrites the key through nodes 2 and 3: it meets v1
    // there and goes above it.
    let client = meta(&nodes);
    let written = client.put("b", "k", b"v2".to_vec()).await.unwrap();
    assert!(written.hlc > rewrite.hlc, "{written:?} vs {rewrite:?}");
    // Node 1 comes back and node 3 goes: every read now meets the rewrite beside v2. The
    // acknowledged overwrite must win (it did not when a rewrite was stamped one above the
    // version, the very stamp a client that had just seen the version draws next).
    nodes.start(0).await;
    nodes.stop(2).await;
    let read = client.get("b", "k").await.unwrap().unwrap();
    assert_eq!(read.value, b"v2");
}

/// Takes the lease on `b/k` for `token` on `node`, as a conditional writer does.
async fn raw_lock(nodes: &Nodes, node: u32, token: [u8; 16]) {
    let req = Request::MetaLock {
        partition: "b".into(),
        key: "k".into(),
        token,
        ttl_ms: 10_000,
    };
    let (r, _) = nodes
        .client
        .call(NodeId(node), &req, Bytes::new())
        .await
        .unwrap();
    assert!(matches!(r, Response::Lock { granted: true }), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minority_record_stays_hidden_while_another_writer_holds_the_lease() {
    let nodes = three_nodes().await;
    let client = meta(&nodes);
    client.put("b", "k", b"old".to_vec()).await.unwrap();
    // A write that reached one replica only, then a conditional writer that leased a majority
    // including it and saw "old" there (on the two others, say).
    let half = Versioned {
        hlc: client.now(),
        value: b"half-written".to_vec(),
    };
    raw_put(&nodes, 1, &half).await;
    let token = [7u8; 16];
    raw_lock(&nodes, 1, token).await;
    raw_lock(&nodes, 2, token).await;
    // Readers meanwhile, whichever majority answers them: none may make the lone copy
    // visible while the holder decides, or the holder's decision would rest on a state that
    // was already gone. They wait for the lease instead (or see "old").
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let reader = meta(&nodes);
            tokio::spawn(async move { reader.get("b", "k").await })
        })
        .collect();
    let holder = client
        .put_fenced(
            "b",
            "k",
            b"decided".to_vec(),
            Some((token, std::time::Instant::now() + Duration::from_secs(7))),
        )
        .await
        .unwrap();
    assert!(holder.hlc > half.hlc);
    for r in readers {
        let read = r.await.unwrap().unwrap().unwrap();
        assert_ne!(
            read.value, b"half-written",
            "a read made a minority record visible under another writer's lease"
        );
    }
    assert_eq!(
        client.get("b", "k").await.unwrap().unwrap().value,
        b"decided"
    );
    // The holder's own read writes back under its lease: a lone copy newer than what it
    // committed (a fast gateway's write) is visible to it at once.
    let ahead = from_a_faster_clock(b"from the fast gateway");
    raw_put(&nodes, 1, &ahead).await;
    nodes.stops[2].cancel();
    let read = client
        .get_holding("b", "k", Some(token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, ahead);
    assert_eq!(raw_get(&nodes, 2).await, Some(ahead));
}

/// A newer stamp on one replica of three is a write still in flight (no read returned it, no
/// writer was told it landed). A write applied by the other two is done at its own stamp:
/// going above the newer one would make it appear twice if a read saw it in between.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_applied_by_a_majority_is_done_below_a_newer_stamp_in_flight() {
    let nodes = three_nodes().await;
    let in_flight = from_a_faster_clock(b"in flight, from the fast gateway");
    raw_put(&nodes, 1, &in_flight).await;
    let client = meta(&nodes);
    let out = client
        .put("b", "k", b"from this one".to_vec())
        .await
        .unwrap();
    assert!(out.hlc < in_flight.hlc, "the write kept its stamp");
    for n in [2, 3] {
        let held = raw_get(&nodes, n).await.unwrap();
        assert_eq!(
            (held.hlc, held.value.as_slice()),
            (out.hlc, &b"from this one"[..])
        );
    }
}

/// A write that applied on one replica of three while another holds a newer stamp and the
/// third does not answer may have been read (a majority without the newer stamp exists): it
/// keeps its stamp rather than go above the newer one, and fails (outcome unknown) when no
/// majority applies it, so it can never appear again above a write made after that read.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_a_read_may_have_seen_never_goes_above_a_newer_stamp() {
    let mut nodes = three_nodes().await;
    let newer = from_a_faster_clock(b"in flight, from the fast gateway");
    raw_put(&nodes, 1, &newer).await;
    nodes.stop(2).await;
    let client = meta(&nodes);
    let err = client
        .put("b", "k", b"from this one".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::Contended { .. }), "{err}");
    let held = raw_get(&nodes, 2).await.unwrap();
    assert!(
        held.hlc < newer.hlc,
        "node 2 holds the write at its first stamp"
    );
    assert_eq!(
        raw_get(&nodes, 1).await.unwrap(),
        newer,
        "nothing went above it"
    );
}
