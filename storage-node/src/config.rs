//! The storage node's configuration (TOML). Unknown keys are errors, so a typo never silently
//! falls back to a default. `deploy/storage-node.example.toml` documents every key.

use dmpstore_common::ids::NodeId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Stable identity of this node in the cluster map. Never reuse an id for another disk.
    pub node_id: u32,
    /// Address the RPC listener binds to (`host:port`).
    pub listen_addr: SocketAddr,
    /// Directory holding this node's RocksDB database.
    pub data_dir: PathBuf,
    /// Shared secret every RPC must carry; the same on every node and gateway.
    pub cluster_secret: String,
    /// Failure domain of this node (informational here; placement reads zones from the map).
    #[serde(default = "default_zone")]
    pub zone: String,
}

fn default_zone() -> String {
    "default".to_string()
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

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = read_toml(path)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_secret.len() < 16 {
            return Err(ConfigError::Invalid(
                "cluster_secret must be at least 16 characters".into(),
            ));
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
