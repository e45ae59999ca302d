//! The ContentPipeline's validation, run id and plan, as tables.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use leitwerk_crds::content_pipeline::{
    ContentPipelinePhase, ContentRun, ContentSummary, PublishSummary, StageSummary,
};
use leitwerk_crds::labels::{APPROVE, APPROVED_BY, REJECT};

use super::*;
use crate::config::OperatorConfig;
use crate::jobs::JobOutcome;

fn example() -> ContentPipeline {
    let mut p: ContentPipeline = yaml_serde::from_str(include_str!(
        "../../../../../examples/seo-article/contentpipeline.yaml"
    ))
    .unwrap();
    p.metadata.namespace = Some("marketing".into());
    p.metadata.uid = Some("cp-uid".into());
    p
}

fn links() -> BTreeMap<String, String> {
    BTreeMap::from([("Growth plan".to_string(), "/pricing#growth".to_string())])
}

fn read(content: Option<JobOutcome<ContentSummary>>) -> Read {
    Read {
        run_id: run_id(&example().spec, &links(), &BTreeMap::new()),
        index: Some(("v7".into(), "file:///a/indexes/x.lwrag".into())),
        link_map: links(),
        templates: BTreeMap::new(),
        content,
        publish: None,
        allowance: None,
    }
}

fn passed() -> ContentSummary {
    ContentSummary {
        run_id: run_id(&example().spec, &links(), &BTreeMap::new()),
        passed: true,
        stages: vec![
            StageSummary {
                stage: "Draft".into(),
                passed: true,
                duration_ms: 120,
                tokens: 300,
                generator: Some("gateway".into()),
                ..StageSummary::default()
            },
            StageSummary {
                stage: "FactCheck".into(),
                passed: true,
                duration_ms: 40,
                ..StageSummary::default()
            },
        ],
        claims: 6,
        grounded_claims: 6,
        faithfulness: 1.0,
        tokens: 900,
        cost: 0.0123,
        fallbacks: vec!["gateway: HTTP 500".into()],
        artifacts: Some("file:///a/content/marketing/x/r/".into()),
        payload_digest: Some(format!("sha256:{}", "ab".repeat(32))),
        ..ContentSummary::default()
    }
}

fn succeeded(summary: ContentSummary) -> Option<JobOutcome<ContentSummary>> {
    Some(JobOutcome::Succeeded {
        summary,
        finished: None,
    })
}

fn container(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn args_of(job: &Job) -> Vec<String> {
    container(job).args.clone().unwrap()
}

fn env_names(job: &Job) -> Vec<String> {
    container(job)
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect()
}

fn reasons(p: &Plan) -> Vec<String> {
    p.outcome
        .events
        .iter()
        .map(|e| e.reason.to_string())
        .collect()
}

fn condition<'a>(p: &'a Plan, type_: &str) -> &'a crate::status::Desired {
    p.outcome
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", p.outcome.conditions))
}

/// `example()` with the run's result already recorded in status, as after a first reconcile.
fn recorded(mut p: ContentPipeline, summary: ContentSummary) -> ContentPipeline {
    let mut status = p.status.clone().unwrap_or_default();
    status.run = Some(ContentRun {
        id: summary.run_id.clone(),
        result: Some(summary),
        ..ContentRun::default()
    });
    p.status = Some(status);
    p
}

fn annotated(mut p: ContentPipeline, pairs: &[(&str, &str)]) -> ContentPipeline {
    p.metadata.annotations = Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    p
}

const NOW: &str = "2026-12-06T04:00:00Z";

#[test]
fn a_run_starts_once_the_index_serves_with_only_the_generators_secrets() {
    let config = OperatorConfig::default();
    let mut waiting = read(None);
    waiting.index = None;
    let p = plan(&example(), &config, waiting, NOW);
    assert!(p.start.is_none());
    assert_eq!(p.outcome.phase, ContentPipelinePhase::WaitingForIndex);

    let p = plan(&example(), &config, read(None), NOW);
    let job = p.start.clone().expect("a content Job");
    let id = run_id(&example().spec, &links(), &BTreeMap::new());
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(format!("seo-ab-testing-article-content-{id}").as_str())
    );
    let args = args_of(&job);
    assert_eq!(args[0], "content");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--index" && w[1] == "file:///a/indexes/x.lwrag")
    );
    let env = env_names(&job);
    assert!(
        env.contains(&"LEITWERK_GENERATOR_API_KEY_0".to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&"LEITWERK_REDACTION_KEY".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"LEITWERK_LINK_MAP".to_string()), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("LEITWERK_WEBHOOK")),
        "{env:?}"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(
        spec.backoff_limit,
        Some(0),
        "a retry would spend the budget again"
    );
    assert_eq!(p.outcome.phase, ContentPipelinePhase::Running);
    assert_eq!(p.run.index_version.as_deref(), Some("v7"));
    assert_eq!(p.run.started_at.as_deref(), Some(NOW));
    assert_eq!(reasons(&p), ["RunStarted"]);

    let running = plan(
        &example(),
        &config,
        read(Some(JobOutcome::Running {
            unschedulable: Some("0/1 nodes".into()),
            progress: None,
        })),
        NOW,
    );
    assert!(running.start.is_none());
    assert!(running.outcome.ready.message.contains("0/1 nodes"));
}

#[test]
fn a_passed_run_waits_for_approval_by_its_id_and_publishes_once_approved() {
    let config = OperatorConfig::default();
    let id = run_id(&example().spec, &links(), &BTreeMap::new());
    let first = plan(&example(), &config, read(succeeded(passed())), NOW);
    assert!(first.start.is_none());
    assert_eq!(first.outcome.phase, ContentPipelinePhase::AwaitingApproval);
    assert_eq!(
        reasons(&first),
        [
            "StagePassed",
            "StagePassed",
            "GeneratorFallback",
            "AwaitingApproval"
        ]
    );
    assert!(
        first.outcome.events[0]
            .note
            .contains("Draft passed in 120 ms (300 tokens, gateway)")
    );
    assert!(condition(&first, GROUNDED).status);
    assert!(
        condition(&first, APPROVED)
            .message
            .contains(&format!("leitwerk.dev/approve={id}"))
    );

    // Recorded: the next reconcile repeats no Event; an approval of another run is no approval.
    let stored = recorded(example(), passed());
    let again = plan(
        &annotated(stored.clone(), &[(APPROVE, "0123456789ab")]),
        &config,
        read(None),
        NOW,
    );
    assert_eq!(again.outcome.phase, ContentPipelinePhase::AwaitingApproval);
    assert!(
        again.outcome.events.is_empty(),
        "{:?}",
        again.outcome.events
    );

    let approved = annotated(
        stored.clone(),
        &[(APPROVE, &id), (APPROVED_BY, "editor@example.com")],
    );
    let p = plan(&approved, &config, read(None), NOW);
    let job = p.start.clone().expect("a publish Job");
    let args = args_of(&job);
    assert_eq!(args[0], "publish-content");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--payload" && w[1] == "file:///a/content/marketing/x/r/payload.json")
    );
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--digest" && w[1].starts_with("sha256:abab"))
    );
    let env = env_names(&job);
    assert!(
        env.contains(&"LEITWERK_WEBHOOK_SIGNING_KEY".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("LEITWERK_GENERATOR") || e == "LEITWERK_REDACTION_KEY"),
        "{env:?}"
    );
    assert_eq!(p.run.decided_by.as_deref(), Some("editor@example.com"));
    assert_eq!(reasons(&p), ["Approved"]);
    assert_eq!(condition(&p, PUBLISHED).reason, "Publishing");

    let mut done_read = read(None);
    done_read.publish = Some(JobOutcome::Succeeded {
        summary: PublishSummary {
            published_to: "https://cms.example.com/hooks/leitwerk (after 1 tries)".into(),
        },
        finished: None,
    });
    let mut decided = approved.clone();
    decided
        .status
        .as_mut()
        .unwrap()
        .run
        .as_mut()
        .unwrap()
        .decided_by = Some("editor@example.com".into());
    let done = plan(&decided, &config, done_read, NOW);
    assert!(done.start.is_none());
    assert_eq!(done.outcome.phase, ContentPipelinePhase::Published);
    assert_eq!(reasons(&done), ["Published"]);
    assert!(
        done.run
            .published_to
            .as_deref()
            .unwrap()
            .starts_with("https://cms.example.com")
    );
}

#[test]
fn rejected_failed_and_over_budget_runs_are_never_published() {
    let config = OperatorConfig::default();
    let id = run_id(&example().spec, &links(), &BTreeMap::new());
    let rejected = annotated(
        recorded(example(), passed()),
        &[(REJECT, &id), (APPROVED_BY, "chief@example.com")],
    );
    let p = plan(&rejected, &config, read(None), NOW);
    assert!(p.start.is_none());
    assert_eq!(p.outcome.phase, ContentPipelinePhase::Rejected);
    assert_eq!(reasons(&p), ["Rejected"]);

    let mut ungrounded = passed();
    ungrounded.passed = false;
    ungrounded.grounded_claims = 4;
    ungrounded.faithfulness = 4.0 / 6.0;
    ungrounded.reason = Some("2 of 6 claims unsupported: \"Growth costs €99\"".into());
    let p = plan(
        &annotated(example(), &[(APPROVE, &id)]),
        &config,
        read(succeeded(ungrounded)),
        NOW,
    );
    assert!(p.start.is_none());
    assert_eq!(p.outcome.phase, ContentPipelinePhase::Failed);
    assert_eq!(p.outcome.ready.reason, "RunFailed");
    assert!(p.outcome.ready.message.contains("Growth costs €99"));
    assert_eq!(condition(&p, GROUNDED).reason, "Ungrounded");

    let mut broke = passed();
    broke.passed = false;
    broke.budget_exceeded = true;
    broke.reason = Some(
        "Draft: BudgetExceeded: the next call may use 900 tokens, 100 are left of maxTokens 1000"
            .into(),
    );
    let p = plan(&example(), &config, read(succeeded(broke)), NOW);
    assert_eq!(p.outcome.ready.reason, "BudgetExceeded");
    assert!(!condition(&p, WITHIN_BUDGET).status);
    assert!(reasons(&p).contains(&"BudgetExceeded".to_string()));

    let p = plan(
        &example(),
        &config,
        read(Some(JobOutcome::Failed {
            reason: "index unreadable".into(),
        })),
        NOW,
    );
    assert_eq!(p.outcome.phase, ContentPipelinePhase::Failed);
    assert_eq!(reasons(&p), ["RunFailed"]);
}

#[test]
fn the_run_id_follows_what_decides_the_content_and_nothing_else() {
    let spec = example().spec;
    let none = BTreeMap::new();
    let id = run_id(&spec, &links(), &none);
    assert_eq!(id.len(), 12);
    assert_eq!(run_id(&spec, &links(), &none), id);
    let own = BTreeMap::from([("system".to_string(), "Be brief.".to_string())]);
    assert_ne!(
        run_id(&spec, &links(), &own),
        id,
        "a team's templates decide the content"
    );
    assert_eq!(template_digest(&none), "builtin-v1");
    assert!(template_digest(&own).starts_with("builtin-v1+"));
    let mut approval = spec.clone();
    approval
        .approval
        .as_mut()
        .unwrap()
        .approvers
        .push("x@example.com".into());
    approval.publish.as_mut().unwrap().canonical_url = Some("https://example.com/other".into());
    assert_eq!(
        run_id(&approval, &links(), &none),
        id,
        "approval and target do not decide the content"
    );
    let mut briefing = spec.clone();
    briefing.briefing.goal.push('!');
    assert_ne!(run_id(&briefing, &links(), &none), id);
    let mut other_links = links();
    other_links.insert("SPF".into(), "/docs/spf".into());
    assert_ne!(run_id(&spec, &other_links, &none), id);
}

#[test]
fn the_status_shows_the_run_on_its_printer_columns() {
    let mut status = leitwerk_crds::ContentPipelineStatus {
        phase: Some(ContentPipelinePhase::AwaitingApproval),
        ..Default::default()
    };
    record(
        &mut status,
        ContentRun {
            id: "r1".into(),
            result: Some(passed()),
            ..ContentRun::default()
        },
        "EUR",
    );
    assert_eq!(status.stage.as_deref(), Some("Approval"));
    assert_eq!(status.grounded.as_deref(), Some("6/6"));
    assert_eq!(status.tokens_used, Some(900));
    assert_eq!(status.cost.as_deref(), Some("0.0123 EUR"));
}

#[test]
fn impossible_budgets_and_approvals_are_rejected() {
    assert_eq!(validate(&example().spec), Ok(()));
    let mut spec = example().spec;
    spec.budget.max_tokens = 1000;
    spec.approval.as_mut().unwrap().approvers.clear();
    spec.generators[0].output_price_per_1k_tokens = Some(500.0);
    let fields: Vec<String> = validate(&spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        vec![
            "spec.generators[0].outputPricePer1kTokens",
            "spec.approval.approvers",
            "spec.budget.maxTokens"
        ]
    );
}

#[test]
fn blank_contradictory_and_unpublishable_specs_name_their_fields() {
    let mut spec = example().spec;
    spec.briefing.goal = "   ".into();
    spec.briefing.target_words = Some(100);
    let errors = validate(&spec).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.briefing.goal", "spec.briefing.targetWords"]);
    assert!(
        errors[1].message.contains("3 sections") && errors[1].message.contains("120"),
        "{}",
        errors[1].message
    );
    let mut spec = example().spec;
    spec.publish
        .as_mut()
        .unwrap()
        .webhook
        .as_mut()
        .unwrap()
        .signing_secret_ref = None;
    let errors = validate(&spec).unwrap_err();
    assert_eq!(errors[0].field, "spec.publish.webhook.signingSecretRef");
}

#[test]
fn every_secret_reference_is_checked() {
    let fields: Vec<String> = secret_refs(&example().spec)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.generators[0].openAiCompatible.apiKeySecretRef",
            "spec.guardrails.redactionKeySecretRef",
            "spec.publish.webhook.signingSecretRef"
        ]
    );
}

#[test]
fn the_namespaces_daily_budget_counts_every_pipeline_and_the_runs_still_going() {
    use leitwerk_crds::content_pipeline::DailySpend;
    let today = "2026-12-06";
    let mut mine = example();
    mine.spec.budget.max_tokens_per_day = Some(100_000);
    let mut other = example();
    other.metadata.name = Some("newsletter".into());
    other.status = Some(leitwerk_crds::ContentPipelineStatus {
        spent: Some(DailySpend {
            day: today.into(),
            tokens: 50_000,
            cost: 0.5,
            runs: vec!["a".into()],
        }),
        run: Some(ContentRun {
            id: "b".into(),
            started_at: Some(format!("{today}T03:00:00Z")),
            granted_tokens: Some(20_000),
            ..ContentRun::default()
        }),
        ..Default::default()
    });
    let mut yesterday = other.clone();
    yesterday
        .status
        .as_mut()
        .unwrap()
        .spent
        .as_mut()
        .unwrap()
        .day = "2026-12-05".into();
    yesterday.status.as_mut().unwrap().run = None;
    let left = allowance(&mine, &[mine.clone(), other.clone(), yesterday], today).unwrap();
    assert_eq!(left.tokens, Some(30_000));
    assert_eq!(left.used_tokens, 70_000);
    assert_eq!(grant(&mine, Some(left)), Ok((30_000, Some(2.0))));
    assert!(
        allowance(&example(), &[other.clone()], today).is_none(),
        "no daily limit"
    );

    // The Job gets the granted budget; the run records it.
    let mut r = read(None);
    r.allowance = Some(left);
    let p = plan(&mine, &OperatorConfig::default(), r, NOW);
    assert_eq!(p.run.granted_tokens, Some(30_000));
    let env = p
        .start
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let spec = env.iter().find(|e| e.name == "LEITWERK_SPEC").unwrap();
    let spec: serde_json::Value = serde_json::from_str(spec.value.as_deref().unwrap()).unwrap();
    assert_eq!(spec["budget"]["maxTokens"], 30_000);

    // Used up: no Job, a Warning naming the figures, a look again at midnight.
    mine.spec.budget.max_tokens_per_day = Some(70_200);
    let left = allowance(&mine, &[mine.clone(), other], today);
    let mut r = read(None);
    r.allowance = left;
    let p = plan(&mine, &OperatorConfig::default(), r, NOW);
    assert!(p.start.is_none());
    assert_eq!(p.outcome.ready.reason, "DailyBudgetExhausted");
    assert!(
        p.outcome.ready.message.contains("70000 tokens"),
        "{}",
        p.outcome.ready.message
    );
    assert_eq!(
        p.outcome.recheck,
        Some(std::time::Duration::from_secs(20 * 3600))
    );
}

#[test]
fn a_runs_spend_counts_once_on_the_day_it_started() {
    let run = ContentRun {
        id: "r1".into(),
        started_at: Some("2026-12-06T10:00:00Z".into()),
        result: Some(passed()),
        ..ContentRun::default()
    };
    let once = count(None, &run).unwrap();
    assert_eq!((once.day.as_str(), once.tokens), ("2026-12-06", 900));
    assert_eq!(
        count(Some(once.clone()), &run),
        Some(once.clone()),
        "counted once"
    );
    let next_day = ContentRun {
        id: "r2".into(),
        started_at: Some("2026-12-07T00:10:00Z".into()),
        ..run.clone()
    };
    let fresh = count(Some(once.clone()), &next_day).unwrap();
    assert_eq!(
        (fresh.day.as_str(), fresh.tokens, fresh.runs.len()),
        ("2026-12-07", 900, 1)
    );
    let late = ContentRun {
        id: "r0".into(),
        started_at: Some("2026-12-05T23:59:00Z".into()),
        ..run
    };
    assert_eq!(
        count(Some(fresh.clone()), &late),
        Some(fresh),
        "yesterday's run keeps today's"
    );
}

#[test]
fn a_failed_run_runs_again_once_per_new_rerun_value() {
    use leitwerk_crds::labels::RERUN;
    let config = OperatorConfig::default();
    let id = run_id(&example().spec, &links(), &BTreeMap::new());
    let mut failed = passed();
    failed.passed = false;
    failed.reason = Some("every generator failed: gateway: unreachable".into());
    let mut stored = recorded(example(), failed.clone());
    stored
        .status
        .as_mut()
        .unwrap()
        .run
        .as_mut()
        .unwrap()
        .started_at = Some(NOW.into());

    // No annotation: the failure stands.
    let p = plan(&stored, &config, read(None), NOW);
    assert!(p.start.is_none());
    assert_eq!(p.outcome.phase, ContentPipelinePhase::Failed);
    assert_eq!(attempt_to_read(&stored, &id), 0);

    // A new value: the next attempt starts afresh, under its own Job name.
    let asked = annotated(stored.clone(), &[(RERUN, "t1")]);
    assert_eq!(attempt_to_read(&asked, &id), 1);
    let p = plan(&asked, &config, read(None), NOW);
    let job = p.start.expect("the next attempt's Job");
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(format!("seo-ab-testing-article-content-{id}-1").as_str())
    );
    assert_eq!(
        (p.run.attempt, p.run.rerun_token.as_deref()),
        (1, Some("t1"))
    );
    assert!(p.run.result.is_none());
    assert!(
        p.outcome.events[0].note.contains("attempt 2"),
        "{:?}",
        p.outcome.events
    );

    // The same value after that attempt failed too: nothing more; a new value: attempt 2.
    let mut second = asked.clone();
    let run = second.status.as_mut().unwrap().run.as_mut().unwrap();
    run.attempt = 1;
    run.rerun_token = Some("t1".into());
    assert!(plan(&second, &config, read(None), NOW).start.is_none());
    let again = annotated(second.clone(), &[(RERUN, "t2")]);
    assert_eq!(plan(&again, &config, read(None), NOW).run.attempt, 2);

    // A passed run is not rerun (a rejected one needs a changed spec).
    let fine = annotated(recorded(example(), passed()), &[(RERUN, "t1")]);
    assert_eq!(attempt_to_read(&fine, &id), 0);

    // Each attempt's spend counts.
    let first = count(None, &stored.status.clone().unwrap().run.unwrap()).unwrap();
    let run = second.status.clone().unwrap().run.unwrap();
    let both = count(Some(first.clone()), &run).unwrap();
    assert_eq!(both.tokens, first.tokens * 2);
}

fn to_config_map(mut p: ContentPipeline, name: &str) -> ContentPipeline {
    let target = p.spec.publish.as_mut().unwrap();
    target.webhook = None;
    target.config_map = Some(leitwerk_crds::common::LocalObjectReference { name: name.into() });
    p
}

#[test]
fn only_the_publish_job_of_a_configmap_target_holds_a_token_and_only_for_that_configmap() {
    let config = OperatorConfig::default();
    let payload = "file:///a/content/marketing/x/r/payload.json";
    let pipeline = to_config_map(example(), "lumen-article");
    let job = build_publish_job(&pipeline, &config, "r1", payload, "sha256:00");
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("seo-ab-testing-article-publisher")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    // The content Job and a webhook's publish Job stay token-less.
    let webhook = build_publish_job(&example(), &config, "r1", payload, "sha256:00");
    let pod = webhook.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_ne!(
        pod.service_account_name.as_deref(),
        Some("seo-ab-testing-article-publisher")
    );

    let p = publisher::build(&pipeline).unwrap();
    let rules = p.role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["lumen-article".to_string()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["configmaps".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "patch"]);
    let subject = &p.binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "seo-ab-testing-article-publisher")
    );
    assert_eq!(
        p.service_account.automount_service_account_token,
        Some(false)
    );
    assert_eq!(p.config_map.name_any(), "lumen-article");
    assert!(
        publisher::build(&example()).is_none(),
        "a webhook needs no publisher"
    );

    // A ConfigMap someone else made is never taken over.
    assert!(publisher::ours(None, &pipeline));
    assert!(publisher::ours(Some(&p.config_map), &pipeline));
    let foreign = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("lumen-article".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(!publisher::ours(Some(&foreign), &pipeline));
}

#[test]
fn publishing_into_a_configmap_the_pipeline_reads_is_refused() {
    let mut pipeline = to_config_map(example(), "seo-links");
    pipeline.spec.link_map_ref = Some(leitwerk_crds::common::LocalObjectReference {
        name: "seo-links".into(),
    });
    let errors = validate(&pipeline.spec).unwrap_err();
    assert_eq!(errors[0].field, "spec.publish.configMap.name");
    assert!(
        errors[0].message.contains("spec.linkMapRef"),
        "{}",
        errors[0].message
    );
    assert!(validate(&to_config_map(example(), "lumen-article").spec).is_ok());
}

#[test]
fn a_model_generator_runs_as_a_sidecar_of_the_run_with_its_gpu_and_nothing_else_does() {
    let config = OperatorConfig {
        artifact_store: "file:///var/lib/leitwerk/artifacts".into(),
        ..OperatorConfig::default()
    };
    // The example's second generator is Leitwerk's own, on a GPU.
    let pipeline = example();
    let r = RunJob {
        run: "r1",
        attempt: 0,
        index_url: "file:///a/indexes/x.lwrag",
        link_map: &links(),
        templates: &BTreeMap::new(),
        budget: (10_000, None),
    };
    let job = build_content_job(&pipeline, &config, &r);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let sidecars = pod.init_containers.clone().unwrap();
    assert_eq!(sidecars.len(), 1, "one sidecar per model generator");
    let s = &sidecars[0];
    assert_eq!(s.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        s.args.clone().unwrap(),
        [
            "--generator-model",
            "/var/lib/leitwerk/artifacts/models/smollm2-135m-instruct.gguf",
            "--http-addr",
            "127.0.0.1:18082",
            "--grpc-addr",
            "127.0.0.1:18083"
        ]
    );
    let limits = s.resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(limits["memory"].0, "1Gi");
    assert!(
        pod.containers[0].resources.is_none(),
        "the run itself asks for no GPU"
    );
    let probe = s.startup_probe.clone().unwrap();
    assert_eq!(
        probe.http_get.unwrap().path.as_deref(),
        Some("/v1/models"),
        "the stages start once the model is loaded"
    );
    let mount = &s.volume_mounts.clone().unwrap()[0];
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/var/lib/leitwerk/artifacts", Some(true))
    );
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.key.as_deref() == Some("nvidia.com/gpu"))
    );
    // The sidecar holds no Secret: the API keys stay with the run's own container.
    assert!(s.env.is_none() && s.env_from.is_none());
    // A generator at a url needs no sidecar.
    let mut plain = example();
    plain.spec.generators.truncate(1);
    let plain = build_content_job(&plain, &config, &r);
    assert!(
        plain
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .init_containers
            .is_none()
    );
}
