use leitwerk_crds::rag_index::IndexBuild;
use leitwerk_crds::rag_index::SearchMode;
use leitwerk_crds::summary::{EmbeddingModelIdentity, IndexSummary, RetrievalQuality};

use super::*;
use crate::config::OperatorConfig;
use leitwerk_crds::rag_index::{BuildState, IndexVersion, IndexVersionState};
use std::collections::BTreeMap;

mod gate;
mod plan;
mod stores;

fn example() -> RagIndex {
    let mut index: RagIndex = yaml_serde::from_str(include_str!(
        "../../../../examples/product-docs-rag/ragindex.yaml"
    ))
    .unwrap();
    index.metadata.namespace = Some("marketing".into());
    index.metadata.uid = Some("uid-1".into());
    index.metadata.generation = Some(1);
    index
}

/// Quality on the example's 44 labelled queries with recall@5 `recall`.
fn quality(recall: f64) -> RetrievalQuality {
    RetrievalQuality {
        k: 5,
        recall_at_k: recall,
        mrr: 0.9,
        ndcg_at_k: 0.9,
        first_relevant: 40,
        queries: 44,
    }
}

fn summary(digest: &str, recall: f64) -> IndexSummary {
    IndexSummary {
        version: digest[..12].to_string(),
        digest: format!("sha256:{digest}"),
        url: format!("file:///artifacts/indexes/marketing/product-docs/{digest}.lwrag"),
        collection: None,
        embedded_on_gpu: false,
        gpu_fallback: None,
        documents: 32,
        chunks: 120,
        added: 32,
        changed: 0,
        removed: 0,
        unchanged: 0,
        embedded: 120,
        from_scratch: true,
        model: EmbeddingModelIdentity {
            name: "all-MiniLM-L6-v2".into(),
            dimension: 384,
            ..Default::default()
        },
        quality: Some(quality(recall)),
        search_mode: SearchMode::Dense,
        quality_by_mode: Default::default(),
        serving_quality: None,
        personal_data: 0,
        personal_data_by_kind: Default::default(),
        injection: 0,
        flagged: 0,
        quarantined: 0,
        hidden_html: 0,
    }
}

fn built(index: &RagIndex, observed: &mut Observed, number: i64, digest: &str, recall: f64) {
    let mut build = IndexBuild {
        number,
        job: build_job_name(index, number),
        ..Default::default()
    };
    record_version(index, observed, &mut build, summary(digest, recall), None);
    observed.last_build = Some(build);
}

#[test]
fn the_first_version_serves_only_when_it_passes_and_a_worse_one_never_replaces_it() {
    let index = example();
    let mut observed = Observed::default();
    built(&index, &mut observed, 1, &"a".repeat(64), 0.70);
    assert_eq!(observed.versions[0].state, IndexVersionState::Refused);
    let outcome = decide(&index, &observed);
    assert_eq!(
        (outcome.phase, outcome.ready.reason.as_str()),
        (RagIndexPhase::Failed, "VersionRefused")
    );
    assert!(outcome.ready.message.contains("0.700") && outcome.ready.message.contains("0.800"));

    built(&index, &mut observed, 2, &"b".repeat(64), 0.966);
    assert_eq!(observed.serving().unwrap().build, 2);
    observed.serving_replicas = Some((1, 1));
    let outcome = decide(&index, &observed);
    assert_eq!(
        (outcome.phase, outcome.ready.reason.as_str()),
        (RagIndexPhase::Ready, "Serving")
    );

    // 0.90 is more than the 0.02 tolerance below 0.966: refused, naming both, and b serves on.
    built(&index, &mut observed, 3, &"c".repeat(64), 0.90);
    assert_eq!(observed.serving().unwrap().version, "b".repeat(12));
    let refused = observed.versions.last().unwrap();
    assert_eq!(refused.state, IndexVersionState::Refused);
    let why = refused.message.clone().unwrap();
    assert!(why.contains("0.900") && why.contains("0.966"), "{why}");
    assert!(why.contains(&format!("version {} keeps serving", "b".repeat(12))));
    let outcome = decide(&index, &observed);
    assert_eq!(outcome.phase, RagIndexPhase::Ready);
    let evaluated = outcome
        .conditions
        .iter()
        .find(|c| c.type_ == EVALUATED)
        .unwrap();
    assert_eq!(
        (evaluated.status, evaluated.reason.as_str()),
        (false, "BelowGate")
    );
    let events: Vec<&str> = observed.events.iter().map(|e| e.reason.as_ref()).collect();
    assert_eq!(events, vec!["Refused", "Promoted", "Refused"]);
}

#[test]
fn versions_are_bounded_and_the_serving_one_is_always_kept() {
    let mut index = example();
    index.spec.version_history_limit = 2;
    let mut observed = Observed::default();
    built(&index, &mut observed, 1, &"a".repeat(64), 0.95);
    built(&index, &mut observed, 2, &"b".repeat(64), 0.50);
    built(&index, &mut observed, 3, &"c".repeat(64), 0.40);
    let kept: Vec<(String, IndexVersionState)> = observed
        .versions
        .iter()
        .map(|v| (v.version.clone(), v.state))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("a".repeat(12), IndexVersionState::Serving),
            ("c".repeat(12), IndexVersionState::Refused)
        ]
    );
    // The same digest again is no new version.
    built(&index, &mut observed, 4, &"a".repeat(64), 0.95);
    assert_eq!(observed.versions.len(), 2);
    assert_eq!(observed.events.last().unwrap().reason, "Unchanged");
}

#[test]
fn builds_are_due_for_a_new_spec_new_sources_or_the_schedule_only() {
    let index = example();
    assert!(build_due(&index, None, "d1", false));
    let last = IndexBuild {
        number: 1,
        generation: Some(1),
        sources_digest: Some("d1".into()),
        state: BuildState::Failed,
        ..Default::default()
    };
    assert!(
        !build_due(&index, Some(&last), "d1", false),
        "a failed build is not retried by itself"
    );
    assert!(build_due(&index, Some(&last), "d2", false));
    assert!(build_due(&index, Some(&last), "d1", true));
    let mut edited = example();
    edited.metadata.generation = Some(2);
    assert!(build_due(&edited, Some(&last), "d1", false));
}

#[test]
fn the_index_job_mounts_its_sources_and_labelled_set_and_keeps_the_versions_in_status() {
    let index = example();
    let config = OperatorConfig::default();
    let inputs = BuildInputs {
        number: 4,
        sources_digest: "d1".into(),
        previous: Some("file:///a/x.lwrag".into()),
        serving: Some(("file:///a/w.lwrag".into(), SearchMode::Hybrid)),
        keep: vec!["file:///a/x.lwrag".into(), "file:///a/y.lwrag".into()],
        scheduled_for: None,
    };
    let job = build_index_job(&index, &config, &inputs);
    assert_eq!(job.name_any(), "product-docs-index-4");
    let pod = job.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap().join(" ");
    assert!(args.starts_with("index "), "{args}");
    for part in [
        "--source product-docs=/sources/product-docs",
        "--labelled /evaluation/queries.jsonl",
        "--k 5",
        "--previous file:///a/x.lwrag",
        "--serving file:///a/w.lwrag --serving-mode Hybrid",
        "--prune --keep file:///a/x.lwrag --keep file:///a/y.lwrag",
    ] {
        assert!(args.contains(part), "{part} in {args}");
    }
    let volumes = pod.volumes.unwrap();
    let source = volumes.iter().find(|v| v.name == "source-0").unwrap();
    assert_eq!(source.config_map.as_ref().unwrap().name, "product-docs");
    let eval = volumes.iter().find(|v| v.name == "evaluation").unwrap();
    assert_eq!(
        eval.config_map.as_ref().unwrap().items.as_ref().unwrap()[0].key,
        "queries.jsonl"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("product-docs-ragindex")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
}

#[test]
fn an_index_job_asks_for_the_gpu_the_spec_names() {
    let mut index = example();
    index.spec.resources = Some(leitwerk_crds::common::WorkloadResources {
        cpu: Some("2".into()),
        memory: None,
        gpu: Some(leitwerk_crds::common::GpuResources {
            count: 1,
            resource_name: "nvidia.com/gpu".into(),
        }),
    });
    let job = build_index_job(&index, &OperatorConfig::default(), &BuildInputs::default());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(limits["cpu"].0, "2");
    // The Job and the retrieval pods are told to embed on it.
    let args = pod.containers[0].args.clone().unwrap();
    assert!(args.iter().any(|a| a == "--gpu"), "{args:?}");
    let serving = build_serving(&index, &OperatorConfig::default(), &IndexVersion::default()).0;
    let args = serving.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.iter().any(|a| a == "--embedding-gpu"), "{args:?}");
    let plain = build_index_job(
        &example(),
        &OperatorConfig::default(),
        &BuildInputs::default(),
    );
    let args = plain.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(!args.iter().any(|a| a == "--gpu"), "{args:?}");
}

#[test]
fn retrieval_pods_batch_concurrent_texts_without_waiting() {
    let serving = build_serving(
        &example(),
        &OperatorConfig::default(),
        &IndexVersion::default(),
    )
    .0;
    let args = serving.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    assert_eq!(value("--max-batch-size").as_deref(), Some("32"), "{args:?}");
    assert_eq!(
        value("--max-batch-delay-ms").as_deref(),
        Some("0"),
        "{args:?}"
    );
}

#[test]
fn file_sources_mount_their_claim_at_the_glob_prefix() {
    assert_eq!(static_prefix("/docs/**/*.md"), "/docs");
    assert_eq!(static_prefix("/docs/product/faq.md"), "/docs/product");
    assert_eq!(static_prefix("/*.md"), "/");
}

#[test]
fn unknown_models_oversized_chunks_and_bad_schedules_are_named() {
    assert_eq!(validate(&example().spec), Ok(()));
    let mut spec = example().spec;
    spec.embedding.model = "text-embedding-3-large".into();
    spec.refresh_schedule = Some("nightly".into());
    let fields: Vec<String> = validate(&spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, vec!["spec.embedding.model", "spec.refreshSchedule"]);
    let mut spec = example().spec;
    spec.chunking = Default::default();
    assert_eq!(validate(&spec), Ok(()), "the defaults are valid");
    spec.chunking.max_tokens = 256;
    assert_eq!(
        validate(&spec).unwrap_err()[0].field,
        "spec.chunking.maxTokens"
    );
}

#[test]
fn a_failed_build_leaves_the_serving_version_serving_and_says_why() {
    let index = example();
    let mut observed = Observed::default();
    built(&index, &mut observed, 1, &"a".repeat(64), 0.95);
    observed.serving_replicas = Some((1, 1));
    observed.last_build = Some(IndexBuild {
        number: 2,
        job: build_job_name(&index, 2),
        state: BuildState::Failed,
        message: Some("source product-docs: product-docs/logo.md: not text".into()),
        ..Default::default()
    });
    let outcome = decide(&index, &observed);
    assert_eq!(
        (outcome.phase, outcome.ready.status),
        (RagIndexPhase::Ready, true)
    );
    let indexed = outcome
        .conditions
        .iter()
        .find(|c| c.type_ == INDEXED)
        .unwrap();
    assert_eq!(
        (indexed.status, indexed.reason.as_str()),
        (false, "BuildFailed")
    );
    assert!(
        indexed.message.contains("product-docs/logo.md"),
        "{}",
        indexed.message
    );
    assert_eq!(observed.serving().unwrap().version, "a".repeat(12));

    // Without a serving version, the RagIndex fails and names the build's problem.
    let mut first = Observed {
        last_build: observed.last_build.clone(),
        ..Default::default()
    };
    first.recorded = true;
    let outcome = decide(&index, &first);
    assert_eq!(
        (outcome.phase, outcome.ready.reason.as_str()),
        (RagIndexPhase::Failed, "BuildFailed")
    );
    assert!(outcome.ready.message.contains("not text"));
}

#[test]
fn source_credentials_reach_the_index_job_only() {
    let mut index = example();
    index
        .spec
        .sources
        .push(leitwerk_crds::rag_index::DocumentSource {
            name: "bucket".into(),
            file: None,
            object_store: Some(leitwerk_crds::rag_index::DocumentObjects {
                url: "s3://docs/product/".into(),
                credentials_secret_ref: Some(leitwerk_crds::common::SecretReference {
                    name: "docs-bucket-creds".into(),
                }),
            }),
            config_map_ref: None,
            feed: None,
        });
    let config = OperatorConfig {
        artifact_store_secret: Some("artifact-store-creds".into()),
        ..Default::default()
    };
    let secrets_of = |pod: &k8s_openapi::api::core::v1::PodSpec| -> Vec<String> {
        pod.containers[0]
            .env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
            .collect()
    };
    let job = build_index_job(&index, &config, &BuildInputs::default());
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        secrets_of(&pod),
        ["artifact-store-creds", "docs-bucket-creds"]
    );

    let serving = build_serving(&index, &config, &IndexVersion::default()).0;
    let template = serving.spec.unwrap().template;
    assert_eq!(
        secrets_of(template.spec.as_ref().unwrap()),
        ["artifact-store-creds"]
    );
    let text = serde_json::to_string(&template).unwrap();
    assert!(!text.contains("docs-bucket-creds"), "{text}");

    let delete = build_delete_job(&index, &config);
    let pod = delete.spec.unwrap().template.spec.unwrap();
    assert_eq!(secrets_of(&pod), ["artifact-store-creds"]);
}

#[test]
fn ingest_findings_count_by_kind_and_never_carry_a_value() {
    let index = example();
    let mut observed = Observed::default();
    let mut s = summary(&"c".repeat(64), 0.95);
    s.personal_data = 3;
    s.personal_data_by_kind = BTreeMap::from([
        ("IBAN".to_string(), 1),
        ("card number".to_string(), 1),
        ("e-mail address".to_string(), 1),
    ]);
    s.injection = 1;
    s.quarantined = 2;
    let mut build = IndexBuild {
        number: 1,
        ..Default::default()
    };
    record_version(&index, &mut observed, &mut build, s, None);
    let event = observed
        .events
        .iter()
        .find(|e| e.reason == "IngestFindings")
        .expect("an IngestFindings Event");
    assert!(event.warning, "quarantined chunks need a reviewer");
    assert!(
        event
            .note
            .contains("personal data: 1 IBAN, 1 card number, 1 e-mail address"),
        "{}",
        event.note
    );
    assert!(
        event.note.contains("2 chunks quarantined"),
        "{}",
        event.note
    );
    assert_eq!(observed.versions[0].personal_data.len(), 3);

    // A clean version says nothing.
    let mut observed = Observed::default();
    record_version(
        &index,
        &mut observed,
        &mut build,
        summary(&"d".repeat(64), 0.95),
        None,
    );
    assert!(observed.events.iter().all(|e| e.reason != "IngestFindings"));
}

#[test]
fn a_running_build_shows_its_progress() {
    let index = example();
    let mut observed = Observed::default();
    let build = IndexBuild {
        number: 4,
        job: build_job_name(&index, 4),
        ..Default::default()
    };
    let progress = leitwerk_crds::progress::Progress::of(
        &build.job,
        &leitwerk_crds::progress::Report {
            stage: "embedding".into(),
            done: 12,
            total: Some(40),
            unit: "documents".into(),
            at: "2026-12-06T09:00:00Z".into(),
        },
    );
    record_build(
        &index,
        &mut observed,
        build,
        crate::jobs::JobOutcome::Running {
            unschedulable: None,
            progress: Some(progress.clone()),
        },
        chrono::Utc::now(),
    );
    assert_eq!(observed.progress, Some(progress));
    assert_eq!(
        observed.progress.as_ref().map(|p| p.summary.as_str()),
        Some("embedding 12/40 documents (30%)")
    );
}
