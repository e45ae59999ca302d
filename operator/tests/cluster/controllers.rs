//! The controllers reconciling real objects: conditions, Events, watches, children, malformed objects.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use leitwerk_crds::model::VersionState;
use leitwerk_crds::{Experiment, FeatureSet, Model};
use leitwerk_testkit::{
    Cluster, OperatorProcess, TestNamespace, delete_ignoring_missing, kubectl_apply, ready_of,
    repo_root, wait_for, wait_for_ready_reason,
};

use crate::*;

#[tokio::test]
async fn examples_reconcile_to_their_documented_conditions() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "examples").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    apply_examples(&cluster, &ns.name)?;
    let client = cluster.client().await?;
    for (kind, name, reason, _) in expected_conditions() {
        let obj = wait_reason(&client, &ns.name, kind, name, reason)
            .await
            .with_context(|| format!("{kind} {name}; operator log:\n{}", operator.log_text()))?;
        let (status, _, message) = ready_of(&obj).unwrap_or_default();
        assert_eq!(
            status, "False",
            "{kind} {name} must not claim Ready in this release"
        );
        assert!(!message.is_empty(), "{kind} {name} has no message");
        assert!(
            obj["status"]["phase"].is_string(),
            "{kind} {name} has no phase"
        );
        assert_eq!(
            obj["status"]["conditions"][0]["observedGeneration"], obj["metadata"]["generation"],
            "{kind} {name}"
        );
    }
    // Every transition is an Event, with the reason of the condition.
    let events = cluster.kubectl(
        &["get", "events.events.k8s.io", "-n", &ns.name, "-o", "json"],
        None,
    )?;
    let events: serde_json::Value = serde_json::from_slice(&events.stdout)?;
    let reasons: Vec<(String, String, String)> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&e["regarding"]["name"]),
                text(&e["reason"]),
                text(&e["type"]),
            )
        })
        .collect();
    // Each kind's Events carry their severity: a Job no node can take is a Warning, waiting
    // for another resource is Normal.
    for (_, name, reason, type_) in expected_conditions() {
        assert!(
            reasons.contains(&(name.to_string(), reason.to_string(), type_.to_string())),
            "no {type_} {reason} Event for {name}: {reasons:?}"
        );
    }
    // `kubectl get leitwerk` tells the story: every object with its phase.
    let out = cluster.kubectl(&["get", "leitwerk", "-n", &ns.name], None)?;
    let table = stderr(&out);
    for (_, name, _, _) in expected_conditions() {
        assert!(
            table.contains(name),
            "{name} missing from kubectl get leitwerk:\n{table}"
        );
    }
    assert!(
        table.contains("WaitingForData") && table.contains("WaitingForVersions"),
        "{table}"
    );
    assert!(
        operator
            .metric_sum("leitwerk_reconcile_total", &["kind=\"Model\""])
            .await?
            >= 3.0
    );
    Ok(())
}

#[tokio::test]
async fn model_recovers_by_itself_when_its_feature_set_appears() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "recover").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    kubectl_apply(&cluster, &ns.name, "examples/lead-scoring/model.yaml", None)?;
    let client = cluster.client().await?;
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    let obj = wait_for_ready_reason(&models, "lead-scoring", "FeatureSetNotFound", WAIT)
        .await
        .with_context(|| operator.log_text())?;
    let (_, _, message) = ready_of(&obj).unwrap_or_default();
    assert!(
        message.contains("\"lead-features\"") && message.contains("spec.featureSetRef.name"),
        "{message}"
    );
    assert_eq!(obj["status"]["phase"], "Pending");
    // The Model waits for a change (no timer). The FeatureSet's creation must wake it.
    kubectl_apply(
        &cluster,
        &ns.name,
        "examples/lead-scoring/featureset.yaml",
        None,
    )?;
    wait_for_ready_reason(
        &models,
        "lead-scoring",
        "WaitingForFeatureSet",
        Duration::from_secs(20),
    )
    .await
    .with_context(|| operator.log_text())?;
    // Publishing a snapshot (status written by whoever materializes) moves it on again.
    let feature_sets: Api<FeatureSet> = Api::namespaced(client.clone(), &ns.name);
    let status = serde_json::json!({"status": {"currentVersion": "sha256:0123abcd", "rows": 1200}});
    feature_sets
        .patch_status(
            "lead-features",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    let obj = wait_for_ready_reason(
        &models,
        "lead-scoring",
        "AwaitingTraining",
        Duration::from_secs(20),
    )
    .await?;
    assert!(
        ready_of(&obj)
            .unwrap_or_default()
            .2
            .contains("sha256:0123abcd")
    );
    Ok(())
}

#[tokio::test]
async fn spec_errors_the_schema_cannot_catch_are_reported_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "semantic").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    let experiment = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {name: typo}
spec:
  variants:
    - {name: stable, modelRef: {name: m}, role: Stable}
    - {name: canary, modelRef: {name: m}}
  strategy: {type: Canary, canary: {steps: [50, 100]}}
  kpis:
    - {name: cr, query: 'sum(x{version="{{version}}"})', min: 0.9}
  interval: 1s
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(experiment))?;
    let model = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Model
metadata: {name: bad-schedule}
spec:
  task: Regression
  featureSetRef: {name: fs}
  algorithm: {logisticRegression: {}}
  training: {retrain: {schedule: "every monday"}}
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(model))?;
    let client = cluster.client().await?;
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    let obj = wait_for_ready_reason(&experiments, "typo", "InvalidSpec", WAIT)
        .await
        .with_context(|| operator.log_text())?;
    let message = ready_of(&obj).unwrap_or_default().2;
    assert!(
        message.contains("spec.kpis[0].query") && message.contains("{{version}}"),
        "{message}"
    );
    assert!(message.contains("spec.interval"), "{message}");
    assert_eq!(obj["status"]["phase"], "Invalid");
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    let obj = wait_for_ready_reason(&models, "bad-schedule", "InvalidSpec", WAIT).await?;
    let message = ready_of(&obj).unwrap_or_default().2;
    assert!(
        message.contains("spec.training.retrain.schedule")
            && message.contains("spec.algorithm.logisticRegression"),
        "{message}"
    );
    // Fixing the spec recovers without a restart, and nothing else was lost.
    let fixed = experiment
        .replace("{{version}}", "{{variant}}")
        .replace("interval: 1s", "interval: 30s");
    kubectl_apply(&cluster, &ns.name, "-", Some(&fixed))?;
    wait_for_ready_reason(&experiments, "typo", "ModelNotFound", WAIT).await?;
    assert!(
        operator.log_text().contains("InvalidSpec")
            || operator.log_text().contains("spec.kpis[0].query")
    );
    assert!(
        !operator.log_text().contains("panicked"),
        "the operator panicked:\n{}",
        operator.log_text()
    );
    Ok(())
}

/// A Model owns the token-less ServiceAccount of its serving pods, which comes back when
/// deleted. The example Model brings its own ONNX and scores no batches, so it runs no Jobs and
/// gets no trainer account (`<model>-model`).
#[tokio::test]
async fn model_owns_a_token_less_service_account_that_comes_back_when_deleted() -> anyhow::Result<()>
{
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "sa").await?;
    let operator = operator_with_example_model(&cluster, &ns.name).await?;
    let client = cluster.client().await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    let sa = wait_for("the Model's serving ServiceAccount", WAIT, || async {
        Ok((
            accounts.get_opt("creative-ranker-serving").await?,
            "absent".to_string(),
        ))
    })
    .await
    .with_context(|| operator.log_text())?;
    assert_eq!(sa.automount_service_account_token, Some(false));
    let owner = sa.metadata.owner_references.unwrap_or_default();
    assert!(
        owner.iter().any(|o| o.kind == "Model"
            && o.name == "creative-ranker"
            && o.controller == Some(true)),
        "{owner:?}"
    );
    // Both accounts are applied in the same reconcile, before the serving Deployment.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns.name);
    wait_for("the serving Deployment", WAIT, || async {
        Ok((
            deployments.get_opt("creative-ranker-serving").await?,
            "absent".to_string(),
        ))
    })
    .await?;
    assert!(
        accounts.get_opt("creative-ranker-model").await?.is_none(),
        "a Model that runs no Jobs got a trainer ServiceAccount"
    );
    delete_ignoring_missing(&accounts, "creative-ranker-serving").await?;
    wait_for("the ServiceAccount to come back", WAIT, || async {
        let sa = accounts.get_opt("creative-ranker-serving").await?;
        Ok((
            sa.filter(|s| s.metadata.deletion_timestamp.is_none()),
            "absent".to_string(),
        ))
    })
    .await?;
    Ok(())
}
/// Before its first workload in a namespace, the operator puts a NetworkPolicy pair there: its
/// Jobs' pods take no connections, its servers only from the namespace and `monitoring`.
/// (Whether they are enforced is up to the network plugin; the tests' bridge does not.)
#[tokio::test]
async fn the_operator_keeps_network_policies_for_its_jobs_and_servers() -> anyhow::Result<()> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "netpol").await?;
    let operator = operator_with_example_model(&cluster, &ns.name).await?;
    let client = cluster.client().await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(client, &ns.name);
    let (jobs, servers) = wait_for("the NetworkPolicies", WAIT, || async {
        let pair = (
            policies.get_opt("leitwerk-jobs").await?,
            policies.get_opt("leitwerk-servers").await?,
        );
        Ok((
            match pair {
                (Some(j), Some(s)) => Some((j, s)),
                _ => None,
            },
            "absent".to_string(),
        ))
    })
    .await
    .with_context(|| operator.log_text())?;
    let jobs = serde_json::to_value(jobs)?;
    assert_eq!(
        jobs["spec"]["policyTypes"],
        serde_json::json!(["Ingress"]),
        "{jobs}"
    );
    assert!(jobs["spec"]["ingress"].is_null(), "{jobs}");
    assert_eq!(
        jobs["spec"]["podSelector"]["matchExpressions"][0],
        serde_json::json!({"key": "batch.kubernetes.io/job-name", "operator": "Exists"})
    );
    let servers = serde_json::to_value(servers)?;
    assert_eq!(
        servers["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring",
        "{servers}"
    );
    assert_eq!(
        servers["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "leitwerk"
    );
    Ok(())
}

/// The CRD of `K` as an older, looser schema might have been (as if objects were stored before
/// a schema change): its spec accepts anything.
fn loosened<K: kube::CustomResourceExt>() -> anyhow::Result<CustomResourceDefinition> {
    let mut loose = K::crd();
    let schema = loose.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .context("schema")?;
    let spec = schema
        .properties
        .as_mut()
        .and_then(|p| p.get_mut("spec"))
        .context("spec")?;
    spec.x_kubernetes_validations = None;
    spec.x_kubernetes_preserve_unknown_fields = Some(true);
    spec.properties = None;
    spec.required = None;
    Ok(loose)
}

/// A malformed Model and a malformed FeatureSet are stored. Neither stalls a controller: the
/// Model controller (whose own kind and watched FeatureSets both hold a broken object) still
/// serves other Models and reacts to a new FeatureSet, and the Experiment controller (which
/// watches Models) reacts to a new Model.
#[tokio::test]
async fn malformed_object_does_not_stall_its_controller() -> anyhow::Result<()> {
    // Its own control plane: the test loosens CRD schemas, which would disturb other tests.
    let dir = std::env::temp_dir().join(format!("leitwerk-malformed-{}", std::process::id()));
    let cluster = Cluster::start(&dir, true)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    let ns = TestNamespace::create(&cluster, "malformed").await?;
    let client = cluster.client().await?;
    leitwerk_testkit::apply_crd(&client, &loosened::<Model>()?).await?;
    leitwerk_testkit::apply_crd(&client, &loosened::<FeatureSet>()?).await?;
    let broken = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Model
metadata: {name: broken}
spec: {task: 42, onnx: {url: file:///m.onnx}}
---
apiVersion: leitwerk.dev/v1alpha1
kind: FeatureSet
metadata: {name: broken-features}
spec: {sources: 7}
"#;
    let applied = wait_for("the loose schemas to take effect", WAIT, || async {
        let ok = kubectl_apply(&cluster, &ns.name, "-", Some(broken)).is_ok();
        Ok((ok.then_some(()), "rejected".into()))
    })
    .await;
    applied?;
    cluster.install_crds()?; // the real schemas again; the broken objects stay stored
    let operator = operator_with_example_model(&cluster, &ns.name).await?;
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    wait_for_ready_reason(&models, "creative-ranker", "AwaitingServing", WAIT)
        .await
        .with_context(|| operator.log_text())?;
    // Both broken objects are reported, not silently skipped.
    for name in ["broken", "broken-features"] {
        wait_for("a MalformedObject Event", WAIT, || async {
            let events =
                Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns.name)
                    .list(&ListParams::default())
                    .await?;
            let found = events.items.iter().any(|e| {
                e.reason.as_deref() == Some("MalformedObject")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            });
            Ok((
                found.then_some(()),
                format!("{} events, none for {name}", events.items.len()),
            ))
        })
        .await?;
    }
    let errors = operator
        .metric_sum(
            "leitwerk_reconcile_errors_total",
            &["category=\"MalformedObject\""],
        )
        .await?;
    assert!(errors >= 2.0, "{}", operator.metrics().await?);

    // Secondary watches: objects that wait for a missing reference wait for a watch event
    // (no periodic re-check), so they move on only if the watch of the other kind still runs.
    let waiting = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Model
metadata: {name: waits-for-features}
spec:
  task: BinaryClassification
  featureSetRef: {name: late-features}
  algorithm: {logisticRegression: {}}
---
apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {name: waits-for-model}
spec:
  variants:
    - {name: stable, modelRef: {name: late-model}, role: Stable}
    - {name: canary, modelRef: {name: late-model}, role: Candidate}
  strategy: {type: Canary, canary: {steps: [10, 100]}}
  kpis: [{name: rate, query: "vector(1)", min: 0}]
  interval: 1m
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(waiting))?;
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    wait_for_ready_reason(&models, "waits-for-features", "FeatureSetNotFound", WAIT).await?;
    wait_for_ready_reason(&experiments, "waits-for-model", "ModelNotFound", WAIT).await?;
    let features =
        std::fs::read_to_string(repo_root().join("examples/lead-scoring/featureset.yaml"))?
            .replace("name: lead-features", "name: late-features");
    kubectl_apply(&cluster, &ns.name, "-", Some(&features))?;
    wait_for_ready_reason(&models, "waits-for-features", "WaitingForFeatureSet", WAIT)
        .await
        .with_context(|| operator.log_text())?;
    kubectl_apply(
        &cluster,
        &ns.name,
        "-",
        Some(
            "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {name: late-model}\nspec: {task: BinaryClassification, onnx: {url: \"file:///m/model.onnx\"}}\n",
        ),
    )?;
    wait_for("the Experiment to see the new Model", WAIT, || async {
        let e = experiments.get("waits-for-model").await?;
        let reason = e
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason)
            .unwrap_or_default();
        Ok(((reason != "ModelNotFound").then_some(()), reason))
    })
    .await
    .with_context(|| operator.log_text())?;
    assert!(!operator.log_text().contains("panicked"));
    drop(ns);
    let _ = std::process::Command::new("bash")
        .arg(repo_root().join("tests/cluster/down.sh"))
        .arg(&dir)
        .status();
    Ok(())
}

/// Without the Gateway API (the shared control plane has none), an Experiment's weights reach
/// traffic by replica ratio: one Service spans the variants' Deployments, whose replicas follow
/// the weights. The Model (the user's object) is never written to while the canary runs.
#[tokio::test]
async fn without_the_gateway_api_weights_become_replica_ratios() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "replicas").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    let client = cluster.client().await?;
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    for (i, v) in ["v1", "v2"].iter().enumerate() {
        let model = format!(
            "apiVersion: leitwerk.dev/v1alpha1\nkind: Model\nmetadata: {{name: m}}\nspec:\n  task: BinaryClassification\n  onnx: {{url: \"file:///models/{v}.onnx\"}}\n  serving: {{replicas: 4}}\n"
        );
        kubectl_apply(&cluster, &ns.name, "-", Some(&model))?;
        wait_for("the Model version", WAIT, || async {
            let st = models.get("m").await?.status.unwrap_or_default();
            let ok = st.versions.len() == i + 1
                && st.versions[i].state
                    == if i == 0 {
                        VersionState::Serving
                    } else {
                        VersionState::Candidate
                    };
            Ok((ok.then_some(()), format!("{:?}", st.versions)))
        })
        .await
        .with_context(|| operator.log_text())?;
    }
    let generation = models.get("m").await?.metadata.generation;
    let experiment = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {name: split}
spec:
  variants:
    - {name: stable, modelRef: {name: m}, role: Stable}
    - {name: canary, modelRef: {name: m}, role: Candidate}
  strategy: {type: Canary, canary: {steps: [25, 50, 100]}}
  kpis:
    - {name: cr, query: 'sum(rate(x{variant="{{variant}}"}[{{interval}}]))', min: 0}
  interval: 5s
  prometheusUrl: http://127.0.0.1:9
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(experiment))?;
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    let e = wait_for("the Experiment to start", WAIT, || async {
        let e = experiments.get("split").await?;
        let st = e.status.clone().unwrap_or_default();
        Ok((st.routing.is_some().then_some(e), format!("{st:?}")))
    })
    .await
    .with_context(|| operator.log_text())?;
    let st = e.status.unwrap_or_default();
    assert_eq!(st.routing.as_deref(), Some("ReplicaRatio"));
    assert_eq!(st.weights_summary.as_deref(), Some("stable=75,canary=25"));
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns.name);
    let replicas = |name: &'static str| {
        let deployments = deployments.clone();
        async move {
            deployments
                .get(name)
                .await
                .ok()
                .and_then(|d| d.spec)
                .and_then(|s| s.replicas)
        }
    };
    let (stable, canary) = (
        replicas("split-stable").await,
        replicas("split-canary").await,
    );
    assert_eq!((stable, canary), (Some(3), Some(1)), "4 replicas at 75/25");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, &ns.name);
    let shared = services.get("split").await?;
    let selector = shared.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("leitwerk.dev/experiment").map(String::as_str),
        Some("split")
    );
    assert!(
        !selector.contains_key("leitwerk.dev/variant"),
        "spans both variants"
    );
    // Prometheus is unreachable here: the canary holds, then pauses, and never advances.
    let paused =
        wait_for_ready_reason(&experiments, "split", "PrometheusUnavailable", WAIT).await?;
    assert_eq!(paused["status"]["weightsSummary"], "stable=75,canary=25");
    assert_eq!(
        models.get("m").await?.metadata.generation,
        generation,
        "the Model's spec is the user's"
    );
    Ok(())
}
