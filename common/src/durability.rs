//! The durability estimate of DESIGN's Figures: the Markov approximation of the mean time to
//! data loss of one placement group of `n` nodes with `m` parity chunks,
//! `MTTDL ≈ 1 / (λ^(m+1) · n(n-1)…(n-m) · MTTR^m)`, turned into a probability of losing data
//! within a year. Assumptions: independent node failures at a constant rate, exponential repair
//! times with mean MTTR, one placement group (every stripe spans the same `n` nodes).
//!
//! [`fault_tolerance`] is the seed's P_FT (DESIGN 17): the probability of a year without data
//! loss from the cluster as it is now, with a recovery time modelled from measured data
//! (`repair_delay` plus the data one node holds over the rebuild rate) instead of the last
//! failure's T_RT, and the current degradation counted: versions already missing chunks need
//! fewer further failures to be lost, for as long as they stay degraded.

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

/// What P_FT is estimated from: the cluster now, measured, plus the operator's failure rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultToleranceInput {
    pub nodes: usize,
    /// Nodes up now: the degraded versions' other chunks are on at most these.
    pub up_nodes: usize,
    pub parity_chunks: usize,
    /// Share of nodes failing per year (set by the operator).
    pub annual_failure_rate: f64,
    pub repair_delay_hours: f64,
    /// Chunk bytes one node holds: what its failure leaves to rebuild.
    pub bytes_per_node: f64,
    /// The cluster's rebuild rate, bytes per hour.
    pub rebuild_bytes_per_hour: f64,
    /// The most chunks any object version is missing now (0: full redundancy).
    pub missing_chunks: usize,
    /// Hours until those versions are rebuilt; `None` if they cannot be now (no spare node,
    /// fewer than `k` chunks left): then they stay degraded for the whole year.
    pub restore_hours: Option<f64>,
}

/// The P_FT estimate and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultTolerance {
    /// Modelled time to restore full redundancy after one node failure.
    pub mttr_hours: f64,
    /// Probability that the versions degraded now are lost before they are restored.
    pub loss_while_degraded: f64,
    /// Probability of data loss within a year at full redundancy (the Markov approximation),
    /// zero when the degraded versions cannot be restored within the year.
    pub loss_at_full_redundancy: f64,
    /// Probability of data loss within a year: `1 - P_FT`, kept apart so that values far
    /// below `f64::EPSILON` are not rounded away.
    pub annual_loss: f64,
}

impl FaultTolerance {
    /// P_FT: the probability of a year without data loss.
    pub fn p_ft(&self) -> f64 {
        1.0 - self.annual_loss
    }
}

/// P_FT from the current state; `None` when the inputs make no sense (fewer nodes than
/// `m + 1`, non-positive rates).
pub fn fault_tolerance(f: &FaultToleranceInput) -> Option<FaultTolerance> {
    if f.rebuild_bytes_per_hour <= 0.0 || f.bytes_per_node < 0.0 || f.repair_delay_hours < 0.0 {
        return None;
    }
    let mttr_hours = f.repair_delay_hours + f.bytes_per_node / f.rebuild_bytes_per_hour;
    let steady = annual_loss_probability(&DurabilityInput {
        nodes: f.nodes,
        parity_chunks: f.parity_chunks,
        annual_failure_rate: f.annual_failure_rate,
        mttr_hours: mttr_hours.max(f64::MIN_POSITIVE),
    })?;
    let (loss_while_degraded, loss_at_full_redundancy) = if f.missing_chunks == 0 {
        (0.0, steady)
    } else if f.missing_chunks > f.parity_chunks {
        (1.0, 0.0)
    } else {
        // A version missing `d` chunks is lost if `m - d + 1` more of the `n - d` nodes that
        // hold its other chunks fail before it is restored.
        let window_hours = f.restore_hours.map_or(YEAR_H, |h| h.min(YEAR_H));
        let survivors = (f.nodes - f.missing_chunks).min(f.up_nodes);
        let needed = f.parity_chunks - f.missing_chunks + 1;
        let lambda = f.annual_failure_rate / YEAR_H;
        let q = -(-lambda * window_hours).exp_m1();
        let tail = binomial_tail(survivors, needed, q);
        let after = if f.restore_hours.is_some_and(|h| h < YEAR_H) {
            steady
        } else {
            0.0
        };
        (tail, after)
    };
    Some(FaultTolerance {
        mttr_hours,
        loss_while_degraded,
        loss_at_full_redundancy,
        annual_loss: loss_while_degraded + loss_at_full_redundancy
            - loss_while_degraded * loss_at_full_redundancy,
    })
}

/// P(at least `at_least` of `n` independent events of probability `q` happen).
fn binomial_tail(n: usize, at_least: usize, q: f64) -> f64 {
    let mut sum = 0.0;
    let mut choose = 1.0; // C(n, j), built up from C(n, 0)
    for j in 0..=n {
        if j > 0 {
            choose = choose * (n - j + 1) as f64 / j as f64;
        }
        if j >= at_least {
            sum += choose * q.powi(j as i32) * (1.0 - q).powi((n - j) as i32);
        }
    }
    sum.min(1.0)
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

    fn ft(missing_chunks: usize, restore_hours: Option<f64>) -> FaultToleranceInput {
        FaultToleranceInput {
            nodes: 6,
            up_nodes: 6 - missing_chunks,
            parity_chunks: 2,
            annual_failure_rate: 0.05,
            repair_delay_hours: 0.5,
            bytes_per_node: 1e12,
            rebuild_bytes_per_hour: 2e11,
            missing_chunks,
            restore_hours,
        }
    }

    #[test]
    fn recovery_time_is_the_delay_plus_a_node_of_data_over_the_rebuild_rate() {
        let f = fault_tolerance(&ft(0, None)).unwrap();
        assert!((f.mttr_hours - 5.5).abs() < 1e-12);
        assert_eq!(f.loss_while_degraded, 0.0);
        let by_hand = annual_loss_probability(&DurabilityInput {
            mttr_hours: 5.5,
            ..input(1.0)
        })
        .unwrap();
        assert_eq!(f.annual_loss, by_hand);
        assert!(f.p_ft() < 1.0 && f.p_ft() > 0.999);
    }

    #[test]
    fn one_node_down_with_no_spare_is_counted_for_the_whole_year() {
        // Six nodes, RS(4,2), one down and nowhere to rebuild: a version is lost if two of
        // the five others fail within the year.
        let f = fault_tolerance(&ft(1, None)).unwrap();
        let q = 1.0 - (-0.05f64).exp();
        let by_hand = 1.0 - (1.0 - q).powi(5) - 5.0 * q * (1.0 - q).powi(4);
        assert!((f.annual_loss - by_hand).abs() < 1e-12, "{f:?}");
        assert!(f.annual_loss > 0.02, "not the 1e-16 of a healthy cluster");
        // Two down: any one more failure loses data.
        let two = fault_tolerance(&ft(2, None)).unwrap();
        assert!((two.annual_loss - (1.0 - (1.0 - q).powi(4))).abs() < 1e-12);
        // More down than parity: already lost.
        assert_eq!(fault_tolerance(&ft(3, None)).unwrap().p_ft(), 0.0);
    }

    proptest::proptest! {
        /// P_FT falls with every chunk missing, with a longer restore, a slower rebuild, more
        /// data per node and a higher failure rate, as the model says.
        #[test]
        fn p_ft_moves_the_way_the_model_says(
            missing in 0usize..2,
            restore in 0.1f64..1000.0,
            slower in 1.5f64..100.0,
            afr in 0.001f64..0.5,
        ) {
            let base = FaultToleranceInput {
                annual_failure_rate: afr,
                ..ft(missing, Some(restore))
            };
            let loss = |f: FaultToleranceInput| fault_tolerance(&f).unwrap().annual_loss;
            let l = loss(base);
            let more_missing = loss(FaultToleranceInput { missing_chunks: missing + 1, ..base });
            proptest::prop_assert!(more_missing > l);
            if missing > 0 {
                let later = loss(FaultToleranceInput { restore_hours: Some(restore * slower), ..base });
                let never = loss(FaultToleranceInput { restore_hours: None, ..base });
                proptest::prop_assert!(later >= l);
                proptest::prop_assert!(never >= l);
            }
            let slower_rebuild = loss(FaultToleranceInput {
                rebuild_bytes_per_hour: base.rebuild_bytes_per_hour / slower,
                ..base
            });
            let fuller = loss(FaultToleranceInput { bytes_per_node: base.bytes_per_node * slower, ..base });
            let likelier = loss(FaultToleranceInput { annual_failure_rate: afr * 1.5, ..base });
            proptest::prop_assert!(slower_rebuild > l);
            proptest::prop_assert!(fuller > l);
            proptest::prop_assert!(likelier > l);
        }
    }

    #[test]
    fn nonsense_rates_give_none() {
        let mut f = ft(0, None);
        f.rebuild_bytes_per_hour = 0.0;
        assert_eq!(fault_tolerance(&f), None);
        assert_eq!(
            fault_tolerance(&FaultToleranceInput {
                annual_failure_rate: 0.0,
                ..ft(0, None)
            }),
            None
        );
    }
}
