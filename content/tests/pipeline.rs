//! One run of the stages over a real index (three documents embedded with all-MiniLM-L6-v2):
//! with the generator stand-in (`leitwerk_testkit::standin`, an OpenAI-compatible server that
//! composes its answers from the sources in its prompt, standing in for a large hosted model)
//! the run passes every check; with SmolLM2 on the llama.cpp server the fact check judges
//! what the small model writes (an unsupported claim fails the run by name); and a draft that
//! fails its check (a stand-in that misquotes numbers) escalates to the next generator.

use std::collections::BTreeMap;
use std::time::Duration;

use leitwerk_content::factcheck;
use leitwerk_content::generate::{Budget, Chain, Generator, Prices, Sampling};
use leitwerk_content::pipeline::{Briefing, IndexRetriever, Inputs, Run, Settings, run};
use leitwerk_content::prompts::Templates;
use leitwerk_content::redact::{Kind, Redactor};
use leitwerk_content::style;
use leitwerk_rag::chunk::{Settings as ChunkSettings, Structure};
use leitwerk_rag::documents::{self, Document};
use leitwerk_rag::embed::Embedder;
use leitwerk_rag::index::{ChunkingKey, build_with};
use leitwerk_rag::scan::Safety;
use leitwerk_rag::search::ExactStore;
use leitwerk_testkit::llama::LlamaServer;
use leitwerk_testkit::provided;
use leitwerk_testkit::standin::GeneratorStandIn;

const DOCS: [(&str, &str); 3] = [
    (
        "pricing.md",
        "# Pricing\n\nThe Pro plan costs 49 EUR per month per seat. It includes lead scoring and the HubSpot sync. Annual billing saves 15 percent.\n",
    ),
    (
        "how-it-works.md",
        "# How it works\n\nLeitwerk scores every lead within 5 minutes of a form fill. Scores are refreshed nightly from CRM activity.\n",
    ),
    (
        "results.md",
        "# Results\n\nAcme Logistics raised its conversion rate by 23% in the first quarter after adopting Leitwerk. The team routes scored leads to its account executives.\n",
    ),
];

const KEY: ChunkingKey = ChunkingKey {
    max_word_pieces: 80,
    overlap: 0,
};

fn index(embedder: &Embedder) -> anyhow::Result<ExactStore> {
    let docs: Vec<Document> = DOCS
        .iter()
        .map(|(k, t)| Ok(documents::read("docs", k, t.as_bytes())?))
        .collect::<anyhow::Result<_>>()?;
    let settings = |_: &Document| ChunkSettings {
        structure: Structure::Markdown,
        max_word_pieces: 80,
        overlap: 0,
    };
    let (index, _) = build_with(None, docs, settings, KEY, Safety::default(), embedder)?;
    Ok(ExactStore::new(index))
}

fn briefing() -> Briefing {
    Briefing {
        goal: "Explain lead scoring with Leitwerk to jane.doe@example.com's team".into(),
        persona: "a B2B marketing lead".into(),
        structure: vec!["How it works".into(), "Pricing".into(), "Results".into()],
        keywords: vec!["lead scoring".into()],
        entities: vec!["Leitwerk".into()],
        language: "en".into(),
    }
}

fn settings(max_revisions: u32) -> Settings {
    Settings {
        max_revisions,
        chunks_per_section: 2,
        section_tokens: 64,
        factcheck: factcheck::Settings::default(),
        style: style::Rules {
            banned: vec!["game changer".into()],
            ..style::Rules::default()
        },
        link_map: BTreeMap::from([("Pro plan".to_string(), "/pricing".to_string())]),
        // The briefing allows e-mail addresses back into the page (never into a prompt).
        restore: vec![Kind::Email],
        templates: Templates::default(),
    }
}

fn generator(name: &str, base_url: &str, max_tokens: u32) -> Generator {
    Generator {
        name: name.into(),
        base_url: base_url.into(),
        model: name.into(),
        api_key: None,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens,
            seed: Some(7),
        },
        prices: Prices {
            input_per_1k: 0.1,
            output_per_1k: 0.3,
        },
        timeout: Duration::from_secs(120),
        retries: 1,
        requests_per_minute: None,
    }
}

async fn go(chain: &Chain, max_revisions: u32) -> anyhow::Result<Run> {
    let embedder = Embedder::load(&provided("minilm.sh")?, "all-MiniLM-L6-v2")?;
    let store = index(&embedder)?;
    let retriever = IndexRetriever {
        embedder: &embedder,
        store: &store,
    };
    let settings = settings(max_revisions);
    let briefing = briefing();
    Ok(run(Inputs {
        briefing: &briefing,
        settings: &settings,
        retriever: &retriever,
        chain,
        embed: &embedder,
        redactor: &Redactor::new(b"test-run-key"),
        on_stage: &|_| {},
    })
    .await)
}

fn stages(run: &Run) -> Vec<(&str, bool)> {
    run.stages.iter().map(|s| (s.stage, s.passed)).collect()
}

const BUDGET: Budget = Budget {
    max_tokens: 200_000,
    max_cost: Some(5.0),
};

#[tokio::test]
async fn a_grounded_run_passes_every_stage_and_no_prompt_holds_personal_data() -> anyhow::Result<()>
{
    let standin = GeneratorStandIn::start().await?;
    let chain = Chain::new(vec![generator("large", &standin.base_url, 400)], BUDGET)?;
    let run = go(&chain, 1).await?;
    assert!(run.passed, "{:#?}", run);
    assert_eq!(
        stages(&run),
        [
            ("Retrieve", true),
            ("Outline", true),
            ("Draft", true),
            ("FactCheck", true),
            ("StyleCheck", true),
            ("OnPageCheck", true)
        ]
    );
    let ledger = run
        .ledger
        .clone()
        .unwrap_or_else(|| unreachable!("a checked run has a ledger"));
    assert!(
        ledger.claims >= 3 && ledger.faithfulness == 1.0,
        "{ledger:#?}"
    );
    let page = run
        .page
        .clone()
        .unwrap_or_else(|| unreachable!("a passed run has a page"));
    assert!(
        page.markdown.contains("[Pro plan](/pricing)"),
        "{}",
        page.markdown
    );
    assert!(
        !page.markdown.contains("[c1]"),
        "citation labels are stripped"
    );
    assert!(
        page.description.contains("jane.doe@example.com"),
        "an allowed kind comes back in the page: {}",
        page.description
    );
    let prompts = standin.prompts();
    assert!(!prompts.is_empty());
    assert!(
        prompts.iter().all(|p| !p.contains("jane.doe@example.com")),
        "a prompt held the raw e-mail address"
    );
    assert!(prompts.iter().any(|p| p.contains("[EMAIL-")));
    let draft = &run.stages[2];
    assert!(draft.tokens > 0 && draft.cost > 0.0 && draft.generator.as_deref() == Some("large"));
    Ok(())
}

#[tokio::test]
async fn what_the_small_model_writes_is_judged_honestly() -> anyhow::Result<()> {
    let server = LlamaServer::start()?;
    let chain = Chain::new(vec![generator("small", &server.base_url, 200)], BUDGET)?;
    let run = go(&chain, 0).await?;
    let ledger = run
        .ledger
        .clone()
        .unwrap_or_else(|| unreachable!("a drafted run has a ledger: {:?}", run.reason));
    eprintln!(
        "SmolLM2's draft: {} claims, {} supported; run passed: {}; {:?}",
        ledger.claims, ledger.supported, run.passed, run.reason
    );
    let stage_ms: Vec<(&str, u64)> = run
        .stages
        .iter()
        .map(|s| (s.stage, s.duration_ms))
        .collect();
    eprintln!("stage durations (ms): {stage_ms:?}");
    // Whatever SmolLM2 wrote: a claim counted as supported names a chunk whose document holds
    // every name and number the claim carries, and an unsupported one fails the run by name.
    for entry in ledger.entries.iter().filter(|e| e.supported) {
        let source = DOCS
            .iter()
            .find(|(k, _)| entry.document.as_deref() == Some(&format!("docs/{k}")))
            .map(|(_, t)| t.to_lowercase())
            .unwrap_or_else(|| unreachable!("a supported claim names its document: {entry:?}"));
        for fact in &entry.matched {
            let text = fact.text().to_lowercase();
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            assert!(
                source.contains(&text) || (!digits.is_empty() && source.contains(&digits)),
                "{fact:?} of {:?} is not in {:?}",
                entry.claim,
                entry.document
            );
        }
    }
    let unsupported: Vec<&str> = ledger
        .entries
        .iter()
        .filter(|e| !e.supported)
        .map(|e| e.claim.as_str())
        .collect();
    let reason = run.reason.clone().unwrap_or_default();
    if ledger.claims == 0 || !unsupported.is_empty() {
        assert!(!run.passed, "{run:#?}");
        assert!(
            ledger.claims == 0 || unsupported.iter().any(|c| reason.contains(c)),
            "the reason names a claim: {reason}"
        );
    }
    let check = run.stages.iter().find(|s| s.stage == "FactCheck");
    assert_eq!(check.map(|s| s.passed), Some(ledger.passed));
    Ok(())
}

#[tokio::test]
async fn a_failed_draft_escalates_from_the_small_generator_to_the_larger_one() -> anyhow::Result<()>
{
    // The "small" generator is a stand-in that misquotes every number: its draft fails the
    // fact check on every run, so the escalation is what this test sees.
    let small = GeneratorStandIn::start_misquoting().await?;
    let large = GeneratorStandIn::start().await?;
    let chain = Chain::new(
        vec![
            generator("small", &small.base_url, 400),
            generator("large", &large.base_url, 400),
        ],
        BUDGET,
    )?;
    let run = go(&chain, 0).await?;
    let drafts: Vec<Option<&str>> = run
        .stages
        .iter()
        .filter(|s| s.stage == "Draft")
        .map(|s| s.generator.as_deref())
        .collect();
    assert_eq!(drafts, [Some("small"), Some("large")], "{run:#?}");
    let first_check = run.stages.iter().find(|s| s.stage == "FactCheck");
    assert!(
        first_check.is_some_and(
            |s| !s.passed && s.findings.iter().any(|f| f.contains("unsupported claim"))
        ),
        "{run:#?}"
    );
    assert!(run.passed, "{run:#?}");
    Ok(())
}
