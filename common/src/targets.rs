//! Where a version's chunks should be: the pure choice behind repair and rebalance (DESIGN 4,
//! 11, 12), over the cluster map and two predicates on nodes.
//!
//! - `usable(node)`: the node may keep and receive chunks (not dead past the repair delay, not
//!   draining, in the map). A node that is Down for less than the delay stays usable, so a
//!   short outage moves nothing.
//! - `is_up(node)`: the node answers now and has room (its disk is not full), so chunks can be
//!   written to it today.
//!
//! [`desired`] is the rendezvous placement of the day; [`misplaced`] says whether a version's
//! chunks should move towards it; [`targets`] says where each chunk slot goes (lost slots to
//! new nodes, misplaced ones to desired nodes), and [`vacated`] which nodes a move leaves.
//! [`owner`] is the node that repairs a version.

use crate::cluster::ClusterMap;
use crate::ids::NodeId;
use crate::placement::{choose, rank};
use crate::record::ErasureData;
use std::collections::HashSet;

/// Where rendezvous placement puts the chunks of `piece` under `map`: the `k + m` best
/// `usable` nodes, spread over zones (at most `m` in one zone while others have room).
pub fn desired(
    map: &ClusterMap,
    piece: &ErasureData,
    usable: impl Fn(NodeId) -> bool,
) -> Vec<NodeId> {
    choose(
        map,
        &piece.version.0,
        piece.layout.n_chunks(),
        usize::from(piece.layout.m),
        usable,
    )
}

/// Whether a chunk of `piece` sits on a usable node that rendezvous placement no longer
/// picks, while a picked node that is up holds none: the map changed (a node was added) or a
/// node came back, and the chunk should move (rebalance, DESIGN 12).
pub fn misplaced(
    map: &ClusterMap,
    piece: &ErasureData,
    usable: impl Fn(NodeId) -> bool,
    is_up: impl Fn(NodeId) -> bool,
) -> bool {
    let desired = desired(map, piece, &usable);
    let missing = desired
        .iter()
        .any(|d| !piece.placement.contains(&Some(*d)) && is_up(*d));
    missing
        && piece
            .placement
            .iter()
            .flatten()
            .any(|n| !desired.contains(n) && usable(*n))
}

/// Where each chunk slot of a piece goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// The new placement: slot `i` holds chunk `i` of every stripe.
    pub placement: Vec<Option<NodeId>>,
    /// Whether any slot got a new node.
    pub moved: bool,
}

/// Where the chunks of `piece` go: every empty slot and every slot on an unusable node to the
/// next up, usable node in rendezvous order that holds no chunk of the piece (the slot stays
/// as it is when there is none); then every slot on a usable node that placement no longer
/// picks to a picked, up node that holds none (rebalance).
pub fn targets(
    map: &ClusterMap,
    piece: &ErasureData,
    usable: impl Fn(NodeId) -> bool,
    is_up: impl Fn(NodeId) -> bool,
) -> Targets {
    let mut placement = piece.placement.clone();
    let replaced = replace_lost(map, piece, &mut placement, &usable, &is_up);
    let rebalanced = rebalance(map, piece, &mut placement, &usable, &is_up);
    Targets {
        placement,
        moved: replaced || rebalanced,
    }
}

/// Gives empty slots and slots on unusable nodes a new node; returns whether any got one.
fn replace_lost(
    map: &ClusterMap,
    piece: &ErasureData,
    target: &mut [Option<NodeId>],
    usable: impl Fn(NodeId) -> bool,
    is_up: impl Fn(NodeId) -> bool,
) -> bool {
    let mut taken: HashSet<NodeId> = piece.placement.iter().flatten().copied().collect();
    let mut candidates = rank(map, &piece.version.0)
        .into_iter()
        .map(|n| n.id)
        // Never onto a node that is not usable (draining, say, while it is up).
        .filter(|id| is_up(*id) && usable(*id));
    let mut moved = false;
    for slot in target.iter_mut() {
        if slot.is_none_or(|node| !usable(node)) {
            let next = candidates.by_ref().find(|id| !taken.contains(id));
            if let Some(id) = next {
                taken.insert(id);
                moved = true;
            }
            *slot = next.or(*slot);
        }
    }
    moved
}

/// Moves slots on usable nodes that placement no longer picks to picked, up nodes that hold
/// none (a node was added, or came back); returns whether any moved.
fn rebalance(
    map: &ClusterMap,
    piece: &ErasureData,
    target: &mut [Option<NodeId>],
    usable: impl Fn(NodeId) -> bool,
    is_up: impl Fn(NodeId) -> bool,
) -> bool {
    let desired = desired(map, piece, &usable);
    let arriving: Vec<NodeId> = desired
        .iter()
        .copied()
        .filter(|d| !target.contains(&Some(*d)) && is_up(*d))
        .collect();
    let mut arriving = arriving.into_iter();
    let mut moved = false;
    for slot in target.iter_mut() {
        if slot.is_some_and(|node| !desired.contains(&node) && usable(node)) {
            if let Some(id) = arriving.next() {
                *slot = Some(id);
                moved = true;
            }
        }
    }
    moved
}

/// The slots a move takes off a node: `(chunk index, old node)` wherever `new` names another
/// node than `old`.
pub fn vacated(old: &[Option<NodeId>], new: &[Option<NodeId>]) -> Vec<(u8, NodeId)> {
    old.iter()
        .zip(new)
        .enumerate()
        .filter_map(|(i, (old, new))| old.filter(|o| Some(*o) != *new).map(|o| (i as u8, o)))
        .collect()
}

/// The node that repairs a version: the first up node of its placement.
pub fn owner(placement: &[Option<NodeId>], is_up: impl Fn(NodeId) -> bool) -> Option<NodeId> {
    placement.iter().flatten().copied().find(|&n| is_up(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeInfo;
    use crate::ids::VersionId;
    use crate::stripe::StripeLayout;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn map(n: u32, zones: u32) -> ClusterMap {
        ClusterMap::new(
            1,
            (1..=n)
                .map(|i| NodeInfo {
                    id: NodeId(i),
                    addr: format!("127.0.0.1:{}", 7000 + i),
                    zone: format!("z{}", i % zones.max(1)),
                    weight: 1,
                })
                .collect(),
        )
        .unwrap()
    }

    fn piece(version: [u8; 16], k: u8, m: u8, placement: Vec<Option<NodeId>>) -> ErasureData {
        ErasureData {
            version: VersionId(version),
            layout: StripeLayout {
                k,
                m,
                chunk_size_bytes: 1024,
            },
            placement,
        }
    }

    /// A map, a piece placed where placement put it when every node was usable, and a set of
    /// nodes (`out`) that are unusable now.
    fn case() -> impl Strategy<Value = (ClusterMap, ErasureData, BTreeSet<u32>, BTreeSet<u32>)> {
        (6u32..16, 1u32..4, 2u8..5, 1u8..3, any::<[u8; 16]>())
            .prop_flat_map(|(n, zones, k, m, version)| {
                let out = proptest::collection::btree_set(1..=n, 0..3);
                let down = proptest::collection::btree_set(1..=n, 0..2);
                (
                    Just(n),
                    Just(zones),
                    Just(k),
                    Just(m),
                    Just(version),
                    out,
                    down,
                )
            })
            .prop_map(|(n, zones, k, m, version, out, down)| {
                let map = map(n, zones);
                let p = piece(version, k, m, Vec::new());
                let placement = desired(&map, &p, |_| true).into_iter().map(Some).collect();
                (map, piece(version, k, m, placement), out, down)
            })
    }

    fn distinct(placement: &[Option<NodeId>]) -> bool {
        let nodes: Vec<NodeId> = placement.iter().flatten().copied().collect();
        nodes.iter().collect::<BTreeSet<_>>().len() == nodes.len()
    }

    proptest! {
        #[test]
        fn targets_are_distinct_usable_up_and_deterministic((map, piece, out, down) in case()) {
            let usable = |n: NodeId| !out.contains(&n.0);
            let is_up = |n: NodeId| !down.contains(&n.0);
            let t = targets(&map, &piece, usable, is_up);
            prop_assert_eq!(&t, &targets(&map.clone(), &piece.clone(), usable, is_up));
            prop_assert!(distinct(&t.placement), "{:?}", t.placement);
            prop_assert_eq!(t.placement.len(), piece.placement.len());
            for (old, new) in piece.placement.iter().zip(&t.placement) {
                if old != new {
                    let node = new.expect("a slot is never emptied");
                    prop_assert!(usable(node) && is_up(node), "moved onto {}", node);
                }
            }
            prop_assert_eq!(t.moved, t.placement != piece.placement);
        }

        #[test]
        fn a_piece_at_its_desired_nodes_is_not_misplaced_and_stays((map, piece, _out, down) in case()) {
            let is_up = |n: NodeId| !down.contains(&n.0);
            prop_assert!(!misplaced(&map, &piece, |_| true, is_up));
            let t = targets(&map, &piece, |_| true, is_up);
            prop_assert!(!t.moved);
            prop_assert_eq!(t.placement, piece.placement);
        }

        #[test]
        fn a_node_becoming_unusable_moves_only_the_chunks_on_it((map, piece, out, _down) in case()) {
            let usable = |n: NodeId| !out.contains(&n.0);
            let t = targets(&map, &piece, usable, |_| true);
            // With enough usable nodes left, every chunk on an unusable node finds a new one.
            let room = map.len() - out.len() >= piece.placement.len();
            for (old, new) in piece.placement.iter().zip(&t.placement) {
                let old = old.expect("placed on every slot");
                if usable(old) {
                    prop_assert_eq!(Some(old), *new, "a chunk on a usable node moved");
                } else if room {
                    prop_assert_ne!(Some(old), *new, "a chunk on an unusable node stayed");
                }
            }
            let moved: Vec<NodeId> = vacated(&piece.placement, &t.placement).into_iter().map(|(_, n)| n).collect();
            prop_assert!(moved.iter().all(|n| out.contains(&n.0)));
        }

        #[test]
        fn an_added_node_that_placement_picks_makes_the_piece_misplaced((map, piece, _out, _down) in case()) {
            let grown = map
                .with_data_node(NodeInfo { id: NodeId(100), addr: "x".into(), zone: "z0".into(), weight: 1 })
                .unwrap();
            let picked = desired(&grown, &piece, |_| true).contains(&NodeId(100));
            prop_assert_eq!(misplaced(&grown, &piece, |_| true, |_| true), picked);
            let t = targets(&grown, &piece, |_| true, |_| true);
            prop_assert_eq!(t.placement.contains(&Some(NodeId(100))), picked);
            if !picked {
                prop_assert!(vacated(&piece.placement, &t.placement).is_empty());
            }
        }
    }

    #[test]
    fn empty_slots_are_filled_in_rendezvous_order_and_kept_empty_without_candidates() {
        let m = map(8, 1);
        let mut p = piece([7; 16], 2, 1, Vec::new());
        let best = desired(&m, &p, |_| true);
        p.placement = vec![Some(best[0]), None, Some(best[2])];
        let t = targets(&m, &p, |_| true, |_| true);
        assert_eq!(
            t.placement,
            vec![Some(best[0]), Some(best[1]), Some(best[2])]
        );
        assert!(t.moved);
        let alone = targets(&m, &p, |_| true, |n| p.placement.contains(&Some(n)));
        assert_eq!(alone.placement, p.placement);
        assert!(!alone.moved);
    }

    #[test]
    fn the_owner_is_the_first_up_node_of_the_placement() {
        let placement = [None, Some(NodeId(3)), Some(NodeId(1)), Some(NodeId(2))];
        assert_eq!(owner(&placement, |_| true), Some(NodeId(3)));
        assert_eq!(owner(&placement, |n| n != NodeId(3)), Some(NodeId(1)));
        assert_eq!(owner(&placement, |_| false), None);
        assert_eq!(
            vacated(
                &placement,
                &[Some(NodeId(4)), Some(NodeId(3)), Some(NodeId(5)), None]
            ),
            vec![(2, NodeId(1)), (3, NodeId(2))]
        );
    }
}
