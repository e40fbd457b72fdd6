//! Prometheus metrics of a storage node, served at `GET /metrics` on its RPC listener. The
//! figures are read-only, so this path alone needs no cluster secret.

use dmpstore_common::cluster::NodeState;
use dmpstore_common::rpc::{DegradedReason, DiskReport, PeerView, RepairStatus, WorkerReport};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct NodeMetrics {
    registry: Registry,
    rpc_requests: IntCounterVec,
    rpc_seconds: HistogramVec,
    chunks_repaired: IntCounter,
    rebuilt_bytes: IntCounter,
    healed_chunks: IntCounter,
    scrubbed_chunks: IntCounter,
    repair_queue: IntGauge,
    repair_rate: IntGauge,
    peer_state: IntGaugeVec,
    last_t_fd: Gauge,
    last_t_fr: Gauge,
    chunks: IntGauge,
    /// Garbage collection and anti-entropy totals, by kind.
    housekeeping: IntCounterVec,
    map_version: IntGauge,
    /// The census of versions below full redundancy in the partitions this node owns.
    degraded_versions: IntGaugeVec,
    degraded_bytes: IntGauge,
    /// Restarts of each background worker after a panic.
    worker_restarts: IntCounterVec,
    /// Metadata writes refused because their stamp was too far ahead of this node's clock.
    pub clock_offset_refusals: IntCounter,
    /// Median offset of the peers' clocks from this node's, from heartbeats.
    pub clock_offset_ms: IntGauge,
    /// 1 while the disk is full and the node takes no new data.
    read_only: IntGauge,
    /// Free and total bytes of the data disk, by `figure`.
    disk_bytes: IntGaugeVec,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are static and unique");
    c
}

/// Moves a counter up to `total` (counters here mirror totals kept elsewhere).
fn catch_up(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let r = Registry::new();
        NodeMetrics {
            clock_offset_ms: register(
                &r,
                IntGauge::new(
                    "dmpstore_node_clock_offset_ms",
                    "Median offset of the peers' clocks from this node's, from heartbeats (positive: peers ahead)",
                )
                .expect("valid metric"),
            ),
            clock_offset_refusals: register(
                &r,
                IntCounter::new(
                    "dmpstore_node_clock_offset_refusals_total",
                    "Metadata writes refused: stamped further ahead of this node's clock than the maximum offset",
                )
                .expect("valid metric"),
            ),
            rpc_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "dmpstore_node_rpc_requests_total",
                        "RPCs served, by call and outcome",
                    ),
                    &["rpc", "outcome"],
                )
                .expect("valid metric"),
            ),
            rpc_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("dmpstore_node_rpc_duration_seconds", "RPC latency by call"),
                    &["rpc"],
                )
                .expect("valid metric"),
            ),
            chunks_repaired: register(
                &r,
                IntCounter::new(
                    "dmpstore_chunks_repaired_total",
                    "Chunks rebuilt by repair and heal",
                )
                .expect("valid metric"),
            ),
            rebuilt_bytes: register(
                &r,
                IntCounter::new(
                    "dmpstore_repair_rebuilt_bytes_total",
                    "Bytes of chunks rebuilt",
                )
                .expect("valid metric"),
            ),
            healed_chunks: register(
                &r,
                IntCounter::new(
                    "dmpstore_chunks_healed_total",
                    "Corrupt chunks rebuilt in place",
                )
                .expect("valid metric"),
            ),
            scrubbed_chunks: register(
                &r,
                IntCounter::new("dmpstore_scrubbed_chunks_total", "Chunks verified by scrub")
                    .expect("valid metric"),
            ),
            repair_queue: register(
                &r,
                IntGauge::new(
                    "dmpstore_repair_queue_length",
                    "Records and chunks waiting for repair on this node",
                )
                .expect("valid metric"),
            ),
            repair_rate: register(
                &r,
                IntGauge::new(
                    "dmpstore_repair_rate_bytes_per_second",
                    "Rebuild rate over the last 10 s",
                )
                .expect("valid metric"),
            ),
            peer_state: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "dmpstore_peer_state",
                        "1 for the state this node's failure detector gives each peer",
                    ),
                    &["peer", "state"],
                )
                .expect("valid metric"),
            ),
            last_t_fd: register(
                &r,
                Gauge::new(
                    "dmpstore_last_failure_detection_seconds",
                    "T_FD of the last failure: last answered heartbeat to Down",
                )
                .expect("valid metric"),
            ),
            last_t_fr: register(
                &r,
                Gauge::new(
                    "dmpstore_last_failure_rebuild_seconds",
                    "T_FR of the last failure: repair start to no version below full redundancy",
                )
                .expect("valid metric"),
            ),
            chunks: register(
                &r,
                IntGauge::new(
                    "dmpstore_chunks_estimate",
                    "Chunks stored on this node (RocksDB estimate)",
                )
                .expect("valid metric"),
            ),
            housekeeping: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "dmpstore_housekeeping_total",
                        "Garbage collection and anti-entropy work done by this node, by kind",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            map_version: register(
                &r,
                IntGauge::new(
                    "dmpstore_cluster_map_version",
                    "Version of the cluster map this node uses",
                )
                .expect("valid metric"),
            ),
            degraded_versions: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "dmpstore_degraded_versions",
                        "Object versions below full redundancy in the partitions this node owns, by reason (last census)",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            degraded_bytes: register(
                &r,
                IntGauge::new(
                    "dmpstore_degraded_bytes",
                    "Bytes of the object versions below full redundancy in the partitions this node owns (last census)",
                )
                .expect("valid metric"),
            ),
            worker_restarts: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "dmpstore_worker_restarts_total",
                        "Background workers started again after a panic, by worker",
                    ),
                    &["worker"],
                )
                .expect("valid metric"),
            ),
            read_only: register(
                &r,
                IntGauge::new(
                    "dmpstore_node_read_only",
                    "1 while the node's disk is below its free-space reserve and it takes no new chunks or records",
                )
                .expect("valid metric"),
            ),
            disk_bytes: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "dmpstore_node_disk_bytes",
                        "The data disk's space, by figure (free, total, reserve)",
                    ),
                    &["figure"],
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    pub fn observe_rpc(&self, rpc: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.rpc_requests.with_label_values(&[rpc, outcome]).inc();
        self.rpc_seconds.with_label_values(&[rpc]).observe(seconds);
    }

    /// The text exposition, with the repair and detector figures taken now.
    pub fn render(
        &self,
        repair: Option<&RepairStatus>,
        peers: &[PeerView],
        workers: &[WorkerReport],
        chunks: u64,
        disk: &DiskReport,
    ) -> String {
        self.read_only.set(i64::from(disk.read_only));
        for (figure, bytes) in [
            ("free", disk.free_bytes),
            ("total", disk.total_bytes),
            ("reserve", disk.reserve_bytes),
        ] {
            self.disk_bytes
                .with_label_values(&[figure])
                .set(bytes.min(i64::MAX as u64) as i64);
        }
        for w in workers {
            catch_up(
                &self.worker_restarts.with_label_values(&[&w.name]),
                w.restarts,
            );
        }
        if let Some(s) = repair {
            catch_up(&self.chunks_repaired, s.repaired_chunks);
            catch_up(&self.rebuilt_bytes, s.rebuilt_bytes);
            catch_up(&self.healed_chunks, s.healed_chunks);
            catch_up(&self.scrubbed_chunks, s.scrubbed_chunks);
            self.repair_queue.set(s.queued as i64);
            self.repair_rate.set(s.rate_bytes_per_s as i64);
            self.last_t_fd
                .set(s.last_t_fd_ms.map_or(0.0, |v| v as f64 / 1000.0));
            self.last_t_fr
                .set(s.last_t_fr_ms.map_or(0.0, |v| v as f64 / 1000.0));
            for (kind, total) in [
                ("moved_chunks_dropped", s.dropped_moved_chunks),
                ("orphan_chunks_dropped", s.orphan_chunks_dropped),
                ("tombstones_purged", s.tombstones_purged),
                ("anti_entropy_records_repaired", s.anti_entropy_repaired),
                ("anti_entropy_passes", s.anti_entropy_passes),
            ] {
                catch_up(&self.housekeeping.with_label_values(&[kind]), total);
            }
            self.map_version.set(s.map_version as i64);
            for reason in DegradedReason::ALL {
                self.degraded_versions
                    .with_label_values(&[reason.as_str()])
                    .set(s.degraded.with_reason(reason) as i64);
            }
            self.degraded_bytes.set(s.degraded.bytes as i64);
        }
        for p in peers {
            for state in [NodeState::Up, NodeState::Suspect, NodeState::Down] {
                self.peer_state
                    .with_label_values(&[&p.node_id.to_string(), &state.to_string()])
                    .set(i64::from(p.state == state));
            }
        }
        self.chunks.set(chunks as i64);
        encode(&self.registry)
    }
}

/// Prometheus text format of everything in `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}
