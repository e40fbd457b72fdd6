//! Zone-aware rendezvous (highest random weight) hashing, DESIGN 4.
//!
//! Every node gets a score for a key from a hash of (key, node id), scaled by the node's weight;
//! nodes are taken in descending score. The same inputs always give the same answer, and adding
//! or removing one node changes at most one member of any key's chosen set when zones do not
//! constrain the choice. The chosen list is recorded in the object's metadata, so reads never
//! depend on the cluster map of the day.

use crate::cluster::{ClusterMap, NodeInfo};
use crate::ids::NodeId;
use crate::quorum::MajorityOf;
use std::collections::HashMap;

/// Weighted rendezvous score of `node` for `key` (higher wins).
fn score(key: &[u8], node: &NodeInfo) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(&node.id.0.to_le_bytes());
    let digest = h.finalize();
    let raw = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
    // Uniform in (0, 1]; -w / ln(u) is the standard weighted-rendezvous transform.
    let unit = ((raw >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
    -f64::from(node.weight) / unit.ln()
}

/// All nodes of the map, best first for `key`.
pub fn rank<'a>(map: &'a ClusterMap, key: &[u8]) -> Vec<&'a NodeInfo> {
    let mut scored: Vec<(f64, &NodeInfo)> = map.nodes().map(|n| (score(key, n), n)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    scored.into_iter().map(|(_, n)| n).collect()
}

/// Chooses up to `n` distinct nodes for `key` among those `usable`, in rendezvous order, with
/// no zone holding more than `max_per_zone` of them while other zones still have usable nodes.
/// Returns fewer than `n` only when fewer than `n` nodes are usable.
pub fn choose(
    map: &ClusterMap,
    key: &[u8],
    n: usize,
    max_per_zone: usize,
    usable: impl Fn(NodeId) -> bool,
) -> Vec<NodeId> {
    let ranked: Vec<&NodeInfo> = rank(map, key)
        .into_iter()
        .filter(|x| usable(x.id))
        .collect();
    let mut chosen: Vec<NodeId> = Vec::with_capacity(n);
    let mut per_zone: HashMap<&str, usize> = HashMap::new();
    for node in &ranked {
        if chosen.len() == n {
            break;
        }
        let count = per_zone.entry(node.zone.as_str()).or_default();
        if *count < max_per_zone.max(1) {
            *count += 1;
            chosen.push(node.id);
        }
    }
    // Zones could not hold the whole set within the limit: fill up in rank order.
    for node in &ranked {
        if chosen.len() == n {
            break;
        }
        if !chosen.contains(&node.id) {
            chosen.push(node.id);
        }
    }
    chosen
}

/// The replicas of a metadata partition (DESIGN 5): `r` of the map's metadata nodes by
/// rendezvous over the partition name, spread over zones. Independent of which nodes are up,
/// and of data nodes added later, so quorums always overlap.
pub fn partition_replicas(map: &ClusterMap, partition: &str, r: usize) -> Vec<NodeId> {
    replicas_among(map, partition, r, map.metadata_nodes())
}

fn replicas_among(
    map: &ClusterMap,
    partition: &str,
    r: usize,
    set: &std::collections::BTreeSet<NodeId>,
) -> Vec<NodeId> {
    let mut key = b"partition/".to_vec();
    key.extend_from_slice(partition.as_bytes());
    let max_per_zone = (r.saturating_sub(1) / 2).max(1);
    choose(map, &key, r.min(set.len()), max_per_zone, |id| {
        set.contains(&id)
    })
}

/// The quorum of a metadata partition: a majority of its replicas, and during the joint phase
/// of a metadata membership change also a majority of its replicas under the previous set.
/// The current set's replicas come first in [`MajorityOf::nodes`].
pub fn partition_quorum(map: &ClusterMap, partition: &str, r: usize) -> MajorityOf {
    let mut sets = vec![partition_replicas(map, partition, r)];
    if let Some(previous) = map.previous_metadata_nodes() {
        let old = replicas_among(map, partition, r, previous);
        if old != sets[0] {
            sets.push(old);
        }
    }
    MajorityOf::new(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn map(n: u32, zones: u32) -> ClusterMap {
        ClusterMap::new(
            1,
            (0..n)
                .map(|i| NodeInfo {
                    id: NodeId(i + 1),
                    addr: format!("127.0.0.1:{}", 7000 + i),
                    zone: format!("z{}", i % zones.max(1)),
                    weight: 1,
                })
                .collect(),
        )
        .unwrap()
    }

    fn with_node_added(m: &ClusterMap, id: u32, zone: &str) -> ClusterMap {
        m.with_data_node(NodeInfo {
            id: NodeId(id),
            addr: "x".into(),
            zone: zone.into(),
            weight: 1,
        })
        .unwrap()
    }

    proptest! {
        #[test]
        fn placement_is_deterministic_and_distinct(key in proptest::collection::vec(any::<u8>(), 0..40), n_nodes in 6u32..20) {
            let m = map(n_nodes, 3);
            let a = choose(&m, &key, 6, 2, |_| true);
            let b = choose(&m.clone(), &key, 6, 2, |_| true);
            prop_assert_eq!(&a, &b);
            let set: BTreeSet<_> = a.iter().collect();
            prop_assert_eq!(set.len(), 6);
        }

        #[test]
        fn no_zone_holds_more_than_m_chunks_when_zones_allow(key in proptest::collection::vec(any::<u8>(), 0..40), zones in 3u32..6) {
            let m = map(12, zones);
            let chosen = choose(&m, &key, 6, 2, |_| true);
            let mut per_zone: HashMap<String, usize> = HashMap::new();
            for id in &chosen {
                *per_zone.entry(m.get(*id).unwrap().zone.clone()).or_default() += 1;
            }
            prop_assert!(per_zone.values().all(|&c| c <= 2), "{:?}", per_zone);
        }

        #[test]
        fn adding_a_node_moves_at_most_one_chunk(key in proptest::collection::vec(any::<u8>(), 0..40), n_nodes in 6u32..16) {
            let before_map = map(n_nodes, 1);
            let after_map = with_node_added(&before_map, 100, "z0");
            let before: BTreeSet<_> = choose(&before_map, &key, 6, 6, |_| true).into_iter().collect();
            let after: BTreeSet<_> = choose(&after_map, &key, 6, 6, |_| true).into_iter().collect();
            prop_assert!(before.difference(&after).count() <= 1);
        }

        #[test]
        fn removing_a_node_moves_only_its_chunk(key in proptest::collection::vec(any::<u8>(), 0..40), victim in 1u32..=10) {
            let full = map(10, 1);
            let before = choose(&full, &key, 6, 6, |_| true);
            let after = choose(&full, &key, 6, 6, |id| id != NodeId(victim));
            let b: BTreeSet<_> = before.iter().collect();
            let a: BTreeSet<_> = after.iter().collect();
            let moved = b.difference(&a).count();
            prop_assert_eq!(moved, usize::from(before.contains(&NodeId(victim))));
        }
    }

    #[test]
    fn chunks_spread_evenly_over_equal_nodes() {
        let m = map(12, 3);
        let mut counts: HashMap<NodeId, usize> = HashMap::new();
        for i in 0..6000u32 {
            for id in choose(&m, &i.to_le_bytes(), 6, 2, |_| true) {
                *counts.entry(id).or_default() += 1;
            }
        }
        // 36000 chunks over 12 nodes: 3000 each on average.
        assert!(
            counts.values().all(|&c| (2500..3500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn unusable_nodes_are_skipped_and_substituted_in_rank_order() {
        let m = map(8, 1);
        let all = choose(&m, b"k", 8, 8, |_| true);
        let down = all[1];
        let chosen = choose(&m, b"k", 6, 6, |id| id != down);
        assert!(!chosen.contains(&down));
        assert_eq!(chosen[..5], [all[0], all[2], all[3], all[4], all[5]]);
        assert_eq!(chosen[5], all[6]);
    }

    #[test]
    fn partition_replicas_are_stable_and_majority_sized() {
        let m = map(6, 1);
        let a = partition_replicas(&m, "bucket", 5);
        assert_eq!(a.len(), 5);
        assert_eq!(a, partition_replicas(&m, "bucket", 5));
        let small = map(3, 1);
        assert_eq!(partition_replicas(&small, "bucket", 5).len(), 3);
    }

    #[test]
    fn a_metadata_change_moves_only_the_replicas_of_the_removed_node() {
        let m = map(7, 1);
        let new_set: std::collections::BTreeSet<NodeId> = (1..=6)
            .map(NodeId)
            .collect::<std::collections::BTreeSet<_>>(
        );
        let joint = m.begin_metadata_change(new_set).unwrap();
        let done = joint.finish_metadata_change(Some(NodeId(7))).unwrap();
        for i in 0..200 {
            let p = format!("bucket-{i}");
            let before = partition_replicas(&m, &p, 5);
            let after = partition_replicas(&done, &p, 5);
            assert!(!after.contains(&NodeId(7)));
            let q = partition_quorum(&joint, &p, 5);
            if before.contains(&NodeId(7)) {
                // One replica moves; the joint quorum needs both sets.
                assert_eq!(q.sets(), &[after.clone(), before.clone()]);
                assert_eq!(after.iter().filter(|n| !before.contains(n)).count(), 1);
            } else {
                assert_eq!(before, after);
                assert_eq!(q.sets(), &[after]);
            }
        }
    }

    #[test]
    fn adding_a_data_node_moves_no_partition_replica() {
        let m = map(6, 3);
        let grown = with_node_added(&m, 100, "z0");
        for i in 0..200 {
            let p = format!("bucket-{i}");
            assert_eq!(
                partition_replicas(&m, &p, 5),
                partition_replicas(&grown, &p, 5)
            );
        }
    }
}
