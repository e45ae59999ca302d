//! The children of a ContentPipeline, built from its spec (pure): the content Job of a run,
//! the publish Job of an approved run, and the token-less ServiceAccount both run as. Each Job
//! receives only the Secrets its own step needs: generator API keys and the redaction key go
//! to the content Job, the webhook's token and signing key to the publish Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, ServiceAccount};
use kube::{Resource, ResourceExt};
use leitwerk_crds::command::{ContentArgs, JobArgs, JobCommand, PublishArgs};
use leitwerk_crds::contract::{
    LINK_MAP_ENV, REDACTION_KEY_ENV, TEMPLATES_ENV, WEBHOOK_SIGNING_KEY_ENV, WEBHOOK_TOKEN_ENV,
    api_key_env,
};
use leitwerk_crds::labels::{CONTENT_PIPELINE, RUN};
use leitwerk_crds::{ContentPipeline, ContentPipelineSpec};

use crate::apply::hash_of;
use crate::config::OperatorConfig;
use crate::service_account;
use crate::workloads::{MANAGED_BY, PodParts, child_name, spec_env, store_mount, trainer_job};

/// The built-in prompt templates' version, part of every run id, so that new built-in
/// templates start new runs.
pub const TEMPLATES: &str = "builtin-v1";

/// What a run records of its templates: the built-in version, and a digest of the team's own.
pub fn template_digest(templates: &BTreeMap<String, String>) -> String {
    if templates.is_empty() {
        TEMPLATES.to_string()
    } else {
        format!("{TEMPLATES}+{}", &hash_of(templates)[..12])
    }
}

/// One hour: a content run that takes longer has stalled on its generators.
const RUN_DEADLINE_SECONDS: i64 = 3600;

/// The run id: a digest of everything that decides the content (briefing, index reference,
/// generators, stages, guardrails, budget, revisions), the link map's entries and the prompt
/// templates (the built-in version and the team's own). Approval and the publish target are left out: approving or re-targeting a run
/// does not write it again. Twelve hex digits.
pub fn run_id(
    spec: &ContentPipelineSpec,
    link_map: &BTreeMap<String, String>,
    templates: &BTreeMap<String, String>,
) -> String {
    let deciding = serde_json::json!({
        "briefing": spec.briefing,
        "ragIndexRef": spec.rag_index_ref,
        "generators": spec.generators,
        "stages": spec.stages,
        "guardrails": spec.guardrails,
        "budget": spec.budget,
        "maxRevisions": spec.max_revisions,
        "linkMap": link_map,
        "templates": [TEMPLATES],
        "ownTemplates": templates,
    });
    hash_of(&deciding)[..12].to_string()
}

/// Name of the ServiceAccount the pipeline's Jobs run as.
pub fn service_account_name(pipeline: &ContentPipeline) -> String {
    child_name(&pipeline.name_any(), "content")
}

/// Name of the content Job of `run`'s `attempt` (0 for the first).
pub fn content_job_name(pipeline: &ContentPipeline, run: &str, attempt: i32) -> String {
    if attempt == 0 {
        child_name(&pipeline.name_any(), &format!("content-{run}"))
    } else {
        child_name(&pipeline.name_any(), &format!("content-{run}-{attempt}"))
    }
}

/// What one content Job runs: the run and its attempt, the index version's file, the link
/// map and templates the run id was derived from, and the budget (tokens, cost) it was
/// granted.
#[derive(Debug, Clone, Copy)]
pub struct RunJob<'a> {
    /// The run id.
    pub run: &'a str,
    /// The attempt.
    pub attempt: i32,
    /// The index version's file.
    pub index_url: &'a str,
    /// The link map.
    pub link_map: &'a BTreeMap<String, String>,
    /// The team's templates.
    pub templates: &'a BTreeMap<String, String>,
    /// The granted budget.
    pub budget: (i64, Option<f64>),
}

/// Name of the publish Job of `run`.
pub fn publish_job_name(pipeline: &ContentPipeline, run: &str) -> String {
    child_name(&pipeline.name_any(), &format!("publish-{run}"))
}

/// The token-less ServiceAccount of the pipeline's Jobs.
pub fn build_service_account(pipeline: &ContentPipeline) -> Option<ServiceAccount> {
    service_account::token_less(pipeline, service_account_name(pipeline), CONTENT_PIPELINE)
}

fn parts(pipeline: &ContentPipeline, config: &OperatorConfig, run: &str) -> PodParts {
    PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (CONTENT_PIPELINE.to_string(), pipeline.name_any()),
            (RUN.to_string(), run.to_string()),
        ]),
        mounts: store_mount(&config.artifact_store, &config.artifact_claim_name, false)
            .into_iter()
            .collect(),
        env: vec![spec_env(&pipeline.spec)],
        resources: None,
        scheduling: None,
        service_account: service_account_name(pipeline),
        secret_env: config.artifact_store_secret.iter().cloned().collect(),
    }
}

fn job_args(pipeline: &ContentPipeline, config: &OperatorConfig) -> JobArgs {
    JobArgs::new(
        &pipeline.namespace().unwrap_or_default(),
        &pipeline.name_any(),
        &config.artifact_store,
    )
}

fn job(
    pipeline: &ContentPipeline,
    config: &OperatorConfig,
    name: &str,
    args: Vec<String>,
    p: &PodParts,
) -> Job {
    trainer_job(
        name,
        &pipeline.namespace().unwrap_or_default(),
        pipeline.controller_owner_ref(&()).unwrap_or_default(),
        &config.trainer_image,
        args,
        p,
        // A retry would spend the budget again: a failed run is reported, not repeated.
        Some(0),
        Some(RUN_DEADLINE_SECONDS),
    )
}

/// The content Job of a run.
pub fn build_content_job(pipeline: &ContentPipeline, config: &OperatorConfig, r: &RunJob) -> Job {
    let RunJob {
        run,
        attempt,
        index_url,
        link_map,
        templates,
        budget,
    } = *r;
    let mut p = parts(pipeline, config, run);
    // The run's budget is what it was granted: the spec's, or what the day has left.
    let mut spec = pipeline.spec.clone();
    spec.budget.max_tokens = budget.0;
    spec.budget.max_cost = budget.1;
    p.env = vec![spec_env(&spec)];
    p.env.push(EnvVar {
        name: LINK_MAP_ENV.into(),
        value: serde_json::to_string(link_map).ok(),
        ..Default::default()
    });
    if !templates.is_empty() {
        p.env.push(EnvVar {
            name: TEMPLATES_ENV.into(),
            value: serde_json::to_string(templates).ok(),
            ..Default::default()
        });
    }
    for (i, g) in pipeline.spec.generators.iter().enumerate() {
        if let Some(key) = g
            .open_ai_compatible
            .as_ref()
            .and_then(|o| o.api_key_secret_ref.as_ref())
        {
            p.env
                .push(crate::references::secret_key_env(api_key_env(i), key));
        }
    }
    if let Some(key) = &pipeline.spec.guardrails.redaction_key_secret_ref {
        p.env.push(crate::references::secret_key_env(
            REDACTION_KEY_ENV.into(),
            key,
        ));
    }
    let args = JobCommand::Content {
        job: job_args(pipeline, config),
        content: ContentArgs {
            run_id: run.into(),
            index: index_url.into(),
            // The trainer image sets LEITWERK_EMBEDDING_MODEL_DIR.
            model_dir: None,
            link_map: None,
            templates: None,
        },
    }
    .to_args();
    let mut job = job(
        pipeline,
        config,
        &content_job_name(pipeline, run, attempt),
        args,
        &p,
    );
    super::sidecar::add_sidecars(&mut job, pipeline, config);
    job
}

/// The publish Job of an approved `run` whose payload is at `payload` with `digest`.
pub fn build_publish_job(
    pipeline: &ContentPipeline,
    config: &OperatorConfig,
    run: &str,
    payload: &str,
    digest: &str,
) -> Job {
    let mut p = parts(pipeline, config, run);
    if let Some(hook) = pipeline
        .spec
        .publish
        .as_ref()
        .and_then(|t| t.webhook.as_ref())
    {
        if let Some(token) = &hook.token_secret_ref {
            p.env.push(crate::references::secret_key_env(
                WEBHOOK_TOKEN_ENV.into(),
                token,
            ));
        }
        if let Some(key) = &hook.signing_secret_ref {
            p.env.push(crate::references::secret_key_env(
                WEBHOOK_SIGNING_KEY_ENV.into(),
                key,
            ));
        }
    }
    let args = JobCommand::PublishContent {
        job: job_args(pipeline, config),
        publish: PublishArgs {
            run_id: run.into(),
            payload: payload.into(),
            digest: digest.into(),
        },
    }
    .to_args();
    let mut job = job(pipeline, config, &publish_job_name(pipeline, run), args, &p);
    if super::publisher::target(pipeline).is_some() {
        super::publisher::run_as_publisher(&mut job, pipeline);
    }
    job
}
