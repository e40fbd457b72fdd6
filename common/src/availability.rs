//! P_HA, the measured availability of DESIGN's Figures: the share of S3 requests a gateway
//! answered without a server-side error, over the last hour and the last day. Counts are kept
//! in one bucket per minute for a day, so a window is a sum of buckets and memory is fixed.

use serde::{Deserialize, Serialize};

/// Minutes in the longest window.
pub const DAY_MINUTES: u64 = 24 * 60;
pub const HOUR_MINUTES: u64 = 60;

/// Requests answered, and those answered with a server-side error (5xx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub requests: u64,
    pub failed: u64,
}

impl Served {
    /// The share of requests answered without a server-side error; `None` with no requests.
    pub fn availability(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1.0 - self.failed as f64 / self.requests as f64)
    }

    pub fn add(&mut self, other: &Served) {
        self.requests += other.requests;
        self.failed += other.failed;
    }
}

/// Per-minute counts of the last day.
#[derive(Debug, Clone)]
pub struct MinuteCounts {
    /// Indexed by minute modulo a day: the minute a bucket holds, and its counts.
    buckets: Vec<(u64, Served)>,
}

impl Default for MinuteCounts {
    fn default() -> Self {
        MinuteCounts::new()
    }
}

impl MinuteCounts {
    pub fn new() -> MinuteCounts {
        MinuteCounts {
            buckets: vec![(u64::MAX, Served::default()); DAY_MINUTES as usize],
        }
    }

    /// Counts one request answered in `minute` (minutes since the epoch).
    pub fn record(&mut self, minute: u64, failed: bool) {
        let slot = &mut self.buckets[(minute % DAY_MINUTES) as usize];
        if slot.0 != minute {
            *slot = (minute, Served::default());
        }
        slot.1.requests += 1;
        slot.1.failed += u64::from(failed);
    }

    /// The requests of the `minutes` minutes up to and including `now_minute`.
    pub fn window(&self, now_minute: u64, minutes: u64) -> Served {
        let first = now_minute.saturating_sub(minutes.min(DAY_MINUTES) - 1);
        let mut total = Served::default();
        for (minute, served) in &self.buckets {
            if (first..=now_minute).contains(minute) {
                total.add(served);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_only_their_minutes() {
        let mut c = MinuteCounts::new();
        let t = 30_000_000;
        for _ in 0..9 {
            c.record(t - 90, false);
        }
        c.record(t - 90, true);
        c.record(t - 5, false);
        c.record(t, true);
        assert_eq!(
            c.window(t, HOUR_MINUTES),
            Served {
                requests: 2,
                failed: 1
            }
        );
        assert_eq!(
            c.window(t, DAY_MINUTES),
            Served {
                requests: 12,
                failed: 2
            }
        );
        assert_eq!(c.window(t, DAY_MINUTES).availability(), Some(10.0 / 12.0));
        // A day later, the old minutes are gone, also where their buckets were reused.
        c.record(t + DAY_MINUTES - 5, false);
        assert_eq!(
            c.window(t + DAY_MINUTES, DAY_MINUTES),
            Served {
                requests: 1,
                failed: 0
            }
        );
        assert_eq!(Served::default().availability(), None);
    }

    proptest::proptest! {
        /// Whatever the order of minutes recorded, a window sums exactly the requests of its
        /// minutes that are not older than a day before the newest one recorded.
        #[test]
        fn a_window_is_the_sum_of_its_minutes(
            events in proptest::collection::vec((0u64..3 * DAY_MINUTES, proptest::bool::ANY), 0..300),
            minutes in 1u64..=DAY_MINUTES,
        ) {
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.0);
            let mut c = MinuteCounts::new();
            for &(m, failed) in &sorted {
                c.record(m, failed);
            }
            let now = sorted.last().map_or(0, |e| e.0);
            let first = now.saturating_sub(minutes - 1);
            let mut expected = Served::default();
            for &(m, failed) in &sorted {
                if m >= first {
                    expected.add(&Served { requests: 1, failed: u64::from(failed) });
                }
            }
            proptest::prop_assert_eq!(c.window(now, minutes), expected);
        }
    }
}
