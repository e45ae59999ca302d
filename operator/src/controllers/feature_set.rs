//! The FeatureSet controller.

use std::sync::Arc;

use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, watcher},
};
use leitwerk_crds::{FeatureSet, FeatureSetSpec, feature_set::Aggregation};

use super::{Scope, drain, first_missing_secret};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    status::{Desired, READY},
    validation::{FieldError, check_cron, into_result, parse_duration, summarize},
};

pub use crate::reconcile::Error;

/// Runs the FeatureSet controller.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api = scope.api::<DeserializeGuard<FeatureSet>>(ctx.client.clone());
    let stream = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(FeatureSet::KIND, stream).await;
}

/// Reconciles one FeatureSet: validate → resolve Secrets → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<FeatureSet>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(FeatureSet::KIND);
    let fs = match &obj.0 {
        Ok(fs) => fs,
        Err(invalid) => return Ok(reconcile::report_malformed::<FeatureSet>(&ctx, invalid).await),
    };
    let ns = fs.namespace().unwrap_or_default();
    let outcome = match validate(&fs.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            let refs = secret_refs(&fs.spec);
            match first_missing_secret(&ctx, &ns, &refs).await.map_err(|source| Error::Read { what: "credential Secrets".into(), source })? {
                Some((field, name)) => Outcome::new(
                    "Pending",
                    Desired::not(READY, "SecretNotFound", format!("Secret {name:?} named by {field} does not exist in namespace {ns:?}: create it or fix the reference")),
                )
                .recheck_after(RECHECK_UNWATCHED),
                None => decide(fs),
            }
        }
    };
    let action = reconcile::finish(&ctx, fs, outcome).await?;
    ctx.reset_backoff(&reconcile::backoff_key(fs));
    Ok(action)
}

/// The status of a valid FeatureSet whose references resolve.
pub fn decide(fs: &FeatureSet) -> Outcome {
    match fs.status.as_ref().and_then(|s| s.current_version.clone()) {
        Some(version) => Outcome::new(
            "Ready",
            Desired::ok(
                READY,
                "SnapshotPublished",
                format!("snapshot {version} is published"),
            ),
        ),
        None => Outcome::new(
            "Pending",
            Desired::not(
                READY,
                "AwaitingMaterialization",
                "the spec is valid; no snapshot has been published yet (this operator version validates FeatureSets but does not run materialization Jobs yet)",
            ),
        ),
    }
}

/// `(field, secret name)` of every Secret the spec references.
pub fn secret_refs(spec: &FeatureSetSpec) -> Vec<(String, String)> {
    spec.sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let secret = s.object_store.as_ref()?.credentials_secret_ref.as_ref()?;
            Some((
                format!("spec.sources[{i}].objectStore.credentialsSecretRef"),
                secret.name.clone(),
            ))
        })
        .collect()
}

/// Checks what the schema cannot: durations, schedules, column names and label leakage.
pub fn validate(spec: &FeatureSetSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let max_window = std::time::Duration::from_secs(10 * 365 * 86_400);
    for (i, f) in spec.features.iter().enumerate() {
        for (j, w) in f.windows.iter().enumerate() {
            match parse_duration(w) {
                Some(d) if d.is_zero() => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    "a window must be longer than 0",
                )),
                Some(d) if d > max_window => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("window {w} is longer than ten years"),
                )),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("{w:?} is not a duration such as 7d"),
                )),
            }
            let column = format!("{}_{}", f.name, w);
            if column.len() > 63 {
                errors.push(FieldError::new(
                    format!("spec.features[{i}].name"),
                    format!(
                        "snapshot column {column:?} is longer than 63 characters: shorten the name"
                    ),
                ));
            }
        }
        if f.aggregation == Aggregation::Static && f.filter.is_some() {
            errors.push(FieldError::new(
                format!("spec.features[{i}].filter"),
                "a Static feature takes no filter",
            ));
        }
        if f.name == spec.label.name {
            errors.push(FieldError::new(
                format!("spec.features[{i}].name"),
                format!(
                    "{:?} is also the label's name: a feature named like the label leaks it",
                    f.name
                ),
            ));
        }
        if f.column.as_deref() == Some(spec.entity_key.as_str())
            && f.aggregation != Aggregation::DistinctCount
            && f.aggregation != Aggregation::Count
        {
            errors.push(FieldError::new(
                format!("spec.features[{i}].column"),
                "aggregating the entity key itself is meaningless: pick another column",
            ));
        }
    }
    match parse_duration(&spec.label.horizon) {
        Some(d) if !d.is_zero() => {}
        _ => errors.push(FieldError::new(
            "spec.label.horizon",
            format!(
                "{:?} is not a positive duration such as 30d",
                spec.label.horizon
            ),
        )),
    }
    if let Some(every) = &spec.cutoffs.every
        && !matches!(parse_duration(every), Some(d) if !d.is_zero())
    {
        errors.push(FieldError::new(
            "spec.cutoffs.every",
            format!("{every:?} is not a positive duration such as 7d"),
        ));
    }
    if let Some(dates) = &spec.cutoffs.dates {
        for (i, d) in dates.iter().enumerate() {
            if k8s_openapi::jiff::civil::Date::strptime("%Y-%m-%d", d).is_err() {
                errors.push(FieldError::new(
                    format!("spec.cutoffs.dates[{i}]"),
                    format!("{d:?} is not a calendar date"),
                ));
            }
        }
    }
    if let Some(schedule) = &spec.cutoffs.schedule
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.cutoffs.schedule", problem));
    }
    into_result(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> FeatureSet {
        yaml_serde::from_str(include_str!(
            "../../../examples/lead-scoring/featureset.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn examples_are_valid() {
        assert_eq!(validate(&example().spec), Ok(()));
        let churn: FeatureSet =
            yaml_serde::from_str(include_str!("../../../examples/churn/featureset.yaml")).unwrap();
        assert_eq!(validate(&churn.spec), Ok(()));
    }

    #[test]
    fn a_feature_named_like_the_label_is_reported_as_leakage() {
        let mut spec = example().spec;
        spec.features[0].name = spec.label.name.clone();
        let errors = validate(&spec).unwrap_err();
        assert_eq!(errors[0].field, "spec.features[0].name");
        assert!(errors[0].message.contains("leaks"));
    }

    #[test]
    fn impossible_dates_zero_windows_and_bad_schedules_are_named() {
        let mut spec = example().spec;
        spec.features[3].windows[0] = "0d".into();
        spec.cutoffs.schedule = Some("0 3 * * 8".into());
        spec.cutoffs.every = None;
        spec.cutoffs.dates = Some(vec!["2026-02-30".into()]);
        let fields: Vec<String> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.features[3].windows[0]",
                "spec.cutoffs.dates[0]",
                "spec.cutoffs.schedule"
            ]
        );
    }

    #[test]
    fn unpublished_feature_sets_are_honest_about_waiting() {
        let outcome = decide(&example());
        assert_eq!(
            (
                outcome.phase,
                outcome.ready.status,
                outcome.ready.reason.as_str()
            ),
            ("Pending", false, "AwaitingMaterialization")
        );
    }

    #[test]
    fn credential_secrets_are_found_with_their_fields() {
        let mut spec = example().spec;
        assert!(secret_refs(&spec).is_empty());
        spec.sources[1].object_store = Some(leitwerk_crds::feature_set::ObjectStoreSource {
            url: "s3://b/e/".into(),
            credentials_secret_ref: Some(leitwerk_crds::common::SecretReference {
                name: "s3-creds".into(),
            }),
        });
        assert_eq!(
            secret_refs(&spec),
            vec![(
                "spec.sources[1].objectStore.credentialsSecretRef".to_string(),
                "s3-creds".to_string()
            )]
        );
    }
}
