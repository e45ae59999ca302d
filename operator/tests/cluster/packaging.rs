//! The Helm chart and the kustomize bases.

use leitwerk_testkit::{Cluster, TestNamespace, repo_root};

use crate::*;

#[tokio::test]
async fn helm_chart_lints_and_its_template_passes_server_dry_run() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let version = leitwerk_testkit::kubernetes_version();
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
        &version,
        "--include-crds",
        // The webhook's Service and the Deployment's port and arguments render too.
        "--set",
        "webhook.enabled=true",
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
        "service/leitwerk-webhook",
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
        &version,
        "--set",
        "serviceMonitor.enabled=true",
    ])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: ServiceMonitor"));
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "--kube-version",
        &version,
    ])?;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kind: ServiceMonitor"));
    // The Grafana dashboard ships as a sidecar ConfigMap and draws the operator's series.
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "--kube-version",
        &version,
        "--set",
        "grafanaDashboard.enabled=true,serviceMonitor.enabled=true",
    ])?;
    assert!(out.status.success(), "helm template: {}", stderr(&out));
    let rendered = docs(&String::from_utf8(out.stdout)?);
    assert!(
        !find(&rendered, "PodMonitor").is_empty(),
        "inference servers are scraped"
    );
    let map = find(&rendered, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let dashboard: serde_json::Value = serde_json::from_str(
        map["data"]["leitwerk-experiments.json"]
            .as_str()
            .unwrap_or_default(),
    )?;
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            p["targets"][0]["expr"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for series in [
        "leitwerk_experiment_weight",
        "leitwerk_experiment_kpi",
        "leitwerk_experiment_decisions_total",
        "leitwerk_experiment_drift",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(series)),
            "{series} not drawn: {exprs:?}"
        );
    }
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
    let version = leitwerk_testkit::kubernetes_version();
    let kustomized = cluster.kubectl(&["kustomize", "config/default"], None)?;
    assert!(kustomized.status.success(), "{}", stderr(&kustomized));
    let helm = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "-n",
        "leitwerk-system",
        "--kube-version",
        &version,
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
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
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
    // The standing policy: one file in both, and the same binding while the webhook is off.
    assert_eq!(
        std::fs::read_to_string(repo_root().join("config/admission/standing-policy.yaml"))?,
        std::fs::read_to_string(repo_root().join("charts/leitwerk/files/standing-policy.yaml"))?,
        "the standing policy differs between config/ and the chart"
    );
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert_eq!(
            find(&k, kind)[0]["spec"],
            find(&h, kind)[0]["spec"],
            "{kind} differs"
        );
    }
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
        // No verb that lets the operator grant more than it holds or act as someone else.
        for line in body.lines().filter(|l| l.contains("verbs:")) {
            let verbs = line.split(|c: char| !c.is_ascii_alphanumeric());
            for verb in verbs {
                assert!(
                    !["escalate", "bind", "impersonate"].contains(&verb),
                    "{file} grants {verb}: {line}"
                );
            }
        }
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
            // Read by name, created (feedback tokens); never listed, watched or changed.
            assert_eq!(
                verbs,
                vec!["get", "create"],
                "Secrets: get by name and create only"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_wrong_helm_value_is_rejected_naming_its_path() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let version = leitwerk_testkit::kubernetes_version();
    for (set, path) in [
        ("logFormat=yaml", "/logFormat"),
        ("config.prometheusUrl=prom:9090", "/config/prometheusUrl"),
        ("config.traineImage=x", "traineImage"),
        ("replicaCount=0", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ] {
        let out = cluster.helm(&[
            "template",
            "leitwerk",
            "charts/leitwerk",
            "--kube-version",
            &version,
            "--set",
            set,
        ])?;
        let text = stderr(&out);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(text.contains(path), "--set {set}: {text}");
    }
    // The defaults and the documented overrides pass.
    let out = cluster.helm(&[
        "template",
        "leitwerk",
        "charts/leitwerk",
        "--kube-version",
        &version,
        "--set",
        "config.artifactStore=s3://bucket/leitwerk,config.artifactStoreSecret=s3-credentials,serviceMonitor.enabled=true",
    ])?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}

/// With `watchNamespace` set, the chart's operator reaches Secrets only through a Role in that
/// namespace: the API server's own authorizer (`kubectl auth can-i` as its ServiceAccount)
/// says it may get and create them there, and nothing about Secrets anywhere else, nor list or
/// watch them anywhere.
#[tokio::test]
async fn with_a_watched_namespace_secret_access_is_a_role_there_only() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let home = TestNamespace::create(&cluster, "lw-system").await?;
    let served = TestNamespace::create(&cluster, "served").await?;
    let other = TestNamespace::create(&cluster, "other").await?;
    let release = format!("rbac{}", &home.name[home.name.len() - 6..]);
    let version = leitwerk_testkit::kubernetes_version();
    let out = cluster.helm(&[
        "template",
        &release,
        "charts/leitwerk",
        "-n",
        &home.name,
        "--kube-version",
        &version,
        "--set",
        &format!("watchNamespace={}", served.name),
    ])?;
    assert!(out.status.success(), "helm template: {}", stderr(&out));
    let rbac: Vec<String> = docs(&String::from_utf8(out.stdout)?)
        .into_iter()
        .filter(|d| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&d["kind"].as_str().unwrap_or_default())
        })
        .map(|d| serde_json::to_string(&d).unwrap_or_default())
        .collect();
    let secrets_rules = rbac.iter().filter(|d| d.contains(r#""secrets""#)).count();
    assert_eq!(
        secrets_rules, 1,
        "Secrets appear in one Role only: {rbac:?}"
    );
    // Each object names its namespace (the Role the served one).
    let out = cluster.kubectl(&["apply", "-f", "-"], Some(&rbac.join("\n---\n")))?;
    assert!(out.status.success(), "{}", stderr(&out));
    let account = format!("system:serviceaccount:{}:leitwerk-operator", home.name);
    let can = |verb: &str, ns: &str| -> anyhow::Result<bool> {
        let out = cluster.kubectl(
            &["auth", "can-i", verb, "secrets", "-n", ns, "--as", &account],
            None,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
    };
    let mut seen = Vec::new();
    for (verb, ns, expected) in [
        ("get", served.name.as_str(), true),
        ("create", served.name.as_str(), true),
        ("list", served.name.as_str(), false),
        ("watch", served.name.as_str(), false),
        ("update", served.name.as_str(), false),
        ("get", other.name.as_str(), false),
        ("create", other.name.as_str(), false),
        ("get", home.name.as_str(), false),
    ] {
        seen.push((verb, ns, can(verb, ns)?, expected));
    }
    let _ = cluster.kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            &format!("{release}-operator"),
            "--ignore-not-found",
        ],
        None,
    );
    for (verb, ns, got, expected) in seen {
        assert_eq!(got, expected, "may {verb} secrets in {ns}");
    }
    Ok(())
}

/// With `webhook.certManager.enabled` the chart asks cert-manager for the webhook's
/// certificate (its own self-signed CA unless an issuer is named), mounts the Secret into the
/// operator and points `--webhook-cert-dir` at it; without it, none of that renders.
#[tokio::test]
async fn with_cert_manager_the_chart_mounts_the_issued_certificate() -> anyhow::Result<()> {
    let cluster = Cluster::shared()?;
    let version = leitwerk_testkit::kubernetes_version();
    let render = |set: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let out = cluster.helm(&[
            "template",
            "lw",
            "charts/leitwerk",
            "-n",
            "ops",
            "--kube-version",
            &version,
            "--set",
            set,
        ])?;
        anyhow::ensure!(out.status.success(), "helm template: {}", stderr(&out));
        Ok(docs(&String::from_utf8(out.stdout)?))
    };
    let own = render("webhook.enabled=true,webhook.certManager.enabled=true")?;
    let certificates = find(&own, "Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == "lw-webhook")
        .expect("the serving Certificate");
    assert_eq!(serving["spec"]["secretName"], "lw-webhook-tls");
    assert_eq!(
        serving["spec"]["dnsNames"],
        serde_json::json!(["lw-webhook.ops.svc", "lw-webhook.ops.svc.cluster.local"])
    );
    assert_eq!(serving["spec"]["issuerRef"]["name"], "lw-webhook-ca");
    assert_eq!(
        find(&own, "Issuer").len(),
        2,
        "a self-signed root and the CA issuer"
    );
    let deployment = find(&own, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["args"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x == "--webhook-cert-dir=/var/run/leitwerk/webhook-tls")),
        "{container}"
    );
    assert!(
        container["volumeMounts"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["mountPath"] == "/var/run/leitwerk/webhook-tls" && m["readOnly"] == true)),
        "{container}"
    );
    // A named issuer signs it, and the chart makes no CA of its own.
    let named = render(
        "webhook.enabled=true,webhook.certManager.enabled=true,webhook.certManager.issuerRef.kind=ClusterIssuer,webhook.certManager.issuerRef.name=internal-ca",
    )?;
    assert!(find(&named, "Issuer").is_empty());
    let serving = find(&named, "Certificate");
    assert_eq!(serving.len(), 1);
    assert_eq!(
        serving[0]["spec"]["issuerRef"],
        serde_json::json!({"kind": "ClusterIssuer", "name": "internal-ca"})
    );
    // Off by default: the operator makes its own certificate.
    let plain = render("webhook.enabled=true")?;
    assert!(find(&plain, "Certificate").is_empty());
    let text = serde_json::to_string(&plain)?;
    assert!(!text.contains("webhook-cert-dir") && !text.contains("webhook-tls"));
    Ok(())
}
