//! `leitwerk-operator`: runs Leitwerk's controllers.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use futures::FutureExt;
use leitwerk_operator::{
    admission::{self, Endpoint},
    config::OperatorConfig,
    context::Context,
    controllers::{Scope, run_all},
    http::{HttpState, router},
    leader::{self, Election},
    metrics::Metrics,
};
use prometheus_client::registry::Registry;
use tracing::{error, info};

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Leitwerk's Kubernetes operator: reconciles FeatureSets, Models, Experiments, RagIndexes and
/// ContentPipelines. Connects with the in-cluster service account or $KUBECONFIG.
#[derive(Debug, Parser)]
#[command(name = "leitwerk-operator", version)]
struct Args {
    /// Operator settings (YAML); built-in defaults when left out.
    #[arg(long, env = "LEITWERK_CONFIG")]
    config: Option<PathBuf>,
    /// Watch only this namespace; all namespaces when left out.
    #[arg(long, env = "LEITWERK_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "LEITWERK_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Serve the admission webhook (LeitwerkPolicy, Secret references, approvers) on this
    /// address, e.g. `0.0.0.0:9443`; no webhook when left out.
    #[arg(long, env = "LEITWERK_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// How the API server reaches the webhook: a URL (`https://127.0.0.1:9443` for an
    /// operator outside the cluster), or else `--webhook-service`.
    #[arg(long, env = "LEITWERK_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The Service (port 443, in the lease namespace) in front of the webhook.
    #[arg(
        long,
        env = "LEITWERK_WEBHOOK_SERVICE",
        default_value = "leitwerk-webhook"
    )]
    webhook_service: String,
    /// Serve the webhook with the certificate in this directory (`tls.crt`, `tls.key`,
    /// `ca.crt`: a mounted `kubernetes.io/tls` Secret, e.g. issued by cert-manager), read
    /// again when it changes; when left out the operator makes its own CA at start.
    #[arg(long, env = "LEITWERK_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "LEITWERK_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Disable leader election (only for a single replica, e.g. local runs).
    #[arg(long, env = "LEITWERK_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease; the watched namespace, the pod's namespace or
    /// `default`, in that order, when left out.
    #[arg(long, env = "LEITWERK_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEITWERK_LEASE_NAME", default_value = "leitwerk-operator")]
    lease_name: String,
    /// Identity of this replica; the pod name ($POD_NAME) or host name when left out.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn")
    });
    // Colours only on a terminal: a pod's log (or a file) gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("leitwerk-operator: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts the operator: configuration, client, metrics and health server, leader election and
/// the controllers. A start-up sequence, read top to bottom.
async fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => OperatorConfig::load(path)?,
        None => OperatorConfig::default(),
    };
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let client = kube::Config::infer()
        .await
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            Ok(leitwerk_operator::api_requests::counting_client(
                config,
                metrics.api_requests.clone(),
            )?)
        })
        .context(
            "failed to create a Kubernetes client (in-cluster service account or $KUBECONFIG)",
        )?;
    let ready = Arc::new(AtomicBool::new(false));
    let state = HttpState {
        registry: Arc::new(registry),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("failed to bind the metrics address {}", args.metrics_addr))?;
    info!(addr = %listener.local_addr().unwrap_or(args.metrics_addr), "serving /metrics, /healthz and /readyz");
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        // Scrapes and probes are answered at once, not after the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
    });
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .unwrap_or_else(|| "default".to_string());
    // Every replica answers admission reviews, leader or not.
    let webhook = match args.webhook_addr {
        Some(listen) => {
            let endpoint = match &args.webhook_url {
                Some(url) => Endpoint::Url(url.clone()),
                None => {
                    Endpoint::Service(lease_namespace.clone(), args.webhook_service.clone(), 443)
                }
            };
            let recorder = kube::runtime::events::Recorder::new(
                client.clone(),
                kube::runtime::events::Reporter {
                    controller: "leitwerk-operator".into(),
                    instance: args.identity.clone(),
                },
            );
            let certs = match &args.webhook_cert_dir {
                Some(dir) => admission::certs::Source::Dir(dir.clone()),
                None => admission::certs::Source::Own,
            };
            Some(admission::start(client.clone(), recorder, listen, endpoint, certs).await?)
        }
        None => None,
    };

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("leitwerk-{}", std::process::id()))
    });
    let ctx = Context::new(
        client.clone(),
        metrics.clone(),
        config,
        Some(identity.clone()),
    );
    let scope = Scope {
        namespace: args.namespace.clone(),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    }
    .shared();
    let terminate = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    }
    .shared();
    let stop = {
        let (a, b) = (shutdown.clone(), terminate.clone());
        async move {
            tokio::select! { _ = a => {}, _ = b => {} }
        }
        .shared()
    };

    if args.no_leader_election {
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        metrics.leader.set(1);
        info!(namespace = ?args.namespace, "running controllers without leader election");
        run_all(ctx, scope, stop).await;
    } else {
        let election = Election {
            namespace: lease_namespace,
            lease_name: args.lease_name.clone(),
            identity,
            duration_secs: 15,
        };
        let mut leading = leader::start(client, &election).await?;
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        info!("waiting to become leader");
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leading.changed() => changed.context("leader election stopped")?,
                _ = stop.clone() => return Ok(()),
            }
        }
        metrics.leader.set(1);
        info!(namespace = ?args.namespace, "became leader; starting controllers");
        let lost = async move {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = run_all(ctx, scope, stop.clone()) => {}
            _ = lost => {
                metrics.leader.set(0);
                anyhow::bail!("lost the leader Lease; exiting so that a fresh process competes again");
            }
        }
    }
    server.abort();
    if let Some(webhook) = webhook {
        webhook.abort();
    }
    info!("stopped");
    Ok(())
}
