//! The failure detector (DESIGN 10): every node heartbeats every other node. A peer that has not
//! answered for `suspect_after_ms` is Suspect, for `down_after_ms` Down; one answer makes it Up
//! again. The states go into the node's [`NodeClient`], so repair and every peer call see them.
//!
//! `T_FD` (detection time) is measured per failure as the time from the peer's last answered
//! heartbeat to the moment it was declared Down.
//!
//! The rounds run in the "detector" worker (`workers/heartbeat.rs`); this file holds the
//! detector's state and judgement.

use crate::config::DetectorConfig;
use crate::peers::{NodeClient, NodeState};
use bytes::Bytes;
use dmpstore_common::ids::NodeId;
use dmpstore_common::limits::FAILURE_HISTORY;
use dmpstore_common::rpc::{FailureRecord, PeerView, Request, Response};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Track {
    /// Last answered heartbeat (`None`: never, since this node started).
    last_ok: Option<Instant>,
    /// When the peer was declared Down (cleared when it answers again).
    down_since: Option<Instant>,
    /// When this node started watching the peer (start-up, or the map change that added it).
    watched_since: Instant,
}

/// See [`Detector::record_restored`].
const RESTORE_SLACK_MS: u64 = 1000;

pub struct Detector {
    me: NodeId,
    client: Arc<NodeClient>,
    config: DetectorConfig,
    tracks: Mutex<HashMap<NodeId, Track>>,
    /// When the last round of answers was evaluated: a round that comes much later than the
    /// heartbeat interval means this node itself was not running (SIGSTOP, a stalled runtime),
    /// and that time is not counted as its peers' silence.
    last_round: Mutex<Option<Instant>>,
    /// Detection time of the most recent Down, in ms (0: none yet).
    last_t_fd_ms: AtomicU64,
    /// The last failures seen, oldest first (at most [`FAILURE_HISTORY`]).
    failures: Mutex<VecDeque<FailureRecord>>,
}

impl Detector {
    pub fn new(me: NodeId, client: Arc<NodeClient>, config: DetectorConfig) -> Detector {
        let detector = Detector {
            me,
            client,
            config,
            tracks: Mutex::new(HashMap::new()),
            last_round: Mutex::new(None),
            last_t_fd_ms: AtomicU64::new(0),
            failures: Mutex::default(),
        };
        detector.watch_map_nodes();
        detector
    }

    /// Tracks exactly the peers of the current cluster map; returns them.
    fn watch_map_nodes(&self) -> Vec<NodeId> {
        let mut tracks = self.tracks.lock().expect("tracks");
        let map = self.client.map();
        // A node removed from the map is no longer watched.
        tracks.retain(|id, _| map.get(*id).is_some());
        for n in map.nodes().filter(|n| n.id != self.me) {
            tracks.entry(n.id).or_insert(Track {
                last_ok: None,
                down_since: None,
                watched_since: Instant::now(),
            });
        }
        tracks.keys().copied().collect()
    }

    /// Time between two rounds of heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_interval_ms)
    }

    /// One round: heartbeats every peer (each within one interval), judges the answers, and
    /// learns a newer cluster map a peer knows of.
    pub async fn beat(&self) {
        let interval = self.heartbeat_interval();
        // The map may have grown since the last beat (a node was added).
        let peers = self.watch_map_nodes();
        let map_version = self.client.map().version;
        let request = Request::Heartbeat {
            from: self.me,
            map_version,
        };
        let beats = peers.iter().map(|&peer| {
            let (me, req) = (&self, &request);
            async move {
                let answer = me
                    .client
                    .call_with_deadline(peer, req, Bytes::new(), interval)
                    .await;
                let newer_map = match &answer {
                    Ok((Response::Health(h), _)) => h.map_version > map_version,
                    _ => false,
                };
                (peer, answer.is_ok(), newer_map)
            }
        });
        let answers: Vec<(NodeId, bool, bool)> = futures::future::join_all(beats).await;
        let oks: Vec<(NodeId, bool)> = answers.iter().map(|&(p, ok, _)| (p, ok)).collect();
        self.evaluate(&oks, Instant::now());
        // A peer knows a newer cluster map: learn it (the map spreads with the beats).
        if let Some(&(peer, _, _)) = answers.iter().find(|a| a.2) {
            if let Err(e) = self.client.fetch_map_from(peer).await {
                tracing::warn!(%peer, error = %e, "could not fetch a newer cluster map");
            }
        }
    }

    /// How much of the time since the previous round this node itself was stalled: anything
    /// beyond two heartbeat intervals (one of waiting for the tick, one of the beats' deadline).
    fn own_stall(&self, now: Instant) -> Duration {
        let previous = self.last_round.lock().expect("last round").replace(now);
        let normal = 2 * Duration::from_millis(self.config.heartbeat_interval_ms);
        previous.map_or(Duration::ZERO, |p| {
            now.saturating_duration_since(p).saturating_sub(normal)
        })
    }

    fn evaluate(&self, answers: &[(NodeId, bool)], now: Instant) {
        let stall = self.own_stall(now);
        let mut tracks = self.tracks.lock().expect("tracks");
        if !stall.is_zero() {
            tracing::warn!(
                stalled_ms = stall.as_millis() as u64,
                "failure detector was not running; that time is not counted against peers"
            );
            for t in tracks.values_mut() {
                t.watched_since = (t.watched_since + stall).min(now);
                t.last_ok = t.last_ok.map(|l| (l + stall).min(now));
            }
        }
        for &(peer, ok) in answers {
            let Some(t) = tracks.get_mut(&peer) else {
                continue;
            };
            if ok {
                t.last_ok = Some(now);
                t.down_since = None;
            }
            let silent = now.duration_since(t.last_ok.unwrap_or(t.watched_since));
            let state = if silent >= Duration::from_millis(self.config.down_after_ms) {
                NodeState::Down
            } else if silent >= Duration::from_millis(self.config.suspect_after_ms) {
                NodeState::Suspect
            } else {
                NodeState::Up
            };
            let previous = self.client.set_state(peer, state);
            if state == NodeState::Down && previous != NodeState::Down {
                t.down_since = Some(now);
                let t_fd = silent.as_millis() as u64;
                self.last_t_fd_ms.store(t_fd.max(1), Ordering::Relaxed);
                self.record_failure(peer, t_fd);
                tracing::warn!(node = %peer, t_fd_ms = t_fd, "peer declared down by missed heartbeats");
            } else if previous == NodeState::Down && state != NodeState::Down {
                self.record_return(peer);
            }
        }
    }

    pub fn state(&self, node: NodeId) -> NodeState {
        if node == self.me {
            NodeState::Up
        } else {
            self.client.state(node)
        }
    }

    /// How long `node` has been Down (`None` if it is not Down).
    pub fn down_for(&self, node: NodeId) -> Option<Duration> {
        let tracks = self.tracks.lock().expect("tracks");
        let since = tracks.get(&node)?.down_since?;
        (self.state(node) == NodeState::Down).then(|| since.elapsed())
    }

    fn record_failure(&self, node: NodeId, t_fd_ms: u64) {
        let mut failures = self.failures.lock().expect("failures");
        if failures.len() == FAILURE_HISTORY {
            failures.pop_front();
        }
        failures.push_back(FailureRecord {
            node,
            down_at_ms: crate::peers::wall_ms(),
            t_fd_ms,
            back_after_ms: None,
            t_fr_ms: None,
        });
    }

    fn record_return(&self, node: NodeId) {
        let mut failures = self.failures.lock().expect("failures");
        if let Some(f) = failures
            .iter_mut()
            .rev()
            .find(|f| f.node == node && f.back_after_ms.is_none())
        {
            f.back_after_ms = Some(crate::peers::wall_ms().saturating_sub(f.down_at_ms));
        }
    }

    /// Full redundancy is back, `t_fr_ms` after repair started: that ends every failure not
    /// ended yet that was down for at least `repair_delay` (the others needed no rebuild).
    pub fn record_restored(&self, t_fr_ms: u64, repair_delay: Duration) {
        let now = crate::peers::wall_ms();
        let delay_ms = repair_delay.as_millis() as u64;
        for f in self.failures.lock().expect("failures").iter_mut() {
            // Repair starts once a node was Down for the delay by the monotonic clock; the
            // wall-clock stamps here may read a moment less, hence the slack.
            let waited = f.down_at_ms + delay_ms <= now + RESTORE_SLACK_MS;
            let stayed = f.back_after_ms.is_none_or(|b| b >= delay_ms);
            if f.t_fr_ms.is_none() && waited && stayed {
                f.t_fr_ms = Some(t_fr_ms);
            }
        }
    }

    /// The last failures seen, oldest first.
    pub fn failures(&self) -> Vec<FailureRecord> {
        self.failures
            .lock()
            .expect("failures")
            .iter()
            .cloned()
            .collect()
    }

    pub fn last_t_fd_ms(&self) -> Option<u64> {
        Some(self.last_t_fd_ms.load(Ordering::Relaxed)).filter(|&v| v > 0)
    }

    pub fn views(&self) -> Vec<PeerView> {
        let tracks = self.tracks.lock().expect("tracks");
        let mut out: Vec<PeerView> = self
            .client
            .map()
            .nodes()
            .map(|n| PeerView {
                node_id: n.id,
                state: self.state(n.id),
                last_heartbeat_ms_ago: if n.id == self.me {
                    Some(0)
                } else {
                    tracks
                        .get(&n.id)
                        .and_then(|t| t.last_ok)
                        .map(|t| t.elapsed().as_millis() as u64)
                },
            })
            .collect();
        out.sort_by_key(|v| v.node_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmpstore_common::cluster::{ClusterMap, NodeInfo};

    fn detector() -> Detector {
        let info = |id: u32| NodeInfo {
            id: NodeId(id),
            addr: format!("127.0.0.1:{}", 7000 + id),
            zone: "z".into(),
            weight: 1,
        };
        let map = ClusterMap::new(1, (1..=3).map(info).collect()).unwrap();
        let client = NodeClient::new(
            Arc::new(map),
            "secret",
            crate::peers::Marking::ByDetector,
            None,
        );
        Detector::new(
            NodeId(1),
            Arc::new(client.unwrap()),
            DetectorConfig::default(),
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Rounds of heartbeats every interval from `from` for `span`: node 2 answers, node 3 not.
    fn node_3_silent_for(d: &Detector, from: Instant, span: Duration) {
        let interval = ms(d.config.heartbeat_interval_ms);
        let mut t = from;
        while t < from + span {
            t += interval;
            d.evaluate(&[(NodeId(2), true), (NodeId(3), false)], t);
        }
    }

    #[test]
    fn a_peer_silent_past_down_after_is_declared_down() {
        let d = detector();
        let (interval, down) = (d.config.heartbeat_interval_ms, d.config.down_after_ms);
        let t0 = Instant::now();
        d.evaluate(&[(NodeId(2), true), (NodeId(3), true)], t0);
        node_3_silent_for(&d, t0, ms(down + interval));
        assert_eq!(d.state(NodeId(2)), NodeState::Up);
        assert_eq!(d.state(NodeId(3)), NodeState::Down);
    }

    #[test]
    fn time_this_node_was_stopped_is_not_counted_against_its_peers() {
        let d = detector();
        let (interval, down) = (d.config.heartbeat_interval_ms, d.config.down_after_ms);
        let t0 = Instant::now();
        d.evaluate(&[(NodeId(2), true), (NodeId(3), true)], t0);
        // The node was stopped for twice the Down timeout; its first beats after it resumed
        // miss their deadline (its own backlog), which says nothing about its peers.
        let resumed = t0 + ms(2 * down);
        d.evaluate(&[(NodeId(2), false), (NodeId(3), false)], resumed);
        assert_ne!(d.state(NodeId(2)), NodeState::Down);
        assert_ne!(d.state(NodeId(3)), NodeState::Down);
        // A peer that then stays silent is still declared Down, counted from the resumption.
        node_3_silent_for(&d, resumed, ms(down + interval));
        assert_eq!(d.state(NodeId(2)), NodeState::Up);
        assert_eq!(d.state(NodeId(3)), NodeState::Down);
    }
}
