//! The storage node's configuration (TOML). Unknown keys are errors, so a typo never silently
//! falls back to a default. `deploy/storage-node.example.toml` documents every key.

use dmpstore_common::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable identity of this node in the cluster map. Never reuse an id for another disk.
    pub node_id: u32,
    /// Address the RPC listener binds to (`host:port`).
    pub listen_addr: SocketAddr,
    /// Address of a plain-HTTP listener for load balancers and Kubernetes probes: only
    /// `GET /health/live` and `GET /health/ready`. None: no such listener.
    #[serde(default)]
    pub health_listen_addr: Option<SocketAddr>,
    /// Directory holding this node's RocksDB database.
    pub data_dir: PathBuf,
    /// Shared secret every RPC must carry; the same on every node and gateway.
    pub cluster_secret: String,
    /// Mutual TLS for the RPC listener and this node's calls to its peers (DESIGN 13):
    /// required unless `insecure_plaintext_rpc` is set.
    #[serde(default)]
    pub rpc_tls: Option<RpcTlsConfig>,
    /// Serve and call the RPC over plain HTTP: the cluster secret and all data travel in
    /// clear. Only for a cluster on a network no one else can reach.
    #[serde(default)]
    pub insecure_plaintext_rpc: bool,
    /// Failure domain of this node (informational here; placement reads zones from the map).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Parity chunks per stripe of the cluster's erasure profile (`m`): metadata partitions have
    /// `2m + 1` replicas. The same value as the gateways' `erasure.parity_chunks`.
    #[serde(default = "default_parity_chunks")]
    pub parity_chunks: u8,
    /// Largest clock offset tolerated between processes, in ms (DESIGN 15): a metadata write
    /// stamped further than this ahead of this node's clock is refused.
    #[serde(default = "default_max_clock_offset_ms")]
    pub max_clock_offset_ms: u64,
    /// Free space kept on the data directory's file system, in bytes. Below it the node turns
    /// read-only (no new chunks or records; reads, deletes and drops go on) until free space is
    /// back above twice this. RocksDB needs the room for tombstones, flushes and the
    /// compactions that reclaim deleted data.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    #[serde(default)]
    pub failure_detector: DetectorConfig,
    #[serde(default)]
    pub repair: RepairConfig,
    #[serde(default)]
    pub scrub: ScrubConfig,
    /// The cluster map: every storage node, this one included (the same list as the gateways').
    /// Empty: the node serves RPCs but neither heartbeats nor repairs.
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

/// The internal RPC's mutual TLS: this process's certificate and key, and the cluster CA that
/// signed every node's and gateway's certificate (`gateway admin certs` makes them all).
/// Nodes accept calls only from certificates of this CA, and callers accept only node
/// certificates of this CA. The pair is re-read when it changes on disk.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RpcTlsConfig {
    /// PEM certificate of the cluster CA.
    pub ca_cert: PathBuf,
    /// PEM certificate of this process, signed by the cluster CA.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// The free space a node keeps on its data disk unless configured otherwise.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

fn default_min_free_bytes() -> u64 {
    DEFAULT_MIN_FREE_BYTES
}

fn default_max_clock_offset_ms() -> u64 {
    dmpstore_common::limits::DEFAULT_MAX_CLOCK_OFFSET.as_millis() as u64
}

/// Heartbeats between nodes (DESIGN 10): a peer that has not answered for `suspect_after_ms`
/// is Suspect, for `down_after_ms` Down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_suspect_after")]
    pub suspect_after_ms: u64,
    #[serde(default = "default_down_after")]
    pub down_after_ms: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            heartbeat_interval_ms: default_heartbeat_interval(),
            suspect_after_ms: default_suspect_after(),
            down_after_ms: default_down_after(),
        }
    }
}

/// Background repair (DESIGN 11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairConfig {
    /// How long a node must stay Down before its chunks are rebuilt elsewhere (a reboot should
    /// not start a rebuild storm).
    #[serde(default = "default_repair_delay")]
    pub delay_secs: u64,
    /// Upper bound on the bytes of rebuilt chunks this node writes per second, in MiB.
    #[serde(default = "default_repair_rate")]
    pub max_rate_mib_per_s: u64,
    /// Seconds between full scans of this node's metadata for versions with missing chunks
    /// (PUTs that stored fewer than `k + m` chunks). Failures past the delay start a scan at
    /// once.
    #[serde(default = "default_scan_interval")]
    pub scan_interval_secs: u64,
    /// How long a chunk that repair or rebalance moved off this node stays before it is
    /// dropped, so reads that started with the old placement can finish.
    #[serde(default = "default_replaced_data_grace")]
    pub replaced_data_grace_secs: u64,
    /// Seconds between anti-entropy passes over the metadata partitions this node owns
    /// (`gateway admin anti-entropy` starts one now).
    #[serde(default = "default_anti_entropy_interval")]
    pub anti_entropy_interval_secs: u64,
    /// Seconds between passes of the orphan scan over this node's chunk index.
    #[serde(default = "default_orphan_scan_interval")]
    pub orphan_scan_interval_secs: u64,
    /// A version's chunks count as orphans only when no record references them and they
    /// were written here longer ago than this: it must exceed the longest PUT (or part
    /// upload) in flight.
    #[serde(default = "default_orphan_grace")]
    pub orphan_grace_secs: u64,
    /// Tombstones older than this are purged by anti-entropy, once every replica of their
    /// partition answers and holds the same tombstone (a replica that is away keeps them).
    #[serde(default = "default_tombstone_grace")]
    pub tombstone_grace_secs: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            delay_secs: default_repair_delay(),
            max_rate_mib_per_s: default_repair_rate(),
            scan_interval_secs: default_scan_interval(),
            replaced_data_grace_secs: default_replaced_data_grace(),
            anti_entropy_interval_secs: default_anti_entropy_interval(),
            orphan_scan_interval_secs: default_orphan_scan_interval(),
            orphan_grace_secs: default_orphan_grace(),
            tombstone_grace_secs: default_tombstone_grace(),
        }
    }
}

/// Scrub (DESIGN 11): re-reads every local chunk on a schedule and checks its checksum; a
/// corrupt chunk is rebuilt in place from its siblings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubConfig {
    /// Seconds between the starts of two scrub passes (`gateway admin scrub` starts one now).
    #[serde(default = "default_scrub_interval")]
    pub interval_secs: u64,
    /// Upper bound on the chunk bytes scrub reads per second, in MiB.
    #[serde(default = "default_scrub_rate")]
    pub max_rate_mib_per_s: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            interval_secs: default_scrub_interval(),
            max_rate_mib_per_s: default_scrub_rate(),
        }
    }
}

/// One storage node of the cluster map.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: u32,
    /// `host:port` of the node's RPC listener.
    pub addr: String,
    /// Failure domain; chunks of one stripe are spread over zones.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Relative share of new chunks.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_zone() -> String {
    "default".to_string()
}
fn default_weight() -> u32 {
    1
}
fn default_parity_chunks() -> u8 {
    dmpstore_common::limits::DEFAULT_PARITY_CHUNKS as u8
}
fn default_heartbeat_interval() -> u64 {
    1000
}
fn default_suspect_after() -> u64 {
    3000
}
fn default_down_after() -> u64 {
    6000
}
fn default_repair_delay() -> u64 {
    300
}
fn default_repair_rate() -> u64 {
    64
}
fn default_tombstone_grace() -> u64 {
    24 * 3600
}
fn default_orphan_scan_interval() -> u64 {
    6 * 3600
}
fn default_orphan_grace() -> u64 {
    6 * 3600
}
fn default_anti_entropy_interval() -> u64 {
    3600
}
fn default_replaced_data_grace() -> u64 {
    dmpstore_common::limits::REPLACED_DATA_GRACE.as_secs()
}
fn default_scan_interval() -> u64 {
    600
}
fn default_scrub_interval() -> u64 {
    7 * 24 * 3600
}
fn default_scrub_rate() -> u64 {
    32
}

/// The cluster map of a list of node entries.
pub fn cluster_map(
    nodes: &[NodeEntry],
) -> Result<dmpstore_common::cluster::ClusterMap, dmpstore_common::cluster::ClusterMapError> {
    dmpstore_common::cluster::ClusterMap::new(
        1,
        nodes
            .iter()
            .map(|n| dmpstore_common::cluster::NodeInfo {
                id: NodeId(n.id),
                addr: n.addr.clone(),
                zone: n.zone.clone(),
                weight: n.weight,
            })
            .collect(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Reads and parses a TOML config file (both binaries' configs load through here).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The config error of a process with neither or both of `[rpc_tls]` and
/// `insecure_plaintext_rpc`.
pub const RPC_TLS_CHOICE: &str =
    "configure exactly one of [rpc_tls] (mutual TLS between nodes and gateways; \
     `gateway admin certs init` makes the certificates) and insecure_plaintext_rpc = true";

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = read_toml(path)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.cluster_secret.len() < 16 {
            return invalid("cluster_secret must be at least 16 characters");
        }
        if self.rpc_tls.is_some() == self.insecure_plaintext_rpc {
            return invalid(RPC_TLS_CHOICE);
        }
        let d = &self.failure_detector;
        if d.heartbeat_interval_ms == 0 || d.suspect_after_ms < d.heartbeat_interval_ms {
            return invalid(
                "failure_detector: suspect_after_ms must be at least one heartbeat interval (> 0)",
            );
        }
        if d.down_after_ms < d.suspect_after_ms {
            return invalid("failure_detector: down_after_ms must be at least suspect_after_ms");
        }
        if self.repair.max_rate_mib_per_s == 0 || self.repair.scan_interval_secs == 0 {
            return invalid("repair: max_rate_mib_per_s and scan_interval_secs must be positive");
        }
        if self.scrub.max_rate_mib_per_s == 0 || self.scrub.interval_secs == 0 {
            return invalid("scrub: max_rate_mib_per_s and interval_secs must be positive");
        }
        if self.parity_chunks == 0 {
            return invalid("parity_chunks must be positive");
        }
        if !self.nodes.is_empty() {
            let map = cluster_map(&self.nodes).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if map.get(self.id()).is_none() {
                return invalid("nodes: the list must include this node's own node_id");
            }
        }
        Ok(())
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let text = r#"
            node_id = 1
            listen_addr = "127.0.0.1:7001"
            data_dir = "/tmp/x"
            cluster_secret = "0123456789abcdef"
            colour = "blue"
        "#;
        let err = toml::from_str::<NodeConfig>(text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn short_secrets_are_rejected() {
        let text = r#"
            node_id = 1
            listen_addr = "127.0.0.1:7001"
            data_dir = "/tmp/x"
            cluster_secret = "short"
        "#;
        let config: NodeConfig = toml::from_str(text).unwrap();
        assert!(config.validate().is_err());
    }
}

#[cfg(test)]
mod deploy_examples {
    use super::*;

    /// The configs shipped in deploy/ must stay loadable.
    #[test]
    fn every_shipped_node_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut paths = vec![deploy.join("storage-node.example.toml")];
        paths.extend((1..=6).map(|i| deploy.join(format!("example-cluster/node-{i}.toml"))));
        for (i, p) in paths.iter().enumerate() {
            let c = NodeConfig::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(c.node_id, i.max(1) as u32);
        }
    }
}
