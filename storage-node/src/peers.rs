//! The RPC client of the storage nodes, used by gateways and by nodes calling their peers:
//! pooled connections (mutual TLS with the cluster CA, or plain HTTP where the config chooses
//! it), per-call deadlines, the cluster secret, and a view of which nodes are up.
//!
//! In a gateway ([`Marking::OnCallOutcome`]) a node is Down from the moment a call to it cannot
//! connect or times out, and Up again when a health probe or any call succeeds; placement skips
//! Down nodes at once (DESIGN 8, 10). In a storage node ([`Marking::ByDetector`]) the failure
//! detector (`detector.rs`) sets Up, Suspect and Down from missed heartbeats.

use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::ids::NodeId;
use dmpstore_common::limits::{
    CLOCK_OFFSET_STALE_AFTER, HEALTH_PROBE_INTERVAL, HEALTH_PROBE_TIMEOUT, MAX_RPC_BODY_BYTES,
    RPC_CONNECT_TIMEOUT, RPC_TIMEOUT,
};
use dmpstore_common::rpc::{
    decode_frame, encode_frame, ErrorKind, Request, Response, META_EPOCH_HEADER, RPC_PATH,
    SECRET_HEADER,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("node {0} is not in the cluster map")]
    UnknownNode(NodeId),
    #[error("node {node} unreachable: {message}")]
    Unreachable { node: NodeId, message: String },
    #[error("node {0} did not answer within the deadline")]
    Timeout(NodeId),
    #[error("node {node} answered {kind:?}: {message}")]
    Remote {
        node: NodeId,
        kind: ErrorKind,
        message: String,
    },
    #[error("node {node} sent an invalid response: {message}")]
    Protocol { node: NodeId, message: String },
}

pub use dmpstore_common::cluster::NodeState;

/// Who decides a node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marking {
    /// Every call's outcome (gateways).
    OnCallOutcome,
    /// Only [`NodeClient::set_state`] (storage nodes, driven by the failure detector).
    ByDetector,
}

type Connector = HttpsConnector<HttpConnector>;

/// How long an RPC exchange whose caller stopped waiting may still run, so that its
/// connection goes back to the pool instead of being closed.
const ABANDONED_RPC_GRACE: Duration = Duration::from_millis(500);

pub struct NodeClient {
    http: Client<Connector, Full<Bytes>>,
    /// Heartbeats' own connection pool: a beat never waits for a connection another call holds.
    beats: Client<Connector, Full<Bytes>>,
    /// `https` with mutual TLS, `http` without.
    scheme: &'static str,
    /// The newest cluster map this process knows (replaced whole when a newer one arrives).
    map: RwLock<Arc<ClusterMap>>,
    secret: http::HeaderValue,
    states: RwLock<HashMap<NodeId, NodeState>>,
    marking: Marking,
    /// Until when this process is cut off from the cluster (a drill: `gateway admin
    /// isolate`); every outgoing call fails as if the network were down.
    isolated_until: RwLock<Option<std::time::Instant>>,
    /// Nodes being drained, learned from the health probes (gateways).
    draining: RwLock<std::collections::HashSet<NodeId>>,
    /// Nodes whose disk is full, learned from health probes, heartbeats and refusals.
    read_only: RwLock<std::collections::HashSet<NodeId>>,
    /// Called with every newer map installed (a storage node persists it).
    on_new_map: RwLock<Option<MapHook>>,
    /// This process's clock offset from each node, from health and heartbeat answers.
    clock_samples: RwLock<HashMap<NodeId, ClockSample>>,
}

/// TCP with the RPC's timeouts, then TLS where `tls` is given: the server must show a node
/// certificate ([`crate::tls::RPC_NODE_NAME`]) whatever address it is called at.
fn connector(tls: Option<Arc<rustls::ClientConfig>>) -> anyhow::Result<Connector> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(RPC_CONNECT_TIMEOUT));
    tcp.enforce_http(false);
    let node_name = rustls::pki_types::ServerName::try_from(crate::tls::RPC_NODE_NAME)?;
    let builder = match tls {
        Some(config) => HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_only(),
        None => {
            // Never used for a handshake: plain `http` URLs only.
            let unused = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new()
                .with_tls_config(unused)
                .https_or_http()
        }
    };
    Ok(builder
        .with_server_name_resolver(FixedServerNameResolver::new(node_name))
        .enable_http1()
        .wrap_connector(tcp))
}

/// One estimate of this process's clock offset from a node: the node's clock read at the
/// middle of the round trip minus ours, in ms (positive: the node is ahead of us).
#[derive(Debug, Clone, Copy)]
struct ClockSample {
    offset_ms: i64,
    at: std::time::Instant,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a process does with a newer cluster map once it is installed.
pub type MapHook = Box<dyn Fn(&ClusterMap) + Send + Sync>;

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("nodes", &self.map().len())
            .finish()
    }
}

impl NodeClient {
    /// A client of the nodes in `map`; with `tls` (the process's [`crate::tls::RpcTls`]
    /// client config) every call goes over mutual TLS to a node certificate of the cluster CA,
    /// without it over plain HTTP.
    pub fn new(
        map: Arc<ClusterMap>,
        cluster_secret: &str,
        marking: Marking,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<NodeClient> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let connector = connector(tls)?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector.clone());
        let beats = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        let states = map.nodes().map(|n| (n.id, NodeState::Up)).collect();
        Ok(NodeClient {
            http,
            beats,
            scheme,
            map: RwLock::new(map),
            secret: http::HeaderValue::from_str(cluster_secret)?,
            states: RwLock::new(states),
            marking,
            isolated_until: RwLock::new(None),
            draining: RwLock::new(Default::default()),
            read_only: RwLock::new(Default::default()),
            on_new_map: RwLock::new(None),
            clock_samples: RwLock::new(HashMap::new()),
        })
    }

    /// This process's clock offset from the cluster: the median of the fresh per-node
    /// estimates, in ms (positive: the nodes are ahead of us); `None` until a node answered
    /// a health probe or heartbeat within [`CLOCK_OFFSET_STALE_AFTER`].
    pub fn clock_offset_ms(&self) -> Option<i64> {
        let samples = self.clock_samples.read().expect("clock samples lock");
        let mut fresh: Vec<i64> = samples
            .values()
            .filter(|s| s.at.elapsed() < CLOCK_OFFSET_STALE_AFTER)
            .map(|s| s.offset_ms)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        fresh.sort_unstable();
        Some(fresh[fresh.len() / 2])
    }

    fn record_clock_sample(&self, node: NodeId, sent_ms: u64, received_ms: u64, node_ms: u64) {
        let middle = (sent_ms + received_ms.max(sent_ms)) / 2;
        let sample = ClockSample {
            offset_ms: node_ms as i64 - middle as i64,
            at: std::time::Instant::now(),
        };
        self.clock_samples
            .write()
            .expect("clock samples lock")
            .insert(node, sample);
    }

    /// The current cluster map (a snapshot: a newer map may be installed meanwhile).
    pub fn map(&self) -> Arc<ClusterMap> {
        self.map.read().expect("cluster map lock").clone()
    }

    /// Installs `map` if it is newer than the current one; returns whether it did. New nodes
    /// start Up: the failure detector or the next call decides otherwise.
    pub fn install_map(&self, map: ClusterMap) -> bool {
        let installed = {
            let mut current = self.map.write().expect("cluster map lock");
            if map.version <= current.version {
                return false;
            }
            self.swap_map(&mut current, map)
        };
        if let Some(hook) = self.on_new_map.read().expect("map hook lock").as_ref() {
            hook(&installed);
        }
        true
    }

    /// Sets what to do with every newer map installed from now on.
    pub fn on_new_map(&self, hook: MapHook) {
        *self.on_new_map.write().expect("map hook lock") = Some(hook);
    }

    fn swap_map(&self, current: &mut Arc<ClusterMap>, map: ClusterMap) -> Arc<ClusterMap> {
        {
            let mut states = self.states.write().expect("node state lock");
            for n in map.nodes() {
                states.entry(n.id).or_insert(NodeState::Up);
            }
        }
        tracing::info!(
            from = current.version,
            to = map.version,
            nodes = map.len(),
            "cluster map changed"
        );
        *current = Arc::new(map);
        current.clone()
    }

    /// Asks `node` for its cluster map and installs it if it is newer.
    pub async fn fetch_map_from(&self, node: NodeId) -> Result<bool, RpcError> {
        match self
            .call(node, &Request::GetClusterMap, Bytes::new())
            .await?
        {
            (Response::ClusterMap(map), _) => Ok(self.install_map(map)),
            _ => Err(RpcError::Protocol {
                node,
                message: "unexpected answer to GetClusterMap".into(),
            }),
        }
    }

    pub fn is_up(&self, node: NodeId) -> bool {
        self.states.read().expect("node state lock").get(&node) == Some(&NodeState::Up)
    }

    /// Whether new chunks may go to `node`: it is Up, not being drained, and its disk is not
    /// full.
    pub fn takes_new_chunks(&self, node: NodeId) -> bool {
        self.is_up(node)
            && !self.draining.read().expect("draining lock").contains(&node)
            && !self.is_read_only(node)
    }

    /// Whether `node` said its disk is full (in its last health answer, or by refusing data).
    pub fn is_read_only(&self, node: NodeId) -> bool {
        self.read_only
            .read()
            .expect("read-only lock")
            .contains(&node)
    }

    /// Records whether `node`'s disk is full; logs the changes.
    pub fn set_read_only(&self, node: NodeId, read_only: bool) {
        // Every health answer lands here: the write lock only for a change.
        if self.is_read_only(node) == read_only {
            return;
        }
        let mut set = self.read_only.write().expect("read-only lock");
        let changed = if read_only {
            set.insert(node)
        } else {
            set.remove(&node)
        };
        if changed && read_only {
            tracing::warn!(%node, "node's disk is full: no new chunks go to it");
        } else if changed {
            tracing::info!(%node, "node takes new chunks again: its disk has room");
        }
    }

    /// Cuts this process off from the cluster until `until` (`None`: reconnect now).
    pub fn isolate_until(&self, until: Option<std::time::Instant>) {
        *self.isolated_until.write().expect("isolation lock") = until;
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated_until
            .read()
            .expect("isolation lock")
            .is_some_and(|u| u > std::time::Instant::now())
    }

    /// How many nodes of the map are Up and answered a health probe or heartbeat within
    /// `within` (a gateway's readiness).
    pub fn answering(&self, within: Duration) -> usize {
        let samples = self.clock_samples.read().expect("clock samples lock");
        self.map()
            .nodes()
            .filter(|n| {
                self.state(n.id) == NodeState::Up
                    && samples.get(&n.id).is_some_and(|s| s.at.elapsed() < within)
            })
            .count()
    }

    pub fn state(&self, node: NodeId) -> NodeState {
        self.states
            .read()
            .expect("node state lock")
            .get(&node)
            .copied()
            .unwrap_or(NodeState::Down)
    }

    /// Sets a node's state; returns the previous one.
    pub fn set_state(&self, node: NodeId, state: NodeState) -> NodeState {
        let mut states = self.states.write().expect("node state lock");
        let Some(s) = states.get_mut(&node) else {
            return NodeState::Down;
        };
        let previous = *s;
        if previous != state {
            match state {
                NodeState::Down => tracing::warn!(%node, "node marked down"),
                NodeState::Suspect => tracing::info!(%node, "node suspected: missed heartbeats"),
                NodeState::Up => tracing::info!(%node, "node is up again"),
            }
            *s = state;
        }
        previous
    }

    /// One RPC with the default deadline.
    pub async fn call(
        &self,
        node: NodeId,
        request: &Request,
        payload: Bytes,
    ) -> Result<(Response, Bytes), RpcError> {
        self.call_with_deadline(node, request, payload, RPC_TIMEOUT)
            .await
    }

    pub async fn call_with_deadline(
        &self,
        node: NodeId,
        request: &Request,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        if self.is_isolated() {
            return Err(RpcError::Unreachable {
                node,
                message: "this process is isolated from the cluster".into(),
            });
        }
        let sent_ms = wall_ms();
        let result =
            tokio::time::timeout(deadline, self.call_inner(node, request, payload, deadline)).await;
        let result = result.unwrap_or(Err(RpcError::Timeout(node)));
        match &result {
            Ok((Response::Health(h), _)) => {
                self.record_clock_sample(node, sent_ms, wall_ms(), h.wall_ms);
                self.set_read_only(node, h.read_only);
            }
            Err(RpcError::Remote {
                kind: ErrorKind::ReadOnly,
                ..
            }) => self.set_read_only(node, true),
            _ => {}
        }
        if let Err(RpcError::Remote {
            kind: ErrorKind::StaleMap,
            ..
        }) = &result
        {
            // A metadata membership change happened: learn the map, so the caller's retry
            // uses the new replica sets.
            if let Err(e) = Box::pin(self.fetch_map_from(node)).await {
                tracing::warn!(%node, error = %e, "could not fetch the newer cluster map");
            }
        }
        if self.marking == Marking::OnCallOutcome {
            match &result {
                // A node that says it cannot serve (isolated, shutting down) is as good as
                // down for placement.
                Err(
                    RpcError::Unreachable { .. }
                    | RpcError::Timeout(_)
                    | RpcError::Remote {
                        kind: ErrorKind::Unavailable,
                        ..
                    },
                ) => {
                    self.set_state(node, NodeState::Down);
                }
                Ok(_) | Err(RpcError::Remote { .. }) => {
                    self.set_state(node, NodeState::Up);
                }
                Err(_) => {}
            }
        }
        result
    }

    async fn call_inner(
        &self,
        node: NodeId,
        request: &Request,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        let map = self.map();
        let addr = map
            .get(node)
            .ok_or(RpcError::UnknownNode(node))?
            .addr
            .clone();
        let body = encode_frame(request, &payload);
        let req = http::Request::post(format!("{}://{addr}{RPC_PATH}", self.scheme))
            .header(SECRET_HEADER, self.secret.clone())
            .header(META_EPOCH_HEADER, map.metadata_epoch)
            .body(Full::new(body))
            .map_err(|e| RpcError::Protocol {
                node,
                message: e.to_string(),
            })?;
        let pool = match request {
            Request::Heartbeat { .. } => self.beats.clone(),
            _ => self.http.clone(),
        };
        // The exchange runs in a task of its own, and goes on for a short grace when the
        // caller stops waiting (a quorum read that has its majority): a connection abandoned
        // mid-request cannot go back to the pool, and with mutual TLS a new one costs a
        // handshake. Past the grace it is cancelled, so a slow node is not sent more work
        // than before. Bounded by the call's deadline either way.
        let (abandoned, on_abandon) = tokio::sync::oneshot::channel::<()>();
        let exchange = tokio::spawn(async move {
            let work = tokio::time::timeout(deadline, async move {
                let resp = pool.request(req).await.map_err(|e| format!("{e:?}"))?;
                let status = resp.status();
                let body = Limited::new(resp.into_body(), MAX_RPC_BODY_BYTES)
                    .collect()
                    .await
                    .map_err(|e| format!("read response: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, body))
            });
            tokio::pin!(work);
            tokio::select! {
                done = &mut work => done,
                _ = on_abandon => match tokio::time::timeout(ABANDONED_RPC_GRACE, work).await {
                    Ok(done) => done,
                    Err(_) => Ok(Err("abandoned by its caller".into())),
                },
            }
        });
        // Dropped with this future: the task then has its grace.
        let _abandon_on_drop = abandoned;
        let (status, body) = match exchange.await {
            Ok(Ok(Ok(answer))) => answer,
            Ok(Ok(Err(message))) => return Err(RpcError::Unreachable { node, message }),
            Ok(Err(_elapsed)) => return Err(RpcError::Timeout(node)),
            Err(e) => {
                return Err(RpcError::Unreachable {
                    node,
                    message: format!("RPC task: {e}"),
                })
            }
        };
        let (response, payload): (Response, Bytes) =
            decode_frame(body).map_err(|e| RpcError::Protocol {
                node,
                message: format!("status {status}: {e}"),
            })?;
        match response {
            Response::Error { kind, message } => Err(RpcError::Remote {
                node,
                kind,
                message,
            }),
            ok => Ok((ok, payload)),
        }
    }

    /// Probes every node's health until `shutdown`, so nodes marked Down come back to Up when
    /// they return, and silent deaths are noticed without waiting for a request to fail.
    pub async fn probe_health_until(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HEALTH_PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let ids: Vec<NodeId> = self.map().nodes().map(|n| n.id).collect();
            let probes = ids.into_iter().map(|id| {
                let me = self.clone();
                async move {
                    let answer = me
                        .call_with_deadline(
                            id,
                            &Request::Health,
                            Bytes::new(),
                            HEALTH_PROBE_TIMEOUT,
                        )
                        .await;
                    match answer {
                        Ok((Response::Health(h), _)) => Some((id, h)),
                        _ => None,
                    }
                }
            });
            let reports: Vec<(NodeId, dmpstore_common::rpc::HealthReport)> =
                futures::future::join_all(probes)
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            // A node knows a newer cluster map (a node was added): learn it from that node.
            let known = self.map().version;
            if let Some((id, _)) = reports
                .iter()
                .filter(|(_, h)| h.map_version > known)
                .max_by_key(|(_, h)| h.map_version)
            {
                if let Err(e) = self.fetch_map_from(*id).await {
                    tracing::warn!(node = %id, error = %e, "could not fetch a newer cluster map");
                }
            }

            // Drains as the nodes that answered know them (any one suffices: a drain is sent
            // to every node).
            let draining: std::collections::HashSet<NodeId> =
                reports.into_iter().flat_map(|(_, h)| h.draining).collect();
            *self.draining.write().expect("draining lock") = draining;
        }
    }
}
