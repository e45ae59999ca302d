//! The operator against a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from the Kubernetes Go modules by `tests/cluster/build.sh`).
//! Each test has its own namespace and, where it needs one, its own operator process running
//! as the user `leitwerk-operator` with exactly the RBAC of `config/rbac/`.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use leitwerk_crds::{ContentPipeline, Experiment, FeatureSet, Model, RagIndex};
use leitwerk_testkit::{
    Cluster, OperatorProcess, TestNamespace, delete_ignoring_missing, kubectl_apply, ready_of,
    repo_root, wait_for, wait_for_ready_reason,
};

const OPERATOR: &str = env!("CARGO_BIN_EXE_leitwerk-operator");
const WAIT: Duration = Duration::from_secs(60);
const EXAMPLES: [&str; 6] = [
    "lead-scoring",
    "churn",
    "canary-rollout",
    "creative-bandit",
    "product-docs-rag",
    "seo-article",
];

fn stderr(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn apply_examples(cluster: &Cluster, ns: &str) -> anyhow::Result<()> {
    for example in EXAMPLES {
        kubectl_apply(cluster, ns, &format!("examples/{example}/"), None)?;
    }
    Ok(())
}

/// The Ready reason each example object reaches in this release, as examples/README.md says.
fn expected_conditions() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("FeatureSet", "lead-features", "AwaitingMaterialization"),
        ("Model", "lead-scoring", "WaitingForFeatureSet"),
        ("FeatureSet", "churn-features", "AwaitingMaterialization"),
        ("Model", "churn", "WaitingForFeatureSet"),
        ("Experiment", "lead-scoring-canary", "WaitingForVersions"),
        ("Model", "creative-ranker", "AwaitingServing"),
        ("Experiment", "creative-bandit", "WaitingForVersions"),
        ("RagIndex", "product-docs", "AwaitingIndexing"),
        (
            "ContentPipeline",
            "seo-lead-scoring-article",
            "WaitingForRagIndex",
        ),
    ]
}

async fn wait_reason(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<serde_json::Value> {
    match kind {
        "FeatureSet" => {
            wait_for_ready_reason(
                &Api::<FeatureSet>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "Model" => {
            wait_for_ready_reason(
                &Api::<Model>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "Experiment" => {
            wait_for_ready_reason(
                &Api::<Experiment>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "RagIndex" => {
            wait_for_ready_reason(
                &Api::<RagIndex>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        "ContentPipeline" => {
            wait_for_ready_reason(
                &Api::<ContentPipeline>::namespaced(client.clone(), ns),
                name,
                reason,
                WAIT,
            )
            .await
        }
        other => anyhow::bail!("unknown kind {other}"),
    }
}

#[tokio::test]
async fn crds_are_established_listed_by_category_and_explained() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "crds").await?;
    let out = cluster.kubectl(&["get", "leitwerk", "-n", &ns.name], None)?;
    assert!(
        out.status.success(),
        "kubectl get leitwerk failed: {}",
        stderr(&out)
    );
    for short in ["fs", "mdl", "exp", "rag", "cp"] {
        let out = cluster.kubectl(&["get", short, "-n", &ns.name], None)?;
        assert!(out.status.success(), "short name {short}: {}", stderr(&out));
    }
    let out = cluster.kubectl(
        &["explain", "model.spec.training.resources.gpu.count"],
        None,
    )?;
    let text = stderr(&out);
    assert!(
        out.status.success() && text.contains("Number of GPUs"),
        "kubectl explain: {text}"
    );
    let out = cluster.kubectl(&["explain", "experiment.spec.strategy.canary.steps"], None)?;
    assert!(
        stderr(&out).contains("strictly ascending"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test]
async fn every_example_passes_server_side_dry_run() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "dryrun").await?;
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("examples"))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let rel = format!(
            "examples/{}/",
            path.file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        let out = cluster.kubectl(
            &["apply", "--dry-run=server", "-n", &ns.name, "-f", &rel],
            None,
        )?;
        assert!(out.status.success(), "{rel} was rejected: {}", stderr(&out));
        checked += 1;
    }
    assert_eq!(
        checked,
        EXAMPLES.len(),
        "every example directory is listed in EXAMPLES"
    );
    let out = cluster.kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-n",
            &ns.name,
            "-k",
            "config/samples",
        ],
        None,
    )?;
    assert!(
        out.status.success(),
        "config/samples was rejected: {}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test]
async fn invalid_manifests_are_rejected_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "invalid").await?;
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/invalid"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus has {} manifests; at least 20 are needed",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .with_context(|| format!("{} has no '# expect:' line", file.display()))?;
        let out = cluster.kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                &ns.name,
                "-f",
                &file.to_string_lossy(),
            ],
            None,
        )?;
        let message = stderr(&out);
        if out.status.success() {
            failures.push(format!("{}: accepted, but it is a mistake", file.display()));
        } else if !message.contains(expect) {
            failures.push(format!(
                "{}: rejected without naming {expect:?}: {message}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn examples_reconcile_to_their_documented_conditions() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "examples").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    apply_examples(&cluster, &ns.name)?;
    let client = cluster.client().await?;
    for (kind, name, reason) in expected_conditions() {
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
    let reasons: Vec<(String, String)> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (_, name, reason) in expected_conditions() {
        assert!(
            reasons.contains(&(name.to_string(), reason.to_string())),
            "no {reason} Event for {name}: {reasons:?}"
        );
    }
    // `kubectl get leitwerk` tells the story: every object with its phase.
    let out = cluster.kubectl(&["get", "leitwerk", "-n", &ns.name], None)?;
    let table = stderr(&out);
    for (_, name, _) in expected_conditions() {
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

#[tokio::test]
async fn model_owns_a_token_less_service_account_that_comes_back_when_deleted() -> anyhow::Result<()>
{
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "sa").await?;
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    kubectl_apply(
        &cluster,
        &ns.name,
        "examples/creative-bandit/model.yaml",
        None,
    )?;
    let client = cluster.client().await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    let sa = wait_for("the Model's ServiceAccount", WAIT, || async {
        Ok((
            accounts.get_opt("creative-ranker-model").await?,
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
    delete_ignoring_missing(&accounts, "creative-ranker-model").await?;
    wait_for("the ServiceAccount to come back", WAIT, || async {
        let sa = accounts.get_opt("creative-ranker-model").await?;
        Ok((
            sa.filter(|s| s.metadata.deletion_timestamp.is_none()),
            "absent".to_string(),
        ))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn steady_state_makes_no_write_requests() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "steady").await?;
    let first = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    apply_examples(&cluster, &ns.name)?;
    let client = cluster.client().await?;
    for (kind, name, reason) in expected_conditions() {
        wait_reason(&client, &ns.name, kind, name, reason)
            .await
            .with_context(|| first.log_text())?;
    }
    // Let the first operator settle (its own status writes trigger one more no-op round).
    let mut settled = -1.0;
    for round in 0..=60 {
        let now = first.metric_sum("leitwerk_reconcile_total", &[]).await?;
        if (now - settled).abs() < f64::EPSILON {
            break;
        }
        assert!(
            round < 60,
            "the first operator never settled: {now} reconciles"
        );
        settled = now;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert!(
        first
            .metric_sum("leitwerk_writes_total", &["target=\"status\""])
            .await?
            >= 9.0
    );
    first.stop().await?;

    // A fresh operator reconciles every object once at start-up: each reconcile is a no-op.
    let audit_start = cluster.audit_lines();
    let second = OperatorProcess::start(
        &cluster,
        OPERATOR,
        &ns.name,
        &["--lease-name", "leitwerk-steady-second"],
    )
    .await?;
    let objects = expected_conditions().len() as f64;
    wait_for(
        "the second operator to reconcile every object",
        WAIT,
        || async {
            let n = second.metric_sum("leitwerk_reconcile_total", &[]).await?;
            Ok(((n >= objects).then_some(()), format!("{n} reconciles")))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // give any stray write time to reach the audit log
    let writes = second.metric_sum("leitwerk_writes_total", &[]).await?;
    assert_eq!(
        writes,
        0.0,
        "the operator counted {writes} writes in steady state:\n{}",
        second.metrics().await?
    );
    let audited: Vec<_> = cluster
        .audited_writes("leitwerk-operator", &ns.name, audit_start)?
        .into_iter()
        .filter(|(_, resource, _)| resource != "leases")
        .collect();
    assert!(
        audited.is_empty(),
        "the API server saw writes from the operator in steady state: {audited:?}"
    );
    // The audit log does record this operator's writes (so the check above can fail).
    let lease_writes = cluster
        .audited_writes("leitwerk-operator", &ns.name, audit_start)?
        .into_iter()
        .filter(|(_, r, _)| r == "leases")
        .count();
    assert!(
        lease_writes > 0,
        "the audit log shows no Lease writes either; is auditing working?"
    );
    Ok(())
}

#[tokio::test]
async fn only_one_replica_leads_and_a_standby_takes_over() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "leader").await?;
    let a =
        OperatorProcess::start(&cluster, OPERATOR, &ns.name, &["--identity", "replica-a"]).await?;
    wait_for("replica a to lead", WAIT, || async {
        Ok((
            (a.metric_sum("leitwerk_leader", &[]).await? == 1.0).then_some(()),
            "not leader".into(),
        ))
    })
    .await?;
    let b =
        OperatorProcess::start(&cluster, OPERATOR, &ns.name, &["--identity", "replica-b"]).await?;
    kubectl_apply(&cluster, &ns.name, "examples/product-docs-rag/", None)?;
    let client = cluster.client().await?;
    wait_for_ready_reason(
        &Api::<RagIndex>::namespaced(client.clone(), &ns.name),
        "product-docs",
        "AwaitingIndexing",
        WAIT,
    )
    .await?;
    assert_eq!(
        b.metric_sum("leitwerk_leader", &[]).await?,
        0.0,
        "two leaders at once"
    );
    assert_eq!(
        b.metric_sum("leitwerk_reconcile_total", &[]).await?,
        0.0,
        "the standby reconciled"
    );
    a.stop().await?;
    // The lease lasts 15 s; the standby must take over soon after it expires.
    wait_for(
        "replica b to take over",
        Duration::from_secs(45),
        || async {
            Ok((
                (b.metric_sum("leitwerk_leader", &[]).await? == 1.0).then_some(()),
                "standby".into(),
            ))
        },
    )
    .await?;
    wait_for("replica b to reconcile", WAIT, || async {
        let n = b
            .metric_sum("leitwerk_reconcile_total", &["kind=\"RagIndex\""])
            .await?;
        Ok(((n >= 1.0).then_some(()), format!("{n}")))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn malformed_object_does_not_stall_its_controller() -> anyhow::Result<()> {
    // Its own control plane: the test loosens a CRD schema, which would disturb other tests.
    let dir = std::env::temp_dir().join(format!("leitwerk-malformed-{}", std::process::id()));
    let cluster = Cluster::start(&dir, true)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    let ns = TestNamespace::create(&cluster, "malformed").await?;
    let client = cluster.client().await?;
    // An older, looser schema (as if stored before a schema change): spec.task accepts anything.
    let mut loose = <Model as kube::CustomResourceExt>::crd();
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
    leitwerk_testkit::apply_crd(&client, &loose).await?;
    let broken = r#"apiVersion: leitwerk.dev/v1alpha1
kind: Model
metadata: {name: broken}
spec: {task: 42, onnx: {url: file:///m.onnx}}
"#;
    let applied = wait_for("the loose schema to take effect", WAIT, || async {
        let ok = kubectl_apply(&cluster, &ns.name, "-", Some(broken)).is_ok();
        Ok((ok.then_some(()), "rejected".into()))
    })
    .await;
    applied?;
    cluster.install_crds()?; // the real schema again; the broken object stays stored
    let operator = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    kubectl_apply(
        &cluster,
        &ns.name,
        "examples/creative-bandit/model.yaml",
        None,
    )?;
    let models: Api<Model> = Api::namespaced(client.clone(), &ns.name);
    wait_for_ready_reason(&models, "creative-ranker", "AwaitingServing", WAIT)
        .await
        .with_context(|| operator.log_text())?;
    // The broken object is reported, not silently skipped.
    wait_for("a MalformedObject Event", WAIT, || async {
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns.name)
                .list(&ListParams::default())
                .await?;
        let found = events.items.iter().any(|e| {
            e.reason.as_deref() == Some("MalformedObject")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
        });
        Ok((
            found.then_some(()),
            format!("{} events", events.items.len()),
        ))
    })
    .await?;
    let errors = operator
        .metric_sum(
            "leitwerk_reconcile_errors_total",
            &["category=\"MalformedObject\""],
        )
        .await?;
    assert!(errors >= 1.0, "{}", operator.metrics().await?);
    assert!(!operator.log_text().contains("panicked"));
    drop(ns);
    let _ = std::process::Command::new("bash")
        .arg(repo_root().join("tests/cluster/down.sh"))
        .arg(&dir)
        .status();
    Ok(())
}

#[tokio::test]
async fn helm_chart_lints_and_its_template_passes_server_dry_run() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "helm").await?;
    let out = cluster.helm(&["lint", "charts/leitwerk", "--strict"])?;
    assert!(out.status.success(), "helm lint: {}", stderr(&out));
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "-n",
        &ns.name,
        "--kube-version",
        "v1.34.4",
        "--include-crds",
    ])?;
    assert!(out.status.success(), "helm template: {}", stderr(&out));
    let rendered = String::from_utf8(out.stdout)?;
    let out = cluster.kubectl(
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        Some(&rendered),
    )?;
    assert!(
        out.status.success(),
        "the rendered chart was rejected: {}",
        stderr(&out)
    );
    let applied = stderr(&out);
    for kind in [
        "deployment.apps/leitwerk-operator",
        "clusterrole.rbac.authorization.k8s.io/leitwerk-operator",
        "serviceaccount/leitwerk-operator",
        "service/leitwerk-operator-metrics",
        "role.rbac.authorization.k8s.io/leitwerk-leader-election",
    ] {
        assert!(
            applied.contains(kind),
            "{kind} missing from the chart: {applied}"
        );
    }
    // The Deployment passes Pod Security "restricted" on a namespace that enforces it.
    let out = cluster.kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
            "--overwrite",
        ],
        None,
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.kubectl(
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        Some(&rendered),
    )?;
    let text = stderr(&out);
    assert!(
        out.status.success() && !text.contains("violate PodSecurity"),
        "{text}"
    );
    // The ServiceMonitor is optional.
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "--kube-version",
        "v1.34.4",
        "--set",
        "serviceMonitor.enabled=true",
    ])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: ServiceMonitor"));
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "--kube-version",
        "v1.34.4",
    ])?;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kind: ServiceMonitor"));
    Ok(())
}

fn docs(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---")
        .filter_map(|d| yaml_serde::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// The same document with every number as a float (kustomize writes `1` where serde writes `1.0`).
fn numbers_as_floats(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => serde_json::json!(n.as_f64()),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(numbers_as_floats).collect())
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[tokio::test]
async fn kustomize_config_matches_the_helm_chart() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let kustomized = cluster.kubectl(&["kustomize", "config/default"], None)?;
    assert!(kustomized.status.success(), "{}", stderr(&kustomized));
    let helm = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "-n",
        "leitwerk-system",
        "--kube-version",
        "v1.34.4",
        "--include-crds",
    ])?;
    assert!(helm.status.success(), "{}", stderr(&helm));
    let k = docs(&String::from_utf8(kustomized.stdout)?);
    let h = docs(&String::from_utf8(helm.stdout)?);
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
    ] {
        assert_eq!(
            find(&k, kind).len(),
            find(&h, kind).len(),
            "{kind} count differs between config/ and the chart"
        );
    }
    assert_eq!(
        find(&k, "ClusterRole")[0]["rules"],
        find(&h, "ClusterRole")[0]["rules"],
        "ClusterRole rules differ"
    );
    assert_eq!(
        find(&k, "Role")[0]["rules"],
        find(&h, "Role")[0]["rules"],
        "leader-election rules differ"
    );
    let (kd, hd) = (find(&k, "Deployment")[0], find(&h, "Deployment")[0]);
    assert_eq!(
        kd["spec"]["template"]["spec"]["securityContext"],
        hd["spec"]["template"]["spec"]["securityContext"]
    );
    assert_eq!(
        kd["spec"]["template"]["spec"]["containers"][0]["securityContext"],
        hd["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    );
    let kc: serde_json::Value = yaml_serde::from_str(
        find(&k, "ConfigMap")[0]["data"]["config.yaml"]
            .as_str()
            .unwrap_or_default(),
    )?;
    let hc: serde_json::Value = yaml_serde::from_str(
        find(&h, "ConfigMap")[0]["data"]["config.yaml"]
            .as_str()
            .unwrap_or_default(),
    )?;
    assert_eq!(kc, hc, "operator settings differ");
    let sorted = |docs: &[serde_json::Value]| {
        let mut crds: Vec<_> = find(docs, "CustomResourceDefinition")
            .into_iter()
            .map(numbers_as_floats)
            .collect();
        crds.sort_by_key(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        crds
    };
    let (kcrds, hcrds) = (sorted(&k), sorted(&h));
    assert_eq!(kcrds, hcrds, "CRDs differ");
    Ok(())
}

#[test]
fn operator_rbac_has_no_wildcards_and_never_lists_secrets() -> anyhow::Result<()> {
    for file in [
        "config/rbac/role.yaml",
        "config/rbac/leader_election_role.yaml",
        "charts/leitwerk/templates/rbac.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file))?;
        let body: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!body.contains('*'), "{file} has a wildcard");
    }
    let role: serde_json::Value = yaml_serde::from_str(&std::fs::read_to_string(
        repo_root().join("config/rbac/role.yaml"),
    )?)?;
    for rule in role["rules"].as_array().into_iter().flatten() {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if resources.contains(&"secrets") {
            assert_eq!(verbs, vec!["get"], "Secrets may only be read by name");
        }
    }
    Ok(())
}
