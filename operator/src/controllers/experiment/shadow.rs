//! The shadow stage of a `Shadow` Experiment: who copies the requests, what is read from
//! Prometheus to compare the candidate with stable on the same requests, and the gates on it.
//! After the shadow the Experiment is a canary: the shadow is step 0 of its steps, at weight 0.

use kube::ResourceExt;
use leitwerk_crds::card::metric;
use leitwerk_crds::experiment::{
    ExperimentStatus, KpiGate, MirrorMode, ShadowStatus, ShadowStrategy, StrategyType, VariantRole,
};
use leitwerk_crds::{Experiment, ExperimentSpec};

use super::{candidate_name, stable_name};
use crate::analysis::drift::psi;
use crate::analysis::gates::{Check, judge};
use crate::prom::Prometheus;

/// `status.shadow.stage` while the candidate sees copies of the traffic.
pub const MIRRORING: &str = "Mirroring";
/// `status.shadow.stage` once the shadow passed and the canary took over.
pub const PASSED: &str = "Passed";
/// `status.shadow.stage` once the candidate failed the shadow and was retired.
pub const RETIRED: &str = "Retired";

/// Who copies live requests to the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    /// The HTTPRoute's `RequestMirror` filter (the Gateway copies; its answer is dropped).
    HttpRoute,
    /// The stable server's tee (`--shadow`), which also compares the answers row by row.
    StableServer,
}

impl Mirror {
    /// As in `status.shadow.mirror`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mirror::HttpRoute => "HTTPRoute",
            Mirror::StableServer => "StableServer",
        }
    }
}

/// The shadow block of a Shadow Experiment.
pub fn shadow_of(spec: &ExperimentSpec) -> Option<&ShadowStrategy> {
    (spec.strategy.type_ == StrategyType::Shadow)
        .then_some(spec.strategy.shadow.as_ref())
        .flatten()
}

/// Who mirrors: the Gateway where an HTTPRoute carries the traffic, unless the spec asks for
/// the server's tee, or for agreement (which needs both answers to one request), or the
/// candidate is another Model (a Gateway's copy keeps the path, which names stable's Model;
/// the tee asks the candidate under its own name).
pub fn mirror_of(spec: &ExperimentSpec, shadow: &ShadowStrategy, routing: Option<&str>) -> Mirror {
    if routing == Some("HTTPRoute")
        && shadow.mirror == MirrorMode::Auto
        && shadow.min_agreement.is_none()
        && other_model(spec).is_none()
    {
        Mirror::HttpRoute
    } else {
        Mirror::StableServer
    }
}

/// Whether the Experiment is in its shadow stage now: a Shadow at step 0 that has not ended.
pub fn shadowing(spec: &ExperimentSpec, status: &ExperimentStatus) -> bool {
    shadow_of(spec).is_some()
        && status.analysis.as_ref().is_some_and(|a| a.step_index == 0)
        && !super::is_terminal(status)
}

/// The step as `kubectl get` shows it: `shadow`, then the canary's `index/total`.
pub fn step_label(spec: &ExperimentSpec, index: usize) -> String {
    let total = super::steps_of(spec).len();
    if shadow_of(spec).is_some() {
        if index == 0 {
            "shadow".into()
        } else {
            format!("{index}/{}", total.saturating_sub(1))
        }
    } else {
        format!("{}/{total}", index + 1)
    }
}

/// What one analysis of the shadow stage read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowReading {
    /// Rows the candidate scored in the window.
    pub rows: f64,
    /// PSI of the candidate's scores against stable's.
    pub score_psi: Option<f64>,
    /// Share of rows on the same side of the threshold (the stable server's tee only).
    pub agreement: Option<f64>,
    /// Latency quantiles (p50, p99) in seconds of stable and of the candidate.
    pub stable_latency: (Option<f64>, Option<f64>),
    /// See `stable_latency`.
    pub candidate_latency: (Option<f64>, Option<f64>),
    /// Share of mirrored requests the candidate failed.
    pub error_rate: Option<f64>,
}

/// Reads the comparison of candidate and stable over `window_secs` from the servers' own
/// metrics: both scored the same requests, so their score histograms, latencies and errors
/// compare like for like. The stable server's tee adds agreement, and counts the requests
/// that never reached the candidate as its errors.
pub async fn measure_shadow(
    prom: &Prometheus,
    exp: &Experiment,
    mirror: Mirror,
    window_secs: u64,
) -> Result<ShadowReading, String> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let spec = &exp.spec;
    let w = format!("{window_secs}s");
    let sel =
        |variant: &str| format!(r#"namespace="{ns}",experiment="{name}",variant="{variant}""#);
    let (stable, candidate) = (
        sel(&stable_name(spec)),
        sel(&candidate_name(spec).unwrap_or_default()),
    );
    let sum = |m: &str, s: &str| format!("sum(increase({m}{{{s}}}[{w}]))");
    let rows = prom
        .value(&sum(&format!("{}_count", metric::SCORE), &candidate))
        .await?
        .unwrap_or(0.0);
    let buckets = |s: &str| {
        format!(
            "sum by (le) (increase({}_bucket{{{s}}}[{w}]))",
            metric::SCORE
        )
    };
    let score_psi = shares(&prom.series(&buckets(&stable)).await?)
        .zip(shares(&prom.series(&buckets(&candidate)).await?))
        .and_then(|(s, c)| psi(&s, &c));
    let quantile = |q: f64, s: &str| {
        format!(
            "histogram_quantile({q}, sum by (le) (rate({}_bucket{{{s}}}[{w}])))",
            metric::REQUEST_DURATION
        )
    };
    let mut latency = Vec::with_capacity(4);
    for s in [&stable, &candidate] {
        for q in [0.5, 0.99] {
            latency.push(prom.value(&quantile(q, s)).await?.filter(|x| x.is_finite()));
        }
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let (agreement, error_rate) = match mirror {
        Mirror::StableServer => {
            let agreed = prom.value(&sum(metric::SHADOW_AGREED, &stable)).await?;
            let compared = prom.value(&sum(metric::SHADOW_ROWS, &stable)).await?;
            let outcome = |o: &str| format!(r#"{stable},outcome="{o}""#);
            let failed = prom
                .value(&sum(metric::SHADOW_REQUESTS, &outcome("error")))
                .await?;
            let answered = prom
                .value(&sum(metric::SHADOW_REQUESTS, &outcome("ok")))
                .await?;
            let sent = answered.unwrap_or(0.0) + failed.unwrap_or(0.0);
            (
                ratio(agreed, compared),
                ratio(Some(failed.unwrap_or(0.0)), Some(sent)),
            )
        }
        Mirror::HttpRoute => {
            let failed = prom.value(&sum(metric::ERRORS, &candidate)).await?;
            let requests = prom.value(&sum(metric::REQUESTS, &candidate)).await?;
            (None, ratio(Some(failed.unwrap_or(0.0)), requests))
        }
    };
    Ok(ShadowReading {
        rows,
        score_psi,
        agreement,
        stable_latency: (latency[0], latency[1]),
        candidate_latency: (latency[2], latency[3]),
        error_rate,
    })
}

/// Per-bucket counts from cumulative `le` buckets, in bucket order; `None` when empty.
pub(super) fn shares(series: &[crate::prom::Series]) -> Option<Vec<f64>> {
    let mut cumulative: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|(labels, v)| {
            let le = labels.get("le")?;
            let edge = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((edge, *v))
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut last = 0.0;
    let counts: Vec<f64> = cumulative
        .iter()
        .map(|(_, c)| {
            let n = (c - last).max(0.0);
            last = c.max(last);
            n
        })
        .collect();
    (counts.iter().sum::<f64>() > 0.0).then_some(counts)
}

/// The shadow gates on one reading, judged like KPI gates (same verdicts and messages).
pub fn shadow_checks(shadow: &ShadowStrategy, candidate: &str, r: &ShadowReading) -> Vec<Check> {
    let gate = |name: &str, min: Option<f64>, max: Option<f64>| KpiGate {
        name: name.into(),
        query: String::new(),
        sample_query: None,
        min,
        max,
        relative_to_stable: false,
        min_samples: Some(shadow.min_rows),
    };
    let rows = Some(r.rows);
    let p99_ratio = match (r.candidate_latency.1, r.stable_latency.1) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let mut checks = vec![
        judge(
            &gate("shadow-score-psi", None, Some(shadow.max_score_psi)),
            candidate,
            r.score_psi,
            rows,
            None,
        ),
        judge(
            &gate("shadow-p99-ratio", None, Some(shadow.max_p99_ratio)),
            candidate,
            p99_ratio,
            rows,
            None,
        ),
        judge(
            &gate("shadow-error-rate", None, Some(shadow.max_error_rate)),
            candidate,
            r.error_rate,
            rows,
            None,
        ),
    ];
    if let Some(min) = shadow.min_agreement {
        checks.push(judge(
            &gate("shadow-agreement", Some(min), None),
            candidate,
            r.agreement,
            rows,
            None,
        ));
    }
    checks
}

/// The shadow status after an analysis of the shadow stage.
pub fn shadow_status(mirror: Mirror, stage: &str, r: &ShadowReading) -> ShadowStatus {
    let round = |x: Option<f64>| x.map(|v| (v * 1e6).round() / 1e6);
    ShadowStatus {
        mirror: mirror.as_str().into(),
        stage: stage.into(),
        rows: r.rows.round(),
        score_psi: round(r.score_psi),
        agreement: round(r.agreement),
        stable_p50_seconds: round(r.stable_latency.0),
        stable_p99_seconds: round(r.stable_latency.1),
        candidate_p50_seconds: round(r.candidate_latency.0),
        candidate_p99_seconds: round(r.candidate_latency.1),
        error_rate: round(r.error_rate),
    }
}

/// Who mirrors now, while the Experiment is in its shadow stage; `None` outside it.
pub fn shadow_mirror(exp: &Experiment, status: &ExperimentStatus) -> Option<Mirror> {
    let shadow = shadow_of(&exp.spec)?;
    shadowing(&exp.spec, status).then(|| mirror_of(&exp.spec, shadow, status.routing.as_deref()))
}

/// The candidate's Model, where it is not the stable variant's.
pub fn other_model(spec: &ExperimentSpec) -> Option<String> {
    let model = |role: VariantRole| {
        spec.variants
            .iter()
            .find(|v| v.role == role)
            .map(|v| v.model_ref.name.clone())
    };
    let candidate = model(VariantRole::Candidate)?;
    (Some(&candidate) != model(VariantRole::Stable).as_ref()).then_some(candidate)
}

/// Moves `status.shadow.stage` on once the shadow stage ended, whoever ended it (the analysis,
/// or a person through `leitwerk.dev/control`): `Retired` when the Experiment rolled back from
/// its shadow, `Passed` once the canary took over or the candidate was promoted.
pub fn settle_shadow(spec: &ExperimentSpec, status: &mut ExperimentStatus) {
    if shadowing(spec, status) {
        return;
    }
    let rolled_back = status.phase == Some(leitwerk_crds::experiment::ExperimentPhase::RolledBack);
    if let Some(shadow) = status.shadow.as_mut()
        && shadow.stage == MIRRORING
    {
        shadow.stage = if rolled_back { RETIRED } else { PASSED }.into();
    }
}
