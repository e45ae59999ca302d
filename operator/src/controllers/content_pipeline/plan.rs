//! The plan of a ContentPipeline (pure): from what was read — the run id, the RagIndex's
//! serving version, the outcomes of the run's Jobs and the editor's annotations — to the Job
//! to start, the run to record and the status to show.
//!
//! A run goes Generating (the content Job) → its result is recorded once → Failed, or
//! AwaitingApproval until an editor approves or rejects it by run id → Publish (the publish
//! Job) → Published. Each transition publishes its Events once: when it is first recorded.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::ContentPipeline;
use leitwerk_crds::content_pipeline::{
    ContentPipelinePhase, ContentRun, ContentSummary, PublishSummary,
};
use leitwerk_crds::labels::{APPROVE, APPROVED_BY, REJECT, RERUN};

use super::budget::{Allowance, grant};
use super::build::{RunJob, build_content_job, build_publish_job, template_digest};
use crate::config::OperatorConfig;
use crate::jobs::JobOutcome;
use crate::notice::Notice;
use crate::reconcile::{Outcome, truncate};
use crate::status::{Desired, READY};

/// The condition of the fact check.
pub const GROUNDED: &str = "Grounded";
/// The condition of the budget.
pub const WITHIN_BUDGET: &str = "WithinBudget";
/// The condition of the editor's decision.
pub const APPROVED: &str = "Approved";
/// The condition of the delivery.
pub const PUBLISHED: &str = "Published";

const ACTION: &str = "Generate";

/// What the plan reads.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The run id of the spec as it is.
    pub run_id: String,
    /// The RagIndex's serving version and its index file, when it serves one.
    pub index: Option<(String, String)>,
    /// The link map the run id was derived from.
    pub link_map: BTreeMap<String, String>,
    /// The team's prompt templates the run id was derived from (empty: built-in ones).
    pub templates: BTreeMap<String, String>,
    /// The outcome of this run's content Job, if it exists.
    pub content: Option<JobOutcome<ContentSummary>>,
    /// The outcome of this run's publish Job, if it exists.
    pub publish: Option<JobOutcome<PublishSummary>>,
    /// What the namespace may still spend today, when the spec sets daily limits.
    pub allowance: Option<Allowance>,
}

/// What the reconcile applies.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Job to create.
    pub start: Option<Job>,
    /// The status to show.
    pub outcome: Outcome<ContentPipelinePhase>,
    /// The run to record.
    pub run: ContentRun,
}

/// The plan. `now` is RFC 3339.
pub fn plan(pipeline: &ContentPipeline, config: &OperatorConfig, read: Read, now: &str) -> Plan {
    let rerun = rerun_requested(pipeline, &read.run_id);
    // A rerun starts the run afresh: nothing of the failed attempt carries over.
    let prior = prior_run(pipeline, &read.run_id).filter(|_| rerun.is_none());
    let mut run = prior.clone().unwrap_or_else(|| ContentRun {
        id: read.run_id.clone(),
        template_digest: Some(template_digest(&read.templates)),
        attempt: rerun.as_ref().map_or(0, |r| r.0),
        rerun_token: rerun.map(|r| r.1),
        ..ContentRun::default()
    });
    let mut events = Vec::new();
    let plan = |start: Option<Job>, outcome: Outcome<ContentPipelinePhase>, run: ContentRun| Plan {
        start,
        outcome,
        run,
    };

    // 1. The content Job: start it, wait for it, or record its result once.
    if run.result.is_none() {
        match read.content.clone() {
            None => {
                let Some((version, url)) = read.index.clone() else {
                    let index = &pipeline.spec.rag_index_ref.name;
                    return plan(
                        None,
                        Outcome::new(
                            ContentPipelinePhase::WaitingForIndex,
                            Desired::not(
                                READY,
                                "WaitingForRagIndex",
                                format!("waiting for RagIndex {index:?} to serve a version"),
                            ),
                        ),
                        run,
                    );
                };
                let (tokens, cost) = match grant(pipeline, read.allowance) {
                    Ok(granted) => granted,
                    Err(why) => {
                        let outcome = Outcome::new(
                            ContentPipelinePhase::Pending,
                            Desired::failed(READY, "DailyBudgetExhausted", why),
                        )
                        .recheck_after(until_midnight(now));
                        return plan(None, outcome, run);
                    }
                };
                run.started_at = Some(now.to_string());
                run.index_version = Some(version.clone());
                run.granted_tokens = Some(tokens);
                run.granted_cost = cost;
                let job = build_content_job(
                    pipeline,
                    config,
                    &RunJob {
                        run: &run.id,
                        attempt: run.attempt,
                        index_url: &url,
                        link_map: &read.link_map,
                        templates: &read.templates,
                        budget: (tokens, cost),
                    },
                );
                let again = if run.attempt > 0 {
                    format!(" (attempt {}, asked for by {RERUN})", run.attempt + 1)
                } else {
                    String::new()
                };
                let note = format!(
                    "run {}{again} started: grounded in RagIndex {} version {version}",
                    run.id, pipeline.spec.rag_index_ref.name
                );
                let outcome = generating(&run.id, None).with_events([Notice::normal(
                    ACTION,
                    "RunStarted",
                    note,
                )]);
                return plan(Some(job), outcome, run);
            }
            Some(JobOutcome::Running { unschedulable, .. }) => {
                return plan(None, generating(&run.id, unschedulable), run);
            }
            Some(JobOutcome::Failed { reason }) => {
                events.push(Notice::warning(
                    ACTION,
                    "RunFailed",
                    format!("run {}: the content Job failed: {reason}", run.id),
                ));
                run.result = Some(ContentSummary {
                    run_id: run.id.clone(),
                    reason: Some(format!("the content Job failed: {reason}")),
                    ..ContentSummary::default()
                });
            }
            Some(JobOutcome::Succeeded { summary, .. }) => {
                events.extend(stage_events(&summary));
                run.result = Some(summary);
            }
        }
    }
    let result = run.result.clone().unwrap_or_default();
    let mut conditions = vec![grounded(pipeline, &result), within_budget(&result)];

    // 2. A run that failed its checks or its budget stops here; nothing is published.
    if !result.passed {
        let reason = if result.budget_exceeded {
            "BudgetExceeded"
        } else {
            "RunFailed"
        };
        let message = format!(
            "run {} failed: {}; nothing was published",
            run.id,
            truncate(result.reason.as_deref().unwrap_or("a check failed"), 600)
        );
        let mut outcome = Outcome::new(
            ContentPipelinePhase::Failed,
            Desired::failed(READY, reason, message),
        );
        outcome.conditions = conditions;
        return plan(None, outcome.with_events(events), run);
    }

    // 3. The editor's decision, by run id.
    let annotations = pipeline.annotations();
    let by = annotations
        .get(APPROVED_BY)
        .cloned()
        .unwrap_or_else(|| "an unnamed editor".into());
    let required = pipeline.spec.approval.as_ref().is_some_and(|a| a.required);
    if annotations.get(REJECT) == Some(&run.id) {
        if run.decided_by.is_none() {
            run.decided_by = Some(by.clone());
            events.push(Notice::normal(
                ACTION,
                "Rejected",
                format!("run {} was rejected by {by}; it is not published", run.id),
            ));
        }
        conditions.push(Desired::not(
            APPROVED,
            "Rejected",
            format!("rejected by {by}"),
        ));
        let mut outcome = Outcome::new(
            ContentPipelinePhase::Rejected,
            Desired::not(
                READY,
                "Rejected",
                format!(
                    "run {} was rejected by {by}; change the spec for a new run",
                    run.id
                ),
            ),
        );
        outcome.conditions = conditions;
        return plan(None, outcome.with_events(events), run);
    }
    if required && annotations.get(APPROVE) != Some(&run.id) {
        if prior.as_ref().is_none_or(|p| p.result.is_none()) {
            events.push(Notice::normal(
                ACTION,
                "AwaitingApproval",
                format!("run {} passed every check and waits for an editor", run.id),
            ));
        }
        let how = format!(
            "approve with `kubectl annotate contentpipeline {name} {APPROVE}={id} {APPROVED_BY}=<you>` or reject with `kubectl annotate contentpipeline {name} {REJECT}={id}`",
            name = pipeline.name_any(),
            id = run.id
        );
        conditions.push(Desired::not(APPROVED, "AwaitingApproval", how.clone()));
        let mut outcome = Outcome::new(
            ContentPipelinePhase::AwaitingApproval,
            Desired::not(
                READY,
                "AwaitingApproval",
                format!("run {} passed: {how}", run.id),
            ),
        );
        outcome.conditions = conditions;
        return plan(None, outcome.with_events(events), run);
    }
    if required && run.decided_by.is_none() {
        run.decided_by = Some(by.clone());
        events.push(Notice::normal(
            ACTION,
            "Approved",
            format!("run {} was approved by {by}", run.id),
        ));
    }
    conditions.push(match &run.decided_by {
        Some(by) => Desired::ok(APPROVED, "Approved", format!("approved by {by}")),
        None => Desired::ok(APPROVED, "NotRequired", "the spec requires no approval"),
    });

    // 4. Publishing.
    let artifacts = result.artifacts.clone().unwrap_or_default();
    let payload = format!("{}/payload.json", artifacts.trim_end_matches('/'));
    let mut start = None;
    let (phase, ready, published) = match (&run.published_to, &pipeline.spec.publish, read.publish)
    {
        (Some(to), _, _) => published(to),
        (None, None, _) => {
            run.published_to = Some(payload.clone());
            events.push(Notice::normal(
                ACTION,
                "Published",
                format!(
                    "run {}: no publish target, the payload stays at {payload}",
                    run.id
                ),
            ));
            published(&payload)
        }
        (None, Some(_), None) => {
            let digest = result.payload_digest.clone().unwrap_or_default();
            start = Some(build_publish_job(
                pipeline, config, &run.id, &payload, &digest,
            ));
            publishing(&run.id)
        }
        (None, Some(_), Some(JobOutcome::Running { .. })) => publishing(&run.id),
        (None, Some(_), Some(JobOutcome::Succeeded { summary, .. })) => {
            events.push(Notice::normal(
                ACTION,
                "Published",
                format!("run {} was published to {}", run.id, summary.published_to),
            ));
            run.published_to = Some(summary.published_to.clone());
            published(&summary.published_to)
        }
        (None, Some(_), Some(JobOutcome::Failed { reason })) => {
            let message = format!("run {} could not be published: {reason}", run.id);
            events.push(Notice::warning(ACTION, "PublishFailed", message.clone()));
            (
                ContentPipelinePhase::Failed,
                Desired::failed(READY, "PublishFailed", message.clone()),
                Desired::failed(PUBLISHED, "PublishFailed", message),
            )
        }
    };
    conditions.push(published);
    let mut outcome = Outcome::new(phase, ready);
    outcome.conditions = conditions;
    plan(start, outcome.with_events(events), run)
}

/// The run in status when it is `run_id`'s.
pub fn prior_run(pipeline: &ContentPipeline, run_id: &str) -> Option<ContentRun> {
    pipeline
        .status
        .as_ref()
        .and_then(|s| s.run.clone())
        .filter(|r| r.id == run_id)
}

/// `(attempt, token)` when `leitwerk.dev/rerun` asks for another attempt of `run_id`: its
/// current attempt failed (it was not rejected or published) and the annotation's value is
/// one no attempt answered yet.
pub fn rerun_requested(pipeline: &ContentPipeline, run_id: &str) -> Option<(i32, String)> {
    let token = pipeline.annotations().get(RERUN)?;
    let prior = prior_run(pipeline, run_id)?;
    let failed = prior.result.as_ref().is_some_and(|r| !r.passed) && prior.published_to.is_none();
    (failed && prior.rerun_token.as_ref() != Some(token))
        .then(|| (prior.attempt + 1, token.clone()))
}

/// The attempt whose Job the plan reads: the next one when a rerun is asked for.
pub fn attempt_to_read(pipeline: &ContentPipeline, run_id: &str) -> i32 {
    rerun_requested(pipeline, run_id)
        .map(|r| r.0)
        .or_else(|| prior_run(pipeline, run_id).map(|r| r.attempt))
        .unwrap_or(0)
}

/// The time from `now` (RFC 3339) to the next 00:00 UTC, at least a minute.
fn until_midnight(now: &str) -> std::time::Duration {
    let seconds = now
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| 86_400 - t.as_second().rem_euclid(86_400))
        .unwrap_or(3600);
    std::time::Duration::from_secs(u64::try_from(seconds.max(60)).unwrap_or(3600))
}

fn generating(run: &str, unschedulable: Option<String>) -> Outcome<ContentPipelinePhase> {
    let message = match unschedulable {
        Some(why) => format!("run {run} waits for a node: {why}"),
        None => format!("run {run} is generating"),
    };
    // Rechecked while it runs, so that its progress in status moves.
    Outcome::new(
        ContentPipelinePhase::Running,
        Desired::not(READY, "Generating", message),
    )
    .recheck_after(std::time::Duration::from_secs(10))
}

fn publishing(run: &str) -> (ContentPipelinePhase, Desired, Desired) {
    let message = format!("run {run} is being published");
    (
        ContentPipelinePhase::Running,
        Desired::not(READY, "Publishing", message.clone()),
        Desired::not(PUBLISHED, "Publishing", message),
    )
}

fn published(to: &str) -> (ContentPipelinePhase, Desired, Desired) {
    let message = format!("published to {to}");
    (
        ContentPipelinePhase::Published,
        Desired::ok(READY, "Published", message.clone()),
        Desired::ok(PUBLISHED, "Published", message),
    )
}

fn grounded(pipeline: &ContentPipeline, r: &ContentSummary) -> Desired {
    let message = format!(
        "{} of {} claims grounded (faithfulness {:.2}, at least {:.2} required)",
        r.grounded_claims, r.claims, r.faithfulness, pipeline.spec.guardrails.min_grounded_claims
    );
    if r.claims > 0 && r.faithfulness >= pipeline.spec.guardrails.min_grounded_claims {
        Desired::ok(GROUNDED, "Grounded", message)
    } else if r.claims == 0 {
        Desired::failed(GROUNDED, "NoClaims", "the run produced no checkable claim")
    } else {
        Desired::failed(GROUNDED, "Ungrounded", message)
    }
}

fn within_budget(r: &ContentSummary) -> Desired {
    let message = format!("{} tokens, cost {:.4}", r.tokens, r.cost);
    if r.budget_exceeded {
        Desired::failed(
            WITHIN_BUDGET,
            "BudgetExceeded",
            format!(
                "the run stopped before a call that could exceed the budget ({message}): {}",
                r.reason.clone().unwrap_or_default()
            ),
        )
    } else {
        Desired::ok(WITHIN_BUDGET, "WithinBudget", message)
    }
}

/// The Events of a finished run: one per stage, one per fallback, one for a budget stop.
pub fn stage_events(summary: &ContentSummary) -> Vec<Notice> {
    let mut out: Vec<Notice> = summary
        .stages
        .iter()
        .map(|s| {
            let by = s
                .generator
                .as_deref()
                .map(|g| format!(", {g}"))
                .unwrap_or_default();
            let first = s
                .findings
                .first()
                .map(|f| format!(": {f}"))
                .unwrap_or_default();
            Notice::of(
                !s.passed,
                ACTION,
                if s.passed {
                    "StagePassed"
                } else {
                    "StageFailed"
                },
                format!(
                    "run {} {} {} in {} ms ({} tokens{by}){first}",
                    summary.run_id,
                    s.stage,
                    if s.passed { "passed" } else { "failed" },
                    s.duration_ms,
                    s.tokens
                ),
            )
        })
        .collect();
    out.extend(summary.fallbacks.iter().map(|f| {
        Notice::warning(
            ACTION,
            "GeneratorFallback",
            format!("run {}: {f}", summary.run_id),
        )
    }));
    if summary.budget_exceeded {
        out.push(Notice::warning(
            ACTION,
            "BudgetExceeded",
            format!(
                "run {} stopped: {}",
                summary.run_id,
                summary.reason.clone().unwrap_or_default()
            ),
        ));
    }
    out
}
