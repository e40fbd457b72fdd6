//! How far an erasure-coded piece is below full redundancy, and why: the pure part of the
//! nodes' census of degraded versions (DESIGN 11). The node decides what each chunk slot is
//! from its failure detector and map; this module decides what that means.

use crate::rpc::DegradedReason;

/// What a piece's chunk slot holds, as the census node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// On a node that is Up (or Suspect): the chunk counts.
    Held,
    /// No chunk was written (a PUT that met its quorum with chunks missing, DESIGN 8).
    Empty,
    /// On a node no longer in the cluster map.
    Gone,
    /// On a node Down for less than the repair delay: it may come back with the chunk.
    DownWaiting,
    /// On a node Down for longer than the repair delay: the chunk must be rebuilt elsewhere.
    Dead,
}

/// How many chunks the piece misses and why, or `None` at full redundancy. `k` is the number
/// of chunks a stripe needs; `spares` the Up nodes outside the placement that repair may
/// place a chunk on.
pub fn classify(slots: &[Slot], k: usize, spares: usize) -> Option<(u32, DegradedReason)> {
    let missing = slots.iter().filter(|s| **s != Slot::Held).count();
    if missing == 0 {
        return None;
    }
    let reason = if slots.len() - missing < k {
        DegradedReason::Unrepairable
    } else {
        let to_place = slots
            .iter()
            .filter(|s| matches!(s, Slot::Empty | Slot::Gone | Slot::Dead))
            .count();
        if to_place == 0 {
            DegradedReason::WaitingForDelay
        } else if spares < to_place {
            DegradedReason::NoSpareNode
        } else {
            DegradedReason::Queued
        }
    };
    Some((missing as u32, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: usize = 4;

    fn slot() -> impl Strategy<Value = Slot> {
        prop_oneof![
            4 => Just(Slot::Held),
            1 => Just(Slot::Empty),
            1 => Just(Slot::Gone),
            1 => Just(Slot::DownWaiting),
            1 => Just(Slot::Dead),
        ]
    }

    #[test]
    fn the_six_node_cluster_with_one_node_dead_has_no_spare() {
        let mut slots = [Slot::Held; 6];
        slots[2] = Slot::Dead;
        assert_eq!(
            classify(&slots, K, 0),
            Some((1, DegradedReason::NoSpareNode))
        );
        assert_eq!(classify(&slots, K, 1), Some((1, DegradedReason::Queued)));
        slots[2] = Slot::DownWaiting;
        assert_eq!(
            classify(&slots, K, 0),
            Some((1, DegradedReason::WaitingForDelay))
        );
        assert_eq!(classify(&[Slot::Held; 6], K, 0), None);
    }

    proptest! {
        #[test]
        fn the_verdict_follows_the_slots(slots in proptest::collection::vec(slot(), 6), spares in 0usize..4) {
            let verdict = classify(&slots, K, spares);
            let held = slots.iter().filter(|s| **s == Slot::Held).count();
            let to_place = slots.iter().filter(|s| matches!(s, Slot::Empty | Slot::Gone | Slot::Dead)).count();
            match verdict {
                None => prop_assert_eq!(held, slots.len()),
                Some((missing, reason)) => {
                    prop_assert_eq!(missing as usize, slots.len() - held);
                    prop_assert!(missing > 0);
                    match reason {
                        DegradedReason::Unrepairable => prop_assert!(held < K),
                        DegradedReason::WaitingForDelay => prop_assert!(held >= K && to_place == 0),
                        DegradedReason::NoSpareNode => prop_assert!(held >= K && to_place > spares),
                        DegradedReason::Queued => prop_assert!(held >= K && to_place > 0 && to_place <= spares),
                    }
                }
            }
        }

        #[test]
        fn more_spares_never_make_it_worse(slots in proptest::collection::vec(slot(), 6), spares in 0usize..4) {
            let fewer = classify(&slots, K, spares).map(|(_, r)| r);
            let more = classify(&slots, K, spares + 1).map(|(_, r)| r);
            prop_assert!(more <= fewer);
        }
    }
}
