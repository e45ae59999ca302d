//! The status of a RagIndex from what the cluster shows (pure), and the retrieval workload.

use leitwerk_crds::RagIndexStatus;

use leitwerk_crds::{
    RagIndex, rag_index::BuildState, rag_index::IndexVersion, rag_index::IndexVersionState,
    rag_index::RagIndexPhase,
};

use super::{
    ACCELERATED, EVALUATED, INDEXED, Observed, SERVING, build_serving, endpoint, serving_name,
};
use crate::{
    context::Context, reconcile::Error, reconcile::Outcome, status::Desired, status::READY,
};
use std::time::Duration;

/// How often a RagIndex with a build running or a Deployment rolling out looks again.
const RECHECK_WORKING: Duration = Duration::from_secs(10);

fn quality_text(v: &IndexVersion) -> String {
    v.quality
        .map(|q| {
            format!(
                "recall@{k} {:.3}, MRR {:.3}, nDCG@{k} {:.3}, first result relevant for {}/{} queries",
                q.recall_at_k,
                q.mrr,
                q.ndcg_at_k,
                q.first_relevant,
                q.queries,
                k = q.k
            )
        })
        .unwrap_or_else(|| "not evaluated".into())
}

/// The Indexed condition: the build running, or how the last one ended.
fn indexed(observed: &Observed) -> Option<Desired> {
    if let Some((job, why)) = &observed.active {
        return Some(match why {
            Some(why) => Desired::failed(
                INDEXED,
                "Unschedulable",
                format!("indexing Job {job} cannot be scheduled: {why}"),
            ),
            None => Desired::not(
                INDEXED,
                "Indexing",
                format!("indexing Job {job} is reading, chunking and embedding the sources"),
            ),
        });
    }
    if let Some(job) = &observed.started {
        return Some(Desired::not(
            INDEXED,
            "Indexing",
            format!("indexing Job {job} was created"),
        ));
    }
    let build = observed.last_build.as_ref()?;
    Some(match build.state {
        BuildState::Running => Desired::not(
            INDEXED,
            "Indexing",
            format!("indexing Job {} is running", build.job),
        ),
        BuildState::Failed => Desired::failed(
            INDEXED,
            "BuildFailed",
            format!(
                "build {} (Job {}) failed: {}; a failed build never replaces the serving version: fix the sources or the spec",
                build.number,
                build.job,
                build.message.clone().unwrap_or_default()
            ),
        ),
        BuildState::Succeeded => Desired::ok(
            INDEXED,
            "Indexed",
            format!(
                "build {} produced version {}: {} added, {} changed, {} removed, {} unchanged documents; {} chunks embedded",
                build.number,
                build.version.clone().unwrap_or_default(),
                build.added.unwrap_or(0),
                build.changed.unwrap_or(0),
                build.removed.unwrap_or(0),
                build.unchanged.unwrap_or(0),
                build.embedded.unwrap_or(0)
            ),
        ),
    })
}

/// The Evaluated condition: the newest version against the gate.
fn evaluated(index: &RagIndex, observed: &Observed) -> Desired {
    let Some(evaluation) = &index.spec.evaluation else {
        return Desired::not(
            EVALUATED,
            "NoLabelledSet",
            "spec.evaluation is not set: every version serves without a quality gate; add a labelled set to gate versions",
        );
    };
    match observed.versions.last() {
        None => Desired::not(EVALUATED, "AwaitingVersion", "no version was built yet"),
        Some(v) if v.state == IndexVersionState::Refused => Desired::failed(
            EVALUATED,
            "BelowGate",
            format!(
                "version {} does not serve: {} ({})",
                v.version,
                v.message.clone().unwrap_or_default(),
                quality_text(v)
            ),
        ),
        Some(v) => Desired::ok(
            EVALUATED,
            "Passed",
            format!(
                "version {}: {} (evaluation.minRecall {:.3}, tolerance {:.3})",
                v.version,
                quality_text(v),
                evaluation.min_recall,
                evaluation.tolerance
            ),
        ),
    }
}

/// The Accelerated condition, when the spec asks for a GPU: where the last finished build
/// embedded, and why on the CPU if so.
fn accelerated(index: &RagIndex, observed: &Observed) -> Option<Desired> {
    index.spec.resources.as_ref()?.gpu.as_ref()?;
    let build = observed
        .last_build
        .as_ref()
        .filter(|b| b.state == BuildState::Succeeded && b.embedded_on.is_some());
    Some(match build {
        None => Desired::not(
            ACCELERATED,
            "AwaitingBuild",
            "no build has embedded on this spec's GPU yet",
        ),
        Some(b) if b.embedded_on.as_deref() == Some("GPU") => Desired::ok(
            ACCELERATED,
            "OnGpu",
            format!(
                "build {} embedded on the GPU (ONNX Runtime's CUDA execution provider)",
                b.number
            ),
        ),
        Some(b) => Desired::failed(
            ACCELERATED,
            "CpuFallback",
            format!(
                "build {} asked for a GPU and embedded on the CPU: {}; the version is the same, only slower",
                b.number,
                b.gpu_fallback
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            ),
        ),
    })
}

/// The status given what the cluster shows. One match over the serving version and the last
/// build, on purpose: each arm is one status a user can see.
pub fn decide(index: &RagIndex, observed: &Observed) -> Outcome<RagIndexPhase> {
    let working = observed.active.is_some() || observed.started.is_some();
    let endpoint = endpoint(index);
    let newest = observed.versions.last();
    let mut outcome = match (observed.serving(), observed.serving_replicas) {
        (Some(v), Some((available, _))) if available >= 1 => {
            let mut o = Outcome::new(
                RagIndexPhase::Ready,
                Desired::ok(
                    READY,
                    "Serving",
                    format!(
                        "version {} serves {} documents in {} chunks at {endpoint} ({})",
                        v.version,
                        v.documents,
                        v.chunks,
                        quality_text(&v)
                    ),
                ),
            );
            o.conditions.push(Desired::ok(
                SERVING,
                "Available",
                format!(
                    "Deployment {} answers for version {} at {endpoint}",
                    serving_name(index),
                    v.version
                ),
            ));
            o
        }
        (Some(v), replicas) => {
            let (available, wanted) = replicas.unwrap_or((0, 1));
            let message = format!(
                "version {} is deploying: {available}/{wanted} replicas of Deployment {} available",
                v.version,
                serving_name(index)
            );
            let mut o = Outcome::new(
                RagIndexPhase::Deploying,
                Desired::not(READY, "AwaitingServing", message.clone()),
            )
            .recheck_after(RECHECK_WORKING);
            o.conditions
                .push(Desired::not(SERVING, "Deploying", message));
            o
        }
        (None, _) => {
            let (phase, ready) = match (&observed.last_build, newest) {
                _ if working => (
                    RagIndexPhase::Indexing,
                    Desired::not(
                        READY,
                        "Indexing",
                        "the first version is being built; it serves once it passes its evaluation",
                    ),
                ),
                (Some(b), _) if b.state == BuildState::Failed => (
                    RagIndexPhase::Failed,
                    Desired::failed(
                        READY,
                        "BuildFailed",
                        format!(
                            "build {} failed and nothing serves: {}",
                            b.number,
                            b.message.clone().unwrap_or_default()
                        ),
                    ),
                ),
                (_, Some(v)) if v.state == IndexVersionState::Refused => (
                    RagIndexPhase::Failed,
                    Desired::failed(
                        READY,
                        "VersionRefused",
                        format!(
                            "version {} failed its evaluation and nothing serves: {}",
                            v.version,
                            v.message.clone().unwrap_or_default()
                        ),
                    ),
                ),
                _ => (
                    RagIndexPhase::Pending,
                    Desired::not(
                        READY,
                        "AwaitingIndexing",
                        "the spec is valid; no index version exists yet",
                    ),
                ),
            };
            let mut o = Outcome::new(phase, ready);
            o.conditions.push(Desired::not(
                SERVING,
                "NoVersion",
                "no version has passed its evaluation yet",
            ));
            o
        }
    };
    if let Some(c) = indexed(observed) {
        outcome.conditions.push(c);
    }
    outcome.conditions.push(evaluated(index, observed));
    if let Some(c) = accelerated(index, observed) {
        outcome.conditions.push(c);
    }
    if working {
        outcome = outcome.recheck_after(RECHECK_WORKING);
    }
    outcome
}

/// Writes what the builds showed into the status.
pub fn apply_observed(status: &mut RagIndexStatus, observed: &Observed, endpoint: &str) {
    let serving = observed.serving();
    status.serving_version = serving.as_ref().map(|v| v.version.clone());
    status.endpoint = serving.as_ref().map(|_| endpoint.to_string());
    status.documents = serving.as_ref().map(|v| v.documents);
    status.chunks = serving.as_ref().map(|v| v.chunks);
    status.recall_at_k = serving
        .as_ref()
        .and_then(|v| v.quality)
        .map(|q| q.recall_at_k);
    status.ndcg_at_k = serving
        .as_ref()
        .and_then(|v| v.quality)
        .map(|q| q.ndcg_at_k);
    status.embedding_model = serving.as_ref().and_then(|v| v.model.clone());
    status.personal_data = serving
        .as_ref()
        .filter(|v| !v.personal_data.is_empty())
        .map(|v| v.personal_data.values().sum());
    status.flagged = serving.as_ref().and_then(|v| v.flagged);
    status.quarantined = serving.as_ref().and_then(|v| v.quarantined);
    status.hidden_html = serving.as_ref().and_then(|v| v.hidden_html);
    let latest = observed.versions.last();
    status.latest_version = latest.map(|v| v.version.clone());
    status.latest_recall_at_k = latest.and_then(|v| v.quality).map(|q| q.recall_at_k);
    status.latest_ndcg_at_k = latest.and_then(|v| v.quality).map(|q| q.ndcg_at_k);
    status.last_indexed = observed.last_indexed.clone();
    status.last_build = observed.last_build.clone();
    status.schedule = observed.schedule.clone();
    status.versions = observed.versions.clone();
}

/// Applies the retrieval Deployment and Service of the serving version; returns the available
/// and wanted replicas.
pub(super) async fn serve(
    ctx: &Context,
    index: &RagIndex,
    ns: &str,
    version: &IndexVersion,
) -> Result<(i32, i32), Error> {
    let (deployment, service) = build_serving(index, &ctx.config, version);
    let wanted = deployment.clone();
    let current = crate::apply::apply_serving(ctx, ns, deployment, service, "retrieval").await?;
    let available = crate::workloads::available_replicas(current.as_ref(), &wanted);
    Ok((available, 1))
}
