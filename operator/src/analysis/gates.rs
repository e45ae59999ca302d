//! KPI gates: one measured value against its thresholds, and the verdict of a whole analysis.

use leitwerk_crds::experiment::KpiGate;

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The value meets its thresholds.
    Pass,
    /// No data, too few samples, or the stable reference is missing: no evidence either way.
    Inconclusive,
    /// The value breaches a threshold.
    Fail,
}

/// A KPI read for one variant: `Err` when the query failed (Prometheus unreachable, bad
/// PromQL), `Ok(None)` when it returned no data.
pub type Reading = Result<Option<f64>, String>;

/// The judgement of one gate for one variant, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// KPI name.
    pub kpi: String,
    /// Variant name.
    pub variant: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Measured value.
    pub value: Option<f64>,
    /// Samples behind it.
    pub samples: Option<f64>,
    /// Effective lower bound (relative bounds already multiplied by the stable value).
    pub min: Option<f64>,
    /// Effective upper bound.
    pub max: Option<f64>,
    /// One line for humans.
    pub message: String,
}

/// Judges one gate for one variant. `stable` is the stable variant's value of the same KPI,
/// needed only for relative bounds.
pub fn judge(
    gate: &KpiGate,
    variant: &str,
    value: Option<f64>,
    samples: Option<f64>,
    stable: Option<f64>,
) -> Check {
    // NaN (0/0) is no data; an infinity is a value: a cost per acquisition with spend and no
    // conversions is +Inf and breaches any maximum.
    let value = value.filter(|v| !v.is_nan());
    let samples = samples.filter(|v| v.is_finite());
    let scale = if gate.relative_to_stable {
        stable.filter(|s| s.is_finite())
    } else {
        Some(1.0)
    };
    let min = scale.and_then(|s| gate.min.map(|m| m * s));
    let max = scale.and_then(|s| gate.max.map(|m| m * s));
    let mut check = Check {
        kpi: gate.name.clone(),
        variant: variant.to_string(),
        verdict: Verdict::Inconclusive,
        value,
        samples,
        min,
        max,
        message: String::new(),
    };
    let name = &gate.name;
    if let Some(needed) = gate.min_samples {
        let have = samples.unwrap_or(0.0);
        if have < needed as f64 {
            check.message = format!("{name}/{variant}: {have:.0} of {needed} samples");
            return check;
        }
    }
    let Some(v) = value else {
        check.message = format!("{name}/{variant}: no data");
        return check;
    };
    if scale.is_none() {
        check.message =
            format!("{name}/{variant}: {v:.4}, but the stable variant has no data to compare with");
        return check;
    }
    let bounds = describe_bounds(min, max);
    if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
        check.verdict = Verdict::Fail;
        check.message = format!("{name}/{variant} {v:.4} breaches {bounds}");
    } else {
        check.verdict = Verdict::Pass;
        check.message = format!("{name}/{variant} {v:.4} within {bounds}");
    }
    check
}

fn describe_bounds(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("[{lo:.4}, {hi:.4}]"),
        (Some(lo), None) => format!("≥ {lo:.4}"),
        (None, Some(hi)) => format!("≤ {hi:.4}"),
        (None, None) => "no bound".into(),
    }
}

/// The verdict of one analysis: the worst of its checks, with query errors apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Analysis {
    /// Every query answered and every check passed.
    Pass(Vec<Check>),
    /// Some check breached; the others as they were.
    Fail(Vec<Check>),
    /// No breach, but some check lacked evidence.
    Inconclusive(Vec<Check>),
    /// A query failed and no other check breached; nothing can be concluded.
    Error(String),
}

impl Analysis {
    /// Combines checks (and the first query error, if any) into a verdict. A breach is
    /// evidence on its own and wins over a failed query of another KPI: the candidate must not
    /// keep its traffic because an unrelated query timed out. Otherwise an error means nothing
    /// can be concluded, not even a pass.
    pub fn of(checks: Vec<Check>, error: Option<String>) -> Analysis {
        let worst = checks.iter().map(|c| c.verdict).max();
        match (worst, error) {
            (Some(Verdict::Fail), _) => Analysis::Fail(checks),
            (_, Some(e)) => Analysis::Error(e),
            (Some(Verdict::Inconclusive), None) => Analysis::Inconclusive(checks),
            (_, None) => Analysis::Pass(checks),
        }
    }

    /// The checks behind the verdict.
    pub fn checks(&self) -> &[Check] {
        match self {
            Analysis::Pass(c) | Analysis::Fail(c) | Analysis::Inconclusive(c) => c,
            Analysis::Error(_) => &[],
        }
    }

    /// The messages of the checks with the given verdict, joined.
    pub fn summary(&self, verdict: Verdict) -> String {
        self.checks()
            .iter()
            .filter(|c| c.verdict == verdict)
            .map(|c| c.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(
        min: Option<f64>,
        max: Option<f64>,
        relative: bool,
        min_samples: Option<i64>,
    ) -> KpiGate {
        KpiGate {
            name: "conversion-rate".into(),
            query: "q".into(),
            sample_query: min_samples.map(|_| "s".into()),
            min,
            max,
            relative_to_stable: relative,
            min_samples,
        }
    }

    #[test]
    fn absolute_bounds_pass_and_fail() {
        let g = gate(Some(0.05), Some(0.2), false, None);
        assert_eq!(
            judge(&g, "canary", Some(0.1), None, None).verdict,
            Verdict::Pass
        );
        let low = judge(&g, "canary", Some(0.01), None, None);
        assert_eq!(low.verdict, Verdict::Fail);
        assert!(
            low.message.contains("0.0100 breaches [0.0500, 0.2000]"),
            "{}",
            low.message
        );
        assert_eq!(
            judge(&g, "canary", Some(0.3), None, None).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn relative_bounds_scale_with_stable() {
        let g = gate(Some(0.95), None, true, None);
        let c = judge(&g, "canary", Some(0.094), None, Some(0.1));
        assert_eq!((c.verdict, c.min), (Verdict::Fail, Some(0.095)));
        assert_eq!(
            judge(&g, "canary", Some(0.096), None, Some(0.1)).verdict,
            Verdict::Pass
        );
        let orphan = judge(&g, "canary", Some(0.096), None, None);
        assert_eq!(
            orphan.verdict,
            Verdict::Inconclusive,
            "no stable value: no verdict"
        );
        // Operators (and the rollout tests) read "no data" as the reason to hold.
        assert!(
            orphan.message.contains("stable variant has no data"),
            "{}",
            orphan.message
        );
    }

    #[test]
    fn missing_data_and_small_samples_are_inconclusive_never_pass() {
        let g = gate(Some(0.0), None, false, Some(500));
        let few = judge(&g, "canary", Some(0.5), Some(499.0), None);
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert!(few.message.contains("499 of 500 samples"));
        assert_eq!(
            judge(&g, "canary", None, Some(900.0), None).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            judge(&g, "canary", Some(f64::NAN), Some(900.0), None).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            judge(&g, "canary", Some(0.5), Some(500.0), None).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn the_worst_check_decides_and_errors_override() {
        let g = gate(Some(0.5), None, false, None);
        let pass = judge(&g, "a", Some(0.6), None, None);
        let none = judge(&g, "b", None, None, None);
        let fail = judge(&g, "c", Some(0.1), None, None);
        assert!(matches!(
            Analysis::of(vec![pass.clone()], None),
            Analysis::Pass(_)
        ));
        assert!(matches!(
            Analysis::of(vec![pass.clone(), none.clone()], None),
            Analysis::Inconclusive(_)
        ));
        assert!(matches!(
            Analysis::of(vec![none, fail, pass.clone()], None),
            Analysis::Fail(_)
        ));
        assert_eq!(
            Analysis::of(vec![pass.clone()], Some("connection refused".into())),
            Analysis::Error("connection refused".into())
        );
        let breach = judge(&g, "c", Some(0.1), None, None);
        assert!(
            matches!(
                Analysis::of(vec![pass, breach], Some("connection refused".into())),
                Analysis::Fail(_)
            ),
            "a breach is evidence even when another query failed"
        );
    }

    #[test]
    fn infinity_breaches_a_maximum_and_meets_a_minimum_while_nan_is_no_data() {
        let cpa = gate(None, Some(40.0), false, None);
        let inf = judge(&cpa, "canary", Some(f64::INFINITY), None, None);
        assert_eq!(inf.verdict, Verdict::Fail, "{}", inf.message);
        assert!(
            inf.message.contains("inf breaches ≤ 40.0000"),
            "{}",
            inf.message
        );
        assert_eq!(
            judge(&cpa, "canary", Some(f64::NAN), None, None).verdict,
            Verdict::Inconclusive
        );
        let floor = gate(Some(0.05), None, false, None);
        assert_eq!(
            judge(&floor, "canary", Some(f64::INFINITY), None, None).verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&floor, "canary", Some(f64::NEG_INFINITY), None, None).verdict,
            Verdict::Fail
        );
    }
}
