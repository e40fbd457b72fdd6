//! The node's RPC listener (DESIGN 13): checks the cluster secret, decodes one frame, runs the
//! request against the [`Store`] on the blocking pool, and answers with one frame.
//!
//! [`run`] takes `(listener, config, shutdown)` and never binds or reads the environment itself,
//! so tests and the dev cluster run many nodes in one process.

use crate::config::NodeConfig;
use crate::detector::Detector;
use crate::disk::DiskSpace;
use crate::meta_client::MetaClient;
use crate::metrics::NodeMetrics;
use crate::peers::{Marking, NodeClient};
use crate::repair::Repair;
use crate::store::{LeaseRefusal, Store, StoreError};
use crate::supervisor::Supervisor;
use anyhow::Context;
use bytes::Bytes;
use dmpstore_common::limits::{
    MAX_GATEWAY_REPORTS, MAX_RPC_BODY_BYTES, MAX_SCAN_ENTRIES, MAX_SCAN_PAGE_BYTES,
};
use dmpstore_common::rpc::{
    decode_frame, encode_frame, ErrorKind, GatewayAvailability, HealthReport, LeaseCheck,
    NodeStatus, Request, Response, META_EPOCH_HEADER, RPC_PATH, SECRET_HEADER,
};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a shutdown waits for in-flight requests before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct Node {
    config: NodeConfig,
    store: Arc<Store>,
    started: Instant,
    /// The failure detector and repair, when the config lists the cluster's nodes.
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
    repair: Arc<Repair>,
    supervisor: Supervisor,
}

/// Opens the node's store and serves RPCs on `listener` until `shutdown` is cancelled; then
/// waits for in-flight requests and flushes the store.
pub async fn run(
    listener: TcpListener,
    config: NodeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let store = Arc::new(
        Store::open(&config.data_dir)
            .with_context(|| format!("open RocksDB at {}", config.data_dir.display()))?,
    );
    let background = TaskTracker::new();
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
        let mut map = crate::config::cluster_map(&config.nodes)?;
        // A map installed since (a node was added) is newer than the config's.
        if let Some(saved) = store.cluster_map()?.as_deref() {
            match dmpstore_common::cluster::ClusterMap::decode(saved) {
                Some(saved) if saved.version > map.version => {
                    tracing::info!(
                        version = saved.version,
                        nodes = saved.len(),
                        "using the cluster map installed earlier"
                    );
                    map = saved;
                }
                Some(_) => {}
                None => anyhow::bail!("the stored cluster map is unreadable"),
            }
        }
        let (me, r) = (config.id(), 2 * usize::from(config.parity_chunks) + 1);
        // Finish what a crash may have interrupted: drop the partitions left behind.
        spawn_drop_left_partitions(&store, &map, me, r);
        let map = Arc::new(map);
        let client = Arc::new(NodeClient::new(
            map,
            &config.cluster_secret,
            Marking::ByDetector,
        )?);
        {
            // Every newer map, however it arrives (admin, a peer's heartbeat, a stale-map
            // refusal), is persisted, and once a metadata change is finished the partitions
            // this node no longer replicates are dropped: a node that leaves a replica set and
            // enters it again later starts empty there, so its old records cannot come back.
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
        let repair = Arc::new(Repair::new(
            config.id(),
            store.clone(),
            client.clone(),
            detector.clone(),
            config.repair.clone(),
            config.scrub.clone(),
            MetaClient::new(
                client.clone(),
                config.parity_chunks,
                std::time::Duration::from_millis(config.max_clock_offset_ms),
                background.clone(),
            ),
        ));
        let supervisor = Supervisor::new(background.clone());
        {
            // Heartbeats on a thread of their own: never queued behind storage work.
            let (d, sd) = (detector.clone(), shutdown.clone());
            supervisor.spawn("detector", shutdown.clone(), move || {
                let (d, sd) = (d.clone(), sd.clone());
                crate::supervisor::on_own_thread("heartbeats", move || d.run(sd))
            });
        }
        macro_rules! repair_worker {
            ($name:literal, $method:ident) => {{
                let (r, sd) = (repair.clone(), shutdown.clone());
                supervisor.spawn($name, shutdown.clone(), move || {
                    r.clone().$method(sd.clone())
                });
            }};
        }
        repair_worker!("repair scanner", run_scanner);
        repair_worker!("repair worker", run_worker);
        repair_worker!("scrubber", run_scrubber);
        repair_worker!("garbage collection", run_gc);
        repair_worker!("anti-entropy", run_anti_entropy);
        repair_worker!("orphan scan", run_orphan_scan);
        repair_worker!("drain sweep", run_drain_sweep);
        Some(ClusterRole {
            client,
            detector,
            repair,
            supervisor,
        })
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
    tracing::info!(node = %node.config.id(), addr = %listener.local_addr()?, "storage node serving");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let conns = TaskTracker::new();
    loop {
        let (stream, _peer) = tokio::select! {
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
        let service = hyper::service::service_fn(move |req| handle(node.clone(), req));
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "rpc connection ended with an error");
            }
        });
    }
    drop(listener);
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
    let flushing = node.clone();
    tokio::task::spawn_blocking(move || flushing.store.flush())
        .await
        .context("join flush")?
        .context("flush store at shutdown")?;
    tracing::info!("storage node stopped");
    Ok(())
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

async fn handle(
    node: Arc<Node>,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, std::convert::Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let n = node.clone();
        let text = tokio::task::spawn_blocking(move || {
            let repair = n.cluster.as_ref().map(|c| c.repair.status());
            let peers = n
                .cluster
                .as_ref()
                .map(|c| c.detector.views())
                .unwrap_or_default();
            if let Some(offset) = n.cluster.as_ref().and_then(|c| c.client.clock_offset_ms()) {
                n.metrics.clock_offset_ms.set(offset);
            }
            let workers = n
                .cluster
                .as_ref()
                .map(|c| c.supervisor.reports())
                .unwrap_or_default();
            n.metrics.render(
                repair.as_ref(),
                &peers,
                &workers,
                n.store.estimate_chunks(),
                &n.disk.report(),
            )
        })
        .await
        .unwrap_or_default();
        let mut r = http::Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(r);
    }
    if req.method() != Method::POST || req.uri().path() != RPC_PATH {
        return Ok(error(
            StatusCode::NOT_FOUND,
            ErrorKind::BadRequest,
            "unknown RPC path",
        ));
    }
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
        return Ok(error(
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
            return Ok(error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                format!("read body: {e}"),
            ))
        }
    };
    let (request, payload): (Request, Bytes) = match decode_frame(body) {
        Ok(x) => x,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                e.to_string(),
            ))
        }
    };
    let name = request.name();
    if request.is_metadata() {
        if let Some(c) = &node.cluster {
            let mine = c.client.map().metadata_epoch;
            let theirs = caller_epoch.unwrap_or(mine);
            if theirs < mine {
                return Ok(error(
                    StatusCode::OK,
                    ErrorKind::StaleMap,
                    format!("metadata epoch {theirs} is older than this node's {mine}: fetch the cluster map and retry"),
                ));
            }
        }
    }
    if let Request::PutChunk { .. } = &request {
        let me = node.config.id();
        if node
            .cluster
            .as_ref()
            .is_some_and(|c| c.repair.draining().contains(&me))
        {
            return Ok(error(
                StatusCode::OK,
                ErrorKind::Draining,
                "this node is being drained and takes no new chunks",
            ));
        }
    }
    if matches!(request, Request::PutChunk { .. } | Request::MetaPut { .. })
        && node.disk.read_only()
    {
        return Ok(read_only(&node.disk));
    }
    let isolated = node
        .cluster
        .as_ref()
        .is_some_and(|c| c.client.is_isolated());
    if isolated && !matches!(request, Request::Status | Request::Isolate { .. }) {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable,
            "this node is isolated from the cluster (drill)",
        ));
    }
    let started = Instant::now();
    // Heartbeats and reports touch memory only: answered at once, never queued behind storage
    // work on the blocking pool, so a busy node is not taken for a dead one.
    let inline = matches!(
        request,
        Request::Heartbeat { .. } | Request::Health | Request::GatewayReport(_)
    );
    let result = if inline {
        Ok(dispatch(&node, request, payload))
    } else {
        let dispatching = node.clone();
        tokio::task::spawn_blocking(move || {
            stall_for_tests(dispatching.store_stall);
            dispatch(&dispatching, request, payload)
        })
        .await
    };
    let ok = matches!(result, Ok(Ok(_)));
    node.metrics
        .observe_rpc(name, ok, started.elapsed().as_secs_f64());
    Ok(match result {
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
    })
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

/// The one dispatch point of node RPCs.
fn dispatch(
    node: &Node,
    request: Request,
    payload: Bytes,
) -> Result<(Response, Bytes), StoreError> {
    let store = &node.store;
    let done = |r: Response| Ok((r, Bytes::new()));
    match request {
        Request::PutChunk {
            key,
            checksum,
            home,
        } => {
            let home = home.map(|h| h.encode());
            store.put_chunk(&key, &checksum, &payload, home.as_deref())?;
            done(Response::Done)
        }
        Request::GetChunk { key } => match store.get_chunk(&key) {
            Ok((checksum, data)) => Ok((Response::Chunk { checksum }, data)),
            Err(StoreError::Corrupt(msg)) => {
                // Never returned as data; rebuilt in place from its siblings.
                if let Some(c) = &node.cluster {
                    if let Err(e) = c.repair.heal(&key) {
                        tracing::warn!(error = %e, "could not queue a corrupt chunk for healing");
                    }
                }
                Err(StoreError::Corrupt(msg))
            }
            Err(e) => Err(e),
        },
        Request::DeleteChunks { version } => {
            store.delete_chunks(&version)?;
            done(Response::Done)
        }
        Request::MetaPut {
            partition,
            key,
            record,
            expect,
            lease,
        } => {
            if record.value.len() > dmpstore_common::limits::MAX_RECORD_BYTES {
                return Ok((
                    Response::Error {
                        kind: ErrorKind::BadRequest,
                        message: format!(
                            "record of {} bytes exceeds the {} allowed",
                            record.value.len(),
                            dmpstore_common::limits::MAX_RECORD_BYTES
                        ),
                    },
                    Bytes::new(),
                ));
            }
            let now_ms = wall_ms();
            let ahead_ms = record.hlc.physical_ms().saturating_sub(now_ms);
            if ahead_ms > node.config.max_clock_offset_ms {
                node.metrics.clock_offset_refusals.inc();
                // Once per 10 s at most: a writer with a bad clock sends many.
                let last = node
                    .last_clock_warn_ms
                    .load(std::sync::atomic::Ordering::Relaxed);
                if now_ms.saturating_sub(last) >= 10_000 {
                    node.last_clock_warn_ms
                        .store(now_ms, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        partition,
                        key,
                        ahead_ms,
                        "refused a metadata write stamped further ahead of this node's clock than the maximum offset (a writer's clock runs fast, or this node's runs slow)"
                    );
                }
                return Ok((
                    Response::Error {
                        kind: ErrorKind::ClockOffset,
                        message: format!(
                            "record stamped {ahead_ms} ms ahead of this node's clock (max {} ms)",
                            node.config.max_clock_offset_ms
                        ),
                    },
                    Bytes::new(),
                ));
            }
            let token = match lease {
                LeaseCheck::Ignore => None,
                LeaseCheck::Yield => Some(None),
                LeaseCheck::Holder(t) => Some(Some(t)),
            };
            let out = match token {
                None => store.meta_put(&partition, &key, &record, expect)?,
                Some(token) => {
                    match store.meta_put_leased(
                        &partition,
                        &key,
                        &record,
                        expect,
                        token.as_ref(),
                        now_ms,
                    )? {
                        Ok(out) => out,
                        Err(refusal) => {
                            let (kind, why) = match refusal {
                                LeaseRefusal::Lost => (
                                    ErrorKind::LeaseLost,
                                    "the write's lease expired or passed to another holder",
                                ),
                                LeaseRefusal::HeldByOther => {
                                    (ErrorKind::Leased, "another writer holds the lease")
                                }
                            };
                            return Ok((
                                Response::Error {
                                    kind,
                                    message: format!("{partition:?}/{key:?}: {why}"),
                                },
                                Bytes::new(),
                            ));
                        }
                    }
                }
            };
            done(Response::MetaPut {
                applied: out.applied,
                replaced: out.replaced,
                holds: out.holds,
            })
        }
        Request::MetaPurge {
            partition,
            key,
            record,
        } => done(Response::Purged(
            store.meta_purge(&partition, &key, &record)?,
        )),
        Request::MetaGet { partition, key } => {
            done(Response::MetaValue(store.meta_get(&partition, &key)?))
        }
        Request::MetaScan {
            partition,
            prefix,
            start_after,
            limit,
            bodies,
        } => {
            let limit = limit.clamp(1, MAX_SCAN_ENTRIES) as usize;
            let (mut entries, more) = store.meta_scan(
                &partition,
                &prefix,
                &start_after,
                limit,
                MAX_SCAN_PAGE_BYTES,
            )?;
            if !bodies {
                for (_, record) in &mut entries {
                    record.value = dmpstore_common::record::without_inline_body(&record.value);
                }
            }
            done(Response::MetaEntries { entries, more })
        }
        Request::MetaLock {
            partition,
            key,
            token,
            ttl_ms,
        } => {
            let now_ms = wall_ms();
            let granted = store.meta_lock(&partition, &key, &token, now_ms, u64::from(ttl_ms))?;
            done(Response::Lock { granted })
        }
        Request::MetaUnlock {
            partition,
            key,
            token,
        } => {
            store.meta_unlock(&partition, &key, &token)?;
            done(Response::Done)
        }
        Request::Heartbeat { .. } | Request::Health => done(Response::Health(HealthReport {
            node_id: node.config.id(),
            uptime_ms: node.started.elapsed().as_millis() as u64,
            n_chunks_estimate: node
                .chunks_estimate
                .load(std::sync::atomic::Ordering::Relaxed),
            draining: node
                .cluster
                .as_ref()
                .map(|c| c.repair.draining())
                .unwrap_or_default(),
            map_version: node.cluster.as_ref().map_or(0, |c| c.client.map().version),
            wall_ms: wall_ms(),
            read_only: node.disk.read_only(),
        })),
        Request::DropMovedChunk {
            version,
            chunk_idx,
            partition,
            key,
        } => {
            if let Some(c) = &node.cluster {
                c.repair
                    .schedule_drop(version, chunk_idx, partition, key)
                    .map_err(|e| match e {
                        crate::repair::RepairError::Store(s) => s,
                        other => StoreError::Corrupt(other.to_string()),
                    })?;
            }
            done(Response::Done)
        }
        Request::GetClusterMap => match &node.cluster {
            Some(c) => done(Response::ClusterMap((*c.client.map()).clone())),
            None => Err(StoreError::NotFound),
        },
        Request::SetClusterMap { map } => {
            if let Some(c) = &node.cluster {
                if map.version > c.client.map().version {
                    // Persisted first: a restart must not fall back to the older map.
                    store.set_cluster_map(&map.encode())?;
                    c.client.install_map(map);
                }
            }
            done(Response::Done)
        }
        Request::Drain {
            node: drained,
            draining,
        } => {
            if let Some(c) = &node.cluster {
                c.repair.set_draining(drained, draining)?;
            }
            done(Response::Done)
        }
        Request::Status => done(Response::Status(Box::new(NodeStatus {
            node_id: node.config.id(),
            uptime_ms: node.started.elapsed().as_millis() as u64,
            n_chunks_estimate: store.estimate_chunks(),
            peers: node
                .cluster
                .as_ref()
                .map(|c| c.detector.views())
                .unwrap_or_default(),
            repair: node
                .cluster
                .as_ref()
                .map(|c| c.repair.status())
                .unwrap_or_default(),
            workers: node
                .cluster
                .as_ref()
                .map(|c| c.supervisor.reports())
                .unwrap_or_default(),
            gateways: node
                .gateways
                .lock()
                .expect("gateway reports")
                .values()
                .cloned()
                .collect(),
            disk: node.disk.report(),
        }))),
        Request::GatewayReport(report) => {
            let mut reports = node.gateways.lock().expect("gateway reports");
            let room = reports.len() < MAX_GATEWAY_REPORTS || reports.contains_key(&report.gateway);
            if room
                && reports
                    .get(&report.gateway)
                    .is_none_or(|r| r.sent_ms <= report.sent_ms)
            {
                reports.insert(report.gateway.clone(), report);
            }
            done(Response::Done)
        }
        Request::RepairScan { node: replaced } => {
            if let Some(c) = &node.cluster {
                c.repair.request_scan_for(replaced);
            }
            done(Response::Done)
        }
        Request::Isolate { millis } => {
            if let Some(c) = &node.cluster {
                let until = (millis > 0).then(|| Instant::now() + Duration::from_millis(millis));
                c.client.isolate_until(until);
                tracing::warn!(millis, "isolation drill: cut off from the cluster");
            }
            done(Response::Done)
        }
        Request::Scrub => {
            if let Some(c) = &node.cluster {
                c.repair.request_scrub();
            }
            done(Response::Done)
        }
        Request::AntiEntropy => {
            if let Some(c) = &node.cluster {
                c.repair.request_anti_entropy();
            }
            done(Response::Done)
        }
        Request::RepairEnqueue { partition, key } => {
            match &node.cluster {
                Some(c) => c.repair.enqueue(&partition, &key).map_err(|e| match e {
                    crate::repair::RepairError::Store(s) => s,
                    other => StoreError::Corrupt(other.to_string()),
                })?,
                None => store.repair_push(&partition, &key)?,
            }
            done(Response::Done)
        }
    }
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
