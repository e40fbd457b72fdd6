//! The gateway's configuration (TOML), typed and validated once at startup. Unknown keys are
//! errors. `deploy/gateway.example.toml` documents every key.

use dmpstore_common::cluster::ClusterMap;
use dmpstore_common::limits;
use dmpstore_common::stripe::StripeLayout;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
pub use dmpstore_storage_node::config::RpcTlsConfig;
use dmpstore_storage_node::tls::RpcTls;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the S3 endpoint binds to (`host:port`).
    pub s3_listen_addr: SocketAddr,
    /// Address of the web console's listener (`host:port`); none: no console. It speaks
    /// HTTPS when `[tls]` is set, with the same certificate as the S3 endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_listen_addr: Option<SocketAddr>,
    /// Region name clients sign with (any string; S3A users often pick `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Shared secret for the internal RPC; the same on every node and gateway.
    pub cluster_secret: String,
    /// Mutual TLS for calls to the storage nodes (DESIGN 13): this gateway's certificate
    /// from the cluster CA. Required unless `insecure_plaintext_rpc` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_tls: Option<RpcTlsConfig>,
    /// Call the nodes over plain HTTP: the cluster secret and all data travel in clear.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext_rpc: bool,
    /// Objects at or under this many bytes are stored inline in their metadata record.
    #[serde(default = "default_inline_max")]
    pub inline_max_bytes: usize,
    /// Domains for virtual-hosted-style requests (`BUCKET.DOMAIN`); empty: path-style only.
    #[serde(default)]
    pub virtual_host_domains: Vec<String>,
    /// Erasure profile for new objects.
    #[serde(default)]
    pub erasure: ErasureConfig,
    /// Seconds the chunks of an overwritten or deleted version are kept, so that GETs already
    /// streaming it can finish.
    #[serde(default = "default_replaced_data_grace")]
    pub replaced_data_grace_secs: u64,
    /// Smallest size of a multipart upload's parts other than the last. S3 requires 5 MiB; a
    /// lower value lets tests complete uploads of many small parts.
    #[serde(default = "default_min_part_size")]
    pub min_part_size_bytes: u64,
    /// Largest tolerated offset of this gateway's clock from the storage nodes', in ms
    /// (DESIGN 15): beyond it the gateway refuses writes with 503 until its clock is back.
    #[serde(default = "default_max_clock_offset_ms")]
    pub max_clock_offset_ms: u64,
    /// The history checker's planted bug, for its self-test only: acknowledge metadata writes
    /// that replicas refused because they hold a newer version (the behaviour before ADR
    /// 0004). Loses acknowledged writes; never set it in a deployment.
    #[serde(default)]
    pub planted_bug_ignore_write_refusals: bool,
    /// TLS for the S3 endpoint: with it the endpoint speaks HTTPS only, without it plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Limits of the S3 listener against slow or abusive clients.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The lifecycle worker (ADR 0009).
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// S3 access keys accepted by this gateway.
    pub credentials: Vec<Credential>,
    /// The storage nodes of the cluster (the cluster map).
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureConfig {
    /// Data chunks per stripe (`k`).
    pub data_chunks: u8,
    /// Parity chunks per stripe (`m`): the number of node failures every object survives.
    pub parity_chunks: u8,
    /// Bytes per chunk; a stripe holds `data_chunks * chunk_size_bytes` bytes of the object.
    pub chunk_size_bytes: u32,
}

impl Default for ErasureConfig {
    fn default() -> Self {
        ErasureConfig {
            data_chunks: limits::DEFAULT_DATA_CHUNKS as u8,
            parity_chunks: limits::DEFAULT_PARITY_CHUNKS as u8,
            chunk_size_bytes: limits::DEFAULT_CHUNK_SIZE_BYTES as u32,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Re-read when it changes on disk.
    pub cert_path: PathBuf,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Run the lifecycle worker on this gateway. Any one gateway with it on applies every
    /// bucket's rules; each bucket's pass is held by one gateway at a time.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds in a lifecycle "day": the unit of every rule's `Days`. Only tests shorten it
    /// (as Ceph RGW's `rgw_lc_debug_interval`); dates are real dates whatever it is.
    #[serde(default = "default_lifecycle_day")]
    pub day_secs: u64,
    /// Seconds between the starts of two passes over one bucket.
    #[serde(default = "default_lifecycle_interval")]
    pub pass_interval_secs: u64,
    /// Expirations and aborts per second at most, on this gateway.
    #[serde(default = "default_lifecycle_rate")]
    pub max_actions_per_sec: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            enabled: true,
            day_secs: default_lifecycle_day(),
            pass_interval_secs: default_lifecycle_interval(),
            max_actions_per_sec: default_lifecycle_rate(),
        }
    }
}

impl LifecycleConfig {
    pub fn day(&self) -> Duration {
        Duration::from_secs(self.day_secs)
    }
    pub fn pass_interval(&self) -> Duration {
        Duration::from_secs(self.pass_interval_secs)
    }
}

fn default_true() -> bool {
    true
}
fn default_lifecycle_day() -> u64 {
    86_400
}
fn default_lifecycle_interval() -> u64 {
    3_600
}
fn default_lifecycle_rate() -> u32 {
    200
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a client has to send a complete request head (TLS handshake included), also
    /// the longest idle time of a kept-alive connection between requests.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may send nothing while the gateway waits for it; then 400
    /// RequestTimeout.
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout_secs: u64,
    /// Open connections at most; a connection past it is accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests in flight at most (head received to response body sent); a request past it
    /// gets 503 SlowDown at once.
    #[serde(default = "default_max_requests_in_flight")]
    pub max_requests_in_flight: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_read_timeout_secs: default_header_read_timeout(),
            body_idle_timeout_secs: default_body_idle_timeout(),
            max_connections: default_max_connections(),
            max_requests_in_flight: default_max_requests_in_flight(),
        }
    }
}

impl LimitsConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.body_idle_timeout_secs)
    }
}

fn default_header_read_timeout() -> u64 {
    limits::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
}
fn default_body_idle_timeout() -> u64 {
    limits::DEFAULT_BODY_IDLE_TIMEOUT.as_secs()
}
fn default_max_connections() -> usize {
    limits::DEFAULT_MAX_S3_CONNECTIONS
}
fn default_max_requests_in_flight() -> usize {
    limits::DEFAULT_MAX_S3_REQUESTS_IN_FLIGHT
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
    /// The administrator's name: owner of the buckets it creates. No user may take it.
    #[serde(default = "default_admin_name")]
    pub user: String,
}

pub use dmpstore_storage_node::config::NodeEntry;

fn default_admin_name() -> String {
    "admin".into()
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_inline_max() -> usize {
    limits::DEFAULT_INLINE_MAX_BYTES
}
fn default_max_clock_offset_ms() -> u64 {
    limits::DEFAULT_MAX_CLOCK_OFFSET.as_millis() as u64
}
fn default_min_part_size() -> u64 {
    limits::MIN_PART_SIZE_BYTES
}

fn default_replaced_data_grace() -> u64 {
    limits::REPLACED_DATA_GRACE.as_secs()
}

pub use dmpstore_storage_node::config::ConfigError;

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let config: GatewayConfig = dmpstore_storage_node::config::read_toml(path)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let e = &self.erasure;
        if e.data_chunks == 0 || usize::from(e.data_chunks) > limits::MAX_DATA_CHUNKS {
            return invalid(format!(
                "erasure.data_chunks must be 1..={}",
                limits::MAX_DATA_CHUNKS
            ));
        }
        if e.parity_chunks == 0 || usize::from(e.parity_chunks) > limits::MAX_PARITY_CHUNKS {
            return invalid(format!(
                "erasure.parity_chunks must be 1..={}",
                limits::MAX_PARITY_CHUNKS
            ));
        }
        let chunk = e.chunk_size_bytes as usize;
        if !(limits::MIN_CHUNK_SIZE_BYTES..=limits::MAX_CHUNK_SIZE_BYTES).contains(&chunk) {
            return invalid(format!(
                "erasure.chunk_size_bytes must be {}..={}",
                limits::MIN_CHUNK_SIZE_BYTES,
                limits::MAX_CHUNK_SIZE_BYTES
            ));
        }
        if self.inline_max_bytes > limits::MAX_INLINE_MAX_BYTES {
            return invalid(format!(
                "inline_max_bytes must be at most {}",
                limits::MAX_INLINE_MAX_BYTES
            ));
        }
        let lc = &self.lifecycle;
        if lc.day_secs == 0 || lc.pass_interval_secs == 0 || lc.max_actions_per_sec == 0 {
            return invalid(
                "lifecycle.day_secs, pass_interval_secs and max_actions_per_sec must be positive"
                    .into(),
            );
        }
        if self.inline_max_bytes >= chunk * usize::from(e.data_chunks) {
            return invalid("inline_max_bytes must be smaller than one stripe".into());
        }
        if self.nodes.len() < usize::from(e.data_chunks) + 1 {
            return invalid(format!(
                "{} nodes cannot hold stripes of {} data chunks with redundancy",
                self.nodes.len(),
                e.data_chunks
            ));
        }
        if self.credentials.is_empty() {
            return invalid("at least one entry in credentials is required".into());
        }
        let l = &self.limits;
        if l.header_read_timeout_secs == 0
            || l.body_idle_timeout_secs == 0
            || l.max_connections == 0
            || l.max_requests_in_flight == 0
        {
            return invalid("every value under [limits] must be at least 1".into());
        }
        if self.cluster_secret.len() < 16 {
            return invalid("cluster_secret must be at least 16 characters".into());
        }
        if self.rpc_tls.is_some() == self.insecure_plaintext_rpc {
            return invalid(dmpstore_storage_node::config::RPC_TLS_CHOICE.into());
        }
        self.cluster_map()
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// This gateway's side of the RPC's mutual TLS, if configured.
    pub fn rpc_tls(&self) -> anyhow::Result<Option<RpcTls>> {
        self.rpc_tls
            .as_ref()
            .map(|t| {
                RpcTls::load(&t.ca_cert, &t.cert, &t.key)
                    .context("load the internal RPC's TLS material ([rpc_tls])")
            })
            .transpose()
    }

    pub fn layout(&self) -> StripeLayout {
        StripeLayout {
            k: self.erasure.data_chunks,
            m: self.erasure.parity_chunks,
            chunk_size_bytes: self.erasure.chunk_size_bytes,
        }
    }

    pub fn cluster_map(&self) -> Result<ClusterMap, dmpstore_common::cluster::ClusterMapError> {
        dmpstore_storage_node::config::cluster_map(&self.nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        s3_listen_addr = "127.0.0.1:9000"
        cluster_secret = "0123456789abcdef"
        insecure_plaintext_rpc = true
        [[credentials]]
        access_key = "a"
        secret_key = "b"
    "#;

    fn nodes(n: u32) -> String {
        (1..=n)
            .map(|i| format!("[[nodes]]\nid = {i}\naddr = \"127.0.0.1:{}\"\n", 7000 + i))
            .collect()
    }

    #[test]
    fn a_valid_config_loads_with_defaults() {
        let c: GatewayConfig = toml::from_str(&format!("{BASE}{}", nodes(6))).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.layout(),
            StripeLayout {
                k: 4,
                m: 2,
                chunk_size_bytes: 262_144
            }
        );
        assert_eq!(c.region, "us-east-1");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let err = toml::from_str::<GatewayConfig>(&format!("{BASE}inline_max = 3\n{}", nodes(6)))
            .unwrap_err();
        assert!(err.to_string().contains("inline_max"), "{err}");
        let c: GatewayConfig = toml::from_str(&format!("{BASE}{}", nodes(4))).unwrap();
        assert!(
            c.validate().is_err(),
            "4 nodes cannot hold RS(4,2) with redundancy"
        );
        let dup = format!("{BASE}{}{}", nodes(6), nodes(1));
        let c: GatewayConfig = toml::from_str(&dup).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
    }
}

#[cfg(test)]
mod deploy_examples {
    use super::*;

    /// The configs shipped in deploy/ must stay loadable.
    #[test]
    fn every_shipped_gateway_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut paths = vec![deploy.join("gateway.example.toml")];
        paths.extend(
            ["gateway-1.toml", "gateway-2.toml"].map(|f| deploy.join("example-cluster").join(f)),
        );
        for p in paths {
            let c = GatewayConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(c.nodes.len(), 6);
        }
    }
}
