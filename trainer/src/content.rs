//! `leitwerk-trainer content` and `publish-content`: one run of a ContentPipeline's stages
//! over the RagIndex version it is grounded in, and the delivery of an approved run.
//!
//! The content Job reads the index file and its embedding model, builds the generator chain
//! from the spec (API keys from the environment the operator maps from the generators'
//! Secrets), runs the stages (`leitwerk_content::pipeline`), writes the run's artifacts under
//! `content/<namespace>/<name>/<run id>/` — every stage's input and output under
//! `stages/<sha256>`, `run.json` (every stage with its artifacts' digests, and the claim
//! ledger), `draft.md`, and `payload.json` when every check passed — and reports a
//! [`ContentSummary`]. The publish Job reads the payload back, refuses it unless its digest is
//! the one the content Job reported, and delivers it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use leitwerk_content::factcheck;
use leitwerk_content::generate::{Budget, Chain, Generator, Prices, Sampling};
use leitwerk_content::pipeline::{self, Briefing, IndexRetriever, Inputs, Run, Settings};
use leitwerk_content::prompts::Templates;
use leitwerk_content::publish::{Payload, SourceRef, deliver};
use leitwerk_content::redact::{Kind, Redactor};
use leitwerk_content::seo::{self, ArticleMeta};
use leitwerk_content::style;
use leitwerk_crds::ContentPipelineSpec;
use leitwerk_crds::content_pipeline::{ContentSummary, PersonalDataKind, StageSummary};
use leitwerk_crds::contract::{
    REDACTION_KEY_ENV, WEBHOOK_SIGNING_KEY_ENV, WEBHOOK_TOKEN_ENV, api_key_env, content_run_prefix,
    local_generator_port,
};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::Index;
use leitwerk_rag::search::ExactStore;

use crate::pipeline::JobError;
use crate::store::{Store, digest, read_url};

pub mod configmap;

/// What `content` is asked to do besides the spec.
#[derive(Debug, Clone)]
pub struct ContentJob {
    /// Namespace of the ContentPipeline.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Artifact store URL the run's artifacts go to.
    pub store: String,
    /// The run id.
    pub run_id: String,
    /// URL of the index file.
    pub index: String,
    /// Directory of the index's embedding model.
    pub model_dir: PathBuf,
    /// The link map (anchor text → URL).
    pub link_map: BTreeMap<String, String>,
    /// The team's prompt templates (key → template); built-in ones for absent keys.
    pub templates: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> JobError {
    JobError::Invalid(message.into())
}

/// The generator chain of the spec; `env` reads the environment (API keys).
pub fn generators(
    spec: &ContentPipelineSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Generator> {
    let defaults = Sampling::default();
    spec.generators
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let (base_url, model) = match (&g.open_ai_compatible, &g.inference_server) {
                (Some(o), _) => (o.url.trim_end_matches('/').to_string(), o.model.clone()),
                (None, Some(s)) => (
                    // A `model` runs as this pod's sidecar on its contract port.
                    format!(
                        "{}/v1",
                        s.url.as_deref().map_or_else(
                            || format!("http://127.0.0.1:{}", local_generator_port(i)),
                            |u| u.trim_end_matches('/').to_string()
                        )
                    ),
                    "leitwerk-local".to_string(),
                ),
                (None, None) => (String::new(), String::new()),
            };
            let sampling = g.sampling.clone().unwrap_or_default();
            Generator {
                name: g.name.clone(),
                base_url,
                model,
                api_key: env(&api_key_env(i)),
                sampling: Sampling {
                    temperature: sampling
                        .temperature
                        .map_or(defaults.temperature, |t| t as f32),
                    top_p: sampling.top_p.map_or(defaults.top_p, |p| p as f32),
                    max_tokens: sampling
                        .max_tokens
                        .and_then(|m| u32::try_from(m).ok())
                        .unwrap_or(defaults.max_tokens),
                    seed: sampling.seed.and_then(|s| u64::try_from(s).ok()),
                },
                prices: Prices {
                    input_per_1k: g.input_price_per_1k_tokens.unwrap_or(g.price_per_1k_tokens),
                    output_per_1k: g
                        .output_price_per_1k_tokens
                        .unwrap_or(g.price_per_1k_tokens),
                },
                timeout: Duration::from_secs(u64::try_from(g.timeout_seconds).unwrap_or(60)),
                retries: u32::try_from(g.retries).unwrap_or(2),
                requests_per_minute: g
                    .requests_per_minute
                    .and_then(|r| u32::try_from(r).ok())
                    .and_then(NonZeroU32::new),
            }
        })
        .collect()
}

/// The briefing of the spec.
pub fn briefing(spec: &ContentPipelineSpec) -> Briefing {
    let b = &spec.briefing;
    Briefing {
        goal: b.goal.clone(),
        persona: b.persona.clone(),
        structure: b.structure.clone(),
        keywords: b.keywords.clone(),
        entities: b.entities.clone(),
        language: b.language.clone(),
    }
}

/// The checks and revisions of the spec.
pub fn settings(
    spec: &ContentPipelineSpec,
    link_map: BTreeMap<String, String>,
    templates: Templates,
) -> Settings {
    let g = &spec.guardrails;
    let defaults = factcheck::Settings::default();
    let style_defaults = style::Rules::default();
    // Sections share the words the briefing asks for; a token is about 3/4 of a word.
    let sections = spec.briefing.structure.len().max(1) as i64;
    let section_tokens = spec
        .briefing
        .target_words
        .map_or(400, |w| i64::from(w) * 4 / 3 / sections);
    Settings {
        max_revisions: u32::try_from(spec.max_revisions).unwrap_or(0),
        chunks_per_section: 3,
        section_tokens: u32::try_from(section_tokens.clamp(64, 4096)).unwrap_or(400),
        factcheck: factcheck::Settings {
            min_similarity: g
                .min_similarity
                .map_or(defaults.min_similarity, |s| s as f32),
            min_grounded: g.min_grounded_claims,
        },
        style: style::Rules {
            banned: g.banned_phrases.clone(),
            required: g.required_phrases.clone(),
            glossary: g
                .glossary
                .iter()
                .map(|e| (e.variant.clone(), e.preferred.clone()))
                .collect(),
            max_sentence_words: g
                .max_sentence_words
                .and_then(|w| usize::try_from(w).ok())
                .unwrap_or(style_defaults.max_sentence_words),
            min_readability: g.min_readability,
            language: spec.briefing.language.clone(),
        },
        link_map,
        templates,
        restore: if g.redact_pii {
            g.restore_personal_data.iter().map(|k| kind(*k)).collect()
        } else {
            ALL_KINDS.to_vec()
        },
    }
}

const ALL_KINDS: [Kind; 6] = [
    Kind::Email,
    Kind::Phone,
    Kind::Iban,
    Kind::Card,
    Kind::Ip,
    Kind::TaxId,
];

fn kind(k: PersonalDataKind) -> Kind {
    match k {
        PersonalDataKind::Email => Kind::Email,
        PersonalDataKind::Phone => Kind::Phone,
        PersonalDataKind::Iban => Kind::Iban,
        PersonalDataKind::Card => Kind::Card,
        PersonalDataKind::Ip => Kind::Ip,
        PersonalDataKind::TaxId => Kind::TaxId,
    }
}

/// The run's summary (what the operator records in status).
pub fn summarize(run_id: &str, run: &Run) -> ContentSummary {
    let ledger = run.ledger.as_ref();
    let mut fallbacks: Vec<String> = run
        .stages
        .iter()
        .flat_map(|s| s.fallbacks.iter().cloned())
        .collect();
    fallbacks.extend(run.escalations.iter().cloned());
    let generator = run
        .stages
        .iter()
        .rev()
        .find(|s| s.stage == "Draft")
        .and_then(|s| s.generator.clone());
    let seo_findings = run
        .stages
        .iter()
        .rev()
        .find(|s| s.stage == "OnPageCheck")
        .map(|s| s.findings.clone())
        .unwrap_or_default();
    ContentSummary {
        run_id: run_id.into(),
        passed: run.passed,
        reason: run.reason.clone(),
        stages: run
            .stages
            .iter()
            .map(|s| StageSummary {
                stage: s.stage.into(),
                passed: s.passed,
                duration_ms: i64::try_from(s.duration_ms).unwrap_or(i64::MAX),
                tokens: i64::try_from(s.tokens).unwrap_or(i64::MAX),
                cost: s.cost,
                generator: s.generator.clone(),
                findings: s.findings.iter().take(3).cloned().collect(),
            })
            .collect(),
        claims: ledger.map_or(0, |l| l.claims as i64),
        grounded_claims: ledger.map_or(0, |l| l.supported as i64),
        faithfulness: ledger.map_or(0.0, |l| l.faithfulness),
        readability: run.readability,
        seo_findings,
        tokens: run.stages.iter().map(|s| s.tokens as i64).sum(),
        cost: (run.stages.iter().map(|s| s.cost).sum::<f64>() * 1e6).round() / 1e6,
        cache_hits: 0,
        saved_tokens: 0,
        generator,
        fallbacks,
        budget_exceeded: run.budget_exceeded,
        artifacts: None,
        payload_digest: None,
    }
}

/// The payload of a passed run: the page, its JSON-LD and the chunks its claims map to.
pub fn payload(
    spec: &ContentPipelineSpec,
    namespace: &str,
    run_id: &str,
    run: &Run,
) -> Option<Payload> {
    let page = run.page.as_ref()?;
    let publish = spec.publish.as_ref();
    let organisation = publish
        .and_then(|p| p.organization.clone())
        .unwrap_or_else(|| namespace.to_string());
    let meta = ArticleMeta {
        url: publish
            .and_then(|p| p.canonical_url.clone())
            .unwrap_or_else(|| format!("urn:leitwerk:content:{namespace}:{run_id}")),
        author: organisation.clone(),
        publisher: organisation,
        date_published: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        language: spec.briefing.language.clone(),
        image: None,
    };
    let json_ld = seo::article_json_ld(page, &meta, &spec.briefing.keywords);
    let mut sources: Vec<SourceRef> = Vec::new();
    for entry in run
        .ledger
        .iter()
        .flat_map(|l| &l.entries)
        .filter(|e| e.supported)
    {
        if let (Some(chunk), Some(document)) = (&entry.chunk, &entry.document)
            && !sources.iter().any(|s| &s.chunk == chunk)
        {
            sources.push(SourceRef {
                chunk: chunk.clone(),
                document: document.clone(),
            });
        }
    }
    Some(Payload::new(
        run_id,
        publish.and_then(|p| p.experiment_id.as_deref()),
        page,
        json_ld,
        sources,
    ))
}

/// Runs the stages once and writes the run's artifacts.
pub async fn run_content(
    spec: &ContentPipelineSpec,
    job: &ContentJob,
) -> Result<ContentSummary, JobError> {
    let bytes = read_url(&job.index).await?;
    let index = Index::from_bytes(&bytes).map_err(|e| {
        invalid(format!(
            "the RagIndex version {} cannot be read: {e}",
            job.index
        ))
    })?;
    let store = ExactStore::new(index);
    let embedder =
        Embedder::load(&job.model_dir, leitwerk_crds::rag_index::MINILM.name).map_err(|e| {
            invalid(format!(
                "the embedding model in {} cannot be loaded: {e}",
                job.model_dir.display()
            ))
        })?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let chain = Chain::new(
        generators(spec, &env),
        Budget {
            max_tokens: u64::try_from(spec.budget.max_tokens).unwrap_or(0),
            max_cost: spec.budget.max_cost,
        },
    )
    .map_err(|e| invalid(e.to_string()))?;
    let key = env(REDACTION_KEY_ENV)
        .map(String::into_bytes)
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let briefing = briefing(spec);
    let templates =
        Templates::with(&job.templates).map_err(|e| invalid(format!("spec.templatesRef: {e}")))?;
    let template_digest = templates.digest();
    let settings = settings(spec, job.link_map.clone(), templates);
    let retriever = IndexRetriever {
        embedder: &embedder,
        store: &store,
    };
    let started = std::sync::atomic::AtomicU64::new(0);
    let run = pipeline::run(Inputs {
        briefing: &briefing,
        settings: &settings,
        retriever: &retriever,
        chain: &chain,
        embed: &embedder,
        redactor: &Redactor::new(&key),
        on_stage: &|name| {
            let done = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::progress::tell(name, done, None, "stages done");
        },
    })
    .await;
    let mut summary = summarize(&job.run_id, &run);
    let spend = chain.spend();
    summary.cache_hits = i64::try_from(spend.cache_hits).unwrap_or(i64::MAX);
    summary.saved_tokens = i64::try_from(spend.saved_tokens).unwrap_or(i64::MAX);
    summary.tokens = i64::try_from(spend.tokens).unwrap_or(i64::MAX);
    summary.cost = (spend.cost * 1e6).round() / 1e6;

    let store = Store::open(&job.store)?;
    let prefix = content_run_prefix(&job.namespace, &job.name, &job.run_id);
    // Every stage's input and output under its digest; run.json says which is which.
    let mut io = Vec::new();
    for stage in &run.stages {
        let mut names = Vec::new();
        for text in [&stage.input, &stage.output] {
            let d = digest(text.as_bytes());
            let key = format!("{prefix}stages/{}", d.trim_start_matches("sha256:"));
            store.put(&key, text.clone().into_bytes()).await?;
            names.push(d);
        }
        io.push(serde_json::json!({"stage": stage.stage, "input": names[0], "output": names[1]}));
    }
    let record = serde_json::json!({
        "runId": job.run_id, "index": job.index, "templates": template_digest,
        "stages": run.stages, "artifacts": io, "ledger": run.ledger,
        "passed": run.passed, "reason": run.reason, "readability": run.readability,
    });
    store
        .put(
            &format!("{prefix}run.json"),
            serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )
        .await?;
    if let Some(page) = &run.page {
        store
            .put(
                &format!("{prefix}draft.md"),
                page.markdown.clone().into_bytes(),
            )
            .await?;
    }
    if run.passed
        && let Some(payload) = payload(spec, &job.namespace, &job.run_id, &run)
    {
        let bytes = serde_json::to_vec(&payload).map_err(|e| invalid(e.to_string()))?;
        summary.payload_digest = Some(digest(&bytes));
        store.put(&format!("{prefix}payload.json"), bytes).await?;
    }
    summary.artifacts = Some(store.url_of(&prefix));
    Ok(summary)
}

/// What `publish-content` is asked to do.
#[derive(Debug, Clone)]
pub struct PublishJob {
    /// Namespace of the ContentPipeline.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The run.
    pub run_id: String,
    /// URL of the payload.
    pub payload: String,
    /// The digest it must have.
    pub digest: String,
}

/// Delivers an approved run's payload to the spec's target; returns where it went.
pub async fn run_publish(spec: &ContentPipelineSpec, job: &PublishJob) -> Result<String, JobError> {
    let bytes = read_url(&job.payload).await?;
    let found = digest(&bytes);
    if found != job.digest {
        return Err(invalid(format!(
            "the payload {} has digest {found}, not the {} its run reported: it was changed after the run and is not published",
            job.payload, job.digest
        )));
    }
    let payload: Payload = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("the payload {} is not readable: {e}", job.payload)))?;
    let target = spec
        .publish
        .as_ref()
        .ok_or_else(|| invalid("spec.publish is not set: nothing to publish to"))?;
    if let Some(hook) = &target.webhook {
        let key = std::env::var(WEBHOOK_SIGNING_KEY_ENV).unwrap_or_default();
        let token = std::env::var(WEBHOOK_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        let tries = deliver(
            &hook.url,
            key.as_bytes(),
            token.as_deref(),
            &payload,
            4,
            Duration::from_secs(1),
        )
        .await
        .map_err(|e| invalid(format!("spec.publish.webhook.url: {e}")))?;
        return Ok(format!("{} (after {tries} tries)", hook.url));
    }
    if let Some(map) = &target.config_map {
        return configmap::publish(
            &job.namespace,
            &job.name,
            &map.name,
            &payload,
            &bytes,
            &job.digest,
        )
        .await;
    }
    if let Some(url) = &target.artifact_store {
        let store = Store::open(url)?;
        let key = format!("{}/{}/{}", job.namespace, job.name, job.run_id);
        store.put(&format!("{key}.json"), bytes.clone()).await?;
        store
            .put(&format!("{key}.md"), payload.markdown.into_bytes())
            .await?;
        store
            .put(&format!("{key}.html"), payload.html.into_bytes())
            .await?;
        return Ok(store.url_of(&format!("{key}.html")));
    }
    Err(invalid(
        "spec.publish names no target (configMap, artifactStore or webhook)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ContentPipelineSpec {
        let p: leitwerk_crds::ContentPipeline = yaml_serde::from_str(include_str!(
            "../../examples/seo-article/contentpipeline.yaml"
        ))
        .unwrap();
        p.spec
    }

    #[test]
    fn the_spec_becomes_the_generator_chain_with_keys_from_the_environment() {
        let env = |name: &str| (name == "LEITWERK_GENERATOR_API_KEY_0").then(|| "k0".to_string());
        let g = generators(&example(), &env);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].base_url, "https://llm-gateway.internal/v1");
        assert_eq!(g[0].api_key.as_deref(), Some("k0"));
        assert_eq!(
            (g[0].prices.input_per_1k, g[0].prices.output_per_1k),
            (0.005, 0.015)
        );
        assert_eq!(
            (g[0].sampling.max_tokens, g[0].sampling.seed),
            (800, Some(7))
        );
        assert_eq!(g[0].requests_per_minute.map(|r| r.get()), Some(60));
        assert_eq!((g[0].retries, g[0].timeout), (2, Duration::from_secs(60)));
        assert_eq!(
            g[1].base_url, "http://127.0.0.1:18082/v1",
            "the sidecar of the second generator, on its contract port"
        );
        assert_eq!(g[1].api_key, None);
    }

    #[test]
    fn guardrails_become_the_checks_and_what_comes_back_into_the_page() {
        let mut spec = example();
        let links = BTreeMap::from([("Growth plan".to_string(), "/pricing".to_string())]);
        let s = settings(&spec, links.clone(), Templates::default());
        assert_eq!(s.max_revisions, 2);
        assert_eq!(s.link_map, links);
        assert_eq!(s.style.banned.len(), 2);
        assert_eq!(s.style.glossary["Lumenmail"], "Lumen Mail");
        // 600 words over three sections: about 266 tokens each.
        assert_eq!(s.section_tokens, 266);
        assert!(
            s.restore.is_empty(),
            "nothing comes back unless the briefing allows it"
        );
        spec.guardrails.restore_personal_data = vec![PersonalDataKind::Email];
        assert_eq!(
            settings(&spec, BTreeMap::new(), Templates::default()).restore,
            [Kind::Email]
        );
        spec.guardrails.redact_pii = false;
        assert_eq!(
            settings(&spec, BTreeMap::new(), Templates::default())
                .restore
                .len(),
            6
        );
    }
}
