//! Prometheus metrics of a gateway, served at `GET /metrics` on the S3 listener to requests
//! that carry no credentials and no query (an S3 request for a bucket named `metrics` is always
//! signed, so it never lands here).

use crate::nodes::NodeClient;
use dmpstore_common::availability::{MinuteCounts, Served, DAY_MINUTES, HOUR_MINUTES};
use dmpstore_common::cluster::NodeState;
use dmpstore_common::rpc::GatewayAvailability;
use dmpstore_storage_node::meta_client::MetaClient;
use dmpstore_storage_node::metrics::encode;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::sync::Mutex;

pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    seconds: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub degraded_reads: IntCounter,
    /// Expirations, version removals and upload aborts the lifecycle worker made.
    pub lifecycle_actions: IntCounter,
    pub connections_open: IntGauge,
    /// Connections accepted and closed at once: `max_connections` were open.
    pub connections_refused: IntCounter,
    /// Connections closed because a TLS handshake or a request head took too long.
    pub connections_timed_out: IntCounter,
    /// Requests answered 503 SlowDown: `max_requests_in_flight` were in flight.
    pub requests_refused: IntCounter,
    node_up: IntGaugeVec,
    node_read_only: IntGaugeVec,
    clock_offset_ms: IntGauge,
    clock_refusals: IntCounter,
    /// P_HA: requests answered, and with a server-side error, per minute over a day.
    served: Mutex<MinuteCounts>,
    availability: GaugeVec,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are static and unique");
    c
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        let r = Registry::new();
        GatewayMetrics {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "dmpstore_s3_requests_total",
                        "S3 requests, by HTTP method and status",
                    ),
                    &["method", "status"],
                )
                .expect("valid metric"),
            ),
            seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "dmpstore_s3_request_duration_seconds",
                        "Time to the response head, by HTTP method",
                    ),
                    &["method"],
                )
                .expect("valid metric"),
            ),
            bytes_in: register(
                &r,
                IntCounter::new(
                    "dmpstore_s3_bytes_in_total",
                    "Object bytes stored by PutObject and UploadPart",
                )
                .expect("valid metric"),
            ),
            bytes_out: register(
                &r,
                IntCounter::new(
                    "dmpstore_s3_bytes_out_total",
                    "Object bytes served by GetObject",
                )
                .expect("valid metric"),
            ),
            degraded_reads: register(
                &r,
                IntCounter::new(
                    "dmpstore_degraded_reads_total",
                    "Stripes read by reconstruction around missing, corrupt or unreachable chunks",
                )
                .expect("valid metric"),
            ),
            lifecycle_actions: register(
                &r,
                IntCounter::new(
                    "dmpstore_lifecycle_actions_total",
                    "Object versions expired or removed and multipart uploads aborted by lifecycle rules",
                )
                .expect("valid metric"),
            ),
            connections_open: register(
                &r,
                IntGauge::new("dmpstore_s3_connections_open", "Open S3 connections")
                    .expect("valid metric"),
            ),
            connections_refused: register(
                &r,
                IntCounter::new(
                    "dmpstore_s3_connections_refused_total",
                    "S3 connections closed at once because max_connections were open",
                )
                .expect("valid metric"),
            ),
            connections_timed_out: register(
                &r,
                IntCounter::new(
                    "dmpstore_s3_connections_timed_out_total",
                    "S3 connections closed because a TLS handshake or a request head was not complete within the header read timeout",
                )
                .expect("valid metric"),
            ),
            requests_refused: register(
                &r,
                IntCounter::new(
                    "dmpstore_s3_requests_refused_total",
                    "S3 requests answered 503 SlowDown because max_requests_in_flight were in flight (not counted in dmpstore_s3_requests_total)",
                )
                .expect("valid metric"),
            ),
            node_up: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "dmpstore_gateway_node_up",
                        "1 if this gateway currently sends work to the node",
                    ),
                    &["node"],
                )
                .expect("valid metric"),
            ),
            node_read_only: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "dmpstore_gateway_node_read_only",
                        "1 if the node said its disk is full: this gateway places no new chunks on it",
                    ),
                    &["node"],
                )
                .expect("valid metric"),
            ),
            clock_offset_ms: register(
                &r,
                IntGauge::new(
                    "dmpstore_gateway_clock_offset_ms",
                    "Median offset of the storage nodes' clocks from this gateway's (positive: nodes ahead)",
                )
                .expect("valid metric"),
            ),
            clock_refusals: register(
                &r,
                IntCounter::new(
                    "dmpstore_gateway_clock_offset_refusals_total",
                    "Writes refused because this gateway's clock was off from the nodes' by more than max_clock_offset_ms",
                )
                .expect("valid metric"),
            ),
            served: Mutex::default(),
            availability: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "dmpstore_gateway_availability",
                        "P_HA: share of S3 requests answered without a server-side error (5xx) over the window (1 when none were answered)",
                    ),
                    &["window"],
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    pub fn observe_request(&self, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, &status.to_string()])
            .inc();
        self.seconds.with_label_values(&[method]).observe(seconds);
        self.served
            .lock()
            .expect("served counts")
            .record(now_minute(), status >= 500);
    }

    /// S3 requests answered since start, and those answered with a server-side error.
    pub fn request_totals(&self) -> (u64, u64) {
        use prometheus::core::Collector;
        let mut total = 0;
        let mut errors = 0;
        for family in self.requests.collect() {
            for m in family.get_metric() {
                let n = m.get_counter().get_value() as u64;
                total += n;
                let server_error = m
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "status" && l.value().starts_with('5'));
                if server_error {
                    errors += n;
                }
            }
        }
        (total, errors)
    }

    /// What this gateway served over the last hour and day (P_HA).
    pub fn served(&self) -> (Served, Served) {
        let counts = self.served.lock().expect("served counts");
        let now = now_minute();
        (
            counts.window(now, HOUR_MINUTES),
            counts.window(now, DAY_MINUTES),
        )
    }

    /// This gateway's P_HA report for the nodes, under the name `gateway`.
    pub fn availability_report(&self, gateway: &str) -> GatewayAvailability {
        let (last_hour, last_day) = self.served();
        GatewayAvailability {
            gateway: gateway.to_string(),
            last_hour,
            last_day,
            sent_ms: crate::state::GatewayState::now_ms(),
        }
    }

    pub fn render(&self, nodes: &NodeClient, meta: &MetaClient) -> String {
        self.clock_offset_ms
            .set(nodes.clock_offset_ms().unwrap_or_default());
        let refusals = meta.clock_refusals();
        let counted = self.clock_refusals.get();
        if refusals > counted {
            self.clock_refusals.inc_by(refusals - counted);
        }
        let (hour, day) = self.served();
        for (window, served) in [("1h", hour), ("1d", day)] {
            self.availability
                .with_label_values(&[window])
                .set(served.availability().unwrap_or(1.0));
        }
        for n in nodes.map().nodes() {
            self.node_up
                .with_label_values(&[&n.id.to_string()])
                .set(i64::from(nodes.state(n.id) == NodeState::Up));
            self.node_read_only
                .with_label_values(&[&n.id.to_string()])
                .set(i64::from(nodes.is_read_only(n.id)));
        }
        encode(&self.registry)
    }
}

fn now_minute() -> u64 {
    crate::state::GatewayState::now_ms() / 60_000
}

/// Whether a request is a metrics scrape rather than an S3 call.
pub fn is_scrape<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET
        && req.uri().path() == "/metrics"
        && req.uri().query().is_none()
        && !req.headers().contains_key(http::header::AUTHORIZATION)
}
