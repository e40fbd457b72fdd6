//! The failure detector's heartbeats ("detector" worker, DESIGN 10): one round of heartbeats to
//! every peer each `heartbeat_interval_ms` ([`Detector::beat`]); the states it judges go into
//! the node's RPC client, so repair and every peer call see them.

use super::{Worker, WorkerState};
use crate::detector::Detector;
use crate::peers::NodeState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Heartbeat {
    detector: Arc<Detector>,
    tick: tokio::time::Interval,
    ticked: bool,
}

impl Worker for Heartbeat {
    fn name(&self) -> &'static str {
        "detector"
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> WorkerState {
        if std::mem::take(&mut self.ticked) {
            self.detector.beat().await;
        }
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.tick.tick().await;
        self.ticked = true;
    }

    fn status(&self) -> String {
        let views = self.detector.views();
        let count = |state: NodeState| views.iter().filter(|v| v.state == state).count();
        format!(
            "{} nodes in the map: {} up, {} suspect, {} down",
            views.len(),
            count(NodeState::Up),
            count(NodeState::Suspect),
            count(NodeState::Down)
        )
    }
}

impl Heartbeat {
    pub fn new(detector: Arc<Detector>) -> Heartbeat {
        let mut tick = tokio::time::interval(detector.heartbeat_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Heartbeat {
            detector,
            tick,
            ticked: false,
        }
    }
}
