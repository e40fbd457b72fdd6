//! Progress of long admin commands (drain, remove, replace, scrub): a bar of the work done out
//! of the most work seen, with an ETA from the rate since the command started.

use std::time::Duration;

/// Width of the bar in characters.
const BAR_CHARS: usize = 30;

/// Follows one step of a command whose remaining work is a count that goes down (queued
/// repairs, chunks left to scrub). The total is the most that was ever remaining, since work
/// found during the step adds to it.
#[derive(Debug)]
pub struct Progress {
    what: String,
    started: tokio::time::Instant,
    total: u64,
}

impl Progress {
    pub fn new(what: &str) -> Progress {
        Progress {
            what: what.to_string(),
            started: tokio::time::Instant::now(),
            total: 0,
        }
    }

    /// The line for `remaining` work now, followed by `detail`.
    pub fn line(&mut self, remaining: u64, detail: &str) -> String {
        self.total = self.total.max(remaining);
        bar_line(
            &self.what,
            self.total - remaining,
            self.total,
            self.started.elapsed(),
            detail,
        )
    }
}

/// `what [######........] 40% 4/10, ETA 1m30s; detail`: the ETA assumes the rate so far.
pub fn bar_line(what: &str, done: u64, total: u64, elapsed: Duration, detail: &str) -> String {
    let share = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((share * BAR_CHARS as f64).round() as usize).min(BAR_CHARS);
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(BAR_CHARS - filled));
    let eta = match (done, total - done) {
        (_, 0) => "done".to_string(),
        (0, _) => "ETA unknown".to_string(),
        (d, left) => {
            let secs = elapsed.as_secs_f64() * left as f64 / d as f64;
            format!("ETA {}", clock(Duration::from_secs_f64(secs)))
        }
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!("; {detail}")
    };
    format!(
        "{what} [{bar}] {:>3}% {done}/{total}, {eta}{detail}",
        (share * 100.0).floor() as u64
    )
}

/// `1h02m`, `3m05s` or `12s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_share_done_and_an_eta_from_the_rate_so_far() {
        let l = bar_line("drain n3", 4, 10, Duration::from_secs(40), "12 MiB/s");
        assert_eq!(
            l,
            "drain n3 [############..................]  40% 4/10, ETA 1m00s; 12 MiB/s"
        );
        assert!(bar_line("x", 0, 10, Duration::from_secs(5), "").ends_with("ETA unknown"));
        assert!(bar_line("x", 10, 10, Duration::from_secs(5), "").contains("100% 10/10, done"));
        assert!(bar_line("x", 0, 0, Duration::ZERO, "").contains("100% 0/0, done"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_is_the_most_work_ever_remaining() {
        let mut p = Progress::new("scrub");
        assert!(p.line(10, "").contains("  0% 0/10"));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(p.line(5, "").contains(" 50% 5/10, ETA 10s"));
        // Work found meanwhile: the total grows with it.
        assert!(p.line(20, "").contains("0/20"));
    }
}
