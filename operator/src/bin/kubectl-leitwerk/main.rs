//! `kubectl leitwerk`: the kubectl plugin for steering and reading Leitwerk resources, as
//! `kubectl argo rollouts` does for Rollouts. Put `kubectl-leitwerk` on the PATH.
//!
//! Steering writes the same declarative annotations a person or a pipeline could write
//! (`leitwerk.dev/control: <action>:<nonce>` with `leitwerk.dev/requested-by`, or
//! `leitwerk.dev/approve`), waits until the operator has handled the request, and prints what
//! came of it. Reading shows a Model as a tree of its versions, the Experiments that use it
//! and its drift, and an Experiment's decisions as a timeline with their evidence.

use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use leitwerk_crds::labels::{APPROVE, APPROVED_BY, CONTROL, PIN, REQUESTED_BY};
use leitwerk_crds::{ContentPipeline, Experiment, Model};

mod render;
use render::{timeline, tree};

/// Steer and inspect Leitwerk resources.
#[derive(Parser, Debug)]
#[command(name = "kubectl-leitwerk", version, about)]
struct Cli {
    /// Namespace; the kubeconfig context's when left out.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Who asks, recorded with the request; the kubeconfig context's user when left out.
    #[arg(long, global = true)]
    by: Option<String>,
    /// Seconds to wait for the operator to handle a request.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A Model as a tree: versions with their metrics, the Experiments using it, drift.
    Status {
        /// `model/NAME`.
        target: String,
    },
    /// An Experiment's decisions as a timeline, with the evidence of each.
    Why {
        /// `experiment/NAME`.
        target: String,
    },
    /// Promote a canary now, skipping its remaining steps.
    Promote {
        /// `experiment/NAME`.
        target: String,
    },
    /// Send all traffic back to the stable variant now.
    Abort {
        /// `experiment/NAME`.
        target: String,
    },
    /// Hold an Experiment's analysis and weights.
    Pause {
        /// `experiment/NAME`.
        target: String,
    },
    /// Continue a paused Experiment.
    Resume {
        /// `experiment/NAME`.
        target: String,
    },
    /// Start an ended Experiment again, with its variants resolved anew.
    Retry {
        /// `experiment/NAME`.
        target: String,
    },
    /// Train a new version of a Model now.
    Retrain {
        /// `model/NAME`.
        target: String,
    },
    /// Pin a Model to one of its versions: it serves that version, and Experiments and the
    /// drift policy leave it until `unpin`.
    Pin {
        /// `model/NAME`.
        target: String,
        /// The version, e.g. `v2`.
        version: String,
    },
    /// Remove a Model's pin; what serves stays until something changes it.
    Unpin {
        /// `model/NAME`.
        target: String,
    },
    /// Approve a ContentPipeline's run that waits for approval.
    Approve {
        /// `contentpipeline/NAME`.
        target: String,
        /// The run id; the current run's when left out.
        #[arg(long)]
        run: Option<String>,
    },
}

/// `kind/name` → name, checking the kind.
fn name_of<'a>(target: &'a str, kinds: &[&str]) -> anyhow::Result<&'a str> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{target:?}: name it as {}/NAME", kinds[0]))?;
    anyhow::ensure!(
        kinds.contains(&kind.to_lowercase().as_str()),
        "{target:?}: this command works on {}/NAME",
        kinds[0]
    );
    anyhow::ensure!(!name.is_empty(), "{target:?}: the name is empty");
    Ok(name)
}

const EXPERIMENT: &[&str] = &[
    "experiment",
    "experiments",
    "exp",
    "experiment.leitwerk.dev",
];
const MODEL: &[&str] = &["model", "models", "model.leitwerk.dev"];
const PIPELINE: &[&str] = &[
    "contentpipeline",
    "contentpipelines",
    "cp",
    "contentpipeline.leitwerk.dev",
];

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("kubectl leitwerk: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("no cluster: {e}"))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let by = match &cli.by {
        Some(b) => b.clone(),
        None => requester().unwrap_or_else(|| "kubectl-leitwerk".into()),
    };
    let client = Client::try_from(config)?;
    let timeout = Duration::from_secs(cli.timeout);
    let steer = |action: &'static str, target: String| {
        let api = Api::<Experiment>::namespaced(client.clone(), &namespace);
        let by = by.clone();
        async move {
            let name = name_of(&target, EXPERIMENT)?.to_string();
            let request = Request {
                kind: "experiment",
                name: &name,
                action,
                by: &by,
                timeout,
            };
            control(&api, request, |e: &Experiment| {
                e.status.as_ref().and_then(|s| s.last_control.clone())
            })
            .await
        }
    };
    match cli.command {
        Command::Status { target } => {
            let name = name_of(&target, MODEL)?;
            print!("{}", model_tree(&client, &namespace, name).await?);
            Ok(())
        }
        Command::Why { target } => {
            let name = name_of(&target, EXPERIMENT)?;
            let exp = Api::<Experiment>::namespaced(client, &namespace)
                .get(name)
                .await?;
            print!("{}", timeline(&exp));
            Ok(())
        }
        Command::Promote { target } => steer("promote", target).await,
        Command::Abort { target } => steer("abort", target).await,
        Command::Pause { target } => steer("pause", target).await,
        Command::Resume { target } => steer("resume", target).await,
        Command::Retry { target } => steer("retry", target).await,
        Command::Retrain { target } => {
            let name = name_of(&target, MODEL)?;
            let api = Api::<Model>::namespaced(client, &namespace);
            let request = Request {
                kind: "model",
                name,
                action: "retrain",
                by: &by,
                timeout,
            };
            control(&api, request, |m: &Model| {
                m.status.as_ref().and_then(|s| s.last_control.clone())
            })
            .await
        }
        Command::Pin { target, version } => {
            let name = name_of(&target, MODEL)?;
            let api = Api::<Model>::namespaced(client, &namespace);
            pin(&api, name, Some(&version), &by, timeout).await
        }
        Command::Unpin { target } => {
            let name = name_of(&target, MODEL)?;
            let api = Api::<Model>::namespaced(client, &namespace);
            pin(&api, name, None, &by, timeout).await
        }
        Command::Approve { target, run } => {
            let name = name_of(&target, PIPELINE)?;
            approve(client, &namespace, name, run, &by).await
        }
    }
}

/// The user of the kubeconfig's current context.
fn requester() -> Option<String> {
    let kubeconfig = kube::config::Kubeconfig::read().ok()?;
    let current = kubeconfig.current_context.clone()?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?
        .user
        .clone()
}

/// One `leitwerk.dev/control` request.
struct Request<'a> {
    kind: &'a str,
    name: &'a str,
    action: &'a str,
    by: &'a str,
    timeout: Duration,
}

/// Writes `leitwerk.dev/control: <action>:<nonce>` and waits until the operator recorded it
/// (what `last` reads from the status).
async fn control<K>(
    api: &Api<K>,
    r: Request<'_>,
    last: impl Fn(&K) -> Option<leitwerk_crds::experiment::ControlStatus>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Request {
        kind,
        name,
        action,
        by,
        timeout,
    } = r;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let value = format!("{action}:{nonce}");
    let patch =
        serde_json::json!({"metadata": {"annotations": {CONTROL: value, REQUESTED_BY: by}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let message = until_handled(api, name, timeout, |k: &K| {
        let c = last(k).filter(|c| c.request == value)?;
        Some(match c.result.strip_prefix("refused: ") {
            Some(why) => Err(anyhow::anyhow!("{kind}/{name}: refused: {why}")),
            None => Ok(format!("{kind}/{name}: {}", c.result)),
        })
    })
    .await
    .map_err(|late| {
        anyhow::anyhow!("{kind}/{name}: asked to {action} ({CONTROL}={value}), but {late}")
    })??;
    println!("{message}");
    Ok(())
}

/// Reads `name` until `handled` says the operator has answered (its message, or a refusal),
/// at most `timeout`; `Err` says how long it waited.
async fn until_handled<K, T>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    handled: impl Fn(&K) -> Option<anyhow::Result<T>>,
) -> Result<anyhow::Result<T>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match api.get(name).await {
            Ok(k) => {
                if let Some(answer) = handled(&k) {
                    return Ok(answer);
                }
            }
            Err(e) => return Ok(Err(e.into())),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the operator has not handled it within {} s; is it running?",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Sets (or, with `None`, removes) `leitwerk.dev/pin` and waits until the operator holds it
/// (or says why it cannot).
async fn pin(
    api: &Api<Model>,
    name: &str,
    version: Option<&str>,
    by: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": {PIN: version, REQUESTED_BY: by}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let message = until_handled(api, name, timeout, |m: &Model| {
        let status = m.status.clone().unwrap_or_default();
        let condition = status.conditions.iter().find(|c| c.type_ == "Pinned");
        match version {
            Some(v)
                if status.pinned_version.as_deref() == Some(v)
                    && status.serving_version.as_deref() == Some(v) =>
            {
                Some(Ok(format!("model/{name}: pinned to {v} by {by}")))
            }
            // A refusal of this version, not one left from an earlier pin.
            Some(v)
                if condition.is_some_and(|c| {
                    c.reason == "PinRefused" && c.message.starts_with(&format!("{PIN}={v}:"))
                }) =>
            {
                let why = condition.map(|c| c.message.clone()).unwrap_or_default();
                Some(Err(anyhow::anyhow!("model/{name}: refused: {why}")))
            }
            None if status.pinned_version.is_none() && condition.is_none() => Some(Ok(format!(
                "model/{name}: unpinned by {by}; {} serves",
                status.serving_version.as_deref().unwrap_or("nothing")
            ))),
            _ => None,
        }
    })
    .await
    .map_err(|late| anyhow::anyhow!("model/{name}: {PIN} is set, but {late}"))??;
    println!("{message}");
    Ok(())
}

async fn approve(
    client: Client,
    namespace: &str,
    name: &str,
    run: Option<String>,
    by: &str,
) -> anyhow::Result<()> {
    let api = Api::<ContentPipeline>::namespaced(client, namespace);
    let pipeline = api.get(name).await?;
    let current = pipeline
        .status
        .as_ref()
        .and_then(|s| s.run.as_ref())
        .map(|r| r.id.clone());
    let run = run.or(current).ok_or_else(|| {
        anyhow::anyhow!("contentpipeline/{name} has no run yet; nothing to approve")
    })?;
    let patch = serde_json::json!({"metadata": {"annotations": {APPROVE: run, APPROVED_BY: by}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    println!("contentpipeline/{name}: run {run} approved by {by}");
    Ok(())
}

/// A Model as a tree.
async fn model_tree(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let model = Api::<Model>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    let experiments = Api::<Experiment>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await?;
    let using: Vec<Experiment> = experiments
        .items
        .into_iter()
        .filter(|e| e.spec.variants.iter().any(|v| v.model_ref.name == name))
        .collect();
    Ok(tree(&model, &using))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_their_kind() {
        assert_eq!(name_of("experiment/x", EXPERIMENT).unwrap(), "x");
        assert_eq!(name_of("exp/x", EXPERIMENT).unwrap(), "x");
        let err = name_of("model/x", EXPERIMENT).unwrap_err().to_string();
        assert!(err.contains("experiment/NAME"), "{err}");
        assert!(name_of("x", MODEL).is_err());
    }

    #[test]
    fn the_timeline_shows_each_decision_with_its_evidence_and_who_asked() {
        let exp: Experiment = yaml_serde::from_str(
            r#"
apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {name: rollout}
spec:
  variants:
    - {name: stable, modelRef: {name: m}, role: Stable}
    - {name: canary, modelRef: {name: m}, role: Candidate}
  strategy: {type: Canary, canary: {steps: [50, 100]}}
  kpis: [{name: cr, query: q, min: 0.9, relativeToStable: true}]
status:
  phase: RolledBack
  decisions:
    - {time: "2026-12-06T10:00:00Z", action: Advance, step: "1/2", message: step passed, values: {cr/canary: 0.12}, thresholds: {cr/canary/min: 0.09}}
    - {time: "2026-12-06T10:01:00Z", action: RollBack, message: "aborted by ana", requestedBy: ana}
"#,
        )
        .unwrap();
        let text = timeline(&exp);
        assert!(text.contains("Advance  [1/2] step passed"), "{text}");
        assert!(text.contains("cr/canary = 0.12 (min 0.09)"), "{text}");
        assert!(text.contains("requested by ana"), "{text}");
    }
}
