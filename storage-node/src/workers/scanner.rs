//! The repair scanner ("repair scanner", DESIGN 11, 12; ADR 0006).
//!
//! A node scans the metadata records it holds, but only of the partitions it owns (it is the
//! first Up replica), so each record is looked at once. A record whose data has a chunk slot
//! that is empty (a PUT that stored fewer than `k + m` chunks), on a node Down for longer than
//! `repair.delay_secs`, on a node being drained, replaced or gone from the map, or that
//! rendezvous placement would now put elsewhere, is sent to the version's repair owner: the
//! first Up node of its placement list.
//!
//! A scan runs when a node passes the repair delay (and once more [`FOLLOW_UP_SCAN`] later),
//! when a node comes back, when the cluster map changes, for a replaced node, and every
//! `scan_interval_secs`. Every scan is also a census of the versions below full redundancy;
//! while anything is degraded or Down the census is kept fresh, and a repair episode ends
//! (T_FR) only when a census finds nothing degraded.

use super::context::{erasure_pieces, now_ms, record_bytes, NodeContext, RepairError, POLL};
use super::{Worker, WorkerState};
use crate::peers::NodeState;
use bytes::Bytes;
use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::ids::NodeId;
use dmpstore_common::record::{MetaValue, Versioned, VERSIONS_SUFFIX};
use dmpstore_common::redundancy::{classify, Slot};
use dmpstore_common::rpc::{DegradedCount, DegradedReason, LeaseCheck, Request};
use dmpstore_common::targets;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records read per step of a scan.
const SCAN_PAGE: usize = 512;
/// A scan for a new failure or drain is followed by one more this much later: a PUT that
/// wrote its chunks before the change and committed after the scan passed its key is found
/// then (later stripes of a PUT in flight are refused or fail, which queues it at once).
const FOLLOW_UP_SCAN: Duration = Duration::from_secs(3);
/// The census of degraded versions is refreshed this often (or at twice a scan's duration,
/// whichever is longer) while anything is degraded or a node is Down.
const CENSUS_INTERVAL: Duration = Duration::from_secs(3);

/// The scanner: looks at the failure detector every [`POLL`] and scans when something changed.
pub struct Scanner {
    ctx: Arc<NodeContext>,
    tick: tokio::time::Interval,
    ticked: bool,
    last_scan: Instant,
    last_scan_took: Duration,
    /// The nodes Down at the last look.
    was_down: HashSet<NodeId>,
    /// When the follow-up scan of the last new failure is due.
    follow_up: Option<Instant>,
    /// The map version the last scan used.
    scanned_map: u64,
    /// What the last scan found: records sent for repair, versions degraded.
    last_found: Option<(u64, u64)>,
}

/// Why a scan runs now (nothing: no scan).
struct Triggers {
    new_failure: bool,
    scheduled: bool,
    recovered: bool,
    follow_up_due: bool,
    map_changed: bool,
    census_due: bool,
    /// Nodes replaced by empty ones since the last scan.
    forced: Vec<NodeId>,
    map_version: u64,
}

impl Triggers {
    fn any(&self) -> bool {
        self.new_failure
            || self.scheduled
            || self.recovered
            || self.follow_up_due
            || self.map_changed
            || self.census_due
            || !self.forced.is_empty()
    }
}

impl Worker for Scanner {
    fn name(&self) -> &'static str {
        "repair scanner"
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> WorkerState {
        if std::mem::take(&mut self.ticked) {
            self.look(shutdown).await;
        }
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.tick.tick().await;
        self.ticked = true;
    }

    fn status(&self) -> String {
        match self.last_found {
            Some((found, degraded)) => format!(
                "last scan {} s ago took {} ms: {found} records sent for repair, {degraded} versions degraded",
                self.last_scan.elapsed().as_secs(),
                self.last_scan_took.as_millis()
            ),
            None => "no scan yet".into(),
        }
    }
}

impl Scanner {
    pub fn new(ctx: Arc<NodeContext>) -> Scanner {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Scanner {
            scanned_map: ctx.client.map().version,
            ctx,
            tick,
            ticked: false,
            last_scan: Instant::now(),
            last_scan_took: Duration::ZERO,
            was_down: HashSet::new(),
            follow_up: None,
            last_found: None,
        }
    }

    /// One look at the cluster: scans if anything calls for it.
    async fn look(&mut self, shutdown: &CancellationToken) {
        let dead = self.ctx.dead();
        if dead.len() * 2 >= self.ctx.client.map().len() {
            // This node sees half the cluster or more down: most likely it is the one cut
            // off. Rebuilding from here could only fail; wait for the network.
            return;
        }
        let triggers = self.triggers(&dead);
        if !triggers.any() {
            self.ctx
                .scanned_for
                .lock()
                .expect("scanned")
                .retain(|n| dead.contains(n));
            return;
        }
        self.announce(&triggers, &dead);
        let started = Instant::now();
        match self.ctx.scan(&dead, &triggers.forced, shutdown).await {
            Ok((found, census)) => self.scanned(&triggers, dead, found, census, started),
            Err(e) => {
                tracing::warn!(error = %e, "repair scan failed; retrying");
                self.ctx
                    .forced
                    .lock()
                    .expect("forced")
                    .extend(triggers.forced);
            }
        }
    }

    /// What changed since the last look (and the nodes Down now, remembered for the next).
    fn triggers(&mut self, dead: &HashSet<NodeId>) -> Triggers {
        let ctx = &self.ctx;
        let new_failure = {
            let scanned_for = ctx.scanned_for.lock().expect("scanned");
            dead.iter().any(|n| !scanned_for.contains(n))
        };
        let scheduled =
            self.last_scan.elapsed() >= Duration::from_secs(ctx.config.scan_interval_secs);
        // A node that was Down and answers again can take the chunks that writes made
        // while it was away had to leave out.
        let down_now: HashSet<NodeId> = ctx
            .client
            .map()
            .nodes()
            .map(|n| n.id)
            .filter(|&n| ctx.detector.state(n) == NodeState::Down)
            .collect();
        let recovered = self.was_down.iter().any(|n| !down_now.contains(n));
        // A node went Down: count what is degraded now (waiting for the repair delay).
        let went_down = down_now.iter().any(|n| !self.was_down.contains(n));
        self.was_down = down_now;
        // While anything is degraded or Down, the census is kept fresh (at most every
        // CENSUS_INTERVAL, or twice as long as a scan takes), so that status can say when
        // redundancy is restored.
        let census_due = ctx.census_requested.swap(false, Ordering::Relaxed)
            || went_down
            || ((ctx.stats.lock().expect("repair stats").degraded.versions > 0
                || !self.was_down.is_empty())
                && self.last_scan.elapsed() >= CENSUS_INTERVAL.max(self.last_scan_took * 2));
        let forced: Vec<NodeId> = std::mem::take(&mut *ctx.forced.lock().expect("forced"));
        let follow_up_due = self.follow_up.is_some_and(|t| Instant::now() >= t);
        // A new cluster map (a node was added): move the chunks whose placement moved.
        let map_version = ctx.client.map().version;
        Triggers {
            new_failure,
            scheduled,
            recovered,
            follow_up_due,
            map_changed: map_version != self.scanned_map,
            census_due,
            forced,
            map_version,
        }
    }

    /// Logs why a scan starts, and opens a repair episode for a new failure.
    fn announce(&self, triggers: &Triggers, dead: &HashSet<NodeId>) {
        if triggers.new_failure {
            let mut s = self.ctx.stats.lock().expect("repair stats");
            s.episode_start.get_or_insert_with(Instant::now);
            s.scan_pending = true;
            s.episode_scanned = false;
            tracing::info!(dead = ?dead, "nodes down past the repair delay: scanning for versions to rebuild");
        }
        if !triggers.forced.is_empty() {
            tracing::info!(nodes = ?triggers.forced, "scanning for what replaced nodes should hold");
        }
        if triggers.map_changed {
            tracing::info!(
                map_version = triggers.map_version,
                "cluster map changed: scanning for chunks to rebalance"
            );
            self.ctx.stats.lock().expect("repair stats").scan_pending = true;
        }
    }

    /// Records a finished scan: what it covered, whether a follow-up is due, the census.
    fn scanned(
        &mut self,
        triggers: &Triggers,
        dead: HashSet<NodeId>,
        found: u64,
        census: DegradedCount,
        started: Instant,
    ) {
        let ctx = &self.ctx;
        // Logged when something happened, not on every census while a node is down (those
        // run every few seconds).
        let degraded_before = ctx.stats.lock().expect("repair stats").degraded.versions;
        if found > 0
            || census.versions != degraded_before
            || triggers.new_failure
            || triggers.recovered
        {
            tracing::info!(found, degraded = census.versions, "repair scan done");
        }
        *ctx.scanned_for.lock().expect("scanned") = dead;
        self.last_scan = Instant::now();
        self.last_scan_took = started.elapsed();
        self.scanned_map = triggers.map_version;
        self.last_found = Some((found, census.versions));
        if triggers.new_failure {
            // Still pending until the follow-up scan is done.
            self.follow_up = Some(Instant::now() + FOLLOW_UP_SCAN);
            ctx.stats.lock().expect("repair stats").episode_scanned = true;
        } else if triggers.follow_up_due {
            self.follow_up = None;
            ctx.stats.lock().expect("repair stats").scan_pending = false;
        } else if self.follow_up.is_none() {
            ctx.stats.lock().expect("repair stats").scan_pending = false;
        }
        ctx.census_taken(census);
        ctx.wake.notify_one();
    }
}

impl NodeContext {
    /// One pass over the records of the partitions this node owns. Returns how many records
    /// were sent for repair, and the census of the versions below full redundancy.
    async fn scan(
        &self,
        dead: &HashSet<NodeId>,
        forced: &[NodeId],
        shutdown: &CancellationToken,
    ) -> Result<(u64, DegradedCount), RepairError> {
        let mut after = Vec::new();
        let mut found = 0u64;
        let mut census = DegradedCount::default();
        let mut owned: HashMap<String, bool> = HashMap::new();
        let map = self.client.map();
        let scanned = Scanned {
            map: &map,
            dead,
            forced,
        };
        loop {
            if shutdown.is_cancelled() {
                return Ok((found, census));
            }
            let store = self.store.clone();
            let (page, next) =
                tokio::task::spawn_blocking(move || store.meta_all(&after, SCAN_PAGE))
                    .await
                    .map_err(|e| RepairError::Codec(e.to_string()))??;
            for (partition, key, record) in page {
                let is_owner = *owned
                    .entry(partition.clone())
                    .or_insert_with(|| self.owns_partition(&partition));
                if !is_owner {
                    continue;
                }
                if self
                    .scan_record(&scanned, &partition, &key, &record, &mut census)
                    .await?
                {
                    found += 1;
                }
            }
            match next {
                Some(n) => after = n,
                None => {
                    census.taken_ms = Some(now_ms());
                    return Ok((found, census));
                }
            }
        }
    }

    /// Looks at one record of an owned partition: copies it to replaced replicas, counts it in
    /// the census, and sends it to its repair owner if a chunk needs to be rebuilt or moved
    /// (returns whether it was sent).
    async fn scan_record(
        &self,
        scan: &Scanned<'_>,
        partition: &str,
        key: &str,
        record: &Versioned,
        census: &mut DegradedCount,
    ) -> Result<bool, RepairError> {
        let (map, dead, forced) = (scan.map, scan.dead, scan.forced);
        self.copy_to_replaced(forced, partition, key, record).await;
        let value = match MetaValue::decode(&record.value) {
            Ok(value) => value,
            Err(e) => {
                self.store.skip_undecodable(partition, key, &e);
                return Ok(false);
            }
        };
        let pieces = erasure_pieces(&value);
        let verdict = self.degraded(map, partition, &value, dead);
        if let Some((missing, reason, _)) = verdict {
            census.add(record_bytes(&value), missing, reason);
        }
        if verdict.is_some_and(|(_, reason, spares)| {
            reason == DegradedReason::Unrepairable
                || (reason == DegradedReason::NoSpareNode && spares == 0)
        }) {
            // Nothing repair can do now; the census reports it, and the scan after a node
            // comes back or is added queues it.
            return Ok(false);
        }
        let needs = |s: &Option<NodeId>| {
            s.is_none_or(|n| dead.contains(&n) || forced.contains(&n) || map.get(n).is_none())
        };
        let misplaced = |e| {
            targets::misplaced(
                map,
                e,
                |n| !dead.contains(&n),
                |n| self.detector.state(n) == NodeState::Up && !self.client.is_read_only(n),
            )
        };
        if !pieces
            .iter()
            .any(|e| e.placement.iter().any(needs) || misplaced(e))
        {
            return Ok(false);
        }
        let owner = pieces
            .first()
            .and_then(|e| self.first_up(&e.placement))
            .unwrap_or(self.me);
        self.send_to_owner(owner, partition, key).await?;
        Ok(true)
    }

    /// How many chunks the version `value` (a record of `partition`) misses and why, with the
    /// spare nodes of its worst piece; `None` at full redundancy or for records that are not
    /// counted. Each stored version is counted once: from its `#versions` entry when it has a
    /// version id, from the key's current record when it is unversioned or the null version
    /// (a null version that is no longer current is not counted).
    fn degraded(
        &self,
        map: &ClusterMap,
        partition: &str,
        value: &MetaValue,
        dead: &HashSet<NodeId>,
    ) -> Option<(u32, DegradedReason, usize)> {
        let in_versions = partition.ends_with(VERSIONS_SUFFIX);
        let counted = match value {
            MetaValue::Object(r) => in_versions == r.version_id.is_some(),
            MetaValue::Part(_) => true,
            _ => false,
        };
        if !counted {
            return None;
        }
        erasure_pieces(value)
            .into_iter()
            .filter_map(|piece| {
                let slots: Vec<Slot> = piece
                    .placement
                    .iter()
                    .map(|slot| match *slot {
                        None => Slot::Empty,
                        Some(n) if map.get(n).is_none() => Slot::Gone,
                        Some(n) if self.detector.state(n) != NodeState::Down => Slot::Held,
                        Some(n) if dead.contains(&n) => Slot::Dead,
                        Some(_) => Slot::DownWaiting,
                    })
                    .collect();
                let spares = map
                    .nodes()
                    .filter(|n| {
                        self.detector.state(n.id) == NodeState::Up
                            && !dead.contains(&n.id)
                            && !piece.placement.contains(&Some(n.id))
                    })
                    .count();
                classify(&slots, usize::from(piece.layout.k), spares)
                    .map(|(missing, reason)| (missing, reason, spares))
            })
            .max_by_key(|(missing, reason, _)| (*reason, *missing))
    }

    /// Keeps a census, and ends a repair episode once nothing is degraded any more: only
    /// then is redundancy restored and T_FR known.
    fn census_taken(&self, census: DegradedCount) {
        let mut s = self.stats.lock().expect("repair stats");
        let restored = census.versions == 0;
        s.degraded = census;
        if let (true, true, Some(start)) = (restored, s.episode_scanned, s.episode_start) {
            let t_fr = start.elapsed().as_millis() as u64;
            s.last_t_fr_ms = Some(t_fr);
            s.episode_start = None;
            self.detector
                .record_restored(t_fr, Duration::from_secs(self.config.delay_secs));
            tracing::info!(
                t_fr_ms = t_fr,
                "no version below full redundancy: redundancy restored"
            );
        }
    }

    /// Anti-entropy for a replaced node: the partition owner copies its record to replaced
    /// nodes that are replicas of the partition (newest wins on the node, so this is safe).
    async fn copy_to_replaced(
        &self,
        forced: &[NodeId],
        partition: &str,
        key: &str,
        record: &Versioned,
    ) {
        if forced.is_empty() {
            return;
        }
        let replicas = self.quorum_spec(partition).nodes();
        for &node in forced
            .iter()
            .filter(|n| replicas.contains(n) && **n != self.me)
        {
            let request = Request::MetaPut {
                partition: partition.to_string(),
                key: key.to_string(),
                record: record.clone(),
                expect: None,
                // Yields to a writer's lease like every copy that can make a record visible.
                lease: LeaseCheck::Yield,
            };
            if let Err(e) = self.client.call(node, &request, Bytes::new()).await {
                tracing::debug!(%node, error = %e, "copying metadata to a replaced node failed");
            }
        }
    }

    /// Queues a record with its repair owner (here, if the owner cannot be reached).
    async fn send_to_owner(
        &self,
        owner: NodeId,
        partition: &str,
        key: &str,
    ) -> Result<(), RepairError> {
        if owner != self.me {
            let request = Request::RepairEnqueue {
                partition: partition.to_string(),
                key: key.to_string(),
            };
            match self.client.call(owner, &request, Bytes::new()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::debug!(%owner, error = %e, "repair owner unreachable; repairing here")
                }
            }
        }
        self.enqueue(partition, key)
    }
}

/// What one scan looks at every record with: the map it started with, the nodes dead past
/// the delay (or draining), and the replaced nodes it scans for.
struct Scanned<'a> {
    map: &'a ClusterMap,
    dead: &'a HashSet<NodeId>,
    forced: &'a [NodeId],
}
