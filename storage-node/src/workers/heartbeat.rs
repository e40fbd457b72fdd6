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
    /// Made at the first wait, on the runtime of the worker's own thread.
    tick: Option<tokio::time::Interval>,
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
        let period = self.detector.heartbeat_interval();
        let tick = self.tick.get_or_insert_with(|| {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        tick.tick().await;
        self.ticked = true;
    }

    /// Heartbeats never wait behind storage work (issue 9): a busy node is not a dead one.
    fn own_thread(&self) -> bool {
        true
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
        Heartbeat {
            detector,
            tick: None,
            ticked: false,
        }
    }
}
