use super::*;

mod plan;

fn example() -> FeatureSet {
    yaml_serde::from_str(include_str!(
        "../../../../examples/lead-scoring/featureset.yaml"
    ))
    .unwrap()
}

#[test]
fn examples_are_valid() {
    assert_eq!(validate(&example().spec), Ok(()));
    let churn: FeatureSet =
        yaml_serde::from_str(include_str!("../../../../examples/churn/featureset.yaml")).unwrap();
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
            outcome.phase.as_str(),
            outcome.ready.status,
            outcome.ready.reason.as_str()
        ),
        ("Pending", false, "AwaitingMaterialization")
    );
}

#[test]
fn an_unschedulable_materialization_job_is_a_warning_naming_the_scheduler_message() {
    let observed = Observed {
        active: Some((
            "lead-features-mat-g1".into(),
            Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu".into()),
        )),
        ..Default::default()
    };
    let outcome = decide_with(&example(), &observed);
    assert_eq!(outcome.ready.reason, "Unschedulable");
    assert!(reconcile::needs_attention(&outcome.ready));
    assert!(
        outcome
            .ready
            .message
            .contains("lead-features-mat-g1 cannot be scheduled: 0/1 nodes"),
        "{}",
        outcome.ready.message
    );
    let running = Observed {
        active: Some(("lead-features-mat-g1".into(), None)),
        ..Default::default()
    };
    let outcome = decide_with(&example(), &running);
    assert_eq!(outcome.ready.reason, "AwaitingMaterialization");
    assert!(!reconcile::needs_attention(&outcome.ready));
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
