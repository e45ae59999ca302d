//! The status of a Model from what the cluster shows (pure).

use kube::ResourceExt;
use leitwerk_crds::{
    FeatureSet, Model, metrics::Metric, model::ModelPhase, model::ModelVersion, model::VersionState,
};

use super::Observed;
use crate::{reconcile::Outcome, status::Desired, status::READY};

/// The status of a valid Model, given its FeatureSet: `None` when the reference does not
/// resolve, `Some(None)` when the Model brings its own ONNX file.
pub fn decide(model: &Model, feature_set: Option<Option<&FeatureSet>>) -> Outcome<ModelPhase> {
    let versions = model.status.clone().unwrap_or_default().versions;
    decide_with(model, feature_set, &Observed::default(), &versions)
}

/// The status given what the cluster shows and the versions after this reconcile.
/// One match over what the cluster shows, on purpose: each arm is one status a user can see
/// (phase, Ready reason, message), and they are easiest to keep consistent side by side.
pub fn decide_with(
    model: &Model,
    feature_set: Option<Option<&FeatureSet>>,
    observed: &Observed,
    versions: &[ModelVersion],
) -> Outcome<ModelPhase> {
    let ns = model.namespace().unwrap_or_default();
    let training = match (&observed.active, &observed.started) {
        (Some((job, Some(why))), _) => Some(Desired::failed(
            "Training",
            "Unschedulable",
            format!("training Job {job} cannot be scheduled: {why}"),
        )),
        (Some((job, None)), _) => Some(Desired::ok(
            "Training",
            "Running",
            format!("training Job {job} is running"),
        )),
        (None, Some(job)) => Some(Desired::ok(
            "Training",
            "Started",
            format!("training Job {job} was created"),
        )),
        _ => None,
    };
    let recheck = observed.active.is_some() || observed.started.is_some();
    let with_training = |mut o: Outcome<ModelPhase>| {
        if let Some(t) = training.clone() {
            o.conditions.push(t);
        }
        if recheck {
            o.recheck_after(std::time::Duration::from_secs(10))
        } else {
            o
        }
    };
    if let Some(serving) = versions.iter().find(|v| v.state == VersionState::Serving) {
        let auc = serving
            .metrics
            .get(Metric::Auc.as_str())
            .map(|a| format!(" (AUC {a})"))
            .unwrap_or_default();
        return with_training(match observed.serving_replicas {
            Some((available, _)) if available >= 1 => Outcome::new(
                ModelPhase::Serving,
                Desired::ok(
                    READY,
                    "Serving",
                    format!("version {}{auc} is serving", serving.version),
                ),
            ),
            Some((available, wanted)) => Outcome::new(
                ModelPhase::Deploying,
                Desired::not(
                    READY,
                    "AwaitingServing",
                    format!(
                        "version {}{auc} is deploying: {available}/{wanted} replicas available",
                        serving.version
                    ),
                ),
            )
            .recheck_after(std::time::Duration::from_secs(10)),
            None => Outcome::new(
                ModelPhase::Serving,
                Desired::ok(
                    READY,
                    "Serving",
                    format!("version {}{auc} is serving", serving.version),
                ),
            ),
        });
    }
    let outcome = match (feature_set, &model.spec.feature_set_ref) {
        (None, Some(r)) => Outcome::missing("FeatureSet", &r.name, "spec.featureSetRef.name", &ns),
        (Some(Some(fs)), _)
            if fs
                .status
                .as_ref()
                .and_then(|s| s.current_version.clone())
                .is_none() =>
        {
            Outcome::new(
                ModelPhase::WaitingForData,
                Desired::not(
                    READY,
                    "WaitingForFeatureSet",
                    format!(
                        "waiting for FeatureSet {:?} to publish its first snapshot",
                        fs.name_any()
                    ),
                ),
            )
        }
        (Some(None), None) => Outcome::new(
            ModelPhase::Deploying,
            Desired::not(
                READY,
                "AwaitingServing",
                "the ONNX model is being registered and deployed",
            ),
        ),
        _ => match (versions.last(), &training) {
            (_, Some(t)) if t.reason == "Unschedulable" => Outcome::new(
                ModelPhase::Pending,
                Desired::failed(READY, "AwaitingTraining", t.message.clone()),
            ),
            (_, Some(t)) => Outcome::new(
                ModelPhase::Training,
                Desired::not(READY, "AwaitingTraining", t.message.clone()),
            ),
            (Some(v), None) if v.state == VersionState::Rejected => Outcome::new(
                ModelPhase::Rejected,
                Desired::failed(
                    READY,
                    "BelowMinMetrics",
                    format!(
                        "version {} is not served: {}",
                        v.version,
                        v.message.clone().unwrap_or_default()
                    ),
                ),
            ),
            (Some(v), None) if v.state == VersionState::Failed => Outcome::new(
                ModelPhase::Failed,
                Desired::failed(
                    READY,
                    "TrainingFailed",
                    format!(
                        "training of version {} failed: {}",
                        v.version,
                        v.message.clone().unwrap_or_default()
                    ),
                ),
            ),
            _ => {
                let data = match feature_set {
                    Some(Some(fs)) => format!(
                        "snapshot {} of FeatureSet {:?} is available; ",
                        fs.status
                            .as_ref()
                            .and_then(|s| s.current_version.clone())
                            .unwrap_or_default(),
                        fs.name_any()
                    ),
                    _ => String::new(),
                };
                Outcome::new(
                    ModelPhase::Pending,
                    Desired::not(
                        READY,
                        "AwaitingTraining",
                        format!("{data}waiting for a version to train"),
                    ),
                )
            }
        },
    };
    with_training(outcome)
}
