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
    /// hold chunks only; the set changes only through a metadata membership change (ADR 0003).
    metadata_nodes: BTreeSet<NodeId>,
    /// While a metadata membership change is in its joint phase: the set before it. Metadata
    /// quorums then need a majority of the replicas under both sets.
    previous_metadata_nodes: Option<BTreeSet<NodeId>>,
    /// Bumped by every metadata membership change. A node refuses metadata requests from a
    /// caller with an older epoch, so no writer keeps using replica sets that are moving.
    pub metadata_epoch: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterMapError {
    #[error("node {0} appears twice in the cluster map")]
    DuplicateNode(NodeId),
    #[error("node {0} has weight 0")]
    ZeroWeight(NodeId),
    #[error("the cluster map has no nodes")]
    Empty,
    #[error("a metadata membership change is already in progress")]
    ChangeInProgress,
    #[error("node {0} is not in the cluster map")]
    UnknownNode(NodeId),
    #[error("node {0} still holds metadata replicas")]
    HoldsMetadata(NodeId),
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
            previous_metadata_nodes: None,
            metadata_epoch: 1,
            nodes: by_id,
        })
    }

    /// The joint phase of a metadata membership change to `new_set` (next version, next
    /// epoch): quorums need majorities under the old and the new set until
    /// [`ClusterMap::finish_metadata_change`].
    pub fn begin_metadata_change(
        &self,
        new_set: BTreeSet<NodeId>,
    ) -> Result<ClusterMap, ClusterMapError> {
        if self.previous_metadata_nodes.is_some() {
            return Err(ClusterMapError::ChangeInProgress);
        }
        if new_set.is_empty() {
            return Err(ClusterMapError::Empty);
        }
        if let Some(unknown) = new_set.iter().find(|n| !self.nodes.contains_key(n)) {
            return Err(ClusterMapError::UnknownNode(*unknown));
        }
        let mut next = self.clone();
        next.version += 1;
        next.metadata_epoch += 1;
        next.previous_metadata_nodes = Some(std::mem::replace(&mut next.metadata_nodes, new_set));
        Ok(next)
    }

    /// Ends the joint phase (the new set's replicas hold every record), and drops `remove`
    /// from the map if given (it must not hold metadata under the new set).
    pub fn finish_metadata_change(
        &self,
        remove: Option<NodeId>,
    ) -> Result<ClusterMap, ClusterMapError> {
        let mut next = self.clone();
        next.version += 1;
        // A new epoch again: callers still on the joint map are refused and refetch, so none
        // keeps writing to a replica that has left the set.
        if next.previous_metadata_nodes.take().is_some() {
            next.metadata_epoch += 1;
        }
        if let Some(id) = remove {
            if next.metadata_nodes.contains(&id) {
                return Err(ClusterMapError::HoldsMetadata(id));
            }
            next.nodes.remove(&id);
        }
        Ok(next)
    }

    /// The metadata set before the change in progress, if one is.
    pub fn previous_metadata_nodes(&self) -> Option<&BTreeSet<NodeId>> {
        self.previous_metadata_nodes.as_ref()
    }

    pub fn metadata_nodes(&self) -> &BTreeSet<NodeId> {
        &self.metadata_nodes
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

    /// Whether `id` holds metadata partitions (under the current set).
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

    #[test]
    fn a_metadata_change_goes_through_a_joint_phase_and_then_drops_the_node() {
        let map = ClusterMap::new(1, (1..=4).map(info).collect()).unwrap();
        let new_set: BTreeSet<NodeId> = [1, 2, 4].into_iter().map(NodeId).collect();
        let joint = map.begin_metadata_change(new_set.clone()).unwrap();
        assert_eq!((joint.version, joint.metadata_epoch), (2, 2));
        assert_eq!(joint.previous_metadata_nodes().unwrap().len(), 4);
        assert_eq!(
            joint.begin_metadata_change(new_set.clone()),
            Err(ClusterMapError::ChangeInProgress)
        );
        assert_eq!(
            joint.finish_metadata_change(Some(NodeId(1))),
            Err(ClusterMapError::HoldsMetadata(NodeId(1)))
        );
        let done = joint.finish_metadata_change(Some(NodeId(3))).unwrap();
        assert_eq!((done.version, done.metadata_epoch), (3, 3));
        assert!(done.previous_metadata_nodes().is_none());
        assert!(done.get(NodeId(3)).is_none());
        assert_eq!(done.metadata_nodes(), &new_set);
    }
}
