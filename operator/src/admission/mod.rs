//! Admission: the operator's validating webhook, which enforces every `LeitwerkPolicy` and the
//! checks no policy can switch off (a user may reference only the Secrets they could read; only
//! a listed approver may approve a content run).
//!
//! The operator makes its own CA and serving certificate at start (`rcgen`), serves HTTPS on
//! `--webhook-addr`, and keeps the `ValidatingWebhookConfiguration` `leitwerk-policy` pointing
//! at itself with that CA. Its `failurePolicy` is `Fail`: while no operator answers, Leitwerk
//! resources cannot be created or changed, so no rule can be skipped by waiting. Beside it the
//! `MutatingWebhookConfiguration` `leitwerk-defaults` fills in what policies give as defaults
//! (`defaults`), failing open.

pub mod audit;
pub mod certs;
pub mod defaults;
pub mod review;
pub mod rules;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use tracing::{info, warn};

/// The webhook configuration's name.
pub const CONFIGURATION: &str = "leitwerk-policy";
/// The path the API server posts reviews to.
pub const PATH: &str = "/validate";
/// The mutating webhook configuration's name (defaults from policies).
pub const DEFAULTS_CONFIGURATION: &str = "leitwerk-defaults";
/// The path the API server posts reviews for defaults to.
pub const MUTATE_PATH: &str = "/mutate";

/// How the API server reaches the webhook.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A URL, e.g. `https://127.0.0.1:9443` for an operator outside the cluster.
    Url(String),
    /// A Service in front of the operator's pods: (namespace, name, port).
    Service(String, String, u16),
}

impl Endpoint {
    /// The names the serving certificate must carry.
    fn names(&self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Endpoint::Url(url) => {
                let host = url::Url::parse(url)
                    .with_context(|| format!("--webhook-url {url:?} is not a URL"))?
                    .host_str()
                    .map(str::to_string)
                    .with_context(|| format!("--webhook-url {url:?} names no host"))?;
                vec![host.trim_matches(['[', ']']).to_string()]
            }
            Endpoint::Service(ns, name, _) => vec![
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
            ],
        })
    }

    fn client_config(&self, ca_bundle: &str, path: &str) -> serde_json::Value {
        match self {
            Endpoint::Url(url) => serde_json::json!({
                "url": format!("{}{path}", url.trim_end_matches('/')),
                "caBundle": ca_bundle,
            }),
            Endpoint::Service(ns, name, port) => serde_json::json!({
                "service": {"namespace": ns, "name": name, "port": port, "path": path},
                "caBundle": ca_bundle,
            }),
        }
    }
}

/// Serves the webhook on `listen` until the task is dropped, and points the webhook
/// configurations at it with the CA of `certs` (again whenever a certificate directory's CA
/// changes).
pub async fn start(
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    listen: SocketAddr,
    endpoint: Endpoint,
    certs: certs::Source,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let identity = match &certs {
        certs::Source::Own => certs::own(endpoint.names()?)?,
        certs::Source::Dir(dir) => certs::from_dir(dir)?,
    };
    let current = certs::Current::new(identity.key.clone());
    let tls = certs::server_config(current.clone())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind the webhook address {listen}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = review::router(review::Reviewer::new(client.clone(), recorder));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    tokio::spawn(keep_status(client.clone()));
    configure(&client, &endpoint, &bundle(&identity.ca_pem))
        .await
        .context(
            "failed to write the webhook configurations leitwerk-policy and leitwerk-defaults",
        )?;
    if let certs::Source::Dir(dir) = certs {
        tokio::spawn(reload(
            client,
            endpoint.clone(),
            dir,
            current,
            identity.ca_pem,
        ));
    }
    info!(%listen, ?endpoint, "serving admission reviews");
    Ok(task)
}

fn bundle(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem)
}

/// Serves a renewed certificate from `dir` from the next handshake on, after writing its CA
/// to the webhook configurations when that changed too. A half-written renewal (files that do
/// not fit together) is skipped until the next look.
async fn reload(
    client: kube::Client,
    endpoint: Endpoint,
    dir: std::path::PathBuf,
    current: Arc<certs::Current>,
    mut ca_pem: String,
) {
    let mut seen = certs::fingerprint(&dir);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        every.tick().await;
        let now = certs::fingerprint(&dir);
        if now == seen {
            continue;
        }
        let identity = match certs::from_dir(&dir) {
            Ok(identity) => identity,
            Err(err) => {
                warn!(
                    err = format!("{err:#}"),
                    "the renewed webhook certificate cannot be used yet; still serving the last one"
                );
                continue;
            }
        };
        // A new CA is trusted before a certificate it signed is served; the old one stays in
        // the bundle for connections that raced the change.
        if identity.ca_pem != ca_pem {
            let both = format!("{}\n{ca_pem}", identity.ca_pem.trim_end());
            if let Err(err) = configure(&client, &endpoint, &bundle(&both)).await {
                warn!(%err, "failed to write the new CA to the webhook configurations; trying again in 10 s");
                continue;
            }
            info!("the webhook configurations trust the new CA");
            ca_pem = identity.ca_pem.clone();
        }
        seen = now;
        current.swap(identity.key);
        info!(dir = %dir.display(), "serving the renewed webhook certificate");
    }
}

/// The webhook configuration: every Leitwerk kind, on create and update, failing closed; and
/// LeitwerkPolicies on every change, for the audit trail only.
pub fn configuration(endpoint: &Endpoint, ca_bundle: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION, "labels": {"app.kubernetes.io/managed-by": "leitwerk"}},
        "webhooks": [{
            "name": "policy.leitwerk.dev",
            "admissionReviewVersions": ["v1"],
            // Denials are recorded in the policy's status, except for dry runs.
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": endpoint.client_config(ca_bundle, PATH),
            "rules": [{
                "apiGroups": [leitwerk_crds::GROUP],
                "apiVersions": [leitwerk_crds::VERSION],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["featuresets", "models", "experiments", "ragindexes", "contentpipelines"],
                "scope": "Namespaced",
            }],
        }, {
            // Changes to policies are recorded (user, what changed), never refused: a platform
            // team must be able to fix a policy while the operator is down.
            "name": "audit.leitwerk.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "clientConfig": endpoint.client_config(ca_bundle, PATH),
            "rules": [{
                "apiGroups": [leitwerk_crds::GROUP],
                "apiVersions": [leitwerk_crds::VERSION],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": ["leitwerkpolicies"],
                "scope": "Cluster",
            }],
        }],
    })
}

/// The mutating webhook configuration: new Experiments and ContentPipelines get the defaults
/// their namespace's policies give. `Ignore` on failure: a default is a convenience, and the
/// validating webhook refuses what a policy requires and the author left out.
pub fn defaults_configuration(endpoint: &Endpoint, ca_bundle: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": DEFAULTS_CONFIGURATION, "labels": {"app.kubernetes.io/managed-by": "leitwerk"}},
        "webhooks": [{
            "name": "defaults.leitwerk.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "Never",
            "timeoutSeconds": 5,
            "clientConfig": endpoint.client_config(ca_bundle, MUTATE_PATH),
            "rules": [{
                "apiGroups": [leitwerk_crds::GROUP],
                "apiVersions": [leitwerk_crds::VERSION],
                "operations": ["CREATE"],
                "resources": ["experiments", "contentpipelines"],
                "scope": "Namespaced",
            }],
        }],
    })
}

async fn configure(
    client: &kube::Client,
    endpoint: &Endpoint,
    ca_bundle: &str,
) -> anyhow::Result<()> {
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let params = PatchParams::apply(leitwerk_crds::FIELD_MANAGER).force();
    let body = configuration(endpoint, ca_bundle);
    let defaults = defaults_configuration(endpoint, ca_bundle);
    for attempt in 1..=5 {
        let written = match validating
            .patch(CONFIGURATION, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => mutating
                .patch(DEFAULTS_CONFIGURATION, &params, &Patch::Apply(&defaults))
                .await
                .map(|_| ()),
            Err(err) => Err(err),
        };
        match written {
            Ok(()) => return Ok(()),
            Err(err) if attempt < 5 => {
                warn!(%err, attempt, "writing the webhook configurations failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Keeps each policy's `status.namespaces` equal to the namespaces it selects, every 15 s.
async fn keep_status(client: kube::Client) {
    use kube::ResourceExt as _;
    use leitwerk_crds::LeitwerkPolicy;
    let policies: Api<LeitwerkPolicy> = Api::all(client.clone());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
    loop {
        every.tick().await;
        let (Ok(policies_now), Ok(namespaces_now)) = (
            policies.list(&Default::default()).await,
            namespaces.list(&Default::default()).await,
        ) else {
            continue;
        };
        for policy in policies_now.items {
            let selected: Vec<String> = namespaces_now
                .items
                .iter()
                .filter(|ns| review::selects(&policy, &ns.labels().clone()))
                .map(|ns| ns.name_any())
                .collect();
            let status = policy.status.clone().unwrap_or_default();
            if status.namespaces == selected {
                continue;
            }
            let summary = match selected.len() {
                0 => "none".to_string(),
                1..=3 => selected.join(","),
                n => format!("{},… ({n})", selected[..3].join(",")),
            };
            let patch = serde_json::json!({"status": {"namespaces": selected, "namespacesSummary": summary}});
            if let Err(err) = policies
                .patch_status(
                    &policy.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                warn!(policy = %policy.name_any(), %err, "failed to write the namespaces a policy selects");
            }
        }
    }
}
