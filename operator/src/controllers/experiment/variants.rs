//! Which versions the variants are, the weights each strategy starts with and moves to, and
//! the checks of the spec the schema cannot make.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use leitwerk_crds::{
    Experiment, ExperimentSpec, Model, experiment::AnalysisState, experiment::Decision,
    experiment::DecisionAction, experiment::ExperimentPhase, experiment::ExperimentStatus,
    experiment::ShadowStatus, experiment::StrategyType, experiment::VariantRole,
    experiment::VariantStatus, model::ModelVersion, model::VersionState,
};

use super::{DECISION_HISTORY, MIN_INTERVAL_SECS, bandit, interval_of, reward_kpi};
use crate::{
    reconcile, reconcile::Outcome, status::Desired, status::READY, validation::FieldError,
    validation::check_template, validation::into_result, validation::parse_duration,
    workloads::child_name,
};
use std::collections::BTreeMap;

/// Resolves each variant's Model version and artifact; an outcome says what is missing.
/// Every way a reference can be missing or unusable gets its own outcome naming the field.
pub fn resolve(
    exp: &Experiment,
    models: &[Option<Model>],
) -> Result<Vec<VariantStatus>, Box<Outcome<ExperimentPhase>>> {
    let ns = exp.namespace().unwrap_or_default();
    let exp_name = exp.name_any();
    let mut out = Vec::with_capacity(exp.spec.variants.len());
    for (i, (variant, model)) in exp.spec.variants.iter().zip(models).enumerate() {
        let Some(model) = model else {
            return Err(Box::new(Outcome::missing(
                "Model",
                &variant.model_ref.name,
                &format!(
                    "spec.variants[{i}].modelRef.name (variant {:?})",
                    variant.name
                ),
                &ns,
            )));
        };
        let status = model.status.clone().unwrap_or_default();
        let waiting = |message: String| {
            Box::new(Outcome::new(
                ExperimentPhase::WaitingForVersions,
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
                .find(|v| v.state == VersionState::Candidate),
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

pub(super) fn role_of(spec: &ExperimentSpec, variant: &str) -> VariantRole {
    spec.variants
        .iter()
        .find(|v| v.name == variant)
        .map_or(VariantRole::Candidate, |v| v.role)
}

pub(super) fn stable_name(spec: &ExperimentSpec) -> String {
    spec.variants
        .iter()
        .find(|v| v.role == VariantRole::Stable)
        .map(|v| v.name.clone())
        .unwrap_or_default()
}

pub(super) fn candidate_name(spec: &ExperimentSpec) -> Option<String> {
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
        // The shadow stage: stable answers everything; the candidate only sees copies.
        StrategyType::Shadow => return canary_weights(spec, 0),
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

pub(super) fn canary_weights(
    spec: &ExperimentSpec,
    candidate_percent: i32,
) -> BTreeMap<String, i32> {
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

pub(super) fn only(spec: &ExperimentSpec, winner: &str) -> BTreeMap<String, i32> {
    spec.variants
        .iter()
        .map(|v| (v.name.clone(), if v.name == winner { 100 } else { 0 }))
        .collect()
}

pub(super) fn summary(weights: &BTreeMap<String, i32>, order: &[VariantStatus]) -> String {
    order
        .iter()
        .map(|v| format!("{}={}", v.name, weights.get(&v.name).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn set_weights(
    status: &mut ExperimentStatus,
    weights: BTreeMap<String, i32>,
    now: DateTime<Utc>,
) {
    if status.weights != weights
        && let Some(a) = status.analysis.as_mut()
    {
        a.weights_since = Some(now.to_rfc3339());
    }
    status.weights_summary = Some(summary(&weights, &status.variants));
    status.weights = weights;
}

pub(super) fn record(status: &mut ExperimentStatus, decision: Decision) {
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
    if matches!(
        exp.spec.strategy.type_,
        StrategyType::Canary | StrategyType::Shadow
    ) {
        status.step = Some(super::step_label(&exp.spec, 0));
    }
    status.phase = Some(analysing_phase(&exp.spec, status));
    status.shadow = super::shadow_of(&exp.spec).map(|s| ShadowStatus {
        mirror: super::mirror_of(&exp.spec, s, status.routing.as_deref())
            .as_str()
            .into(),
        stage: super::MIRRORING.into(),
        ..Default::default()
    });
    let versions: Vec<String> = status
        .variants
        .iter()
        .map(|v| format!("{}={}/{}", v.name, v.model, v.version))
        .collect();
    let decision = Decision {
        time: now.to_rfc3339(),
        action: DecisionAction::Start,
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

/// The phase of an Experiment whose analysis runs (not paused, not ended).
pub(super) fn analysing_phase(spec: &ExperimentSpec, status: &ExperimentStatus) -> ExperimentPhase {
    match spec.strategy.type_ {
        StrategyType::Shadow if status.analysis.as_ref().is_none_or(|a| a.step_index == 0) => {
            ExperimentPhase::Shadowing
        }
        StrategyType::Canary | StrategyType::Bandit | StrategyType::Shadow => {
            ExperimentPhase::Progressing
        }
        StrategyType::FixedSplit | StrategyType::Holdout => ExperimentPhase::Running,
    }
}

/// The candidate's weight per step. A Shadow's step 0 is its shadow stage, at weight 0.
pub(super) fn steps_of(spec: &ExperimentSpec) -> Vec<i32> {
    if let Some(shadow) = super::shadow_of(spec) {
        return std::iter::once(0)
            .chain(shadow.canary_steps.iter().copied())
            .collect();
    }
    spec.strategy
        .canary
        .as_ref()
        .map(|c| c.steps.clone())
        .unwrap_or_default()
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
        StrategyType::Shadow => {
            let canary = steps_of(spec).iter().any(|w| (1..100).contains(w));
            if canary && spec.kpis.is_empty() && spec.drift_gate.is_none() {
                errors.push(FieldError::new(
                    "spec.kpis",
                    "a Shadow whose canarySteps send the candidate less than 100 % needs a KPI gate or a driftGate to judge those steps; or set canarySteps: [100] to promote once the shadow passes",
                ));
            }
        }
        StrategyType::FixedSplit => {}
    }
    into_result(errors)
}
