//! Input drift of a Model's serving version (`spec.drift`): the check, its level, and the
//! action at `psiAct`/`jsAct`.

use leitwerk_crds::model::{DriftLevel, DriftMetric};

use kube::ResourceExt;
use leitwerk_crds::{
    Model,
    model::DriftAction,
    model::DriftPolicy,
    model::Versions,
    model::{FeatureDriftValue, ModelDriftStatus},
};

use super::DRIFT;
use crate::analysis::drift::FeatureDrift;
use crate::notice::Notice;
use crate::{
    context::Context, metrics::ModelDriftLabels, status::Desired, validation::parse_duration,
};
use std::time::Duration;

/// How often a Model's serving inputs are checked: a quarter of the window, 5 s to 15 min.
pub fn drift_period(policy: &DriftPolicy) -> Duration {
    let window = parse_duration(&policy.window).unwrap_or(Duration::from_secs(3600));
    (window / 4).clamp(Duration::from_secs(5), Duration::from_secs(900))
}

/// The level of a drift check (`NoData` below `minRows` serving rows, else `Ok`, `Warn`,
/// `Act`) and the feature nearest to its action threshold.
pub fn drift_level<'a>(
    policy: &DriftPolicy,
    features: &'a [FeatureDrift],
) -> (DriftLevel, Option<&'a FeatureDrift>) {
    let limits = |f: &FeatureDrift| match f.metric {
        DriftMetric::Psi => (policy.psi_warn, policy.psi_act),
        DriftMetric::Js => (policy.js_warn, policy.js_act),
    };
    let worst = features.iter().max_by(|a, b| {
        (a.value / limits(a).1.max(1e-9)).total_cmp(&(b.value / limits(b).1.max(1e-9)))
    });
    let rows = features.iter().map(|f| f.rows).fold(0.0, f64::max);
    let level = match worst {
        _ if rows < policy.min_rows as f64 => DriftLevel::NoData,
        Some(f) if f.value >= limits(f).1 => DriftLevel::Act,
        Some(f) if f.value >= limits(f).0 => DriftLevel::Warn,
        _ => DriftLevel::Ok,
    };
    (level, worst)
}

/// Checks the serving version's input drift when due (`spec.drift`), updates `drift`, and
/// acts at `psiAct`/`jsAct` once per version: a Warning Event, a rollback to the previous
/// version (in `versions`), or a retraining request. Returns the `Drift` condition, when to
/// look again, and the Warning to publish when it acted.
pub(super) async fn watch_drift(
    ctx: &Context,
    model: &Model,
    policy: &DriftPolicy,
    versions: &mut Versions,
    drift: &mut Option<ModelDriftStatus>,
) -> Option<(Desired, Duration, Option<Notice>)> {
    let serving = versions.serving()?.version.clone();
    let period = drift_period(policy);
    let now = chrono::Utc::now();
    if is_due(drift.as_ref(), &serving, period, now)
        && let Err(e) = check_drift(ctx, model, policy, &serving, drift, now).await
    {
        let message = format!("drift of {serving} not checked: {e}");
        return Some((
            Desired::failed(DRIFT, "PrometheusUnavailable", message),
            period,
            None,
        ));
    }
    let d = drift.as_mut()?;
    let (condition, evidence) = drift_condition(policy, d);
    let mut acted = None;
    if d.level == DriftLevel::Act && d.acted_on.as_deref() != Some(d.version.as_str()) {
        d.acted_on = Some(d.version.clone());
        acted = Some(act_on_drift(model, policy, versions, d, &evidence));
    }
    Some((condition, period, acted))
}

/// Whether the serving version's drift is due for a check: never checked, checked for another
/// version, or checked a period ago.
fn is_due(
    drift: Option<&ModelDriftStatus>,
    serving: &str,
    period: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let checked = drift.filter(|d| d.version == serving).and_then(|d| {
        chrono::DateTime::parse_from_rfc3339(&d.checked_at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    });
    checked.is_none_or(|t| now - t >= chrono::Duration::from_std(period).unwrap_or_default())
}

/// Measures the serving version's drift over `policy.window` and records it in `drift` (and
/// the drift gauges), keeping what was acted on for this version.
async fn check_drift(
    ctx: &Context,
    model: &Model,
    policy: &DriftPolicy,
    serving: &str,
    drift: &mut Option<ModelDriftStatus>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let ns = model.namespace().unwrap_or_default();
    let name = model.name_any();
    let selector = format!(r#"namespace="{ns}",model="{name}",version="{serving}",experiment="""#);
    let prometheus = ctx.prometheus(&ctx.config.prometheus_url)?;
    let features = crate::prom::input_drift(&prometheus, &selector, &policy.window, &[]).await?;
    let rows = features.iter().map(|f| f.rows).fold(0.0, f64::max);
    let (level, worst) = drift_level(policy, &features);
    let previous = drift.take().filter(|d| d.version == serving);
    for f in &features {
        ctx.metrics
            .model_drift
            .get_or_create(&ModelDriftLabels {
                namespace: ns.clone(),
                model: name.clone(),
                feature: f.feature.clone(),
                metric: f.metric.to_string(),
            })
            .set(f.value);
    }
    *drift = Some(ModelDriftStatus {
        checked_at: now.to_rfc3339(),
        version: serving.to_string(),
        level,
        worst_feature: worst.map(|w| w.feature.clone()),
        worst_value: worst.map(|w| (w.value * 1e4).round() / 1e4),
        rows: rows.round(),
        features: features
            .iter()
            .map(|f| FeatureDriftValue {
                feature: f.feature.clone(),
                metric: f.metric,
                value: (f.value * 1e4).round() / 1e4,
            })
            .collect(),
        acted_on: previous.as_ref().and_then(|p| p.acted_on.clone()),
        retrain_requested: previous.is_some_and(|p| p.retrain_requested),
    });
    Ok(())
}

/// The `Drift` condition of the last check, and its evidence in one line.
fn drift_condition(policy: &DriftPolicy, d: &ModelDriftStatus) -> (Desired, String) {
    let evidence = format!(
        "{} {} of {} is {:.3} over the last {} ({} rows; warn {}/{}, act {}/{} for PSI/JS)",
        d.worst_feature.clone().unwrap_or_default(),
        d.features
            .iter()
            .find(|f| Some(&f.feature) == d.worst_feature.as_ref())
            .map_or(DriftMetric::Psi, |f| f.metric)
            .as_str()
            .to_uppercase(),
        d.version,
        d.worst_value.unwrap_or(0.0),
        policy.window,
        d.rows,
        policy.psi_warn,
        policy.js_warn,
        policy.psi_act,
        policy.js_act,
    );
    let condition = match d.level {
        DriftLevel::NoData => Desired::not(
            DRIFT,
            "NotEnoughData",
            format!(
                "{} serving rows of {} in the last {}; a verdict needs {} (spec.drift.minRows)",
                d.rows, d.version, policy.window, policy.min_rows
            ),
        ),
        DriftLevel::Ok => Desired::not(DRIFT, "NoDrift", evidence.clone()),
        DriftLevel::Warn => Desired::ok(DRIFT, "DriftWarning", evidence.clone()).warning(),
        DriftLevel::Act => Desired::ok(DRIFT, "DriftDetected", evidence.clone()).warning(),
    };
    (condition, evidence)
}

/// Takes the policy's action on drift of `d.version` (pure) and returns the Warning that says
/// what it did.
pub(super) fn act_on_drift(
    model: &Model,
    policy: &DriftPolicy,
    versions: &mut Versions,
    d: &mut ModelDriftStatus,
    evidence: &str,
) -> Notice {
    let pinned = super::steer::pin_of(model);
    let note = match policy.action {
        DriftAction::Warn => format!("input drift: {evidence}"),
        DriftAction::Rollback if pinned.is_some() => format!(
            "input drift: {evidence}; the Model is pinned to {} ({}), so nothing is rolled back",
            pinned.unwrap_or_default(),
            leitwerk_crds::labels::PIN
        ),
        DriftAction::Rollback => {
            match versions.roll_back_serving(format!("rolled back on input drift: {evidence}")) {
                Some(back) => format!("input drift: {evidence}; serving {back} again"),
                None => format!("input drift: {evidence}; no earlier version to roll back to"),
            }
        }
        DriftAction::Retrain if model.spec.feature_set_ref.is_some() => {
            d.retrain_requested = true;
            format!("input drift: {evidence}; training a new version on the newest snapshot")
        }
        DriftAction::Retrain => {
            format!("input drift: {evidence}; a bring-your-own Model cannot be retrained here")
        }
    };
    let reason = match policy.action {
        DriftAction::Warn => "DriftWarn",
        DriftAction::Rollback => "DriftRollback",
        DriftAction::Retrain => "DriftRetrain",
    };
    Notice::warning("CheckDrift", reason, note)
}
