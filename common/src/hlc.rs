//! Hybrid logical clock: timestamps that follow wall-clock time, never go backwards, and move
//! past every timestamp the process has observed, so a write made after reading a record always
//! orders after it, even across gateways whose clocks differ slightly.

use crate::ids::Hlc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct HlcClock {
    last: AtomicU64,
}

impl HlcClock {
    pub fn new() -> HlcClock {
        HlcClock::default()
    }

    /// A client stamp (its revision bits zero, see [`Hlc`]) greater than every timestamp this
    /// clock returned or observed before, and than every rewrite of those.
    pub fn now(&self, wall_ms: u64) -> Hlc {
        let physical = Hlc::from_parts(wall_ms, 0).0;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(Hlc(prev).next_client_stamp().0);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Hlc(next),
                Err(actual) => prev = actual,
            }
        }
    }

    /// Moves the clock past a timestamp seen in a record read from a node.
    pub fn observe(&self, seen: Hlc) {
        self.last.fetch_max(seen.0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_strictly_increase_even_when_the_wall_clock_stalls_or_goes_back() {
        let c = HlcClock::new();
        let a = c.now(1000);
        let b = c.now(1000);
        let d = c.now(900);
        assert!(a < b && b < d);
        assert_eq!(a.physical_ms(), 1000);
    }

    proptest::proptest! {
        /// A rewrite of a version sits strictly between it and every client stamp drawn by a
        /// clock that saw the version (or any rewrite of it): it can neither tie with nor
        /// override a client's later write, whatever the wall clock says.
        #[test]
        fn rewrites_order_between_a_version_and_every_later_client_stamp(
            version_ms in 0u64..1 << 40,
            logical in 0u64..1 << 12,
            rewrites in 0usize..300,
            wall_ms in 0u64..1 << 40,
            seen_rewrite in proptest::bool::ANY,
        ) {
            let clock = HlcClock::new();
            let version = Hlc::from_parts(version_ms, logical << Hlc::REVISION_BITS);
            let mut chain = vec![version];
            while chain.len() <= rewrites {
                match chain.last().unwrap().next_revision() {
                    Some(next) => chain.push(next),
                    None => break,
                }
            }
            proptest::prop_assert!(chain.len() <= 256, "at most 255 rewrites");
            clock.observe(if seen_rewrite { *chain.last().unwrap() } else { version });
            let stamp = clock.now(wall_ms);
            proptest::prop_assert_eq!(stamp.revision(), 0);
            for w in chain.windows(2) {
                proptest::prop_assert!(w[0] < w[1]);
            }
            for r in &chain {
                proptest::prop_assert!(*r < stamp);
            }
        }
    }

    #[test]
    fn observing_a_future_timestamp_moves_the_clock_past_it() {
        let c = HlcClock::new();
        let remote = Hlc::from_parts(5000, 3);
        c.observe(remote);
        assert!(c.now(1000) > remote);
    }
}
