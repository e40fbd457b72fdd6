//! The gateway's state shared by every request: configuration, codec, node client, clock, and
//! the tracker that owns every background task the gateway spawns.

use crate::config::GatewayConfig;
use crate::nodes::NodeClient;
use dmpstore_common::codec::Codec;
use dmpstore_common::ids::Hlc;
use dmpstore_common::stripe::StripeLayout;
use dmpstore_storage_node::meta_client::MetaClient;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug)]
pub struct GatewayState {
    pub config: GatewayConfig,
    pub layout: StripeLayout,
    pub codec: Codec,
    pub nodes: Arc<NodeClient>,
    /// The metadata quorum client (and this gateway's hybrid logical clock).
    pub meta: MetaClient,
    /// Owns background work (metadata write stragglers, read repair, chunk cleanup, GET
    /// producers); the server waits for it at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when the gateway starts shutting down; deferred work gives up on it.
    pub shutdown: CancellationToken,
    pub metrics: crate::metrics::GatewayMetrics,
    /// Access keys: the config's administrators and the cluster's users.
    pub identities: crate::iam::Identities,
    /// The internal RPC's mutual TLS (its certificate is reloaded when the files change).
    pub rpc_tls: Option<dmpstore_storage_node::tls::RpcTls>,
}

impl GatewayState {
    pub fn new(config: GatewayConfig) -> anyhow::Result<GatewayState> {
        config.validate()?;
        let map = Arc::new(config.cluster_map()?);
        let layout = config.layout();
        let rpc_tls = config.rpc_tls()?;
        let nodes = Arc::new(NodeClient::new(
            map.clone(),
            &config.cluster_secret,
            crate::nodes::Marking::OnCallOutcome,
            rpc_tls.as_ref().map(|t| t.client.clone()),
        )?);
        if rpc_tls.is_none() {
            tracing::warn!("insecure_plaintext_rpc: calls to the nodes, the cluster secret and all data travel in clear");
        }
        let tasks = TaskTracker::new();
        let meta = MetaClient::new(
            nodes.clone(),
            layout.m,
            std::time::Duration::from_millis(config.max_clock_offset_ms),
            tasks.clone(),
        )
        .with_unsafe_ignore_refusals(config.planted_bug_ignore_write_refusals);
        if config.planted_bug_ignore_write_refusals {
            tracing::warn!("planted_bug_ignore_write_refusals is set: this gateway loses acknowledged writes (history checker self-test only)");
        }
        Ok(GatewayState {
            rpc_tls,
            identities: crate::iam::Identities::new(&config.credentials),
            codec: Codec::new(layout)?,
            nodes,
            meta,
            layout,
            config,
            tasks,
            metrics: Default::default(),
            shutdown: CancellationToken::new(),
        })
    }

    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    pub fn next_hlc(&self) -> Hlc {
        self.meta.now()
    }

    /// Spawns an owned background task; it is joined when the gateway shuts down.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(fut)
    }

    /// Metadata replicas per partition: `2m + 1` (all nodes when fewer), DESIGN 5.
    pub fn n_meta_replicas(&self) -> usize {
        self.meta.n_replicas()
    }
}
