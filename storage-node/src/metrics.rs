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
    repair: RepairMetrics,
    peer_state: IntGaugeVec,
    chunks: IntGauge,
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

/// The figures of the node's repair status.
struct RepairMetrics {
    chunks_repaired: IntCounter,
    rebuilt_bytes: IntCounter,
    healed_chunks: IntCounter,
    scrubbed_chunks: IntCounter,
    repair_queue: IntGauge,
    repair_rate: IntGauge,
    last_t_fd: Gauge,
    last_t_fr: Gauge,
    /// Garbage collection and anti-entropy totals, by kind.
    housekeeping: IntCounterVec,
    map_version: IntGauge,
    /// The census of versions below full redundancy in the partitions this node owns.
    degraded_versions: IntGaugeVec,
    degraded_bytes: IntGauge,
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

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

/// A gauge of a duration in seconds.
fn seconds(r: &Registry, name: &str, help: &str) -> Gauge {
    register(r, Gauge::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
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
            clock_offset_ms: gauge(
                &r,
                "dmpstore_node_clock_offset_ms",
                "Median offset of the peers' clocks from this node's, from heartbeats (positive: peers ahead)",
            ),
            clock_offset_refusals: counter(
                &r,
                "dmpstore_node_clock_offset_refusals_total",
                "Metadata writes refused: stamped further ahead of this node's clock than the maximum offset",
            ),
            rpc_requests: counter_vec(
                &r,
                "dmpstore_node_rpc_requests_total",
                "RPCs served, by call and outcome",
                &["rpc", "outcome"],
            ),
            rpc_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("dmpstore_node_rpc_duration_seconds", "RPC latency by call"),
                    &["rpc"],
                )
                .expect("valid metric"),
            ),
            repair: RepairMetrics::new(&r),
            peer_state: gauge_vec(
                &r,
                "dmpstore_peer_state",
                "1 for the state this node's failure detector gives each peer",
                &["peer", "state"],
            ),
            chunks: gauge(
                &r,
                "dmpstore_chunks_estimate",
                "Chunks stored on this node (RocksDB estimate)",
            ),
            worker_restarts: counter_vec(
                &r,
                "dmpstore_worker_restarts_total",
                "Background workers started again after a panic, by worker",
                &["worker"],
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
            self.repair.observe(s);
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

impl RepairMetrics {
    fn new(r: &Registry) -> RepairMetrics {
        RepairMetrics {
            chunks_repaired: counter(
                r,
                "dmpstore_chunks_repaired_total",
                "Chunks rebuilt by repair and heal",
            ),
            rebuilt_bytes: counter(
                r,
                "dmpstore_repair_rebuilt_bytes_total",
                "Bytes of chunks rebuilt",
            ),
            healed_chunks: counter(
                r,
                "dmpstore_chunks_healed_total",
                "Corrupt chunks rebuilt in place",
            ),
            scrubbed_chunks: counter(
                r,
                "dmpstore_scrubbed_chunks_total",
                "Chunks verified by scrub",
            ),
            repair_queue: gauge(
                r,
                "dmpstore_repair_queue_length",
                "Records and chunks waiting for repair on this node",
            ),
            repair_rate: gauge(
                r,
                "dmpstore_repair_rate_bytes_per_second",
                "Rebuild rate over the last 10 s",
            ),
            last_t_fd: seconds(
                r,
                "dmpstore_last_failure_detection_seconds",
                "T_FD of the last failure: last answered heartbeat to Down",
            ),
            last_t_fr: seconds(
                r,
                "dmpstore_last_failure_rebuild_seconds",
                "T_FR of the last failure: repair start to no version below full redundancy",
            ),
            housekeeping: counter_vec(
                r,
                "dmpstore_housekeeping_total",
                "Garbage collection and anti-entropy work done by this node, by kind",
                &["kind"],
            ),
            map_version: gauge(
                r,
                "dmpstore_cluster_map_version",
                "Version of the cluster map this node uses",
            ),
            degraded_versions: gauge_vec(
                r,
                "dmpstore_degraded_versions",
                "Object versions below full redundancy in the partitions this node owns, by reason (last census)",
                &["reason"],
            ),
            degraded_bytes: gauge(
                r,
                "dmpstore_degraded_bytes",
                "Bytes of the object versions below full redundancy in the partitions this node owns (last census)",
            ),
        }
    }

    /// Mirrors a repair status taken now.
    fn observe(&self, s: &RepairStatus) {
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
}

/// Prometheus text format of everything in `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}
