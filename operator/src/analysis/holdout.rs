//! Lift of a model over its holdout control arm.

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Conversion lift of the model arm over the control arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lift {
    /// Model arm's rate.
    pub model_rate: f64,
    /// Control arm's rate.
    pub control_rate: f64,
    /// `model_rate − control_rate` (absolute, in rate units).
    pub lift: f64,
    /// Lower end of the 95 % interval of `lift`.
    pub lower: f64,
    /// Upper end of the 95 % interval of `lift`.
    pub upper: f64,
    /// `lift / control_rate`; `None` when control converts nothing.
    pub relative: Option<f64>,
}

/// Difference of two proportions with a Wald 95 % interval; `None` until both arms have
/// trials.
pub fn lift(model: (f64, f64), control: (f64, f64)) -> Option<Lift> {
    let ((ms, mn), (cs, cn)) = (model, control);
    if mn <= 0.0 || cn <= 0.0 {
        return None;
    }
    let pm = (ms / mn).clamp(0.0, 1.0);
    let pc = (cs / cn).clamp(0.0, 1.0);
    let se = (pm * (1.0 - pm) / mn + pc * (1.0 - pc) / cn).sqrt();
    let d = pm - pc;
    Some(Lift {
        model_rate: pm,
        control_rate: pc,
        lift: d,
        lower: d - Z95 * se,
        upper: d + Z95 * se,
        relative: (pc > 0.0).then(|| d / pc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lift_and_interval_match_the_textbook_formula() {
        // 120/1000 vs 100/1000: d = 0.02, se = sqrt(.12*.88/1000 + .1*.9/1000) = 0.013986
        let l = lift((120.0, 1000.0), (100.0, 1000.0)).unwrap();
        assert!((l.lift - 0.02).abs() < 1e-12);
        assert!((l.upper - l.lift - Z95 * 0.013_986).abs() < 1e-5, "{l:?}");
        assert!((l.relative.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(lift((1.0, 0.0), (1.0, 10.0)), None);
    }

    /// The interval is a 95 % interval: over 4,000 seeded simulated holdouts of the end-to-end
    /// scenario's size (model 0.20 on 2,400 trials, control 0.10 on 600) it covers the true
    /// lift of 0.10 in 95 ± 1 % of them. One interval misses one time in twenty by design,
    /// which is why the end-to-end test does not assert a single one.
    #[test]
    fn the_interval_covers_the_true_lift_in_95_percent_of_seeded_holdouts() {
        use rand::{SeedableRng, rngs::StdRng};
        use rand_distr::{Binomial, Distribution};
        let mut rng = StdRng::seed_from_u64(20261202);
        let model = Binomial::new(2400, 0.20).unwrap();
        let control = Binomial::new(600, 0.10).unwrap();
        let runs = 4000;
        let covered = (0..runs)
            .filter(|_| {
                let m = model.sample(&mut rng) as f64;
                let c = control.sample(&mut rng) as f64;
                let l = lift((m, 2400.0), (c, 600.0)).unwrap();
                l.lower <= 0.10 && 0.10 <= l.upper
            })
            .count();
        let coverage = covered as f64 / runs as f64;
        assert!((0.94..=0.96).contains(&coverage), "coverage {coverage}");
    }
}
