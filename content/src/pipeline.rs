//! One run of a content pipeline: retrieve → outline → draft → fact check → style and brand
//! → on-page SEO, with revisions fed by the findings and escalation to the next generator.
//!
//! Personal data of the briefing is redacted before any prompt. Retrieved text is untrusted:
//! chunks that carry instructions aimed at a model are left out, and every chunk is quoted as
//! data with its id. The draft is checked claim by claim against the chunks it was given;
//! a draft that fails a check is revised with the findings (`max_revisions`), then written
//! again by the next generator, then the run fails with the findings. Each stage reports its
//! state, duration, tokens, cost and generator.

use serde::Serialize;
use serde_json::json;

use crate::factcheck::{self, Chunk, Embed, Ledger};
use crate::generate::{Chain, Error as GenerateError, Message, Request};
use crate::redact::{Redactor, Vault};
use crate::{seo, style};

mod stage;

use stage::Stage;
pub use stage::StageReport;

/// What to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Briefing {
    /// The goal of the piece.
    pub goal: String,
    /// The reader.
    pub persona: String,
    /// Section headings required, in order.
    pub structure: Vec<String>,
    /// Keywords; the first is the primary one.
    pub keywords: Vec<String>,
    /// Entities to cover.
    pub entities: Vec<String>,
    /// BCP 47 language.
    pub language: String,
}

/// How a run checks and revises.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Revisions of a draft that failed a check, per generator.
    pub max_revisions: u32,
    /// Chunks retrieved per section.
    pub chunks_per_section: usize,
    /// Most completion tokens per drafted section (the generator's own limit still holds).
    pub section_tokens: u32,
    /// The fact check's thresholds.
    pub factcheck: factcheck::Settings,
    /// Style and brand rules.
    pub style: style::Rules,
    /// On-page SEO rules (keywords, entities and structure come from the briefing).
    pub link_map: std::collections::BTreeMap<String, String>,
    /// The prompt templates.
    pub templates: crate::prompts::Templates,
    /// Kinds of personal data whose raw values the page gets back (every other placeholder
    /// becomes its bare label, `[EMAIL]`); models never see raw values either way.
    pub restore: Vec<crate::redact::Kind>,
}

/// What answers a query against the pipeline's RagIndex.
pub trait Retrieve {
    /// The `k` chunks most relevant to `query`.
    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Chunk>, String>;
}

/// Retrieval over an index version (what the pipeline's Job reads): the index's own
/// embedding model and its exact store; quarantined chunks are never returned.
pub struct IndexRetriever<'a> {
    /// The index's embedding model.
    pub embedder: &'a leitwerk_rag::embed::Embedder,
    /// The index version.
    pub store: &'a leitwerk_rag::search::ExactStore,
}

impl Retrieve for IndexRetriever<'_> {
    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<Chunk>, String> {
        use leitwerk_rag::search::VectorStore;
        let q = self.embedder.embed(&[query]).map_err(|e| e.to_string())?;
        let hits = self
            .store
            .search(&q[0], k, &leitwerk_rag::search::Filter::new())
            .map_err(|e| e.to_string())?;
        Ok(hits
            .into_iter()
            .map(|h| Chunk {
                id: h.chunk,
                document: h.document,
                text: h.text,
            })
            .collect())
    }
}

/// A run's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Every stage that ran, in order (revisions repeat Draft and the checks).
    pub stages: Vec<StageReport>,
    /// The page, when a draft was written.
    pub page: Option<seo::Page>,
    /// The last fact check's ledger.
    pub ledger: Option<Ledger>,
    /// Whether the page may go to approval.
    pub passed: bool,
    /// Why not.
    pub reason: Option<String>,
    /// Readability of the last draft.
    pub readability: Option<f64>,
    /// Whether the run stopped because the next call could exceed the budget.
    pub budget_exceeded: bool,
    /// Escalations to the next generator after a draft failed its checks.
    pub escalations: Vec<String>,
}

/// The outline's JSON schema.
pub fn outline_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "description": {"type": "string", "maxLength": 160},
            "sections": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 12}
        },
        "required": ["title", "description", "sections"]
    })
}

/// Chunks quoted as data, each labelled `[c1]`, `[c2]`, … in retrieval order; chunks with
/// instructions aimed at a model are left out.
pub fn quote_sources(chunks: &[Chunk]) -> String {
    chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| leitwerk_rag::scan::scan(&c.text, false).0.injection == 0)
        .map(|(i, c)| format!("[c{}] {}", i + 1, c.text.replace('\n', " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

static CITATION: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r" ?\[c\d+\]").ok());

/// Removes the citation labels (`[c3]`) a draft carries for its sources.
pub fn strip_citations(text: &str) -> String {
    match CITATION.as_ref() {
        Some(re) => re.replace_all(text, "").into_owned(),
        None => text.to_string(),
    }
}

/// A section's text as a model wrote it, made body text: headings of its own (a model copying
/// a source's `# Title`) lose their markers, so the page keeps one H1 and its levels.
pub fn section_text(text: &str) -> String {
    text.trim()
        .lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything one run needs.
pub struct Inputs<'a> {
    /// The briefing.
    pub briefing: &'a Briefing,
    /// Checks and revisions.
    pub settings: &'a Settings,
    /// The RagIndex.
    pub retriever: &'a dyn Retrieve,
    /// The generators and the budget.
    pub chain: &'a Chain,
    /// The index's embedding model, for the fact check.
    pub embed: &'a dyn Embed,
    /// Redacts the briefing before any prompt.
    pub redactor: &'a Redactor,
    /// Told the name of each stage as it starts, e.g. to report progress.
    pub on_stage: &'a (dyn Fn(&'static str) + Send + Sync),
}

fn failed(mut run: Run, reason: String) -> Run {
    run.passed = false;
    run.reason = Some(reason);
    run
}

/// Runs the stages once.
pub async fn run(inputs: Inputs<'_>) -> Run {
    let b = inputs.briefing;
    let mut run = Run {
        stages: Vec::new(),
        page: None,
        ledger: None,
        passed: false,
        reason: None,
        readability: None,
        budget_exceeded: false,
        escalations: Vec::new(),
    };
    let begin = |name: &'static str| {
        (inputs.on_stage)(name);
        Stage::start(name)
    };
    let mut vault = Vault::default();
    let goal = inputs.redactor.redact(&b.goal, &mut vault);
    let persona = inputs.redactor.redact(&b.persona, &mut vault);

    // Retrieve: per section of the structure (or the goal), chunks deduplicated by id.
    let mut stage = begin("Retrieve");
    let queries: Vec<String> = std::iter::once(goal.clone())
        .chain(b.structure.iter().cloned())
        .collect();
    let mut chunks: Vec<Chunk> = Vec::new();
    for q in &queries {
        match inputs
            .retriever
            .retrieve(q, inputs.settings.chunks_per_section.max(1))
        {
            Ok(found) => {
                for c in found {
                    if !chunks.iter().any(|k| k.id == c.id) {
                        chunks.push(c);
                    }
                }
            }
            Err(e) => {
                run.stages
                    .push(stage.end(false, vec![format!("retrieval failed: {e}")]));
                return failed(run, format!("the RagIndex could not be queried: {e}"));
            }
        }
    }
    if chunks.is_empty() {
        run.stages
            .push(stage.end(false, vec!["no chunk was retrieved".into()]));
        return failed(run, "the RagIndex returned nothing for the briefing".into());
    }
    stage.io(
        queries.join("\n"),
        serde_json::to_string(&chunks).unwrap_or_default(),
    );
    run.stages
        .push(stage.end(true, vec![format!("{} chunks", chunks.len())]));
    let sources = quote_sources(&chunks);
    let templates = &inputs.settings.templates;
    let system = match templates.system() {
        Ok(text) => Message::new("system", text),
        Err(e) => return failed(run, e.to_string()),
    };

    // Outline: structured.
    let mut stage = begin("Outline");
    let keyword = b.keywords.first().cloned().unwrap_or_default();
    let outline_prompt = match templates.outline(&goal, &persona, &b.structure, &keyword, &sources)
    {
        Ok(p) => p,
        Err(e) => {
            run.stages.push(stage.end(false, vec![e.to_string()]));
            return failed(run, e.to_string());
        }
    };
    let outline_request = Request {
        messages: vec![system.clone(), Message::new("user", outline_prompt)],
        schema: Some(outline_schema()),
        max_tokens: None,
    };
    let outline = match inputs.chain.complete(&outline_request, 0).await {
        Ok(c) => {
            stage.charge(&outline_request, &c);
            c
        }
        Err(e) => {
            run.budget_exceeded = matches!(e, GenerateError::BudgetExceeded(_));
            run.stages.push(stage.end(false, vec![e.to_string()]));
            return failed(run, format!("Outline: {e}"));
        }
    };
    let parsed: serde_json::Value = serde_json::from_str(&outline.text).unwrap_or_default();
    let mut title = parsed["title"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    if title.is_empty() {
        title = goal.chars().take(60).collect();
    }
    let description = parsed["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut sections: Vec<String> = parsed["sections"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    // The briefing's structure is not the model's to drop.
    for (i, required) in b.structure.iter().enumerate() {
        if !sections
            .iter()
            .any(|s| !style::find_phrase(s, required).is_empty())
        {
            sections.insert(i.min(sections.len()), required.clone());
        }
    }
    run.stages
        .push(stage.end(true, vec![format!("{} sections", sections.len())]));

    // Draft, checks, revisions, escalation.
    let generators = inputs.chain.generators();
    let mut feedback: Vec<String> = Vec::new();
    let mut start = 0;
    let mut revision = 0;
    loop {
        let mut stage = begin("Draft");
        let mut body = String::new();
        for heading in &sections {
            let prompt = match templates.section(
                heading,
                &title,
                &persona,
                &b.language,
                &sources,
                &feedback,
            ) {
                Ok(p) => p,
                Err(e) => {
                    run.stages.push(stage.end(false, vec![e.to_string()]));
                    return failed(run, e.to_string());
                }
            };
            let request = Request {
                messages: vec![system.clone(), Message::new("user", prompt)],
                schema: None,
                max_tokens: Some(inputs.settings.section_tokens.max(16)),
            };
            match inputs.chain.complete(&request, start).await {
                Ok(c) => {
                    stage.charge(&request, &c);
                    let text = section_text(&strip_citations(&c.text));
                    body.push_str(&format!("## {heading}\n\n{text}\n\n"));
                }
                Err(e) => {
                    run.budget_exceeded = matches!(e, GenerateError::BudgetExceeded(_));
                    run.stages.push(stage.end(false, vec![e.to_string()]));
                    return failed(run, format!("Draft: {e}"));
                }
            }
        }
        run.stages.push(stage.end(true, Vec::new()));
        let markdown = inputs.redactor.restore(
            &format!("# {title}\n\n{body}"),
            &vault,
            &inputs.settings.restore,
        );
        let markdown = seo::insert_links(&markdown, &inputs.settings.link_map);
        let page = seo::Page {
            title: inputs
                .redactor
                .restore(&title, &vault, &inputs.settings.restore),
            description: inputs
                .redactor
                .restore(&description, &vault, &inputs.settings.restore),
            markdown,
        };

        let mut stage = begin("FactCheck");
        let ledger = match factcheck::check(
            &page.markdown,
            &chunks,
            &b.entities,
            &b.language,
            inputs.settings.factcheck,
            inputs.embed,
        ) {
            Ok(l) => l,
            Err(e) => {
                run.stages.push(stage.end(false, vec![e.to_string()]));
                return failed(run, e.to_string());
            }
        };
        let mut problems: Vec<String> = ledger
            .entries
            .iter()
            .filter(|e| !e.supported)
            .map(|e| format!("unsupported claim at {}: {:?}", e.location, e.claim))
            .collect();
        stage.io(
            page.markdown.clone(),
            serde_json::to_string(&ledger).unwrap_or_default(),
        );
        run.stages.push(stage.end(ledger.passed, problems.clone()));

        let mut stage = begin("StyleCheck");
        let (style_findings, readability) = style::check(&page.markdown, &inputs.settings.style);
        run.readability = readability.map(|r| (r.score * 10.0).round() / 10.0);
        let style_errors: Vec<String> = style_findings
            .iter()
            .filter(|f| matches!(f.rule, "banned" | "required" | "glossary"))
            .map(|f| f.message.clone())
            .collect();
        let messages: Vec<&str> = style_findings.iter().map(|f| f.message.as_str()).collect();
        stage.io(page.markdown.clone(), messages.join("\n"));
        run.stages.push(stage.end(
            style_errors.is_empty(),
            style_findings.iter().map(|f| f.message.clone()).collect(),
        ));

        let mut stage = begin("OnPageCheck");
        let seo_rules = seo::Rules {
            keywords: b.keywords.clone(),
            entities: b.entities.clone(),
            structure: b.structure.clone(),
            link_map: inputs.settings.link_map.clone(),
        };
        let seo_findings = seo::check(&page, &seo_rules);
        let seo_errors: Vec<String> = seo_findings
            .iter()
            .filter(|f| matches!(f.rule, "h1" | "headingLevels" | "structure" | "linkMap"))
            .map(|f| f.message.clone())
            .collect();
        let messages: Vec<&str> = seo_findings.iter().map(|f| f.message.as_str()).collect();
        stage.io(
            serde_json::to_string(&page).unwrap_or_default(),
            messages.join("\n"),
        );
        run.stages.push(stage.end(
            seo_errors.is_empty(),
            seo_findings.iter().map(|f| f.message.clone()).collect(),
        ));

        let passed = ledger.passed && style_errors.is_empty() && seo_errors.is_empty();
        let reason = ledger
            .reason
            .clone()
            .or_else(|| style_errors.first().cloned())
            .or_else(|| seo_errors.first().cloned());
        run.ledger = Some(ledger);
        run.page = Some(page);
        if passed {
            run.passed = true;
            return run;
        }
        problems.extend(style_errors);
        problems.extend(seo_errors);
        feedback = problems.into_iter().take(8).collect();
        if revision < inputs.settings.max_revisions {
            revision += 1;
        } else if start + 1 < generators {
            start += 1;
            revision = 0;
            run.escalations.push(format!(
                "the draft failed its checks after {} revisions: escalated to generator {}",
                inputs.settings.max_revisions,
                start + 1
            ));
        } else {
            return failed(
                run,
                reason.unwrap_or_else(|| "the draft failed its checks".into()),
            );
        }
    }
}
