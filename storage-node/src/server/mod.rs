//! The node's RPC listener (DESIGN 13): mutual TLS with the cluster CA (unless the config
//! chooses plain HTTP), checks the cluster secret, decodes one frame, runs the request against
//! the [`Store`] on the blocking pool, and answers with one frame.
//!
//! [`run`] takes `(listener, config, shutdown)` and never binds or reads the environment itself,
//! so tests and the dev cluster run many nodes in one process. The one `match` over requests is
//! in `dispatch`.

mod dispatch;

use crate::config::NodeConfig;
use crate::detector::Detector;
use crate::disk::DiskSpace;
use crate::health;
use crate::meta_client::MetaClient;
use crate::metrics::NodeMetrics;
use crate::peers::{Marking, NodeClient};
use crate::store::{Store, StoreError};
use crate::supervisor::Supervisor;
use crate::tls::RpcTls;
use crate::workers::NodeContext;
use anyhow::Context;
use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::limits::MAX_RPC_BODY_BYTES;
use dmpstore_common::rpc::{
    decode_frame, encode_frame, ErrorKind, GatewayAvailability, Request, Response,
    META_EPOCH_HEADER, RPC_PATH, SECRET_HEADER,
};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a shutdown waits for in-flight requests before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a caller has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the RPC certificate's files are checked for a new pair.
const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

struct Node {
    config: NodeConfig,
    store: Arc<Store>,
    started: Instant,
    /// The failure detector and the background work, when the config lists the cluster's
    /// nodes.
    cluster: Option<ClusterRole>,
    metrics: NodeMetrics,
    /// Free space on the data disk; read-only when it is full.
    disk: Arc<DiskSpace>,
    /// The store's chunk count estimate, refreshed in the background: health answers read
    /// this, never the store.
    chunks_estimate: Arc<std::sync::atomic::AtomicU64>,
    /// Test fault point `DMPSTORE_FAULT_STALL_STORE_MS`: every request on the storage pool
    /// first waits this long, one at a time (a saturated disk).
    store_stall: Option<Duration>,
    /// When the last clock-offset refusal was logged (ms since the epoch).
    last_clock_warn_ms: std::sync::atomic::AtomicU64,
    /// The newest availability report of each gateway (P_HA), for `Status`.
    gateways: std::sync::Mutex<std::collections::BTreeMap<String, GatewayAvailability>>,
}

struct ClusterRole {
    client: Arc<NodeClient>,
    detector: Arc<Detector>,
    context: Arc<NodeContext>,
    supervisor: Supervisor,
}

/// Opens the node's store and serves RPCs on `listener` until `shutdown` is cancelled; then
/// waits for in-flight requests and flushes the store.
pub async fn run(
    listener: TcpListener,
    config: NodeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let background = TaskTracker::new();
    let tls = match &config.rpc_tls {
        Some(t) => {
            Some(RpcTls::load(&t.ca_cert, &t.cert, &t.key).context("load the RPC's TLS material")?)
        }
        None => {
            tracing::warn!(
                "insecure_plaintext_rpc: RPCs, the cluster secret and all data travel in clear"
            );
            None
        }
    };
    if let Some(tls) = &tls {
        background.spawn(
            tls.cert
                .clone()
                .watch(CERT_RELOAD_INTERVAL, shutdown.clone()),
        );
    }
    let disk = Arc::new(DiskSpace::new(
        config.data_dir.clone(),
        config.min_free_bytes,
    ));
    background.spawn(disk.clone().run(shutdown.clone()));
    let chunks_estimate = Arc::new(std::sync::atomic::AtomicU64::new(store.estimate_chunks()));
    background.spawn(refresh_chunks_estimate(
        store.clone(),
        chunks_estimate.clone(),
        shutdown.clone(),
    ));
    let cluster = if config.nodes.is_empty() {
        tracing::warn!("no [[nodes]] in the config: no heartbeats, no repair");
        None
    } else {
        Some(start_cluster_role(
            &config,
            &store,
            tls.as_ref(),
            &background,
            &shutdown,
        )?)
    };
    let node = Arc::new(Node {
        config,
        store,
        started: Instant::now(),
        cluster,
        metrics: NodeMetrics::new(),
        disk,
        chunks_estimate,
        store_stall: std::env::var("DMPSTORE_FAULT_STALL_STORE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis),
        last_clock_warn_ms: Default::default(),
        gateways: Default::default(),
    });
    if let Some(addr) = node.config.health_listen_addr {
        let health = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind the health listener {addr}"))?;
        tracing::info!(%addr, "health probes served (/health/live, /health/ready)");
        background.spawn(serve_health(health, node.clone(), shutdown.clone()));
    }
    tracing::info!(node = %node.config.id(), addr = %listener.local_addr()?, tls = tls.is_some(), "storage node serving");
    let graceful = GracefulShutdown::new();
    let conns = TaskTracker::new();
    let acceptor = tls.map(|t| TlsAcceptor::from(t.server));
    serve(&listener, &node, acceptor, &graceful, &conns, &shutdown).await;
    drop(listener);
    wind_down(graceful, &background, &conns).await;
    let flushing = node.clone();
    tokio::task::spawn_blocking(move || flushing.store.flush())
        .await
        .context("join flush")?
        .context("flush store at shutdown")?;
    tracing::info!("storage node stopped");
    Ok(())
}

fn open_store(config: &NodeConfig) -> anyhow::Result<Arc<Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    Ok(Arc::new(Store::open(&config.data_dir).with_context(
        || format!("open RocksDB at {}", config.data_dir.display()),
    )?))
}

/// The cluster side of a node: the RPC client with the cluster map, the failure detector, and
/// the background workers under their supervisor.
fn start_cluster_role(
    config: &NodeConfig,
    store: &Arc<Store>,
    tls: Option<&RpcTls>,
    background: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<ClusterRole> {
    let map = cluster_map(config, store)?;
    let (me, r) = (config.id(), 2 * usize::from(config.parity_chunks) + 1);
    // Finish what a crash may have interrupted: drop the partitions left behind.
    spawn_drop_left_partitions(store, &map, me, r);
    let client = Arc::new(NodeClient::new(
        Arc::new(map),
        &config.cluster_secret,
        Marking::ByDetector,
        tls.map(|t| t.client.clone()),
    )?);
    {
        // Every newer map, however it arrives (admin, a peer's heartbeat, a stale-map
        // refusal), is persisted, and once a metadata change is finished the partitions this
        // node no longer replicates are dropped: a node that leaves a replica set and enters
        // it again later starts empty there, so its old records cannot come back.
        let store = store.clone();
        client.on_new_map(Box::new(move |map| {
            if let Err(e) = store.set_cluster_map(&map.encode()) {
                tracing::error!(error = %e, "could not persist the new cluster map");
            }
            spawn_drop_left_partitions(&store, map, me, r);
        }));
    }
    let detector = Arc::new(Detector::new(
        config.id(),
        client.clone(),
        config.failure_detector.clone(),
    ));
    let context = Arc::new(NodeContext::new(
        config.id(),
        store.clone(),
        client.clone(),
        detector.clone(),
        config.repair.clone(),
        config.scrub.clone(),
        MetaClient::new(
            client.clone(),
            config.parity_chunks,
            Duration::from_millis(config.max_clock_offset_ms),
            background.clone(),
        ),
    ));
    let supervisor = Supervisor::new(background.clone());
    crate::workers::start(&context, &detector, &supervisor, shutdown);
    Ok(ClusterRole {
        client,
        detector,
        context,
        supervisor,
    })
}

/// The config's cluster map, or the one installed since (a node was added) if it is newer.
fn cluster_map(config: &NodeConfig, store: &Store) -> anyhow::Result<ClusterMap> {
    let map = crate::config::cluster_map(&config.nodes)?;
    let Some(saved) = store.cluster_map()? else {
        return Ok(map);
    };
    match ClusterMap::decode(&saved) {
        Some(saved) if saved.version > map.version => {
            tracing::info!(
                version = saved.version,
                nodes = saved.len(),
                "using the cluster map installed earlier"
            );
            Ok(saved)
        }
        Some(_) => Ok(map),
        None => anyhow::bail!("the stored cluster map is unreadable"),
    }
}

/// Accepts connections and serves them (each an owned task) until `shutdown`; with `tls`, a
/// connection is served only once its caller showed a certificate of the cluster CA.
async fn serve(
    listener: &TcpListener,
    node: &Arc<Node>,
    tls: Option<TlsAcceptor>,
    graceful: &GracefulShutdown,
    conns: &TaskTracker,
    shutdown: &CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(node.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) if e.kind() != std::io::ErrorKind::InvalidData => {
                                // Closed or reset before the handshake finished: a port probe,
                                // or a caller's pool dropping a connection it no longer needs.
                                tracing::debug!(%peer, error = %e, "RPC connection ended during the TLS handshake");
                                return;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(%peer, error = %e, "RPC connection refused: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%peer, "RPC connection refused: no TLS handshake within the deadline");
                                return;
                            }
                        };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "rpc connection ended with an error");
            }
        });
    }
}

/// Serves `/health/live` and `/health/ready` (plain HTTP, nothing else) until `shutdown`.
async fn serve_health(listener: TcpListener, node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let node = node.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (status, text) = match health::probe(&req) {
                    Some(probe) => health::answer(
                        match probe {
                            health::Probe::Live => Ok(()),
                            health::Probe::Ready => readiness(&node),
                        },
                        probe,
                    ),
                    None => (
                        StatusCode::NOT_FOUND,
                        "only /health/live and /health/ready\n".into(),
                    ),
                };
                let mut r = http::Response::new(Full::new(Bytes::from(text)));
                *r.status_mut() = status;
                std::future::ready(Ok::<_, std::convert::Infallible>(r))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await;
        });
    }
}

/// Whether the node can serve now: its disk takes writes, and with a cluster, at most `m`
/// nodes (by its failure detector) are not Up.
fn readiness(node: &Node) -> Result<(), String> {
    if node.disk.read_only() {
        return Err("the data disk is nearly full: read-only".into());
    }
    if let Some(c) = &node.cluster {
        // Peers count once they answered a heartbeat and are Up (right after start every
        // peer is Up by default but none has been heard yet); the node counts itself.
        let map = c.client.map();
        let heard = c
            .detector
            .views()
            .iter()
            .filter(|v| v.state == crate::peers::NodeState::Up && v.last_heartbeat_ms_ago.is_some())
            .count();
        health::quorum(heard, map.len(), usize::from(node.config.parity_chunks))?;
    }
    Ok(())
}

/// Waits (each for at most [`SHUTDOWN_GRACE`]) for in-flight requests, background work and
/// open connections to finish.
async fn wind_down(graceful: GracefulShutdown, background: &TaskTracker, conns: &TaskTracker) {
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace");
    }
    background.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, background.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work did not stop within the shutdown grace");
    }
    conns.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, conns.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; closing the store anyway");
    }
}

type HttpResponse = http::Response<Full<Bytes>>;

fn reply(status: StatusCode, response: &Response, payload: &[u8]) -> HttpResponse {
    let mut r = http::Response::new(Full::new(encode_frame(response, payload)));
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> HttpResponse {
    reply(
        status,
        &Response::Error {
            kind,
            message: message.into(),
        },
        b"",
    )
}

/// Compares secrets in time independent of where they differ.
fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// One HTTP request: `GET /metrics`, or one RPC frame answered with one frame.
async fn handle(
    node: Arc<Node>,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, std::convert::Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        return Ok(metrics(node).await);
    }
    if req.method() != Method::POST || req.uri().path() != RPC_PATH {
        return Ok(error(
            StatusCode::NOT_FOUND,
            ErrorKind::BadRequest,
            "unknown RPC path",
        ));
    }
    let (request, payload, caller_epoch) = match read_request(&node, req).await {
        Ok(read) => read,
        Err(refused) => return Ok(refused),
    };
    if let Some(refused) = refuse(&node, &request, caller_epoch) {
        return Ok(refused);
    }
    Ok(execute(node, request, payload).await)
}

/// The node's Prometheus text, with the repair, detector and worker figures taken now.
async fn metrics(node: Arc<Node>) -> HttpResponse {
    let text = tokio::task::spawn_blocking(move || {
        let cluster = node.cluster.as_ref();
        let repair = cluster.map(|c| c.context.status());
        let peers = cluster.map(|c| c.detector.views()).unwrap_or_default();
        if let Some(offset) = cluster.and_then(|c| c.client.clock_offset_ms()) {
            node.metrics.clock_offset_ms.set(offset);
        }
        let workers = cluster.map(|c| c.supervisor.reports()).unwrap_or_default();
        node.metrics.render(
            repair.as_ref(),
            &peers,
            &workers,
            node.store.estimate_chunks(),
            &node.disk.report(),
        )
    })
    .await
    .unwrap_or_default();
    let mut r = http::Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Authenticates an RPC and decodes its frame: the request, its payload, and the caller's
/// metadata epoch (if it sent one); or the refusal to answer with.
async fn read_request(
    node: &Node,
    req: http::Request<Incoming>,
) -> Result<(Request, Bytes, Option<u64>), HttpResponse> {
    let secret = req
        .headers()
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let caller_epoch: Option<u64> = req
        .headers()
        .get(META_EPOCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if !secret_matches(secret, node.config.cluster_secret.as_bytes()) {
        tracing::warn!("RPC refused: missing or wrong cluster secret");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            ErrorKind::Unauthorized,
            "wrong cluster secret",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_RPC_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                format!("read body: {e}"),
            ))
        }
    };
    match decode_frame(body) {
        Ok((request, payload)) => Ok((request, payload, caller_epoch)),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            e.to_string(),
        )),
    }
}

/// The refusal a request meets before it runs, if any: a metadata request from a caller with
/// an older metadata epoch, a chunk write to a node being drained, anything but `Status` and
/// `Isolate` during an isolation drill, new data to a node whose disk is full.
fn refuse(node: &Node, request: &Request, caller_epoch: Option<u64>) -> Option<HttpResponse> {
    if request.is_metadata() {
        if let Some(c) = &node.cluster {
            let mine = c.client.map().metadata_epoch;
            let theirs = caller_epoch.unwrap_or(mine);
            if theirs < mine {
                return Some(error(
                    StatusCode::OK,
                    ErrorKind::StaleMap,
                    format!("metadata epoch {theirs} is older than this node's {mine}: fetch the cluster map and retry"),
                ));
            }
        }
    }
    if let Request::PutChunk { .. } = request {
        let me = node.config.id();
        if node
            .cluster
            .as_ref()
            .is_some_and(|c| c.context.draining().contains(&me))
        {
            return Some(error(
                StatusCode::OK,
                ErrorKind::Draining,
                "this node is being drained and takes no new chunks",
            ));
        }
    }
    if matches!(request, Request::PutChunk { .. } | Request::MetaPut { .. })
        && node.disk.read_only()
    {
        return Some(read_only(&node.disk));
    }
    let isolated = node
        .cluster
        .as_ref()
        .is_some_and(|c| c.client.is_isolated());
    if isolated && !matches!(request, Request::Status | Request::Isolate { .. }) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable,
            "this node is isolated from the cluster (drill)",
        ));
    }
    None
}

/// Runs a request (on the blocking pool, but for the ones that touch memory only), counts it,
/// and frames its answer.
async fn execute(node: Arc<Node>, request: Request, payload: Bytes) -> HttpResponse {
    let name = request.name();
    let started = Instant::now();
    // Heartbeats and reports touch memory only: answered at once, never queued behind storage
    // work on the blocking pool, so a busy node is not taken for a dead one.
    let inline = matches!(
        request,
        Request::Heartbeat { .. } | Request::Health | Request::GatewayReport(_)
    );
    let result = if inline {
        Ok(dispatch::dispatch(&node, request, payload))
    } else {
        let dispatching = node.clone();
        tokio::task::spawn_blocking(move || {
            stall_for_tests(dispatching.store_stall);
            dispatch::dispatch(&dispatching, request, payload)
        })
        .await
    };
    let ok = matches!(result, Ok(Ok(_)));
    node.metrics
        .observe_rpc(name, ok, started.elapsed().as_secs_f64());
    match result {
        Ok(Ok((response, payload))) => reply(StatusCode::OK, &response, &payload),
        Ok(Err(e)) if crate::disk::is_no_space(&e) => {
            node.disk.note_no_space();
            read_only(&node.disk)
        }
        Ok(Err(e)) => store_error(name, e),
        Err(e) => {
            tracing::error!(rpc = name, error = %e, "RPC handler panicked");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Unavailable,
                "handler failed",
            )
        }
    }
}

/// The test fault point behind `DMPSTORE_FAULT_STALL_STORE_MS`: storage requests wait `stall`
/// each, one after another.
fn stall_for_tests(stall: Option<Duration>) {
    static SATURATED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(stall) = stall {
        let _one_at_a_time = SATURATED.lock().unwrap_or_else(|e| e.into_inner());
        std::thread::sleep(stall);
    }
}

/// Refreshes the store's chunk count estimate every second until `shutdown`.
async fn refresh_chunks_estimate(
    store: Arc<Store>,
    estimate: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
        let store = store.clone();
        if let Ok(n) = tokio::task::spawn_blocking(move || store.estimate_chunks()).await {
            estimate.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The refusal of new data by a node whose disk is full.
fn read_only(disk: &DiskSpace) -> HttpResponse {
    let d = disk.report();
    error(
        StatusCode::OK,
        ErrorKind::ReadOnly,
        format!(
            "this node's disk is full ({} bytes free, {} kept in reserve): it takes no new data",
            d.free_bytes, d.reserve_bytes
        ),
    )
}

fn store_error(rpc: &str, e: StoreError) -> HttpResponse {
    match e {
        StoreError::NotFound => error(StatusCode::OK, ErrorKind::NotFound, "not found"),
        StoreError::Corrupt(msg) => {
            tracing::warn!(rpc, %msg, "corrupt data detected");
            error(StatusCode::OK, ErrorKind::Corrupt, msg)
        }
        StoreError::ChecksumMismatch => error(StatusCode::OK, ErrorKind::BadRequest, e.to_string()),
        StoreError::Format(_) | StoreError::Db(_) => {
            tracing::error!(rpc, error = %e, "store operation failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Unavailable,
                e.to_string(),
            )
        }
    }
}

/// Under a map with no metadata change in progress, drops (in the background) the records
/// of every partition `me` is not a replica of.
fn spawn_drop_left_partitions(
    store: &Arc<Store>,
    map: &dmpstore_common::cluster::ClusterMap,
    me: dmpstore_common::ids::NodeId,
    r: usize,
) {
    if map.previous_metadata_nodes().is_none() {
        let (store, map) = (store.clone(), map.clone());
        tokio::task::spawn_blocking(move || drop_left_partitions(&store, &map, me, r));
    }
}

/// Drops the records of every partition `me` is not a replica of under `map`.
fn drop_left_partitions(
    store: &Store,
    map: &dmpstore_common::cluster::ClusterMap,
    me: dmpstore_common::ids::NodeId,
    r: usize,
) {
    let partitions = match store.meta_partitions() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not list metadata partitions");
            return;
        }
    };
    for p in partitions {
        if dmpstore_common::placement::partition_quorum(map, &p, r)
            .nodes()
            .contains(&me)
        {
            continue;
        }
        match store.meta_drop_partition(&p) {
            Ok(()) => {
                tracing::info!(partition = %p, map_version = map.version, "no longer a replica of this partition: its records dropped here")
            }
            Err(e) => {
                tracing::warn!(partition = %p, error = %e, "could not drop a partition left behind")
            }
        }
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long a restarted process keeps trying to bind its address while sockets of its
/// previous life still hold it (connections the killed process left in FIN_WAIT).
const BIND_PATIENCE: Duration = Duration::from_secs(60);

/// Binds `addr`, retrying while the address is still in use by sockets of a previous run.
pub async fn bind_retrying(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let give_up = Instant::now() + BIND_PATIENCE;
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                if !warned {
                    tracing::warn!(%addr, "address in use (a previous run's connections?); retrying");
                    warned = true;
                }
                // Deliberate retry backoff.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("bind {addr}")),
        }
    }
}

/// Runs a node until SIGINT or SIGTERM; shared by the `storage-node` binary.
pub async fn run_until_signal(listener: TcpListener, config: NodeConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let server = tokio::spawn(run(listener, config, shutdown));
    wait_for_signal().await;
    tracing::info!("shutdown requested");
    signal.cancel();
    server.await.context("join node server")?
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
