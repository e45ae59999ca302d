//! Admission: the operator's validating webhook, which enforces every `LeitwerkPolicy` and the
//! checks no policy can switch off (a user may reference only the Secrets they could read; only
//! a listed approver may approve a content run).
//!
//! The operator makes its own CA and serving certificate at start (`rcgen`), serves HTTPS on
//! `--webhook-addr`, and keeps the `ValidatingWebhookConfiguration` `leitwerk-policy` pointing
//! at itself with that CA. Its `failurePolicy` is `Fail`: while no operator answers, Leitwerk
//! resources cannot be created or changed, so no rule can be skipped by waiting.

pub mod audit;
pub mod review;
pub mod rules;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tracing::{info, warn};

/// The webhook configuration's name.
pub const CONFIGURATION: &str = "leitwerk-policy";
/// The path the API server posts reviews to.
pub const PATH: &str = "/validate";

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

    fn client_config(&self, ca_bundle: &str) -> serde_json::Value {
        match self {
            Endpoint::Url(url) => serde_json::json!({
                "url": format!("{}{PATH}", url.trim_end_matches('/')),
                "caBundle": ca_bundle,
            }),
            Endpoint::Service(ns, name, port) => serde_json::json!({
                "service": {"namespace": ns, "name": name, "port": port, "path": PATH},
                "caBundle": ca_bundle,
            }),
        }
    }
}

/// A CA and a serving certificate for `names`, made now: the CA's PEM and the TLS config.
pub fn certificates(names: Vec<String>) -> anyhow::Result<(String, Arc<rustls::ServerConfig>)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "leitwerk-webhook-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "leitwerk-webhook");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf.signed_by(&leaf_key, &*ca)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    Ok((ca.pem(), Arc::new(config)))
}

/// Serves the webhook on `listen` until the task is dropped, and points the webhook
/// configuration at it.
pub async fn start(
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    listen: SocketAddr,
    endpoint: Endpoint,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (ca_pem, tls) = certificates(endpoint.names()?)?;
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
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    configure(&client, &endpoint, &ca_bundle)
        .await
        .context("failed to write the ValidatingWebhookConfiguration leitwerk-policy")?;
    info!(%listen, ?endpoint, "serving admission reviews");
    Ok(task)
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
            "clientConfig": endpoint.client_config(ca_bundle),
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
            "clientConfig": endpoint.client_config(ca_bundle),
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

async fn configure(
    client: &kube::Client,
    endpoint: &Endpoint,
    ca_bundle: &str,
) -> anyhow::Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let params = PatchParams::apply(leitwerk_crds::FIELD_MANAGER).force();
    let body = configuration(endpoint, ca_bundle);
    for attempt in 1..=5 {
        match api
            .patch(CONFIGURATION, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if attempt < 5 => {
                warn!(%err, attempt, "writing the webhook configuration failed; retrying");
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
