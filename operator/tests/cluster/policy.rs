//! Admission: a `LeitwerkPolicy` and the checks that no policy switches off, enforced by the
//! operator's webhook. The real API server calls it over TLS, with the CA the operator made.
//! The test runs its own control plane: the webhook configuration is cluster-wide and fails
//! closed, so it would stop every other test's resources while this operator is down.

use std::time::Duration;

use kube::Api;
use leitwerk_crds::LeitwerkPolicy;
use leitwerk_testkit::{Cluster, OperatorProcess, free_port, wait_for};

use crate::*;

fn experiment(name: &str, prometheus: &str) -> String {
    format!(
        r#"apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  variants:
    - {{name: stable, modelRef: {{name: lead-scoring}}, role: Stable}}
    - {{name: canary, modelRef: {{name: lead-scoring}}, role: Candidate}}
  strategy: {{type: Canary, canary: {{steps: [50, 100]}}}}
  prometheusUrl: {prometheus}
"#
    )
}

fn pipeline(name: &str, max_cost: f64, redact: bool, secret: &str) -> String {
    format!(
        r#"apiVersion: leitwerk.dev/v1alpha1
kind: ContentPipeline
metadata: {{name: {name}}}
spec:
  briefing: {{goal: Explain A/B tests, persona: Marketer, language: en}}
  ragIndexRef: {{name: product-docs}}
  generators:
    - name: writer
      openAiCompatible: {{url: "https://llm.internal/v1", model: m, apiKeySecretRef: {{name: {secret}, key: key}}}}
  guardrails: {{redactPii: {redact}}}
  budget: {{maxTokens: 10000, maxCost: {max_cost}}}
  approval: {{required: true, approvers: [editors]}}
"#
    )
}

/// `kubectl` as another user, through impersonation.
fn as_user(cluster: &Cluster, user: &[&str], args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut all: Vec<&str> = user.to_vec();
    all.extend_from_slice(args);
    match cluster.kubectl(&all, stdin) {
        Ok(out) => (out.status.success(), stderr(&out)),
        Err(e) => (false, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_and_secret_and_approver_checks_are_enforced_at_admission() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("leitwerk-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::start(&dir.join("cluster"), false)?;
    cluster.install_crds()?;
    cluster.install_operator_rbac()?;
    let admin: &[&str] = &[];
    for (ns, label) in [("team-a", "a"), ("team-b", "b")] {
        cluster.apply(
            None,
            "-",
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{leitwerk.dev/team: {label}}}}}\n"
            )),
        )?;
    }
    cluster.apply(
        None,
        "-",
        Some(
            r#"apiVersion: leitwerk.dev/v1alpha1
kind: LeitwerkPolicy
metadata: {name: team-a}
spec:
  namespaceSelector: {matchLabels: {leitwerk.dev/team: a}}
  prometheusUrls: ["http://prometheus.monitoring:9090"]
  maxRunCost: 5
  requireRedaction: true
"#,
        ),
    )?;
    standing_policy_holds_without_the_operator(&cluster)?;
    let port = free_port()?;
    let operator = OperatorProcess::start(
        &cluster,
        OPERATOR,
        "team-a",
        &[
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-url",
            &format!("https://127.0.0.1:{port}"),
        ],
    )
    .await?;

    // An Experiment may not point the operator at any URL: the request-forgery route.
    let (ok, text) = as_user(
        &cluster,
        admin,
        &["apply", "-n", "team-a", "-f", "-"],
        Some(&experiment("forged", "http://169.254.169.254/latest")),
    );
    assert!(
        !ok,
        "an Experiment reading from the metadata service was admitted: {text}"
    );
    // The webhook refused it (and will record it); the standing policy only warned.
    assert!(
        text.contains("admission webhook") && text.contains("Warning:"),
        "{text}"
    );
    for part in [
        "spec.prometheusUrl",
        "169.254.169.254",
        "LeitwerkPolicy team-a, rule prometheusUrls",
    ] {
        assert!(
            text.contains(part),
            "{part:?} missing from the denial: {text}\n{}",
            operator.log_text()
        );
    }
    // The allowed Prometheus is admitted, and the policy does not govern team-b.
    for (ns, url) in [
        ("team-a", "http://prometheus.monitoring:9090/"),
        ("team-b", "http://169.254.169.254/latest"),
    ] {
        let (ok, text) = as_user(
            &cluster,
            admin,
            &["apply", "-n", ns, "-f", "-"],
            Some(&experiment("allowed", url)),
        );
        assert!(ok, "{ns} {url}: {text}");
    }

    // A content run must be bounded in cost and redact personal data.
    cluster.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "openai-key",
            "-n",
            "team-a",
            "--from-literal=key=sk-1",
        ],
        None,
    )?;
    let (ok, text) = as_user(
        &cluster,
        admin,
        &["apply", "-n", "team-a", "-f", "-"],
        Some(&pipeline("costly", 50.0, false, "openai-key")),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("spec.budget.maxCost: 50 is more than a run may cost here (5)")
            && text.contains("spec.guardrails.redactPii")
            && text.contains("rule requireRedaction"),
        "{text}"
    );

    // alice may write ContentPipelines in team-a but not read its Secrets: she may not name
    // one either, or the operator would hand its key to her pipeline's pods.
    cluster.apply(
        Some("team-a"),
        "-",
        Some(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: content-writer}
rules:
  - apiGroups: [leitwerk.dev]
    resources: [contentpipelines]
    verbs: [get, list, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: content-writers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: content-writer}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: editors}
"#,
        ),
    )?;
    let alice: &[&str] = &["--as", "alice"];
    let article = pipeline("article", 4.0, true, "openai-key");
    let (ok, text) = as_user(
        &cluster,
        alice,
        &["apply", "-n", "team-a", "-f", "-"],
        Some(&article),
    );
    assert!(!ok, "alice named a Secret she cannot read: {text}");
    assert!(
        text.contains("spec.generators[0].openAiCompatible.apiKeySecretRef.name: alice may not get Secret team-a/openai-key"),
        "{text}"
    );
    cluster.apply(
        Some("team-a"),
        "-",
        Some(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: openai-key-reader}
rules:
  - {apiGroups: [""], resources: [secrets], resourceNames: [openai-key], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: openai-key-readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: openai-key-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
"#,
        ),
    )?;
    let (ok, text) = as_user(
        &cluster,
        alice,
        &["apply", "-n", "team-a", "-f", "-"],
        Some(&article),
    );
    assert!(ok, "alice may read the Secret now: {text}");

    // Only a listed approver approves, and only as themselves.
    let approve = |by: &str| {
        vec![
            "annotate".to_string(),
            "-n".into(),
            "team-a".into(),
            "--overwrite".into(),
            "contentpipeline/article".into(),
            "leitwerk.dev/approve=run-1".into(),
            format!("leitwerk.dev/approved-by={by}"),
        ]
    };
    let args = approve("alice");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = as_user(&cluster, alice, &args, None);
    assert!(!ok, "alice is not among the approvers: {text}");
    assert!(
        text.contains("alice is not among spec.approval.approvers (editors)"),
        "{text}"
    );
    let bob: &[&str] = &["--as", "bob", "--as-group", "editors"];
    let (ok, text) = as_user(&cluster, bob, &args, None);
    assert!(!ok, "bob may not record alice as the approver: {text}");
    assert!(text.contains("\"alice\" is not bob"), "{text}");
    let args = approve("bob");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = as_user(&cluster, bob, &args, None);
    assert!(ok, "bob approves as a member of editors: {text}");

    // The policy's status names the namespaces it governs and its denials, and each denial is
    // an Event on it.
    let client = cluster.client().await?;
    let policies: Api<LeitwerkPolicy> = Api::all(client);
    let status = wait_for("the policy's status", Duration::from_secs(60), || async {
        let st = policies.get("team-a").await?.status.unwrap_or_default();
        let why = format!("{st:?}");
        let done = st.namespaces == ["team-a"] && st.denied_total >= 3;
        Ok((done.then_some(st), why))
    })
    .await?;
    let rules: Vec<&str> = status.denials.iter().map(|d| d.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["prometheusUrls", "maxRunCost", "requireRedaction"],
        "{status:?}"
    );
    // Each names who asked.
    let whoami = cluster.kubectl(
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    )?;
    let whoami = String::from_utf8_lossy(&whoami.stdout).trim().to_string();
    assert!(!whoami.is_empty());
    assert!(
        status.denials.iter().all(|d| d.user == whoami),
        "{whoami}: {status:?}"
    );
    let events = cluster.kubectl(
        &["get", "events", "-A", "--field-selector", "reason=Denied"],
        None,
    )?;
    assert!(stderr(&events).contains("Denied"), "{}", stderr(&events));
    audit_trail(&cluster, &operator, &whoami).await?;
    defaults_are_filled_in(&cluster).await?;

    // The webhook fails closed: with no operator to ask, nothing is admitted.
    operator.stop().await?;
    let (ok, text) = as_user(
        &cluster,
        admin,
        &["apply", "-n", "team-b", "-f", "-"],
        Some(&experiment("later", "http://x.example/")),
    );
    assert!(!ok, "admitted while no operator checked it: {text}");
    assert!(text.contains("policy.leitwerk.dev"), "{text}");
    certificates_from_a_directory(&cluster, &dir).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `kubectl apply --dry-run=server` of `yaml` in `ns` as the admin: (admitted, output).
fn dry_run(cluster: &Cluster, ns: &str, yaml: &str) -> (bool, String) {
    as_user(
        cluster,
        &[],
        &["apply", "--dry-run=server", "-n", ns, "-f", "-"],
        Some(yaml),
    )
}

/// Before any operator runs, the standing policy (config/admission) refuses what breaks a
/// CEL-expressible rule, naming the field, the policy and the rule; then its binding is set to
/// warn, as the chart does with the webhook on, and the same request passes with a warning.
fn standing_policy_holds_without_the_operator(cluster: &Cluster) -> anyhow::Result<()> {
    for file in ["standing-policy.yaml", "binding.yaml"] {
        let path = leitwerk_testkit::repo_root()
            .join("config/admission")
            .join(file);
        cluster.apply(None, &path.to_string_lossy(), None)?;
    }
    let forged = experiment("forged", "http://169.254.169.254/latest");
    // The API server picks up a new policy within a second or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (ok, text) = dry_run(cluster, "team-a", &forged);
        if !ok || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for part in [
        "ValidatingAdmissionPolicy 'leitwerk-standing-policy'",
        "spec.prometheusUrl: http://169.254.169.254/latest is not an allowed Prometheus",
        "LeitwerkPolicy team-a, rule prometheusUrls",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    let (ok, text) = dry_run(cluster, "team-b", &forged);
    assert!(ok, "team-b is not governed: {text}");
    let (ok, text) = dry_run(cluster, "team-a", &pipeline("costly", 50.0, true, "any"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("spec.budget.maxCost: 50 is more than a run may cost here (5) (LeitwerkPolicy team-a, rule maxRunCost)"),
        "{text}"
    );
    let (ok, text) = dry_run(cluster, "team-a", &pipeline("careless", 4.0, false, "any"));
    assert!(!ok && text.contains("rule requireRedaction"), "{text}");
    let (ok, text) = dry_run(cluster, "team-a", &pipeline("fine", 4.0, true, "any"));
    assert!(ok, "{text}");
    let out = cluster.kubectl(
        &[
            "patch",
            "validatingadmissionpolicybinding",
            "leitwerk-standing-policy",
            "--type=merge",
            "-p",
            r#"{"spec":{"validationActions":["Warn","Audit"]}}"#,
        ],
        None,
    )?;
    anyhow::ensure!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = dry_run(cluster, "team-a", &forged);
        if ok {
            assert!(
                text.contains("Warning:") && text.contains("rule prometheusUrls"),
                "{text}"
            );
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the binding never warned: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every decision on a Secret reference and an approval, every denial and every policy change
/// is an Event and a structured log line (target `leitwerk_operator::audit`), and neither
/// holds the Secret's value.
async fn audit_trail(
    cluster: &Cluster,
    operator: &OperatorProcess,
    admin: &str,
) -> anyhow::Result<()> {
    // A policy change by the admin, told rule by rule, never refused.
    let out = cluster.kubectl(
        &[
            "patch",
            "lwpolicy",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxRunCost":4}}"#,
        ],
        None,
    )?;
    anyhow::ensure!(out.status.success(), "{}", stderr(&out));
    let notes = |reason: &'static str| {
        let cluster = cluster.clone();
        move || {
            let cluster = cluster.clone();
            async move {
                let out = cluster.kubectl(
                    &[
                        "get",
                        "events.events.k8s.io",
                        "-A",
                        "--field-selector",
                        &format!("reason={reason}"),
                        "-o",
                        "jsonpath={range .items[*]}{.regarding.kind} {.regarding.name}: {.note}{\"\\n\"}{end}",
                    ],
                    None,
                )?;
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                Ok(((!text.trim().is_empty()).then(|| text.clone()), text))
            }
        }
    };
    let changed = wait_for(
        "the PolicyChanged Event",
        Duration::from_secs(30),
        notes("PolicyChanged"),
    )
    .await?;
    assert!(
        changed.contains(&format!(
            "LeitwerkPolicy team-a: {admin}: maxRunCost 5.0 → 4.0"
        )),
        "{changed}"
    );
    let allowed = wait_for(
        "the SecretReferenceAllowed Event",
        WAIT,
        notes("SecretReferenceAllowed"),
    )
    .await?;
    assert!(
        allowed.contains("ContentPipeline article: spec.generators[0].openAiCompatible.apiKeySecretRef.name: alice may get Secret team-a/openai-key"),
        "{allowed}"
    );
    let verified = wait_for(
        "the ApproverVerified Event",
        WAIT,
        notes("ApproverVerified"),
    )
    .await?;
    assert!(verified.contains("ContentPipeline article: metadata.annotations[leitwerk.dev/approve]: bob decides run run-1"), "{verified}");
    let denied = wait_for("the Denied Events", WAIT, notes("Denied")).await?;
    for part in [
        "ContentPipeline article: alice: spec.generators[0].openAiCompatible.apiKeySecretRef.name: alice may not get Secret team-a/openai-key",
        "ContentPipeline article: alice: metadata.annotations[leitwerk.dev/approve]: alice is not among",
    ] {
        assert!(denied.contains(part), "{part:?} missing: {denied}");
    }
    let log = operator.log_text();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("leitwerk_operator::audit"))
        .collect();
    for decision in ["allowed", "denied", "changed"] {
        assert!(
            audit
                .iter()
                .any(|l| l.contains(&format!("decision=\"{decision}\""))
                    || l.contains(&format!("\"decision\":\"{decision}\""))),
            "no {decision} line in the audit log: {audit:#?}"
        );
    }
    // The Secret's value is nowhere: not in the log, not in any Event.
    let events = cluster.kubectl(&["get", "events.events.k8s.io", "-A", "-o", "json"], None)?;
    assert!(
        !stderr(&events).contains("sk-1"),
        "an Event holds the Secret's value"
    );
    assert!(
        !log.contains("sk-1"),
        "the operator's log holds the Secret's value"
    );
    Ok(())
}

/// The mutating webhook fills in what a policy gives where a new resource leaves it out, and
/// names the policy in `leitwerk.dev/defaulted`; what the author wrote stays, and a namespace
/// no policy governs gets nothing.
async fn defaults_are_filled_in(cluster: &Cluster) -> anyhow::Result<()> {
    let out = cluster.kubectl(
        &[
            "patch",
            "leitwerkpolicy",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"spec": {"defaults": {"prometheusUrl": "http://prometheus.monitoring:9090/team-a"}}}"#,
        ],
        None,
    )?;
    anyhow::ensure!(out.status.success(), "{}", stderr(&out));
    let without_url = |name: &str| {
        experiment(name, "-")
            .lines()
            .filter(|l| !l.contains("prometheusUrl"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let without_cost =
        |name: &str| pipeline(name, 1.0, true, "openai-key").replace(", maxCost: 1}", "}");
    cluster.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "openai-key",
            "-n",
            "team-b",
            "--from-literal=key=sk-2",
        ],
        None,
    )?;
    for (ns, yaml) in [
        ("team-a", without_url("defaulted")),
        ("team-a", without_cost("defaulted")),
        ("team-b", without_url("bare")),
        ("team-b", without_cost("bare")),
    ] {
        let out = cluster.kubectl(&["apply", "-n", ns, "-f", "-"], Some(&yaml))?;
        anyhow::ensure!(out.status.success(), "{ns}: {}", stderr(&out));
    }
    let get = |kind: &str, ns: &str, name: &str| {
        let out = cluster.kubectl(&["get", kind, "-n", ns, name, "-o", "json"], None);
        out.ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .unwrap_or_default()
    };
    let exp = get("experiment", "team-a", "defaulted");
    assert_eq!(
        exp["spec"]["prometheusUrl"], "http://prometheus.monitoring:9090/team-a",
        "{exp}"
    );
    assert_eq!(
        exp["metadata"]["annotations"]["leitwerk.dev/defaulted"],
        "spec.prometheusUrl=http://prometheus.monitoring:9090/team-a (LeitwerkPolicy team-a)"
    );
    // No default was asked for the cost: the policy's limit (as the audit trail left it) is
    // filled in.
    let limit = get("leitwerkpolicy", "default", "team-a")["spec"]["maxRunCost"]
        .as_f64()
        .unwrap_or_default();
    assert!(limit > 0.0);
    let run = get("contentpipeline", "team-a", "defaulted");
    assert_eq!(run["spec"]["budget"]["maxCost"], limit, "{run}");
    assert_eq!(
        run["metadata"]["annotations"]["leitwerk.dev/defaulted"],
        format!("spec.budget.maxCost={limit:?} (LeitwerkPolicy team-a)")
    );
    // The Experiment written with its own Prometheus earlier kept it.
    let own = get("experiment", "team-a", "allowed");
    assert_eq!(
        own["spec"]["prometheusUrl"],
        "http://prometheus.monitoring:9090/"
    );
    assert!(own["metadata"]["annotations"]["leitwerk.dev/defaulted"].is_null());
    for kind in ["experiment", "contentpipeline"] {
        let bare = get(kind, "team-b", "bare");
        assert!(bare["spec"].is_object(), "{kind} bare was stored: {bare}");
        assert!(
            bare["metadata"]["annotations"]["leitwerk.dev/defaulted"].is_null()
                && bare["spec"]["prometheusUrl"].is_null()
                && bare["spec"]["budget"]["maxCost"].is_null(),
            "{bare}"
        );
    }
    Ok(())
}

/// A CA and a serving certificate for 127.0.0.1 written as a `kubernetes.io/tls` Secret
/// mounts them (what cert-manager issues); the CA's PEM.
fn issue(dir: &std::path::Path) -> anyhow::Result<String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &*ca)?;
    // As a Secret volume changes: all files at once, by renaming.
    let next = dir.with_extension("next");
    std::fs::create_dir_all(&next)?;
    std::fs::write(next.join("tls.crt"), leaf.pem())?;
    std::fs::write(next.join("tls.key"), key.serialize_pem())?;
    std::fs::write(next.join("ca.crt"), ca.pem())?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&next, dir)?;
    Ok(ca.pem())
}

/// With `--webhook-cert-dir` the operator serves the certificate it finds there (as cert-manager
/// issues it), writes that CA to both webhook configurations, and after a renewal with a new
/// CA serves the new certificate, the API server trusting it, without a restart.
async fn certificates_from_a_directory(
    cluster: &Cluster,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let certs = dir.join("webhook-tls");
    let first = issue(&certs)?;
    let port = free_port()?;
    let operator = OperatorProcess::start(
        cluster,
        OPERATOR,
        "team-a",
        &[
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-url",
            &format!("https://127.0.0.1:{port}"),
            "--webhook-cert-dir",
            &certs.display().to_string(),
        ],
    )
    .await?;
    let bundles = || -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for (kind, name) in [
            ("validatingwebhookconfiguration", "leitwerk-policy"),
            ("mutatingwebhookconfiguration", "leitwerk-defaults"),
        ] {
            let got = cluster.kubectl(
                &[
                    "get",
                    kind,
                    name,
                    "-o",
                    "jsonpath={.webhooks[0].clientConfig.caBundle}",
                ],
                None,
            )?;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(String::from_utf8_lossy(&got.stdout).trim())
                .unwrap_or_default();
            out.push(String::from_utf8_lossy(&pem).into_owned());
        }
        Ok(out)
    };
    // The webhook answers over the mounted certificate: its denial, not a TLS error.
    let refused = |what: &str| {
        let (ok, text) = as_user(
            cluster,
            &[],
            &["apply", "--dry-run=server", "-n", "team-a", "-f", "-"],
            Some(&experiment("forged-again", "http://169.254.169.254/latest")),
        );
        assert!(
            !ok && text.contains("LeitwerkPolicy team-a, rule prometheusUrls"),
            "{what}: {text}\n{}",
            operator.log_text()
        );
    };
    wait_for(
        "the CA of the mounted certificate",
        Duration::from_secs(30),
        || async {
            let now = bundles()?;
            Ok((
                now.iter().all(|b| b == &first).then_some(()),
                format!("{now:?}"),
            ))
        },
    )
    .await?;
    refused("the first certificate");

    let second = issue(&certs)?;
    assert_ne!(first, second);
    wait_for(
        "the renewed certificate's CA",
        Duration::from_secs(40),
        || async {
            let now = bundles()?;
            let done = now
                .iter()
                .all(|b| b.starts_with(second.trim_end()) && b.contains(first.trim_end()));
            Ok((done.then_some(()), format!("{now:?}")))
        },
    )
    .await?;
    // The API server reaches the renewed certificate (the old CA alone would not verify it).
    wait_for(
        "the renewed certificate served",
        Duration::from_secs(30),
        || async {
            let log = operator.log_text();
            Ok((
                log.contains("serving the renewed webhook certificate")
                    .then_some(()),
                log,
            ))
        },
    )
    .await?;
    refused("the renewed certificate");
    operator.stop().await?;
    Ok(())
}
