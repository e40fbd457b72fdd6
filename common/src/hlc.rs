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

    /// A timestamp greater than every one this clock returned or observed before.
    pub fn now(&self, wall_ms: u64) -> Hlc {
        let physical = Hlc::from_parts(wall_ms, 0).0;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(prev + 1);
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

    #[test]
    fn observing_a_future_timestamp_moves_the_clock_past_it() {
        let c = HlcClock::new();
        let remote = Hlc::from_parts(5000, 3);
        c.observe(remote);
        assert!(c.now(1000) > remote);
    }
}
