//! The Experiment controller: resolves the variants, runs one serving Deployment per variant,
//! moves traffic (Gateway API `HTTPRoute` weights, or replica ratio without the Gateway API),
//! reads KPIs and input drift from Prometheus every interval, and promotes, pauses or rolls
//! back on the evidence. Everything a restarted operator needs lives in the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        watcher,
    },
};
use leitwerk_crds::{
    Experiment, ExperimentSpec, FIELD_MANAGER, Model,
    experiment::{
        AnalysisState, ArmStatus, Decision, DriftStatus, ExperimentStatus, HoldoutStatus, KpiGate,
        StrategyType, VariantRole, VariantStatus,
    },
    model::ModelVersion,
};

use super::{
    Scope, drain,
    feature_set::{apply_if_changed, hash_of},
    get_opt,
    model::{serving_args, serving_image, serving_parts},
    referrers,
};
use crate::{
    analysis::{
        bandit::{self, Arm},
        canary::{self, Counters, Limits, Move},
        drift::{FeatureDrift, FeatureKind, feature_drift},
        gates::{Analysis, Check, Reading, Verdict, judge},
        holdout,
    },
    context::Context,
    metrics::{DecisionLabels, DriftLabels, KpiLabels, VariantLabels},
    prom::Prometheus,
    reconcile::{self, LeitwerkResource, Outcome},
    status::{Desired, READY},
    validation::{
        FieldError, check_template, into_result, parse_duration, render_template, summarize,
    },
    workloads::{MANAGED_BY, child_name, serving_deployment, serving_service},
};

/// Shortest analysis interval: Prometheus needs a few scrapes per interval.
pub const MIN_INTERVAL_SECS: u64 = 5;
/// Decisions kept in status.
pub const DECISION_HISTORY: usize = 20;
/// Label on everything an Experiment runs.
pub const EXPERIMENT_LABEL: &str = "leitwerk.dev/experiment";
/// Label naming the variant of a serving pod.
pub const VARIANT_LABEL: &str = "leitwerk.dev/variant";
/// The condition that says an analysis is paused and why.
pub const PAUSED: &str = "Paused";

pub use crate::reconcile::Error;

/// Runs the Experiment controller; it watches Models (an Experiment waiting for a version moves
/// on as soon as one appears) and the Deployments it owns.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<Experiment>>(client.clone()),
        watcher::Config::default(),
    );
    let experiments = controller.store();
    let stream = controller
        .owns(
            scope.api::<Deployment>(client.clone()),
            watcher::Config::default().labels(EXPERIMENT_LABEL),
        )
        .watches(
            scope.api::<Model>(client),
            watcher::Config::default(),
            referrers(experiments, |e: &Experiment, name| {
                e.spec.variants.iter().any(|v| v.model_ref.name == name)
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(Experiment::KIND, stream).await;
}

/// Reconciles one Experiment: validate → resolve variants → analyse when due → apply the
/// serving children and the traffic split → carry a verdict over to the Model → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Experiment>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(Experiment::KIND);
    let exp = match &obj.0 {
        Ok(e) => e,
        Err(invalid) => return Ok(reconcile::report_malformed::<Experiment>(&ctx, invalid).await),
    };
    let ns = exp.namespace().unwrap_or_default();
    if let Err(errors) = validate(&exp.spec) {
        let action = reconcile::finish(&ctx, exp, Outcome::invalid(summarize(&errors))).await?;
        return Ok(action);
    }
    let mut models = Vec::with_capacity(exp.spec.variants.len());
    for v in &exp.spec.variants {
        let model = get_opt::<Model>(&ctx, &ns, &v.model_ref.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Model {}", v.model_ref.name),
                source,
            })?;
        models.push(model);
    }
    let now = Utc::now();
    let mut status = exp.status.clone().unwrap_or_default();
    let fresh_generation = status.observed_generation != exp.metadata.generation;
    let variants = if fresh_generation || status.variants.len() != exp.spec.variants.len() {
        match resolve(exp, &models) {
            Ok(v) => v,
            Err(outcome) => {
                let action = reconcile::finish(&ctx, exp, *outcome).await?;
                return Ok(action);
            }
        }
    } else {
        status.variants.clone()
    };
    if fresh_generation && status.variants != variants {
        restart(&mut status);
    }
    status.variants = variants;

    let route = gateway_api(&ctx).await;
    status.routing = Some(
        if route.is_some() {
            "HTTPRoute"
        } else {
            "ReplicaRatio"
        }
        .into(),
    );
    let mut decision = None;
    if status.analysis.is_none() {
        decision = Some(start(exp, &mut status, now));
    } else if !is_terminal(&status) && is_due(&status, now) {
        let url = exp
            .spec
            .prometheus_url
            .clone()
            .unwrap_or_else(|| ctx.config.prometheus_url.clone());
        let window = window_secs(exp, &status, now);
        let measured = match Prometheus::new(&url) {
            Ok(prom) => measure(&prom, exp, &status.variants, window).await,
            Err(e) => Measurements::failed(e),
        };
        decision = Some(analyse(exp, &mut status, &measured, now));
    }

    apply_children(&ctx, exp, &models, &mut status, route.as_ref()).await?;
    if is_terminal(&status) && !status.promotion_confirmed {
        status.promotion_confirmed = carry_over(&ctx, exp, &status, &models).await?;
    }
    export_metrics(&ctx, exp, &status);
    if let Some(d) = &decision {
        ctx.metrics
            .experiment_decisions
            .get_or_create(&DecisionLabels {
                namespace: ns.clone(),
                experiment: exp.name_any(),
                action: d.action.clone(),
            })
            .inc();
        let warning = matches!(d.action.as_str(), "RollBack" | "Pause");
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: d.action.clone(),
            note: Some(reconcile::truncate(&d.message, 1024)),
            action: "Analyse".into(),
            secondary: None,
        };
        reconcile::publish(&ctx, Experiment::KIND, &event, &exp.object_ref(&())).await;
    }
    let outcome = outcome_of(exp, &status, now);
    let action = reconcile::finish_with(&ctx, exp, outcome, |s| {
        let phase = s.phase.clone();
        let conditions = std::mem::take(&mut s.conditions);
        let generation = s.observed_generation;
        *s = status;
        s.phase = phase;
        s.conditions = conditions;
        s.observed_generation = generation;
    })
    .await?;
    ctx.reset_backoff(&reconcile::backoff_key(exp));
    Ok(action)
}

/// Forgets the analysis of an earlier generation (its variants changed): the new variants
/// start at the first step with fresh evidence. Decisions stay as history.
fn restart(status: &mut ExperimentStatus) {
    status.analysis = None;
    status.arms.clear();
    status.holdout = None;
    status.drift.clear();
    status.winner = None;
    status.promotion_confirmed = false;
    status.phase = None;
}

/// Whether the analysis has ended (no more traffic moves).
pub fn is_terminal(status: &ExperimentStatus) -> bool {
    matches!(
        status.phase.as_deref(),
        Some("Promoted" | "RolledBack" | "Concluded")
    )
}

fn is_due(status: &ExperimentStatus, now: DateTime<Utc>) -> bool {
    next_analysis(status).is_none_or(|t| now >= t)
}

fn next_analysis(status: &ExperimentStatus) -> Option<DateTime<Utc>> {
    let text = status.analysis.as_ref()?.next_analysis.as_deref()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn interval_of(spec: &ExperimentSpec) -> Duration {
    parse_duration(&spec.interval)
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(MIN_INTERVAL_SECS))
}

/// The query window: the time since the previous analysis (so consecutive windows neither
/// overlap nor leave gaps, which the bandit's counts rely on), at least one interval.
fn window_secs(exp: &Experiment, status: &ExperimentStatus, now: DateTime<Utc>) -> u64 {
    let interval = interval_of(&exp.spec).as_secs();
    let last = next_analysis(status).map(|t| t - chrono::Duration::seconds(interval as i64));
    let elapsed = last.map_or(interval, |l| (now - l).num_seconds().max(0) as u64);
    elapsed.clamp(interval, interval * 10)
}

/// Resolves each variant's Model version and artifact; an outcome says what is missing.
pub fn resolve(
    exp: &Experiment,
    models: &[Option<Model>],
) -> Result<Vec<VariantStatus>, Box<Outcome>> {
    let ns = exp.namespace().unwrap_or_default();
    let exp_name = exp.name_any();
    let mut out = Vec::with_capacity(exp.spec.variants.len());
    for (i, (variant, model)) in exp.spec.variants.iter().zip(models).enumerate() {
        let Some(model) = model else {
            return Err(Box::new(Outcome::new(
                "Pending",
                Desired::not(
                    READY,
                    "ModelNotFound",
                    format!(
                        "Model {:?} named by spec.variants[{i}].modelRef.name (variant {:?}) does not exist in namespace {ns:?}: create it or fix the reference",
                        variant.model_ref.name, variant.name
                    ),
                ),
            )));
        };
        let status = model.status.clone().unwrap_or_default();
        let waiting = |message: String| {
            Box::new(Outcome::new(
                "WaitingForVersions",
                Desired::not(READY, "WaitingForVersions", message),
            ))
        };
        let usable = |v: &&ModelVersion| !matches!(v.state.as_str(), "Failed" | "Rejected");
        let version: Option<&ModelVersion> = match (&variant.version, variant.role) {
            (Some(pinned), _) => status.versions.iter().find(|v| &v.version == pinned),
            (None, VariantRole::Stable) => status
                .versions
                .iter()
                .find(|v| Some(&v.version) == status.serving_version.as_ref()),
            (None, VariantRole::Candidate) => status
                .versions
                .iter()
                .rev()
                .find(|v| v.state == "Candidate"),
            (None, VariantRole::Control) => {
                let serving = status
                    .versions
                    .iter()
                    .position(|v| Some(&v.version) == status.serving_version.as_ref());
                serving.and_then(|s| status.versions[..s].iter().rev().find(usable))
            }
        };
        let Some(version) = version else {
            let what = match (&variant.version, variant.role) {
                (Some(p), _) => format!("pins version {p:?}, which has not been recorded yet"),
                (None, VariantRole::Stable) => "takes the serving version, and nothing serves yet".into(),
                (None, VariantRole::Candidate) => "takes the newest Candidate version (trained, meeting minMetrics, not serving), and there is none yet".into(),
                (None, VariantRole::Control) => "takes the version served before the current one, and there is none".into(),
            };
            return Err(waiting(format!(
                "variant {:?} of Model {:?} {what}",
                variant.name,
                model.name_any()
            )));
        };
        if !usable(&version) || version.artifact_url.is_none() {
            return Err(waiting(format!(
                "variant {:?} names version {} of Model {:?}, which is {} and has no servable artifact",
                variant.name,
                version.version,
                model.name_any(),
                version.state
            )));
        }
        let digest = version
            .artifact_digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
            .map(|d| format!("#sha256:{d}"))
            .unwrap_or_default();
        out.push(VariantStatus {
            name: variant.name.clone(),
            model: model.name_any(),
            version: version.version.clone(),
            artifact_url: version.artifact_url.clone().map(|u| format!("{u}{digest}")),
            workload: Some(child_name(&exp_name, &variant.name)),
            replicas: 0,
            ready_replicas: 0,
        });
    }
    Ok(out)
}

fn role_of(spec: &ExperimentSpec, variant: &str) -> VariantRole {
    spec.variants
        .iter()
        .find(|v| v.name == variant)
        .map_or(VariantRole::Candidate, |v| v.role)
}

fn stable_name(spec: &ExperimentSpec) -> String {
    spec.variants
        .iter()
        .find(|v| v.role == VariantRole::Stable)
        .map(|v| v.name.clone())
        .unwrap_or_default()
}

fn candidate_name(spec: &ExperimentSpec) -> Option<String> {
    spec.variants
        .iter()
        .find(|v| v.role == VariantRole::Candidate)
        .map(|v| v.name.clone())
}

/// The weights a strategy starts with.
pub fn initial_weights(spec: &ExperimentSpec) -> BTreeMap<String, i32> {
    let names: Vec<&String> = spec.variants.iter().map(|v| &v.name).collect();
    let stable = stable_name(spec);
    let mut w: BTreeMap<String, i32> = names.iter().map(|n| ((*n).clone(), 0)).collect();
    let s = &spec.strategy;
    match s.type_ {
        StrategyType::Canary => {
            let first = s
                .canary
                .as_ref()
                .and_then(|c| c.steps.first())
                .copied()
                .unwrap_or(100);
            return canary_weights(spec, first);
        }
        StrategyType::Bandit => {
            let even = bandit::weights(&vec![1.0; names.len()], 0);
            for (n, x) in names.iter().zip(even) {
                w.insert((*n).clone(), x);
            }
        }
        StrategyType::FixedSplit => {
            if let Some(f) = &s.fixed_split {
                for (k, v) in &f.weights {
                    w.insert(k.clone(), *v);
                }
            }
        }
        StrategyType::Holdout => {
            let (control, percent) = s.holdout.as_ref().map_or((String::new(), 0), |h| {
                (h.control_variant.clone(), h.percent)
            });
            let others: Vec<&String> = names.iter().copied().filter(|n| **n != control).collect();
            let share = f64::from(100 - percent) / others.len().max(1) as f64;
            let mut exact: Vec<f64> = names
                .iter()
                .map(|n| {
                    if **n == control {
                        f64::from(percent)
                    } else {
                        share
                    }
                })
                .collect();
            if exact.is_empty() {
                exact.push(100.0);
            }
            for (n, x) in names.iter().zip(bandit::largest_remainder(&exact)) {
                w.insert((*n).clone(), x);
            }
        }
    }
    if w.values().sum::<i32>() != 100 {
        w.insert(stable, 100);
    }
    w
}

fn canary_weights(spec: &ExperimentSpec, candidate_percent: i32) -> BTreeMap<String, i32> {
    let stable = stable_name(spec);
    let candidate = candidate_name(spec).unwrap_or_default();
    spec.variants
        .iter()
        .map(|v| {
            let w = if v.name == candidate {
                candidate_percent.clamp(0, 100)
            } else if v.name == stable {
                100 - candidate_percent.clamp(0, 100)
            } else {
                0
            };
            (v.name.clone(), w)
        })
        .collect()
}

fn only(spec: &ExperimentSpec, winner: &str) -> BTreeMap<String, i32> {
    spec.variants
        .iter()
        .map(|v| (v.name.clone(), if v.name == winner { 100 } else { 0 }))
        .collect()
}

fn summary(weights: &BTreeMap<String, i32>, order: &[VariantStatus]) -> String {
    order
        .iter()
        .map(|v| format!("{}={}", v.name, weights.get(&v.name).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(",")
}

fn set_weights(status: &mut ExperimentStatus, weights: BTreeMap<String, i32>, now: DateTime<Utc>) {
    if status.weights != weights
        && let Some(a) = status.analysis.as_mut()
    {
        a.weights_since = Some(now.to_rfc3339());
    }
    status.weights_summary = Some(summary(&weights, &status.variants));
    status.weights = weights;
}

fn record(status: &mut ExperimentStatus, decision: Decision) {
    status.last_decision = Some(format!(
        "{}: {}",
        decision.action,
        reconcile::truncate(&decision.message, 120)
    ));
    status.decisions.push(decision);
    let excess = status.decisions.len().saturating_sub(DECISION_HISTORY);
    status.decisions.drain(..excess);
}

/// First reconcile with every variant resolved: initial weights and the first analysis time.
pub fn start(exp: &Experiment, status: &mut ExperimentStatus, now: DateTime<Utc>) -> Decision {
    let interval = interval_of(&exp.spec);
    status.analysis = Some(AnalysisState {
        next_analysis: Some(
            (now + chrono::Duration::from_std(interval).unwrap_or_default()).to_rfc3339(),
        ),
        weights_since: Some(now.to_rfc3339()),
        ..Default::default()
    });
    let weights = initial_weights(&exp.spec);
    set_weights(status, weights.clone(), now);
    if exp.spec.strategy.type_ == StrategyType::Canary {
        status.step = Some(format!("1/{}", steps_of(&exp.spec).len()));
    }
    status.phase = Some(
        match exp.spec.strategy.type_ {
            StrategyType::Canary | StrategyType::Bandit => "Progressing",
            StrategyType::FixedSplit | StrategyType::Holdout => "Running",
        }
        .into(),
    );
    let versions: Vec<String> = status
        .variants
        .iter()
        .map(|v| format!("{}={}/{}", v.name, v.model, v.version))
        .collect();
    let decision = Decision {
        time: now.to_rfc3339(),
        action: "Start".into(),
        message: format!(
            "{:?} over {}; weights {}; first analysis in {}",
            exp.spec.strategy.type_,
            versions.join(", "),
            summary(&weights, &status.variants),
            exp.spec.interval
        ),
        step: status.step.clone(),
        weights,
        ..Default::default()
    };
    record(status, decision.clone());
    decision
}

fn steps_of(spec: &ExperimentSpec) -> Vec<i32> {
    spec.strategy
        .canary
        .as_ref()
        .map(|c| c.steps.clone())
        .unwrap_or_default()
}

/// Everything one analysis read from Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    /// `(kpi, variant)` → (value, samples).
    pub kpis: BTreeMap<(String, String), (Reading, Reading)>,
    /// variant → drift per feature.
    pub drift: BTreeMap<String, Result<Vec<FeatureDrift>, String>>,
    /// A failure before any query (e.g. an unusable URL).
    pub error: Option<String>,
}

impl Measurements {
    fn failed(error: String) -> Measurements {
        Measurements {
            error: Some(error),
            ..Default::default()
        }
    }

    fn first_error(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        let kpi = self
            .kpis
            .values()
            .find_map(|(v, s)| v.as_ref().err().or(s.as_ref().err()).cloned());
        kpi.or_else(|| self.drift.values().find_map(|d| d.as_ref().err().cloned()))
    }

    fn value(&self, kpi: &str, variant: &str) -> Option<f64> {
        self.reading(kpi, variant).0
    }

    fn reading(&self, kpi: &str, variant: &str) -> (Option<f64>, Option<f64>) {
        match self.kpis.get(&(kpi.to_string(), variant.to_string())) {
            Some((v, s)) => (v.clone().ok().flatten(), s.clone().ok().flatten()),
            None => (None, None),
        }
    }
}

/// Reads every KPI of every variant (and the drift of the variants a drift gate watches).
pub async fn measure(
    prom: &Prometheus,
    exp: &Experiment,
    variants: &[VariantStatus],
    window_secs: u64,
) -> Measurements {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let window = format!("{window_secs}s");
    let mut m = Measurements::default();
    for v in variants {
        let values = [
            ("namespace", ns.as_str()),
            ("experiment", name.as_str()),
            ("model", v.model.as_str()),
            ("variant", v.name.as_str()),
            ("interval", window.as_str()),
        ];
        for kpi in &exp.spec.kpis {
            let value = prom.value(&render_template(&kpi.query, &values)).await;
            let samples = match &kpi.sample_query {
                Some(q) => prom.value(&render_template(q, &values)).await,
                None => Ok(None),
            };
            m.kpis
                .insert((kpi.name.clone(), v.name.clone()), (value, samples));
        }
    }
    if let Some(gate) = &exp.spec.drift_gate {
        for v in variants {
            if role_of(&exp.spec, &v.name) == VariantRole::Stable {
                continue;
            }
            let selector = format!(
                r#"namespace="{ns}",experiment="{name}",variant="{}""#,
                v.name
            );
            let d = drift_of(prom, &selector, &window, &gate.features).await;
            m.drift.insert(v.name.clone(), d);
        }
    }
    m
}

/// Drift of the inputs of the inference servers matching `selector` (PromQL label matchers)
/// over the window, per feature, against the reference shares the servers export from the
/// model card. `only` restricts the features (all when empty).
pub async fn drift_of(
    prom: &Prometheus,
    selector: &str,
    window: &str,
    only: &[String],
) -> Result<Vec<FeatureDrift>, String> {
    let reference = prom
        .series(&format!(
            "max by (feature, kind, bucket) (leitwerk_inference_feature_reference{{{selector}}})"
        ))
        .await?;
    let serving = prom
        .series(&format!(
            "sum by (feature, bucket) (increase(leitwerk_inference_feature_bucket_total{{{selector}}}[{window}]))"
        ))
        .await?;
    type Buckets = BTreeMap<String, f64>;
    let mut features: BTreeMap<String, (FeatureKind, Buckets, Buckets)> = BTreeMap::new();
    for (labels, share) in &reference {
        let (Some(f), Some(b)) = (labels.get("feature"), labels.get("bucket")) else {
            continue;
        };
        let kind = if labels.get("kind").map(String::as_str) == Some("categorical") {
            FeatureKind::Categorical
        } else {
            FeatureKind::Numeric
        };
        let entry = features
            .entry(f.clone())
            .or_insert_with(|| (kind, Buckets::new(), Buckets::new()));
        entry.1.insert(b.clone(), *share);
    }
    for (labels, count) in &serving {
        let (Some(f), Some(b)) = (labels.get("feature"), labels.get("bucket")) else {
            continue;
        };
        if let Some(entry) = features.get_mut(f)
            && count.is_finite()
        {
            entry.2.insert(b.clone(), *count);
        }
    }
    Ok(features
        .iter()
        .filter(|(f, _)| only.is_empty() || only.contains(f))
        .filter_map(|(f, (kind, reference, serving))| feature_drift(f, *kind, reference, serving))
        .collect())
}

/// Runs one analysis on what was measured: updates counters, weights, evidence and phase, and
/// returns the decision (also recorded in the status).
pub fn analyse(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    now: DateTime<Utc>,
) -> Decision {
    let spec = &exp.spec;
    let interval = interval_of(spec);
    let mut state = status.analysis.clone().unwrap_or_default();
    state.analyses += 1;
    state.next_analysis =
        Some((now + chrono::Duration::from_std(interval).unwrap_or_default()).to_rfc3339());
    status.analysis = Some(state.clone());
    let mut values = BTreeMap::new();
    for ((kpi, variant), (v, _)) in &m.kpis {
        if let Ok(Some(x)) = v {
            values.insert(format!("{kpi}/{variant}"), round4(*x));
        }
    }
    status.drift = m
        .drift
        .iter()
        .flat_map(|(variant, d)| {
            d.iter().flatten().map(move |f| DriftStatus {
                variant: variant.clone(),
                feature: f.feature.clone(),
                metric: f.metric.into(),
                value: round4(f.value),
                rows: f.rows.round(),
            })
        })
        .collect();
    for d in &status.drift {
        values.insert(format!("drift/{}/{}", d.variant, d.feature), d.value);
    }
    let mut decision = Decision {
        time: now.to_rfc3339(),
        values,
        ..Default::default()
    };
    match spec.strategy.type_ {
        StrategyType::Canary => analyse_canary(exp, status, m, &mut decision, now),
        StrategyType::Bandit => analyse_bandit(exp, status, m, &mut decision, now),
        StrategyType::FixedSplit | StrategyType::Holdout => {
            analyse_measure(exp, status, m, &mut decision)
        }
    }
    decision.weights = status.weights.clone();
    record(status, decision.clone());
    decision
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn limits(spec: &ExperimentSpec) -> Limits {
    Limits {
        failures: spec.failure_limit,
        inconclusive: spec.inconclusive_limit,
        errors: spec.consecutive_error_limit,
    }
}

fn counters(state: &AnalysisState) -> Counters {
    Counters {
        failures: state.failures,
        inconclusive: state.inconclusive,
        errors: state.consecutive_errors,
    }
}

fn store_counters(status: &mut ExperimentStatus, c: Counters) {
    if let Some(a) = status.analysis.as_mut() {
        a.failures = c.failures;
        a.inconclusive = c.inconclusive;
        a.consecutive_errors = c.errors;
    }
}

/// The KPI gates and the drift gate of one variant.
pub fn checks(spec: &ExperimentSpec, m: &Measurements, variant: &str) -> Vec<Check> {
    let stable = stable_name(spec);
    let mut out: Vec<Check> = spec
        .kpis
        .iter()
        .map(|gate: &KpiGate| {
            let (value, samples) = m.reading(&gate.name, variant);
            judge(gate, variant, value, samples, m.value(&gate.name, &stable))
        })
        .collect();
    if let Some(gate) = &spec.drift_gate
        && let Some(Ok(features)) = m.drift.get(variant)
    {
        let breaches: Vec<String> = features
            .iter()
            .filter(|f| {
                let limit = if f.metric == "psi" {
                    gate.max_psi
                } else {
                    gate.max_js_divergence
                };
                f.value > limit
            })
            .map(|f| {
                let limit = if f.metric == "psi" {
                    gate.max_psi
                } else {
                    gate.max_js_divergence
                };
                format!(
                    "{} {} {:.3} > {limit}",
                    f.feature,
                    f.metric.to_uppercase(),
                    f.value
                )
            })
            .collect();
        let rows = features.iter().map(|f| f.rows).fold(0.0, f64::max);
        let (verdict, message) = if !breaches.is_empty() {
            (
                Verdict::Fail,
                format!("input drift of {variant}: {}", breaches.join(", ")),
            )
        } else if rows <= 0.0 {
            (
                Verdict::Inconclusive,
                format!("drift/{variant}: no serving rows in the window"),
            )
        } else {
            let worst = features.iter().map(|f| f.value).fold(0.0, f64::max);
            (
                Verdict::Pass,
                format!("drift/{variant}: largest {worst:.3} within limits"),
            )
        };
        out.push(Check {
            kpi: "drift".into(),
            variant: variant.into(),
            verdict,
            value: None,
            samples: Some(rows),
            min: None,
            max: None,
            message,
        });
    }
    out
}

fn analyse_canary(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
    now: DateTime<Utc>,
) {
    let spec = &exp.spec;
    let steps = steps_of(spec);
    let state = status.analysis.clone().unwrap_or_default();
    let step = usize::try_from(state.step_index).unwrap_or(0);
    let candidate = candidate_name(spec).unwrap_or_default();
    let stable = stable_name(spec);
    let checks = checks(spec, m, &candidate);
    for c in &checks {
        if let Some(x) = c.min {
            decision
                .thresholds
                .insert(format!("{}/{}/min", c.kpi, c.variant), round4(x));
        }
        if let Some(x) = c.max {
            decision
                .thresholds
                .insert(format!("{}/{}/max", c.kpi, c.variant), round4(x));
        }
    }
    let analysis = Analysis::of(checks, m.first_error());
    let mut c = counters(&state);
    // A step of 100 % is the promotion itself: with no traffic left on stable, relative gates
    // would have nothing to compare with.
    let judged = steps.iter().filter(|w| **w < 100).count().max(1);
    let mv = canary::next_move(step, judged, &mut c, limits(spec), &analysis);
    store_counters(status, c);
    let at = format!("{}/{}", step + 1, steps.len());
    decision.step = Some(at.clone());
    let evidence = |v: Verdict| analysis.summary(v);
    match mv {
        Move::Advance(to) => {
            let w = steps.get(to).copied().unwrap_or(100);
            set_weights(status, canary_weights(spec, w), now);
            if let Some(a) = status.analysis.as_mut() {
                a.step_index = to as i32;
            }
            status.step = Some(format!("{}/{}", to + 1, steps.len()));
            status.phase = Some("Progressing".into());
            decision.action = "Advance".into();
            decision.message = format!(
                "step {at} passed ({}); {candidate} now at {w}%",
                evidence(Verdict::Pass)
            );
        }
        Move::Promote => {
            set_weights(status, only(spec, &candidate), now);
            status.step = Some(format!("{}/{}", steps.len(), steps.len()));
            status.phase = Some("Promoted".into());
            status.winner = Some(candidate.clone());
            decision.action = "Promote".into();
            decision.message = format!(
                "last step {at} passed ({}); promoting {candidate}",
                evidence(Verdict::Pass)
            );
        }
        Move::RollBack => {
            set_weights(status, only(spec, &stable), now);
            status.phase = Some("RolledBack".into());
            status.winner = Some(stable.clone());
            decision.action = "RollBack".into();
            decision.message = format!(
                "{}; failures {} > failureLimit {}: all traffic back to {stable}",
                evidence(Verdict::Fail),
                c.failures,
                spec.failure_limit
            );
        }
        Move::Hold => {
            decision.action = "Hold".into();
            decision.message = match &analysis {
                Analysis::Error(e) => format!(
                    "query failed ({}/{} in a row): {e}",
                    c.errors, spec.consecutive_error_limit
                ),
                Analysis::Fail(_) => format!(
                    "{} (failure {} of {} tolerated)",
                    evidence(Verdict::Fail),
                    c.failures,
                    spec.failure_limit
                ),
                _ => format!(
                    "{} ({}/{} inconclusive)",
                    evidence(Verdict::Inconclusive),
                    c.inconclusive,
                    spec.inconclusive_limit
                ),
            };
            if status.phase.as_deref() != Some("Paused") {
                status.phase = Some("Progressing".into());
            }
        }
        Move::Pause(reason) => {
            status.phase = Some("Paused".into());
            decision.action = "Pause".into();
            decision.message = match &analysis {
                Analysis::Error(e) => format!(
                    "{}: {} query errors in a row (limit {}): {e}; holding at step {at}, never promoting without data",
                    reason.reason(),
                    c.errors,
                    spec.consecutive_error_limit
                ),
                _ => format!(
                    "{}: {} inconclusive analyses (limit {}): {}; holding at step {at}",
                    reason.reason(),
                    c.inconclusive,
                    spec.inconclusive_limit,
                    evidence(Verdict::Inconclusive)
                ),
            };
        }
    }
}

fn reward_kpi(spec: &ExperimentSpec) -> Option<String> {
    match spec.strategy.type_ {
        StrategyType::Bandit => spec.strategy.bandit.as_ref().map(|b| b.reward_kpi.clone()),
        StrategyType::Holdout => spec
            .strategy
            .holdout
            .as_ref()
            .and_then(|h| h.kpi.clone())
            .or_else(|| spec.kpis.first().map(|k| k.name.clone())),
        _ => None,
    }
}

/// Adds one interval's successes (rate × trials) and trials to each arm.
fn accumulate(status: &mut ExperimentStatus, m: &Measurements, kpi: &str) {
    for v in &status.variants {
        if !status.arms.iter().any(|a| a.variant == v.name) {
            status.arms.push(ArmStatus {
                variant: v.name.clone(),
                alpha: 1.0,
                beta: 1.0,
                ..Default::default()
            });
        }
    }
    for arm in &mut status.arms {
        let (rate, trials) = m.reading(kpi, &arm.variant);
        let trials = trials.unwrap_or(0.0).max(0.0);
        let successes = (rate.unwrap_or(0.0).clamp(0.0, 1.0) * trials).max(0.0);
        arm.trials = round4(arm.trials + trials);
        arm.successes = round4(arm.successes + successes);
        let (a, b) = Arm {
            successes: arm.successes,
            trials: arm.trials,
        }
        .alpha_beta();
        arm.alpha = round4(a);
        arm.beta = round4(b);
    }
}

fn analyse_bandit(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
    now: DateTime<Utc>,
) {
    let spec = &exp.spec;
    let Some(b) = spec.strategy.bandit.clone() else {
        return;
    };
    let state = status.analysis.clone().unwrap_or_default();
    decision.step = Some(format!("analysis {}", state.analyses));
    let mut c = counters(&state);
    if let Some(e) = m.first_error() {
        c.errors += 1;
        store_counters(status, c);
        if c.errors > spec.consecutive_error_limit {
            status.phase = Some("Paused".into());
            decision.action = "Pause".into();
            decision.message = format!(
                "PrometheusUnavailable: {} query errors in a row (limit {}): {e}; weights kept",
                c.errors, spec.consecutive_error_limit
            );
        } else {
            decision.action = "Hold".into();
            decision.message = format!(
                "query failed ({}/{}): {e}; weights kept",
                c.errors, spec.consecutive_error_limit
            );
        }
        return;
    }
    c.errors = 0;
    store_counters(status, c);
    status.phase = Some("Progressing".into());
    accumulate(status, m, &b.reward_kpi);
    let arms: Vec<Arm> = status
        .arms
        .iter()
        .map(|a| Arm {
            successes: a.successes,
            trials: a.trials,
        })
        .collect();
    let seed = (b.seed as u64).wrapping_add(state.analyses as u64);
    let p = bandit::probability_best(&arms, seed, bandit::DRAWS);
    for (arm, p) in status.arms.iter_mut().zip(&p) {
        arm.probability_best = Some(round4(*p));
    }
    let posteriors: Vec<String> = status
        .arms
        .iter()
        .map(|a| {
            format!(
                "{} {:.0}/{:.0} P(best)={:.3}",
                a.variant,
                a.successes,
                a.trials,
                a.probability_best.unwrap_or(0.0)
            )
        })
        .collect();
    let best = (0..p.len()).max_by(|x, y| p[*x].total_cmp(&p[*y]));
    if let Some(i) = best
        && p[i] >= b.probability_to_win
        && status.arms[i].trials >= b.min_samples as f64
    {
        let winner = status.arms[i].variant.clone();
        set_weights(status, only(spec, &winner), now);
        status.winner = Some(winner.clone());
        let stable = role_of(spec, &winner) == VariantRole::Stable;
        status.phase = Some(if stable { "Concluded" } else { "Promoted" }.into());
        decision.action = if stable { "Conclude" } else { "Promote" }.into();
        decision.message = format!(
            "{winner} is best with probability {:.3} ≥ {} after {:.0} trials ({}){}",
            p[i],
            b.probability_to_win,
            status.arms[i].trials,
            posteriors.join("; "),
            if stable {
                "; the stable variant stays"
            } else {
                ""
            }
        );
        return;
    }
    let names: Vec<String> = status.arms.iter().map(|a| a.variant.clone()).collect();
    let weights: BTreeMap<String, i32> = names
        .into_iter()
        .zip(bandit::weights(&p, b.floor_weight))
        .collect();
    set_weights(status, weights, now);
    decision.action = "Reweight".into();
    decision.message = format!("posteriors: {}", posteriors.join("; "));
}

fn analyse_measure(
    exp: &Experiment,
    status: &mut ExperimentStatus,
    m: &Measurements,
    decision: &mut Decision,
) {
    let spec = &exp.spec;
    let state = status.analysis.clone().unwrap_or_default();
    decision.step = Some(format!("analysis {}", state.analyses));
    let mut c = counters(&state);
    if let Some(e) = m.first_error() {
        c.errors += 1;
        store_counters(status, c);
        let pause = c.errors > spec.consecutive_error_limit;
        if pause {
            status.phase = Some("Paused".into());
        }
        decision.action = if pause { "Pause" } else { "Hold" }.into();
        decision.message = format!(
            "PrometheusUnavailable: query failed ({} in a row): {e}",
            c.errors
        );
        return;
    }
    c.errors = 0;
    store_counters(status, c);
    status.phase = Some("Running".into());
    decision.action = "Measure".into();
    let Some(kpi) = reward_kpi(spec) else {
        decision.message = format!("{} KPI values recorded", decision.values.len());
        return;
    };
    accumulate(status, m, &kpi);
    let control = spec
        .strategy
        .holdout
        .as_ref()
        .map(|h| h.control_variant.clone())
        .unwrap_or_default();
    let (mut ms, mut mn, mut cs, mut cn) = (0.0, 0.0, 0.0, 0.0);
    for a in &status.arms {
        if a.variant == control {
            (cs, cn) = (cs + a.successes, cn + a.trials);
        } else {
            (ms, mn) = (ms + a.successes, mn + a.trials);
        }
    }
    match holdout::lift((ms, mn), (cs, cn)) {
        Some(l) => {
            status.holdout = Some(HoldoutStatus {
                kpi: kpi.clone(),
                model_rate: round4(l.model_rate),
                control_rate: round4(l.control_rate),
                lift: round4(l.lift),
                lift_lower: round4(l.lower),
                lift_upper: round4(l.upper),
                relative_lift: l.relative.map(round4),
                model_trials: mn.round(),
                control_trials: cn.round(),
            });
            decision.message = format!(
                "{kpi}: model {:.4} vs control {:.4} over {:.0}/{:.0} trials; lift {:+.4} (95% CI {:+.4} … {:+.4})",
                l.model_rate, l.control_rate, mn, cn, l.lift, l.lower, l.upper
            );
        }
        None => decision.message = format!("{kpi}: no trials yet on both arms"),
    }
}

/// The phase, conditions and requeue of the status.
pub fn outcome_of(exp: &Experiment, status: &ExperimentStatus, now: DateTime<Utc>) -> Outcome {
    let last = status
        .decisions
        .last()
        .map(|d| format!("{}: {}", d.action, d.message))
        .unwrap_or_default();
    let weights = status.weights_summary.clone().unwrap_or_default();
    let routing = status.routing.clone().unwrap_or_default();
    let (phase, ready): (&'static str, Desired) = match status.phase.as_deref() {
        Some("Promoted") => ("Promoted", Desired::ok(READY, "Promoted", last.clone())),
        Some("Concluded") => ("Concluded", Desired::ok(READY, "Concluded", last.clone())),
        Some("RolledBack") => (
            "RolledBack",
            Desired::not(READY, "RolledBack", last.clone()),
        ),
        Some("Paused") => {
            let reason = status
                .decisions
                .iter()
                .rev()
                .find(|d| d.action == "Pause")
                .and_then(|d| d.message.split(':').next())
                .unwrap_or("Paused")
                .to_string();
            ("Paused", Desired::not(READY, reason, last.clone()))
        }
        Some("Running") => (
            "Running",
            Desired::ok(READY, "Running", format!("weights {weights} via {routing}")),
        ),
        _ => (
            "Progressing",
            Desired::ok(
                READY,
                "Progressing",
                format!("weights {weights} via {routing}; {last}"),
            ),
        ),
    };
    let mut outcome = Outcome::new(phase, ready.clone());
    let paused = if phase == "Paused" {
        Desired::ok(PAUSED, ready.reason.clone(), ready.message.clone())
    } else {
        Desired::not(PAUSED, "Analysing", "the analysis is not paused")
    };
    outcome.conditions.push(paused);
    if is_terminal(status) {
        if !status.promotion_confirmed {
            outcome = outcome.recheck_after(Duration::from_secs(2));
        }
        return outcome;
    }
    let wait = next_analysis(status)
        .map(|t| (t - now).to_std().unwrap_or_default())
        .unwrap_or(interval_of(&exp.spec));
    outcome.recheck_after(wait.max(Duration::from_millis(500)))
}

/// Replicas for a weight out of `total` replicas: 0 at weight 0, else at least 1.
pub fn replicas_for(weight: i32, total: i32) -> i32 {
    if weight <= 0 {
        0
    } else {
        ((f64::from(weight) * f64::from(total.max(1)) / 100.0).round() as i32).max(1)
    }
}

/// The Deployment and Service of every variant, with replicas from the weights.
pub fn variant_workloads(
    exp: &Experiment,
    models: &[Option<Model>],
    status: &ExperimentStatus,
    config: &crate::config::OperatorConfig,
) -> Vec<(Deployment, Service)> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let owner = exp.controller_owner_ref(&()).unwrap_or_default();
    let stable_total = exp
        .spec
        .variants
        .iter()
        .zip(models)
        .find(|(v, _)| v.role == VariantRole::Stable)
        .and_then(|(_, m)| m.as_ref())
        .map_or(1, |m| m.spec.serving.replicas.max(1));
    status
        .variants
        .iter()
        .filter_map(|v| {
            let model = models.iter().flatten().find(|m| m.name_any() == v.model)?;
            let mut parts = serving_parts(model, config);
            parts.labels = BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (EXPERIMENT_LABEL.to_string(), name.clone()),
                (VARIANT_LABEL.to_string(), v.name.clone()),
            ]);
            let version = ModelVersion {
                version: v.version.clone(),
                artifact_url: v.artifact_url.clone(),
                ..Default::default()
            };
            let mut args = serving_args(model, &version);
            for label in [
                format!("namespace={ns}"),
                format!("experiment={name}"),
                format!("variant={}", v.name),
            ] {
                args.extend(["--metric-label".to_string(), label]);
            }
            let weight = status.weights.get(&v.name).copied().unwrap_or(0);
            let workload = child_name(&name, &v.name);
            let deployment = serving_deployment(
                &workload,
                &ns,
                owner.clone(),
                &serving_image(model, config),
                replicas_for(weight, stable_total),
                args,
                &parts,
            );
            let service = serving_service(&workload, &ns, owner.clone(), &parts.labels);
            Some((deployment, service))
        })
        .collect()
}

/// The HTTPRoute that splits traffic by weight between the variants' Services.
pub fn http_route(exp: &Experiment, status: &ExperimentStatus) -> serde_json::Value {
    let name = exp.name_any();
    let traffic = exp.spec.traffic.clone().unwrap_or_default();
    let backends: Vec<serde_json::Value> = status
        .variants
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": child_name(&name, &v.name),
                "port": crate::workloads::HTTP_PORT,
                "weight": status.weights.get(&v.name).copied().unwrap_or(0),
            })
        })
        .collect();
    let mut spec = serde_json::json!({"rules": [{"backendRefs": backends}]});
    if let Some(gw) = &traffic.gateway_ref {
        spec["parentRefs"] = serde_json::json!([{"name": gw.name}]);
    }
    if !traffic.hostnames.is_empty() {
        spec["hostnames"] = serde_json::json!(traffic.hostnames);
    }
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": exp.namespace(),
            "labels": {MANAGED_BY.0: MANAGED_BY.1, EXPERIMENT_LABEL: name},
            "ownerReferences": [exp.controller_owner_ref(&())],
        },
        "spec": spec,
    })
}

/// The HTTPRoute API when the Gateway API CRDs are installed.
async fn gateway_api(ctx: &Context) -> Option<ApiResource> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .ok()
        .map(|(ar, _)| ar)
}

async fn apply_children(
    ctx: &Context,
    exp: &Experiment,
    models: &[Option<Model>],
    status: &mut ExperimentStatus,
    route: Option<&ApiResource>,
) -> Result<(), Error> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |what: &str| {
        let what = what.to_string();
        move |source| Error::Read { what, source }
    };
    let current = deployments
        .list(&ListParams::default().labels(&format!("{EXPERIMENT_LABEL}={name}")))
        .await
        .map_err(read("variant Deployments"))?;
    for (deployment, service) in variant_workloads(exp, models, status, &ctx.config) {
        let workload = deployment.name_any();
        let existing = current.items.iter().find(|d| d.name_any() == workload);
        if let Some(v) = status
            .variants
            .iter_mut()
            .find(|v| v.workload.as_deref() == Some(&workload))
        {
            v.replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(0);
            v.ready_replicas = existing
                .and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
        }
        apply_if_changed(ctx, &ns, deployment, existing, "variant Deployment").await?;
        let existing_service = services
            .get_opt(&workload)
            .await
            .map_err(read("variant Service"))?;
        apply_if_changed(
            ctx,
            &ns,
            service,
            existing_service.as_ref(),
            "variant Service",
        )
        .await?;
    }
    match route {
        Some(ar) => {
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, ar);
            let mut desired = http_route(exp, status);
            let hash = hash_of(&desired);
            let existing = api.get_opt(&name).await.map_err(read("HTTPRoute"))?;
            let applied = existing
                .as_ref()
                .and_then(|r| r.metadata.annotations.as_ref())
                .and_then(|a| a.get(super::feature_set::APPLIED_HASH));
            if applied != Some(&hash) {
                desired["metadata"]["annotations"] =
                    serde_json::json!({super::feature_set::APPLIED_HASH: hash});
                api.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
                .map_err(|source| Error::Apply {
                    what: format!("HTTPRoute {name}"),
                    source,
                })?;
                ctx.metrics.wrote(Experiment::KIND, "child");
            }
        }
        None => {
            // Without a Gateway API, one Service spans every variant: traffic follows replicas.
            let owner = exp.controller_owner_ref(&()).unwrap_or_default();
            let labels = BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (EXPERIMENT_LABEL.to_string(), name.clone()),
            ]);
            let shared = serving_service(&name, &ns, owner, &labels);
            let existing = services.get_opt(&name).await.map_err(read("Service"))?;
            apply_if_changed(ctx, &ns, shared, existing.as_ref(), "Experiment Service").await?;
        }
    }
    Ok(())
}

/// Carries a verdict over to the Model: a promoted version serves (the one serving before is
/// Retired); a rolled-back candidate is marked RolledBack with the evidence. Returns whether
/// the Model shows it (then the Experiment stops touching the Model).
async fn carry_over(
    ctx: &Context,
    exp: &Experiment,
    status: &ExperimentStatus,
    models: &[Option<Model>],
) -> Result<bool, Error> {
    let spec = &exp.spec;
    let ns = exp.namespace().unwrap_or_default();
    let promoted = status.phase.as_deref() == Some("Promoted");
    let target = if promoted {
        status.winner.clone()
    } else if status.phase.as_deref() == Some("RolledBack") {
        candidate_name(spec)
    } else {
        None
    };
    let Some(variant) = target.and_then(|t| status.variants.iter().find(|v| v.name == t)) else {
        return Ok(true);
    };
    let Some(model) = models
        .iter()
        .flatten()
        .find(|m| m.name_any() == variant.model)
    else {
        return Ok(true);
    };
    let mut ms = model.status.clone().unwrap_or_default();
    let evidence = status
        .decisions
        .last()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    let changed = if promoted {
        if ms.serving_version.as_deref() == Some(variant.version.as_str()) {
            return Ok(true);
        }
        for v in &mut ms.versions {
            if v.version == variant.version {
                v.state = "Serving".into();
                v.message = Some(format!(
                    "promoted by Experiment {}: {evidence}",
                    exp.name_any()
                ));
            } else if v.state == "Serving" {
                v.state = "Retired".into();
            }
        }
        ms.serving_version = Some(variant.version.clone());
        true
    } else {
        match ms
            .versions
            .iter_mut()
            .find(|v| v.version == variant.version)
        {
            Some(v) if v.state == "RolledBack" || v.state == "Serving" => return Ok(true),
            Some(v) => {
                v.state = "RolledBack".into();
                v.message = Some(format!(
                    "rolled back by Experiment {}: {evidence}",
                    exp.name_any()
                ));
                true
            }
            None => return Ok(true),
        }
    };
    if changed {
        let api: Api<Model> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::json!({"status": {
            "servingVersion": ms.serving_version,
            "versions": ms.versions,
        }});
        api.patch_status(
            &model.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(|source| Error::Apply {
            what: format!("status of Model {}", model.name_any()),
            source,
        })?;
        ctx.metrics.wrote(Experiment::KIND, "model-status");
    }
    Ok(false)
}

fn export_metrics(ctx: &Context, exp: &Experiment, status: &ExperimentStatus) {
    let namespace = exp.namespace().unwrap_or_default();
    let experiment = exp.name_any();
    for (variant, w) in &status.weights {
        ctx.metrics
            .experiment_weight
            .get_or_create(&VariantLabels {
                namespace: namespace.clone(),
                experiment: experiment.clone(),
                variant: variant.clone(),
            })
            .set(i64::from(*w));
    }
    if let Some(d) = status.decisions.last() {
        for (key, value) in &d.values {
            let mut parts = key.splitn(2, '/');
            if let (Some(kpi), Some(variant)) = (parts.next(), parts.next())
                && kpi != "drift"
            {
                ctx.metrics
                    .experiment_kpi
                    .get_or_create(&KpiLabels {
                        namespace: namespace.clone(),
                        experiment: experiment.clone(),
                        variant: variant.into(),
                        kpi: kpi.into(),
                    })
                    .set(*value);
            }
        }
    }
    for d in &status.drift {
        ctx.metrics
            .experiment_drift
            .get_or_create(&DriftLabels {
                namespace: namespace.clone(),
                experiment: experiment.clone(),
                variant: d.variant.clone(),
                feature: d.feature.clone(),
                metric: d.metric.clone(),
            })
            .set(d.value);
    }
}

/// Checks what the schema cannot: the interval, KPI templates and the shape of the strategy.
pub fn validate(spec: &ExperimentSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    match parse_duration(&spec.interval) {
        Some(d) if d.as_secs() >= MIN_INTERVAL_SECS => {}
        _ => errors.push(FieldError::new(
            "spec.interval",
            format!(
                "{:?} is shorter than {MIN_INTERVAL_SECS}s or not a duration: use e.g. 1m",
                spec.interval
            ),
        )),
    }
    for (i, kpi) in spec.kpis.iter().enumerate() {
        if let Err(problem) = check_template(&kpi.query) {
            errors.push(FieldError::new(format!("spec.kpis[{i}].query"), problem));
        }
        if let Some(q) = &kpi.sample_query
            && let Err(problem) = check_template(q)
        {
            errors.push(FieldError::new(
                format!("spec.kpis[{i}].sampleQuery"),
                problem,
            ));
        }
        if kpi.min_samples.is_some() && kpi.sample_query.is_none() {
            errors.push(FieldError::new(
                format!("spec.kpis[{i}].sampleQuery"),
                "minSamples needs a sampleQuery that counts the samples",
            ));
        }
    }
    let strategy = &spec.strategy;
    match strategy.type_ {
        StrategyType::Canary => {
            if spec.kpis.is_empty() && spec.drift_gate.is_none() {
                errors.push(FieldError::new("spec.kpis", "a Canary needs at least one KPI gate or a driftGate, or it would promote without evidence"));
            }
            if steps_of(spec).first().is_some_and(|w| *w >= 100) {
                errors.push(FieldError::new(
                    "spec.strategy.canary.steps",
                    "the first step must send less than 100 % to the candidate: a step of 100 is the promotion itself, e.g. [5, 25, 50, 100]",
                ));
            }
            let candidates = spec
                .variants
                .iter()
                .filter(|v| v.role == VariantRole::Candidate)
                .count();
            if candidates != 1 {
                errors.push(FieldError::new(
                    "spec.variants",
                    format!("a Canary moves traffic from the Stable variant to exactly one Candidate; found {candidates} Candidates"),
                ));
            }
        }
        StrategyType::Bandit | StrategyType::Holdout => {
            if let Some(name) = reward_kpi(spec) {
                match spec.kpis.iter().position(|k| k.name == name) {
                    Some(i) if spec.kpis[i].sample_query.is_none() => errors.push(FieldError::new(
                        format!("spec.kpis[{i}].sampleQuery"),
                        format!("KPI {name:?} is counted per trial by the {:?} strategy: give it a sampleQuery that counts the trials (e.g. predictions)", strategy.type_),
                    )),
                    Some(_) => {}
                    None => errors.push(FieldError::new(
                        "spec.strategy.holdout.kpi",
                        format!("names KPI {name:?}, which is not in spec.kpis"),
                    )),
                }
            } else if strategy.type_ == StrategyType::Holdout {
                errors.push(FieldError::new(
                    "spec.kpis",
                    "a Holdout reports the lift of a KPI: add one with a sampleQuery",
                ));
            }
        }
        StrategyType::FixedSplit => {}
    }
    into_result(errors)
}

#[cfg(test)]
mod tests;
