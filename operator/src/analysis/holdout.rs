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
}
