//! The versioned cluster map: which storage nodes exist, where they listen, their zone and
//! weight (DESIGN 12). Records keep node ids, never addresses, so a map change never makes old
//! records unreadable.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
            nodes: by_id,
        })
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
