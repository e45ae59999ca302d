//! The Model controller.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, watcher},
};
use leitwerk_crds::{FIELD_MANAGER, FeatureSet, Model, ModelSpec, model::Task};

use super::{Scope, drain, get_opt, referrers};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome},
    status::{Desired, READY},
    validation::{FieldError, check_cron, into_result, summarize},
};

/// Label on every object the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "leitwerk");
/// Label naming the Model an object belongs to.
pub const MODEL_LABEL: &str = "leitwerk.dev/model";

pub use crate::reconcile::Error;

/// Runs the Model controller. It watches FeatureSets so that a Model waiting for one recovers
/// as soon as it appears or publishes, and owns its ServiceAccount.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<Model>>(client.clone()),
        watcher::Config::default(),
    );
    let models = controller.store();
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let stream = controller
        .owns(
            scope.api::<ServiceAccount>(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .watches(
            scope.api::<FeatureSet>(client),
            watcher::Config::default(),
            referrers(models, |m: &Model, name| {
                m.spec
                    .feature_set_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(Model::KIND, stream).await;
}

/// Reconciles one Model: resolve the FeatureSet → validate → build and apply the
/// ServiceAccount → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Model>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(Model::KIND);
    let model = match &obj.0 {
        Ok(m) => m,
        Err(invalid) => return Ok(reconcile::report_malformed::<Model>(&ctx, invalid).await),
    };
    let ns = model.namespace().unwrap_or_default();
    let feature_set = match &model.spec.feature_set_ref {
        Some(r) => get_opt::<FeatureSet>(&ctx, &ns, &r.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("FeatureSet {}", r.name),
                source,
            })?
            .map(Some),
        None => Some(None),
    };
    let outcome = match validate(&model.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            if let Some(sa) = build_service_account(model) {
                apply_service_account(&ctx, &ns, sa).await?;
            }
            decide(model, feature_set.as_ref().map(|f| f.as_ref()))
        }
    };
    let action = reconcile::finish(&ctx, model, outcome).await?;
    ctx.reset_backoff(&reconcile::backoff_key(model));
    Ok(action)
}

/// The status of a valid Model, given its FeatureSet: `None` when the reference does not
/// resolve, `Some(None)` when the Model brings its own ONNX file.
pub fn decide(model: &Model, feature_set: Option<Option<&FeatureSet>>) -> Outcome {
    let ns = model.namespace().unwrap_or_default();
    if let Some(serving) = model
        .status
        .as_ref()
        .and_then(|s| s.serving_version.clone())
    {
        return Outcome::new(
            "Serving",
            Desired::ok(READY, "Serving", format!("version {serving} is serving")),
        );
    }
    match (feature_set, &model.spec.feature_set_ref) {
        (None, Some(r)) => Outcome::new(
            "Pending",
            Desired::not(
                READY,
                "FeatureSetNotFound",
                format!(
                    "FeatureSet {:?} named by spec.featureSetRef.name does not exist in namespace {ns:?}: create it or fix the reference",
                    r.name
                ),
            ),
        ),
        (Some(Some(fs)), _) => match fs.status.as_ref().and_then(|s| s.current_version.clone()) {
            None => Outcome::new(
                "WaitingForData",
                Desired::not(
                    READY,
                    "WaitingForFeatureSet",
                    format!(
                        "waiting for FeatureSet {:?} to publish its first snapshot",
                        fs.name_any()
                    ),
                ),
            ),
            Some(version) => Outcome::new(
                "Pending",
                Desired::not(
                    READY,
                    "AwaitingTraining",
                    format!(
                        "snapshot {version} of FeatureSet {:?} is available; this operator version does not run training Jobs yet",
                        fs.name_any()
                    ),
                ),
            ),
        },
        _ => Outcome::new(
            "Pending",
            Desired::not(
                READY,
                "AwaitingServing",
                "the ONNX model is declared; this operator version does not deploy inference servers yet",
            ),
        ),
    }
}

/// Checks what the schema cannot.
pub fn validate(spec: &ModelSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(schedule) = spec
        .training
        .as_ref()
        .and_then(|t| t.retrain.as_ref())
        .and_then(|r| r.schedule.as_ref())
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.training.retrain.schedule", problem));
    }
    if let Some(algorithm) = &spec.algorithm {
        let classifier_only = algorithm.logistic_regression.is_some();
        let regressor_only = algorithm.linear_regression.is_some();
        if spec.task == Task::Regression && classifier_only {
            errors.push(FieldError::new("spec.algorithm.logisticRegression", "logistic regression is a classifier: use linearRegression, decisionTree or randomForest for a Regression task"));
        }
        if spec.task == Task::BinaryClassification && regressor_only {
            errors.push(FieldError::new("spec.algorithm.linearRegression", "linear regression predicts numbers: use logisticRegression, decisionTree or randomForest for a BinaryClassification task"));
        }
    }
    if let Some(metrics) = &spec.min_metrics {
        for (name, value) in metrics {
            let bounded = matches!(
                name.as_str(),
                "auc" | "prAuc" | "precision" | "recall" | "f1" | "brier"
            );
            if bounded && !(0.0..=1.0).contains(value) {
                errors.push(FieldError::new(
                    format!("spec.minMetrics.{name}"),
                    format!("{value} is outside 0–1"),
                ));
            }
        }
    }
    into_result(errors)
}

/// The ServiceAccount the Model's trainer Jobs and serving pods run as, unless the spec names
/// one. It has no API token mounted: the workloads never talk to the API server.
pub fn build_service_account(model: &Model) -> Option<ServiceAccount> {
    let named = model
        .spec
        .training
        .as_ref()
        .and_then(|t| t.scheduling.as_ref())
        .and_then(|s| s.service_account_name.as_ref());
    if named.is_some() {
        return None;
    }
    let owner = model.controller_owner_ref(&())?;
    Some(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(service_account_name(model)),
            namespace: model.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (MODEL_LABEL.to_string(), model.name_any()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// Name of a Model's ServiceAccount.
pub fn service_account_name(model: &Model) -> String {
    format!("{}-model", model.name_any())
}

/// Whether `existing` already carries everything `desired` sets.
pub fn service_account_matches(
    existing: Option<&ServiceAccount>,
    desired: &ServiceAccount,
) -> bool {
    let Some(existing) = existing else {
        return false;
    };
    let labels = existing.labels();
    let labels_match = desired
        .labels()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let owners_match = desired.owner_references().iter().all(|o| {
        existing
            .owner_references()
            .iter()
            .any(|e| e.uid == o.uid && e.controller == o.controller)
    });
    labels_match
        && owners_match
        && existing.automount_service_account_token == desired.automount_service_account_token
}

async fn apply_service_account(
    ctx: &Context,
    ns: &str,
    desired: ServiceAccount,
) -> Result<(), Error> {
    let name = desired.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    if service_account_matches(existing.as_ref(), &desired) {
        return Ok(());
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|source| Error::Apply {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    ctx.metrics.wrote(Model::KIND, "child");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Model {
        let mut model: Model =
            yaml_serde::from_str(include_str!("../../../examples/lead-scoring/model.yaml"))
                .unwrap();
        model.metadata.namespace = Some("sales".into());
        model.metadata.uid = Some("uid-1".into());
        model
    }

    fn feature_set(version: Option<&str>) -> FeatureSet {
        let mut fs: FeatureSet = yaml_serde::from_str(include_str!(
            "../../../examples/lead-scoring/featureset.yaml"
        ))
        .unwrap();
        fs.status = Some(leitwerk_crds::FeatureSetStatus {
            current_version: version.map(String::from),
            ..Default::default()
        });
        fs
    }

    #[test]
    fn missing_feature_set_names_it_the_field_and_the_namespace() {
        let outcome = decide(&example(), None);
        assert_eq!(outcome.ready.reason, "FeatureSetNotFound");
        assert!(
            outcome.ready.message.contains("\"lead-features\"")
                && outcome.ready.message.contains("spec.featureSetRef.name")
                && outcome.ready.message.contains("\"sales\"")
        );
        assert_eq!(
            outcome.recheck, None,
            "recovery comes from the FeatureSet watch, not a timer"
        );
    }

    #[test]
    fn model_waits_for_data_then_for_training_and_never_claims_ready() {
        let fs = feature_set(None);
        let waiting = decide(&example(), Some(Some(&fs)));
        assert_eq!(
            (
                waiting.phase,
                waiting.ready.reason.as_str(),
                waiting.ready.status
            ),
            ("WaitingForData", "WaitingForFeatureSet", false)
        );
        let fs = feature_set(Some("sha256:ab"));
        let pending = decide(&example(), Some(Some(&fs)));
        assert_eq!(
            (pending.ready.reason.as_str(), pending.ready.status),
            ("AwaitingTraining", false)
        );
        assert!(pending.ready.message.contains("sha256:ab"));
    }

    #[test]
    fn bring_your_own_onnx_waits_for_serving() {
        let model: Model =
            yaml_serde::from_str(include_str!("../../../examples/creative-bandit/model.yaml"))
                .unwrap();
        assert_eq!(decide(&model, Some(None)).ready.reason, "AwaitingServing");
    }

    #[test]
    fn the_examples_are_valid_and_semantic_mistakes_name_their_fields() {
        assert_eq!(validate(&example().spec), Ok(()));
        let mut spec = example().spec;
        spec.task = Task::Regression;
        spec.training.get_or_insert_default().retrain = Some(leitwerk_crds::model::RetrainPolicy {
            on_new_data: false,
            schedule: Some("0 4 * *".into()),
        });
        let errors = validate(&spec).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.training.retrain.schedule",
                "spec.algorithm.logisticRegression"
            ]
        );
    }

    #[test]
    fn service_account_is_owned_token_less_and_skipped_when_unchanged() {
        let model = example();
        let sa = build_service_account(&model).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("lead-scoring-model"));
        assert_eq!(sa.automount_service_account_token, Some(false));
        let owner = &sa.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Model", Some(true))
        );
        assert!(service_account_matches(Some(&sa), &sa));
        assert!(!service_account_matches(None, &sa));
        let mut drifted = sa.clone();
        drifted.automount_service_account_token = Some(true);
        assert!(!service_account_matches(Some(&drifted), &sa));
        let mut named = example();
        named.spec.training.get_or_insert_default().scheduling =
            Some(leitwerk_crds::common::Scheduling {
                service_account_name: Some("mine".into()),
                ..Default::default()
            });
        assert!(
            build_service_account(&named).is_none(),
            "a user-named account is used as is"
        );
    }
}
