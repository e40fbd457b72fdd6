//! The gateway's state shared by every request: configuration, codec, node client, clock, and
//! the tracker that owns every background task the gateway spawns.

use crate::config::GatewayConfig;
use crate::nodes::NodeClient;
use dmpstore_common::codec::Codec;
use dmpstore_common::hlc::HlcClock;
use dmpstore_common::ids::Hlc;
use dmpstore_common::stripe::StripeLayout;
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
    pub clock: HlcClock,
    /// Owns background work (metadata write stragglers, read repair, chunk cleanup, GET
    /// producers); the server waits for it at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when the gateway starts shutting down; deferred work gives up on it.
    pub shutdown: CancellationToken,
    pub metrics: crate::metrics::GatewayMetrics,
}

impl GatewayState {
    pub fn new(config: GatewayConfig) -> anyhow::Result<GatewayState> {
        config.validate()?;
        let map = Arc::new(config.cluster_map()?);
        let layout = config.layout();
        Ok(GatewayState {
            codec: Codec::new(layout)?,
            nodes: Arc::new(NodeClient::new(
                map,
                &config.cluster_secret,
                crate::nodes::Marking::OnCallOutcome,
            )?),
            layout,
            config,
            clock: HlcClock::new(),
            tasks: TaskTracker::new(),
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
        self.clock.now(Self::now_ms())
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
        (2 * usize::from(self.layout.m) + 1).min(self.nodes.map().metadata_len())
    }
}
