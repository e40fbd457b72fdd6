//! The durability estimate of DESIGN's Figures: the Markov approximation of the mean time to
//! data loss of one placement group of `n` nodes with `m` parity chunks,
//! `MTTDL ≈ 1 / (λ^(m+1) · n(n-1)…(n-m) · MTTR^m)`, turned into a probability of losing data
//! within a year. Assumptions: independent node failures at a constant rate, exponential repair
//! times with mean MTTR, one placement group (every stripe spans the same `n` nodes).

/// Hours in a year.
const YEAR_H: f64 = 24.0 * 365.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurabilityInput {
    pub nodes: usize,
    pub parity_chunks: usize,
    /// Share of nodes failing per year (0.05 = 5 %).
    pub annual_failure_rate: f64,
    /// Mean time to restore full redundancy after a failure, in hours.
    pub mttr_hours: f64,
}

/// Mean time to data loss in hours, or `None` when the inputs make no sense (fewer nodes than
/// `m + 1`, non-positive rates).
pub fn mttdl_hours(d: &DurabilityInput) -> Option<f64> {
    if d.nodes <= d.parity_chunks || d.annual_failure_rate <= 0.0 || d.mttr_hours <= 0.0 {
        return None;
    }
    let lambda = d.annual_failure_rate / YEAR_H;
    let falling: f64 = (0..=d.parity_chunks)
        .map(|i| (d.nodes - i) as f64)
        .product();
    let m = d.parity_chunks as i32;
    Some(1.0 / (lambda.powi(m + 1) * falling * d.mttr_hours.powi(m)))
}

/// Probability of losing data within one year.
pub fn annual_loss_probability(d: &DurabilityInput) -> Option<f64> {
    mttdl_hours(d).map(|mttdl| 1.0 - (-YEAR_H / mttdl).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(mttr_hours: f64) -> DurabilityInput {
        DurabilityInput {
            nodes: 6,
            parity_chunks: 2,
            annual_failure_rate: 0.05,
            mttr_hours,
        }
    }

    #[test]
    fn matches_the_formula_by_hand() {
        // λ = 0.05 / 8760 per hour; 6·5·4 = 120; MTTR = 1 h.
        let lambda: f64 = 0.05 / 8760.0;
        let expected = 1.0 / (lambda.powi(3) * 120.0);
        let got = mttdl_hours(&input(1.0)).unwrap();
        assert!((got - expected).abs() / expected < 1e-12);
    }

    #[test]
    fn recovery_time_enters_to_the_power_m() {
        let fast = mttdl_hours(&input(1.0)).unwrap();
        let slow = mttdl_hours(&input(10.0)).unwrap();
        assert!((fast / slow - 100.0).abs() < 1e-6, "{}", fast / slow);
        assert!(annual_loss_probability(&input(10.0)) > annual_loss_probability(&input(1.0)));
    }

    #[test]
    fn impossible_inputs_give_none() {
        let mut d = input(1.0);
        d.nodes = 2;
        assert_eq!(mttdl_hours(&d), None);
        assert_eq!(annual_loss_probability(&input(0.0)), None);
    }
}
