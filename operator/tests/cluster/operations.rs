//! Running the operator: steady state without writes, leader election, backoff, JSON logs.

use std::time::Duration;

use anyhow::Context as _;
use kube::{Api, api::ListParams};
use leitwerk_crds::RagIndex;
use leitwerk_testkit::{
    Cluster, OperatorProcess, TestNamespace, kubectl_apply, wait_for, wait_for_ready_reason,
};

use crate::*;

#[tokio::test]
async fn steady_state_makes_no_write_requests() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "steady").await?;
    let first = OperatorProcess::start(&cluster, OPERATOR, &ns.name, &[]).await?;
    apply_examples(&cluster, &ns.name)?;
    let client = cluster.client().await?;
    for (kind, name, reason, _) in expected_conditions() {
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
    // A marker write after those reconciles: once the audit log shows it, it also shows every
    // write the operator made before it.
    let marker = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "audit-marker"}});
    kubectl_apply(&cluster, &ns.name, "-", Some(&marker.to_string()))?;
    wait_for("the marker in the audit log", WAIT, || async {
        let seen = cluster
            .audited_writes("admin", &ns.name, audit_start)?
            .iter()
            .any(|(_, r, n)| r == "configmaps" && n == "audit-marker");
        Ok((seen.then_some(()), "not yet".into()))
    })
    .await?;
    let writes = second.metric_sum("leitwerk_writes_total", &[]).await?;
    assert_eq!(
        writes,
        0.0,
        "the operator counted {writes} writes in steady state:\n{}",
        second.metrics().await?
    );
    // Each FeatureSet's start-up reconcile read its Jobs and CronJob from the shared stores:
    // the one list of CronJobs is the shared watch's own first list (only FeatureSets read
    // CronJobs). Before, every FeatureSet reconcile listed them.
    let reconciled = second
        .metric_sum("leitwerk_reconcile_total", &["kind=\"FeatureSet\""])
        .await?;
    assert!(reconciled >= 2.0, "{reconciled} FeatureSet reconciles");
    let lists = second
        .metric_sum(
            "leitwerk_api_requests_total",
            &["verb=\"list\"", "resource=\"cronjobs\""],
        )
        .await?;
    assert_eq!(
        lists,
        1.0,
        "the second operator listed CronJobs {lists} times:\n{}",
        second.log_text()
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
        "Indexing",
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
async fn a_failing_api_call_backs_off_is_reported_and_recovers_once_allowed() -> anyhow::Result<()>
{
    let cluster = Cluster::shared()?;
    let ns = TestNamespace::create(&cluster, "backoff").await?;
    // The restricted user may read Leitwerk objects and publish Events, but not write status.
    let role = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-only-leitwerk}
rules:
- {apiGroups: [leitwerk.dev], resources: [featuresets, models, experiments, ragindexes, contentpipelines], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [serviceaccounts, configmaps, secrets], verbs: [get, list, watch]}
- {apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-only-leitwerk}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-only-leitwerk}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-restricted}]
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(role))?;
    // The RagIndex without its ConfigMaps: its reconcile reads, then writes only its status.
    kubectl_apply(
        &cluster,
        &ns.name,
        "examples/product-docs-rag/ragindex.yaml",
        None,
    )?;
    let operator = OperatorProcess::start_as(
        &cluster,
        &cluster.restricted_kubeconfig,
        OPERATOR,
        &ns.name,
        &["--no-leader-election", "--log-format", "json"],
    )
    .await?;
    wait_for("status patch failures to be counted", WAIT, || async {
        let n = operator
            .metric_sum(
                "leitwerk_reconcile_errors_total",
                &["kind=\"RagIndex\"", "category=\"StatusPatchFailed\""],
            )
            .await?;
        Ok(((n >= 2.0).then_some(()), format!("{n} failures")))
    })
    .await
    .with_context(|| operator.log_text())?;
    // Each failure is an Event with the error chain, naming what failed and why.
    let client = cluster.client().await?;
    wait_for("a StatusPatchFailed Event", WAIT, || async {
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns.name)
                .list(&ListParams::default())
                .await?;
        let event = events
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("StatusPatchFailed"));
        let note = event
            .as_ref()
            .and_then(|e| e.note.clone())
            .unwrap_or_default();
        Ok((
            (note.contains("failed to patch the status of RagIndex product-docs")
                && note.contains("forbidden"))
            .then_some(()),
            note,
        ))
    })
    .await?;
    // Logs are JSON on request: every line is an object with a level.
    for line in operator.log_text().lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        assert!(value["level"].is_string(), "{line}");
    }
    // Granting the right ends the failure: the backoff retry writes the status by itself.
    let grant = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leitwerk-operator-restricted}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leitwerk-operator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-restricted}]
"#;
    kubectl_apply(&cluster, &ns.name, "-", Some(grant))?;
    wait_for_ready_reason(
        &Api::<RagIndex>::namespaced(client.clone(), &ns.name),
        "product-docs",
        "ConfigMapNotFound",
        WAIT,
    )
    .await
    .with_context(|| operator.log_text())?;
    Ok(())
}
