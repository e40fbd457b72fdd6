//! The versioned cluster map: which storage nodes exist, where they listen, their zone and
//! weight (DESIGN 12). Records keep node ids, never addresses, so a map change never makes old
//! records unreadable.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// `host:port` of the node's RPC listener.
    pub addr: String,
    /// Failure domain. Nodes sharing a zone may fail together.
    pub zone: String,
    /// Relative share of chunks this node should receive.
    pub weight: u32,
}

/// A node's state as one observer sees it (DESIGN 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState {
    Up,
    /// Missed heartbeats, not yet declared Down: still read from, given no new chunks.
    Suspect,
    Down,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Up => "up",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    pub version: u64,
    nodes: BTreeMap<NodeId, NodeInfo>,
    /// The nodes that hold metadata partitions (DESIGN 5). Nodes added to a running cluster
    /// hold chunks only: moving a partition's replica set safely needs a migration that is not
    /// built yet (ADR 0003), so the replica sets stay on the founding nodes.
    metadata_nodes: BTreeSet<NodeId>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterMapError {
    #[error("node {0} appears twice in the cluster map")]
    DuplicateNode(NodeId),
    #[error("node {0} has weight 0")]
    ZeroWeight(NodeId),
    #[error("the cluster map has no nodes")]
    Empty,
}

impl ClusterMap {
    pub fn new(version: u64, nodes: Vec<NodeInfo>) -> Result<ClusterMap, ClusterMapError> {
        if nodes.is_empty() {
            return Err(ClusterMapError::Empty);
        }
        let mut by_id = BTreeMap::new();
        for n in nodes {
            if n.weight == 0 {
                return Err(ClusterMapError::ZeroWeight(n.id));
            }
            let id = n.id;
            if by_id.insert(id, n).is_some() {
                return Err(ClusterMapError::DuplicateNode(id));
            }
        }
        Ok(ClusterMap {
            version,
            metadata_nodes: by_id.keys().copied().collect(),
            nodes: by_id,
        })
    }

    /// The next version of this map with `node` added as a data node (it takes chunks, not
    /// metadata replicas).
    pub fn with_data_node(&self, node: NodeInfo) -> Result<ClusterMap, ClusterMapError> {
        if node.weight == 0 {
            return Err(ClusterMapError::ZeroWeight(node.id));
        }
        if self.nodes.contains_key(&node.id) {
            return Err(ClusterMapError::DuplicateNode(node.id));
        }
        let mut next = self.clone();
        next.version += 1;
        next.nodes.insert(node.id, node);
        Ok(next)
    }

    /// The map's persisted form.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serializing to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Option<ClusterMap> {
        postcard::from_bytes(bytes).ok()
    }

    /// Whether `id` holds metadata partitions.
    pub fn is_metadata_node(&self, id: NodeId) -> bool {
        self.metadata_nodes.contains(&id)
    }

    pub fn metadata_len(&self) -> usize {
        self.metadata_nodes.len()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    pub fn get(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: format!("127.0.0.1:{}", 7000 + id),
            zone: "z".into(),
            weight: 1,
        }
    }

    #[test]
    fn an_added_node_takes_data_only_and_bumps_the_version() {
        let map = ClusterMap::new(1, (1..=3).map(info).collect()).unwrap();
        let next = map.with_data_node(info(9)).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.len(), 4);
        assert!(next.is_metadata_node(NodeId(1)));
        assert!(!next.is_metadata_node(NodeId(9)));
        assert_eq!(next.metadata_len(), 3);
        assert_eq!(
            next.with_data_node(info(2)),
            Err(ClusterMapError::DuplicateNode(NodeId(2)))
        );
    }
}
