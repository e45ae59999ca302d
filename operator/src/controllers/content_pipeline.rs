//! The ContentPipeline controller: it derives a run id from everything that decides the
//! content, launches the run's content Job (`leitwerk-trainer content`) once the RagIndex
//! serves a version, records the run's stages and figures, waits for an editor's decision
//! when approval is required, and launches the publish Job (`leitwerk-trainer
//! publish-content`) of an approved run. A changed briefing, generator, guardrail, budget or
//! link map starts a new run.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{
    Api, ResourceExt,
    api::{PartialObjectMeta, PostParams},
    core::DeserializeGuard,
    runtime::{WatchStreamExt, controller::Action, reflector::ObjectRef, watcher},
};
use leitwerk_crds::content_pipeline::{ContentPipelinePhase, ContentSummary, PublishSummary};
use leitwerk_crds::labels::CONTENT_PIPELINE;
use leitwerk_crds::rag_index::IndexVersionState;
use leitwerk_crds::{ContentPipeline, RagIndex};

use crate::cache::Trigger;
use crate::jobs::{JobOutcome, list_owned, outcome};
use crate::references::{get_opt, missing_secret};
use crate::watch::{Scope, drain, referrers};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    service_account,
    validation::summarize,
};

mod budget;
mod build;
mod plan;
mod publisher;
mod sidecar;
#[cfg(test)]
mod tests;
mod validate;

pub use budget::*;
pub use build::*;
pub use plan::*;
pub use validate::*;

pub use crate::reconcile::Error;

/// Runs the ContentPipeline controller. It watches its Jobs (by label), its ServiceAccount,
/// the RagIndexes its pipelines read (a pipeline waiting for its index moves on as soon as
/// the index serves) and the link-map ConfigMaps (metadata only).
pub async fn run(
    ctx: Context,
    scope: Scope,
    service_accounts: Trigger<ServiceAccount>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = crate::watch::controller(
        scope.api::<DeserializeGuard<ContentPipeline>>(client.clone()),
        crate::watch::watch_config(),
    );
    let pipelines = controller.store();
    let stream = controller
        .owns_shared_stream(service_accounts)
        .watches(
            scope.api::<Job>(client.clone()),
            crate::watch::watch_config().labels(CONTENT_PIPELINE),
            |job: Job| {
                let ns = job.namespace().unwrap_or_default();
                job.labels().get(CONTENT_PIPELINE).map(|name| {
                    ObjectRef::<DeserializeGuard<ContentPipeline>>::new(name).within(&ns)
                })
            },
        )
        .watches(
            scope.api::<DeserializeGuard<RagIndex>>(client.clone()),
            crate::watch::watch_config(),
            referrers(pipelines.clone(), |p: &ContentPipeline, name| {
                p.spec.rag_index_ref.name == name
            }),
        )
        .watches_stream(
            watcher(
                scope.api::<PartialObjectMeta<ConfigMap>>(client),
                crate::watch::watch_config(),
            )
            .touched_objects(),
            referrers(pipelines, |p: &ContentPipeline, name| {
                [&p.spec.link_map_ref, &p.spec.templates_ref]
                    .iter()
                    .any(|r| r.as_ref().is_some_and(|r| r.name == name))
            }),
        )
        .with_config(crate::watch::run_config(&ctx.config))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(ContentPipeline::KIND, stream).await;
}

/// Reconciles one ContentPipeline.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<ContentPipeline>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |pipeline, ctx| {
        Box::pin(reconcile_content_pipeline(pipeline, ctx))
    })
    .await
}

/// validate → link map, Secrets, RagIndex → read the run's Jobs → plan → apply → status.
async fn reconcile_content_pipeline(
    pipeline: &ContentPipeline,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns = pipeline.namespace().unwrap_or_default();
    let mut planned = None;
    let mut progress = None;
    let outcome = match validate(&pipeline.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => match resolve(ctx, pipeline, &ns).await? {
            Err(outcome) => outcome,
            Ok(resolved) => {
                crate::network_policy::ensure(ctx, &ns).await?;
                if let Some(sa) = build_service_account(pipeline) {
                    service_account::ensure(ctx, ContentPipeline::KIND, &sa).await?;
                }
                let read = read_run(ctx, pipeline, resolved).await?;
                if let Some(JobOutcome::Running { progress: p, .. }) = &read.0.content {
                    progress = p.clone();
                }
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let mut p = plan(pipeline, &ctx.config, read.0, &now);
                if let Some(job) = p.start.take() {
                    if job.spec.as_ref().is_some_and(|s| {
                        s.template
                            .spec
                            .as_ref()
                            .and_then(|p| p.service_account_name.as_deref())
                            == Some(publisher::publisher_name(pipeline).as_str())
                    }) && let Some(publisher) = publisher::build(pipeline)
                    {
                        ensure_publisher(ctx, &ns, &publisher).await?;
                    }
                    crate::apply::apply(ctx, &ns, &job, "content pipeline Job").await?;
                }
                let outcome = p.outcome.clone().with_events(read.1);
                planned = Some(p.run);
                outcome
            }
        },
    };
    let currency = pipeline.spec.budget.currency.clone();
    let action = reconcile::finish_with(ctx, pipeline, outcome, |status| {
        status.progress = progress;
        if let Some(run) = planned {
            record(status, run, &currency);
        }
        export_metrics(ctx, pipeline, status);
    })
    .await?;
    Ok(action)
}

/// Exports the status of `pipeline` as the operator's metrics: its phase, and the current
/// run's tokens, cost, grounded share and stage durations.
fn export_metrics(
    ctx: &Context,
    pipeline: &ContentPipeline,
    status: &leitwerk_crds::ContentPipelineStatus,
) {
    use crate::metrics::{ContentLabels, ContentPhaseLabels, ContentStageLabels};
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    let phase_of = |p: Option<ContentPipelinePhase>| p.map(|p| p.to_string());
    let labels = |phase: String| ContentPhaseLabels {
        namespace: namespace.clone(),
        pipeline: name.clone(),
        phase,
    };
    let before = phase_of(pipeline.status.as_ref().and_then(|s| s.phase));
    let now = phase_of(status.phase);
    if let Some(b) = before.filter(|b| Some(b) != now.as_ref()) {
        ctx.metrics.content_phase.remove(&labels(b));
    }
    if let Some(n) = now {
        ctx.metrics.content_phase.get_or_create(&labels(n)).set(1);
    }
    let Some(result) = status.run.as_ref().and_then(|r| r.result.as_ref()) else {
        return;
    };
    let run = ContentLabels {
        namespace: namespace.clone(),
        pipeline: name.clone(),
    };
    let m = &ctx.metrics;
    m.content_tokens.get_or_create(&run).set(result.tokens);
    m.content_cost.get_or_create(&run).set(result.cost);
    if result.claims > 0 {
        m.content_grounded
            .get_or_create(&run)
            .set(result.grounded_claims as f64 / result.claims as f64);
    }
    for stage in &result.stages {
        m.content_stage_seconds
            .get_or_create(&ContentStageLabels {
                namespace: namespace.clone(),
                pipeline: name.clone(),
                stage: stage.stage.clone(),
            })
            .set(stage.duration_ms as f64 / 1000.0);
    }
}

/// The publisher's ServiceAccount, Role and RoleBinding, and its target ConfigMap when it
/// does not exist yet (an existing one is this pipeline's: `resolve` checked).
async fn ensure_publisher(
    ctx: &Context,
    ns: &str,
    publisher: &publisher::Publisher,
) -> Result<(), Error> {
    service_account::ensure(ctx, ContentPipeline::KIND, &publisher.service_account).await?;
    crate::apply::apply(ctx, ns, &publisher.role, "publisher Role").await?;
    crate::apply::apply(ctx, ns, &publisher.binding, "publisher RoleBinding").await?;
    let name = publisher.config_map.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .create(&PostParams::default(), &publisher.config_map)
        .await
    {
        Ok(_) => ctx.metrics.wrote("ConfigMap", "child"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(source) => {
            return Err(Error::Apply {
                what: format!("ConfigMap {name}"),
                source,
            });
        }
    }
    Ok(())
}

/// The run's figures on the status's top level (what the printer columns read).
pub fn record(
    status: &mut leitwerk_crds::ContentPipelineStatus,
    run: leitwerk_crds::content_pipeline::ContentRun,
    currency: &str,
) {
    let result = run.result.clone();
    status.stage = Some(
        match (&status.phase, &result) {
            (_, None) => "Generating",
            (Some(ContentPipelinePhase::AwaitingApproval), _) => "Approval",
            (Some(ContentPipelinePhase::Published), _) => "Published",
            (Some(ContentPipelinePhase::Rejected), _) => "Rejected",
            (Some(ContentPipelinePhase::Running), Some(_)) => "Publish",
            (_, Some(r)) => r
                .stages
                .iter()
                .find(|s| !s.passed)
                .map_or("Publish", |s| s.stage.as_str()),
        }
        .to_string(),
    );
    if let Some(r) = &result {
        status.tokens_used = Some(r.tokens);
        status.cost = Some(format!("{:.4} {currency}", r.cost));
        status.grounded = Some(format!("{}/{}", r.grounded_claims, r.claims));
        status.draft = r.payload_digest.clone();
    } else {
        status.tokens_used = None;
        status.cost = None;
        status.grounded = None;
        status.draft = None;
    }
    status.spent = count(status.spent.take(), &run);
    status.run = Some(run);
}

/// The link map and the serving index version, or the outcome naming what is missing or
/// invalid.
async fn resolve(
    ctx: &Context,
    pipeline: &ContentPipeline,
    ns: &str,
) -> Result<Result<Resolved, Outcome<ContentPipelinePhase>>, Error> {
    let mut link_map = BTreeMap::new();
    let mut templates = BTreeMap::new();
    if let Some(reference) = &pipeline.spec.templates_ref {
        let Some(data) = config_map_data(ctx, ns, &reference.name).await? else {
            return Ok(Err(Outcome::missing(
                "ConfigMap",
                &reference.name,
                "spec.templatesRef.name",
                ns,
            )));
        };
        if let Some(key) = data
            .keys()
            .find(|k| !leitwerk_crds::contract::TEMPLATE_KEYS.contains(&k.as_str()))
        {
            return Ok(Err(Outcome::invalid(format!(
                "spec.templatesRef (ConfigMap {}): key {key:?} is not a template: use {}",
                reference.name,
                leitwerk_crds::contract::TEMPLATE_KEYS.join(", ")
            ))));
        }
        templates = data;
    }
    if let Some(reference) = &pipeline.spec.link_map_ref {
        let Some(data) = config_map_data(ctx, ns, &reference.name).await? else {
            return Ok(Err(Outcome::missing(
                "ConfigMap",
                &reference.name,
                "spec.linkMapRef.name",
                ns,
            )));
        };
        match leitwerk_crds::contract::parse_link_map(&data) {
            Ok(links) => link_map = links,
            Err(errors) => {
                return Ok(Err(Outcome::invalid(format!(
                    "spec.linkMapRef (ConfigMap {}): {}",
                    reference.name,
                    errors.join("; ")
                ))));
            }
        }
    }
    if let Some(target) = publisher::target(pipeline) {
        let existing = get_opt::<ConfigMap>(ctx, ns, target)
            .await
            .map_err(|source| Error::Read {
                what: format!("ConfigMap {target}"),
                source,
            })?;
        if !publisher::ours(existing.as_ref(), pipeline) {
            return Ok(Err(Outcome::invalid(format!(
                "spec.publish.configMap.name: ConfigMap {target} exists and is not this pipeline's; Leitwerk publishes only into a ConfigMap it created itself: name a new one or delete {target}"
            ))));
        }
    }
    if let Some(missing) = missing_secret(ctx, ns, secret_refs(&pipeline.spec)).await? {
        return Ok(Err(missing.recheck_after(RECHECK_UNWATCHED)));
    }
    let name = &pipeline.spec.rag_index_ref.name;
    let index = get_opt::<RagIndex>(ctx, ns, name)
        .await
        .map_err(|source| Error::Read {
            what: format!("RagIndex {name}"),
            source,
        })?;
    let Some(index) = index else {
        return Ok(Err(Outcome::missing(
            "RagIndex",
            name,
            "spec.ragIndexRef.name",
            ns,
        )));
    };
    Ok(Ok(Resolved {
        link_map,
        templates,
        index: serving_version(&index),
    }))
}

/// What a pipeline's references resolve to.
struct Resolved {
    link_map: BTreeMap<String, String>,
    templates: BTreeMap<String, String>,
    index: Option<(String, String)>,
}

/// The data of ConfigMap `name`, `None` when it does not exist.
async fn config_map_data(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, Error> {
    let cm = get_opt::<ConfigMap>(ctx, ns, name)
        .await
        .map_err(|source| Error::Read {
            what: format!("ConfigMap {name}"),
            source,
        })?;
    Ok(cm.map(|c| c.data.unwrap_or_default()))
}

/// The version a RagIndex serves and its index file.
pub fn serving_version(index: &RagIndex) -> Option<(String, String)> {
    let status = index.status.as_ref()?;
    status
        .versions
        .iter()
        .find(|v| v.state == IndexVersionState::Serving)
        .map(|v| (v.version.clone(), v.url.clone()))
}

/// The reads the plan needs: the run id and the outcomes of the run's trusted Jobs, and the
/// Warnings naming Jobs that carry the pipeline's labels without being its own.
async fn read_run(
    ctx: &Context,
    pipeline: &ContentPipeline,
    resolved: Resolved,
) -> Result<(Read, Vec<crate::notice::Notice>), Error> {
    let Resolved {
        link_map,
        templates,
        index,
    } = resolved;
    let run_id = run_id(&pipeline.spec, &link_map, &templates);
    let budget = &pipeline.spec.budget;
    let allowance = if budget.max_tokens_per_day.is_some() || budget.max_cost_per_day.is_some() {
        let ns = pipeline.namespace().unwrap_or_default();
        // Guarded: one malformed pipeline in the namespace must not stop the others.
        let all: Vec<ContentPipeline> =
            kube::Api::<DeserializeGuard<ContentPipeline>>::namespaced(ctx.client.clone(), &ns)
                .list(&Default::default())
                .await
                .map_err(|source| Error::Read {
                    what: "ContentPipelines".into(),
                    source,
                })?
                .items
                .into_iter()
                .filter_map(|p| p.0.ok())
                .collect();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        allowance(pipeline, &all, day_of(&now))
    } else {
        None
    };
    let selector = format!("{CONTENT_PIPELINE}={}", pipeline.name_any());
    let owned = list_owned(ctx, pipeline, &selector, false, "Generate").await?;
    let find = |name: String| owned.trusted.iter().find(|j| j.name_any() == name);
    let attempt = attempt_to_read(pipeline, &run_id);
    let content = match find(content_job_name(pipeline, &run_id, attempt)) {
        Some(job) => Some(outcome::<ContentSummary>(ctx, job).await?),
        None => None,
    };
    let publish = match find(publish_job_name(pipeline, &run_id)) {
        Some(job) => Some(outcome::<PublishSummary>(ctx, job).await?),
        None => None,
    };
    Ok((
        Read {
            run_id,
            index,
            link_map,
            templates,
            content,
            publish,
            allowance,
        },
        owned.foreign,
    ))
}
