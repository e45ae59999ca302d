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
    let value = value.filter(|v| v.is_finite());
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
        check.message = format!(
            "{name}/{variant}: {v:.4}, but the stable variant has no value to compare with"
        );
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
    /// A query failed; nothing can be concluded.
    Error(String),
}

impl Analysis {
    /// Combines checks (and the first query error, if any) into a verdict.
    pub fn of(checks: Vec<Check>, error: Option<String>) -> Analysis {
        if let Some(e) = error {
            return Analysis::Error(e);
        }
        match checks.iter().map(|c| c.verdict).max() {
            Some(Verdict::Fail) => Analysis::Fail(checks),
            Some(Verdict::Inconclusive) => Analysis::Inconclusive(checks),
            _ => Analysis::Pass(checks),
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
        assert_eq!(
            judge(&g, "canary", Some(0.096), None, None).verdict,
            Verdict::Inconclusive,
            "no stable value: no verdict"
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
            Analysis::of(vec![pass], Some("connection refused".into())),
            Analysis::Error("connection refused".into())
        );
    }
}
