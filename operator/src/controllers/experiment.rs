//! The Experiment controller.

use std::sync::Arc;

use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, watcher},
};
use leitwerk_crds::{Experiment, ExperimentSpec, Model, experiment::StrategyType};

use super::{Scope, drain, get_opt, referrers};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome},
    status::{Desired, READY},
    validation::{FieldError, check_template, into_result, parse_duration, summarize},
};

/// Shortest analysis interval: Prometheus needs a few scrapes per interval.
pub const MIN_INTERVAL_SECS: u64 = 5;

pub use crate::reconcile::Error;

/// Runs the Experiment controller; it watches Models so an Experiment waiting for one moves on
/// as soon as it appears or gains a version.
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

/// Reconciles one Experiment: validate → resolve the variants' Models → status.
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
    let outcome = match validate(&exp.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
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
            decide(exp, &models)
        }
    };
    let action = reconcile::finish(&ctx, exp, outcome).await?;
    ctx.reset_backoff(&reconcile::backoff_key(exp));
    Ok(action)
}

/// The status of a valid Experiment, given the Model of each variant (in order).
pub fn decide(exp: &Experiment, models: &[Option<Model>]) -> Outcome {
    let ns = exp.namespace().unwrap_or_default();
    for (i, (variant, model)) in exp.spec.variants.iter().zip(models).enumerate() {
        let Some(model) = model else {
            return Outcome::new(
                "Pending",
                Desired::not(
                    READY,
                    "ModelNotFound",
                    format!(
                        "Model {:?} named by spec.variants[{i}].modelRef.name (variant {:?}) does not exist in namespace {ns:?}: create it or fix the reference",
                        variant.model_ref.name, variant.name
                    ),
                ),
            );
        };
        let versions: Vec<&str> = model
            .status
            .iter()
            .flat_map(|s| s.versions.iter().map(|v| v.version.as_str()))
            .collect();
        match &variant.version {
            Some(pinned) if !versions.contains(&pinned.as_str()) => {
                return Outcome::new(
                    "WaitingForVersions",
                    Desired::not(
                        READY,
                        "WaitingForVersions",
                        format!(
                            "variant {:?} pins version {pinned:?} of Model {:?}, which has not been recorded yet",
                            variant.name,
                            model.name_any()
                        ),
                    ),
                );
            }
            None if versions.is_empty() => {
                return Outcome::new(
                    "WaitingForVersions",
                    Desired::not(
                        READY,
                        "WaitingForVersions",
                        format!(
                            "variant {:?} waits for Model {:?} to record its first version",
                            variant.name,
                            model.name_any()
                        ),
                    ),
                );
            }
            _ => {}
        }
    }
    Outcome::new(
        "Pending",
        Desired::not(
            READY,
            "AwaitingAnalysis",
            "every variant has a version; this operator version does not move traffic or analyse KPIs yet",
        ),
    )
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
    if spec.strategy.type_ == StrategyType::Canary
        && spec.kpis.is_empty()
        && spec.drift_gate.is_none()
    {
        errors.push(FieldError::new("spec.kpis", "a Canary needs at least one KPI gate or a driftGate, or it would promote without evidence"));
    }
    into_result(errors)
}

#[cfg(test)]
mod tests {
    use leitwerk_crds::{ModelStatus, model::ModelVersion};

    use super::*;

    fn canary() -> Experiment {
        let mut e: Experiment = yaml_serde::from_str(include_str!(
            "../../../examples/canary-rollout/experiment.yaml"
        ))
        .unwrap();
        e.metadata.namespace = Some("sales".into());
        e
    }

    fn model_with(versions: &[&str]) -> Model {
        let mut m: Model =
            yaml_serde::from_str(include_str!("../../../examples/lead-scoring/model.yaml"))
                .unwrap();
        m.status = Some(ModelStatus {
            versions: versions
                .iter()
                .map(|v| ModelVersion {
                    version: v.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        m
    }

    #[test]
    fn a_missing_model_names_the_variant_and_field() {
        let outcome = decide(&canary(), &[None, None]);
        assert_eq!(outcome.ready.reason, "ModelNotFound");
        assert!(
            outcome
                .ready
                .message
                .contains("spec.variants[0].modelRef.name")
                && outcome.ready.message.contains("\"stable\"")
        );
    }

    #[test]
    fn variants_wait_for_versions_then_for_analysis() {
        let none = model_with(&[]);
        assert_eq!(
            decide(&canary(), &[Some(none.clone()), Some(none)])
                .ready
                .reason,
            "WaitingForVersions"
        );
        let some = model_with(&["v1"]);
        assert_eq!(
            decide(&canary(), &[Some(some.clone()), Some(some)])
                .ready
                .reason,
            "AwaitingAnalysis"
        );
        let mut pinned = canary();
        pinned.spec.variants[1].version = Some("v9".into());
        let some = model_with(&["v1"]);
        let outcome = decide(&pinned, &[Some(some.clone()), Some(some)]);
        assert!(
            outcome.ready.message.contains("\"v9\""),
            "{}",
            outcome.ready.message
        );
    }

    #[test]
    fn semantic_mistakes_are_all_reported_with_their_fields() {
        assert_eq!(validate(&canary().spec), Ok(()));
        let mut spec = canary().spec;
        spec.interval = "2s".into();
        spec.kpis[0].query = "sum(x{v=\"{{version}}\"})".into();
        spec.kpis[1].min_samples = Some(10);
        let fields: Vec<String> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.interval",
                "spec.kpis[0].query",
                "spec.kpis[1].sampleQuery"
            ]
        );
        let mut blind = canary().spec;
        blind.kpis.clear();
        blind.drift_gate = None;
        assert_eq!(validate(&blind).unwrap_err()[0].field, "spec.kpis");
    }
}
