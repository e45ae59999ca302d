//! The operator under faults that a platform engineer meets: two writers of one Model's
//! status, children edited by hand, and a retraining schedule across an operator restart.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use leitwerk_crds::{
    FeatureSet, Model, ModelStatus,
    model::{ModelPhase, ModelVersion, VersionState, Versions},
};
use leitwerk_operator::{
    config::OperatorConfig,
    context::Context,
    controllers::experiment::{ModelVerdict, write_verdict},
    metrics::Metrics,
    reconcile::{self, Outcome},
    status::{Desired, READY},
};
use leitwerk_testkit::{Cluster, OperatorProcess, TestNamespace, kubectl_apply, wait_for};

use crate::*;

fn version(name: &str, state: VersionState) -> ModelVersion {
    ModelVersion {
        version: name.into(),
        state,
        artifact_url: Some(format!("file:///m/{name}.onnx")),
        ..Default::default()
    }
}

/// A bring-your-own Model in a namespace without an operator, with v1 serving and v2 a
/// Candidate: the test plays every writer itself.
async fn model_with_two_versions(cluster: &Cluster, ns: &str) -> anyhow::Result<Api<Model>> {
    let client = cluster.client().await?;
    kubectl_apply(
        cluster,
        ns,
        "-",
        Some(
            "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: {task: BinaryClassification, onnx: {url: \"file:///m/model.onnx\"}}\n",
        ),
    )?;
    let models: Api<Model> = Api::namespaced(client, ns);
    let status = ModelStatus {
        serving_version: Some("v1".into()),
        versions: Versions(vec![
            version("v1", VersionState::Serving),
            version("v2", VersionState::Candidate),
        ]),
        ..Default::default()
    };
    models
        .patch_status(
            "m",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await?;
    Ok(models)
}

/// Records `name` as a new Candidate the way the Model controller writes its status: from the
/// copy it read, guarded by that copy's resourceVersion, retried on a conflict.
async fn record_version(models: &Api<Model>, name: &str) -> anyhow::Result<()> {
    for _ in 0..50 {
        let m = models.get("m").await?;
        let mut versions = m.status.clone().unwrap_or_default().versions;
        versions.record([version(name, VersionState::Candidate)]);
        let body = serde_json::json!({
            "metadata": {"resourceVersion": m.resource_version()},
            "status": {"versions": versions},
        });
        match models
            .patch_status("m", &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not record {name}: conflicts every time")
}

#[tokio::test]
async fn a_version_recorded_while_an_experiment_promotes_survives() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "concurrent").await?;
    let models = model_with_two_versions(&cluster, &ns.name).await?;
    let client = cluster.client().await?;

    // The Experiment read the Model (v1, v2), then the Model controller recorded v3, then the
    // Experiment promotes v2: v3 stays.
    let stale = models.get("m").await?;
    record_version(&models, "v3").await?;
    let promote = ModelVerdict::Promote {
        version: "v2".into(),
        why: "promoted by Experiment e: conversion-rate within bounds".into(),
    };
    assert!(write_verdict(&client, &ns.name, "m", &promote).await?);
    let st = models.get("m").await?.status.unwrap_or_default();
    let states: Vec<(String, VersionState)> = st
        .versions
        .iter()
        .map(|v| (v.version.clone(), v.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("v1".into(), VersionState::Retired),
            ("v2".into(), VersionState::Serving),
            ("v3".into(), VersionState::Candidate),
        ]
    );
    assert_eq!(st.serving_version.as_deref(), Some("v2"));

    // The Model controller's own status write from the stale copy (v1 serving, no v3) is
    // refused by the API server instead of overwriting both: the reconcile looks again.
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Context::new(
        client.clone(),
        Metrics::register(&mut registry),
        OperatorConfig::default(),
        None,
    );
    let action = reconcile::finish_with(
        &ctx,
        &stale,
        Outcome::new(
            ModelPhase::Serving,
            Desired::ok(READY, "Serving", "version v1 is serving"),
        ),
        |s| s.phase = Some(ModelPhase::Serving),
    )
    .await?;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(reconcile::CONFLICT_RETRY)
    );
    let after = models.get("m").await?.status.unwrap_or_default();
    assert_eq!(
        after.versions, st.versions,
        "the stale write changed nothing"
    );

    // Many writers at once: 20 versions recorded while verdicts go back and forth.
    let recorder = {
        let models = models.clone();
        tokio::spawn(async move {
            for n in 4..24 {
                record_version(&models, &format!("v{n}")).await?;
            }
            anyhow::Ok(())
        })
    };
    for round in 0..20 {
        let (version, why) = if round % 2 == 0 {
            ("v1", "back")
        } else {
            ("v2", "forth")
        };
        let verdict = ModelVerdict::Promote {
            version: version.into(),
            why: why.into(),
        };
        write_verdict(&client, &ns.name, "m", &verdict).await?;
    }
    recorder.await??;
    let st = models.get("m").await?.status.unwrap_or_default();
    for n in 3..24 {
        assert!(
            st.versions.named(&format!("v{n}")).is_some(),
            "v{n} was lost: {:?}",
            st.versions
        );
    }
    assert_eq!(
        st.versions
            .iter()
            .filter(|v| v.state == VersionState::Serving)
            .count(),
        1
    );
    Ok(())
}

/// The operator owns its children: a `kubectl edit` of a serving Deployment's replicas or
/// image is put back at the next reconcile (the Deployment is watched, so at once).
#[tokio::test]
async fn a_hand_edited_serving_deployment_is_restored() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "restore").await?;
    let operator = operator_with_example_model(&cluster, &ns.name).await?;
    let client = cluster.client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1);
    let original = wait_for("the serving Deployment", WAIT, || async {
        Ok((
            deployments.get_opt("creative-ranker-serving").await?,
            "absent".into(),
        ))
    })
    .await
    .with_context(|| operator.log_text())?;
    let writes_before = operator
        .metric_sum("leitwerk_writes_total", &["target=\"child\""])
        .await?;
    for patch in [
        r#"{"spec":{"replicas":7}}"#,
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"inference-server","image":"evil/miner:latest"}]}}}}"#,
    ] {
        let out = cluster.kubectl(
            &[
                "patch",
                "deployment",
                "creative-ranker-serving",
                "-n",
                &ns.name,
                "--type=strategic",
                "-p",
                patch,
            ],
            None,
        )?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for("the Deployment restored", WAIT, || async {
            let d = deployments.get("creative-ranker-serving").await?;
            let back = replicas(&d) == replicas(&original) && image(&d) == image(&original);
            Ok((
                back.then_some(()),
                format!("replicas {}, image {}", replicas(&d), image(&d)),
            ))
        })
        .await
        .with_context(|| operator.log_text())?;
    }
    // Each restore was one write (counted just after the API server answered it).
    let writes_after = wait_for("two restoring writes counted", WAIT, || async {
        let n = operator
            .metric_sum("leitwerk_writes_total", &["target=\"child\""])
            .await?;
        Ok((
            (n >= writes_before + 2.0).then_some(n),
            format!("{writes_before} → {n}"),
        ))
    })
    .await?;
    // Once restored, nothing more is written (no fight with the API server's defaults).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator
            .metric_sum("leitwerk_writes_total", &["target=\"child\""])
            .await?,
        writes_after
    );
    Ok(())
}

/// `spec.training.retrain.schedule` every minute: the next due time is in the status, each
/// due time starts one training Job (annotated with it), and a due time that passes while the
/// operator is down starts its training when the operator is back. v1 is recorded before the
/// operator starts, so only the schedule starts trainings; no node runs them, so the test
/// deletes each scheduled Job once it has seen it (as if it had finished).
#[tokio::test]
async fn a_retrain_schedule_trains_once_per_due_time_and_catches_up_after_a_restart()
-> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "schedule").await?;
    let client = cluster.client().await?;
    let features = std::fs::read_to_string(
        leitwerk_testkit::repo_root().join("examples/lead-scoring/featureset.yaml"),
    )?;
    kubectl_apply(&cluster, &ns.name, "-", Some(&features))?;
    // A published snapshot, written as the FeatureSet controller would after a materialization.
    Api::<FeatureSet>::namespaced(client.clone(), &ns.name)
        .patch_status(
            "lead-features",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "currentVersion": "0123456789ab",
                "snapshot": "file:///var/lib/leitwerk/artifacts/snapshots/0123456789ab",
            }})),
        )
        .await?;
    // Far from a minute boundary, so that the first due time comes after the operator started.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    kubectl_apply(
        &cluster,
        &ns.name,
        "-",
        Some(
            "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {name: nightly}\nspec:\n  task: BinaryClassification\n  featureSetRef: {name: lead-features}\n  algorithm: {logisticRegression: {}}\n  training: {retrain: {schedule: \"* * * * *\"}}\n",
        ),
    )?;
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    let v1 = ModelVersion {
        generation: Some(1),
        data_version: Some("0123456789ab".into()),
        ..version("v1", VersionState::Failed)
    };
    models
        .patch_status(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"versions": [v1]}})),
        )
        .await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let scheduled = || async {
        let list = jobs
            .list(&ListParams::default().labels("leitwerk.dev/model=nightly"))
            .await?;
        let due: Vec<(String, String)> = list
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| {
                (
                    j.name_any(),
                    j.annotations()
                        .get("leitwerk.dev/scheduled-for")
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        anyhow::Ok(due)
    };
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    let next = wait_for("the next due time in status", WAIT, || async {
        let st = models.get("nightly").await?.status.unwrap_or_default();
        Ok((
            st.schedule.and_then(|s| s.next_run),
            format!("{:?}", st.conditions),
        ))
    })
    .await
    .with_context(|| operator.log_text())?;
    assert!(
        scheduled().await?.is_empty(),
        "v1 is recorded: nothing trains before the due time"
    );
    // At the due time: one Job, annotated with it, and the status says so.
    let first = wait_for(
        "the scheduled training",
        Duration::from_secs(90),
        || async {
            let due = scheduled().await?;
            Ok(((!due.is_empty()).then_some(due.clone()), format!("{due:?}")))
        },
    )
    .await
    .with_context(|| operator.log_text())?;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, next, "{first:?}");
    wait_for("the scheduled run in status", WAIT, || async {
        let s = models
            .get("nightly")
            .await?
            .status
            .unwrap_or_default()
            .schedule
            .unwrap_or_default();
        let recorded = s.last_run.as_deref() == Some(next.as_str())
            && s.last_job.as_deref() == Some(first[0].0.as_str())
            && s.next_run.as_deref() > Some(next.as_str());
        Ok((recorded.then_some(()), format!("{s:?}")))
    })
    .await?;
    jobs.delete(&first[0].0, &kube::api::DeleteParams::background())
        .await?;
    wait_for("the Job gone", WAIT, || async {
        Ok((
            jobs.get_opt(&first[0].0).await?.is_none().then_some(()),
            first[0].0.clone(),
        ))
    })
    .await?;
    // Stopped before the following due time, back after it: that due time is trained then.
    let next_at: chrono::DateTime<chrono::Utc> = next.parse()?;
    let following_at = next_at + chrono::Duration::minutes(1);
    let following = following_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    operator.stop().await?;
    let until = (following_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(until + Duration::from_secs(2)).await;
    assert!(
        scheduled().await?.is_empty(),
        "nothing starts while the operator is down"
    );
    let operator = OperatorProcess::start(
        &cluster,
        OPERATOR,
        &ns.name,
        &["--lease-name", "leitwerk-schedule-second"],
    )
    .await?;
    let caught_up = wait_for("the missed due time trained", WAIT, || async {
        let due = scheduled().await?;
        Ok(((!due.is_empty()).then_some(due.clone()), format!("{due:?}")))
    })
    .await
    .with_context(|| operator.log_text())?;
    assert_eq!(
        caught_up.len(),
        1,
        "one training for the missed due time: {caught_up:?}"
    );
    assert_eq!(caught_up[0].1, following, "{caught_up:?}");
    Ok(())
}
