//! Chunking of real Markdown measured with the real MiniLM tokenizer.

use leitwerk_rag::chunk::{MAX_CHUNK_WORD_PIECES, Settings, Structure, WordPieces, split};
use leitwerk_testkit::provided;

fn document() -> String {
    let mut doc = String::from("# Pricing\n\nLeitwerk Cloud has three plans.\n\n");
    doc.push_str("## Pro plan\n\n");
    for i in 0..40 {
        doc.push_str(&format!(
            "Sentence {i} of the Pro plan: it includes unlimited campaigns, A/B tests and priority support. "
        ));
    }
    doc.push_str("\n\n### Seats\n\nEach seat costs €12 per month, billed yearly.\n\n");
    doc.push_str("## Team plan\n\nThe team plan adds single sign-on and audit logs.\n");
    doc
}

#[test]
fn chunks_fit_the_model_follow_headings_and_overlap() -> anyhow::Result<()> {
    let pieces = WordPieces::load(&provided("minilm.sh")?)?;
    let doc = document();
    assert!(
        pieces.count(&doc) > 600,
        "the document must need several chunks"
    );
    let settings = Settings {
        structure: Structure::Markdown,
        max_word_pieces: 128,
        overlap: 16,
    };
    let chunks = split(&doc, &settings, &pieces)?;
    assert!(chunks.len() >= 5, "{}", chunks.len());
    for c in &chunks {
        assert!(
            c.word_pieces <= 128,
            "chunk {} has {}",
            c.index,
            c.word_pieces
        );
        assert_eq!(c.word_pieces, pieces.count(&c.text));
        assert!(c.word_pieces <= MAX_CHUNK_WORD_PIECES);
    }
    let section_of = |needle: &str| {
        chunks
            .iter()
            .find(|c| c.text.contains(needle))
            .map(|c| c.section.clone())
    };
    assert_eq!(
        section_of("Sentence 39").as_deref(),
        Some("Pricing > Pro plan")
    );
    assert_eq!(
        section_of("€12 per month").as_deref(),
        Some("Pricing > Pro plan > Seats")
    );
    assert_eq!(
        section_of("single sign-on").as_deref(),
        Some("Pricing > Team plan")
    );
    // Every sentence is in some chunk, and neighbouring chunks inside the long section share
    // text (the overlap).
    for i in 0..40 {
        assert!(
            section_of(&format!("Sentence {i} ")).is_some(),
            "sentence {i} lost"
        );
    }
    let pro: Vec<_> = chunks
        .iter()
        .filter(|c| c.section == "Pricing > Pro plan" && c.text.contains("Sentence"))
        .collect();
    assert!(pro.len() >= 3);
    let shared = pro.windows(2).any(|w| {
        let tail: String = w[0]
            .text
            .split_whitespace()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let head: String = w[1]
            .text
            .split_whitespace()
            .take(40)
            .collect::<Vec<_>>()
            .join(" ");
        tail.split(' ').all(|word| head.contains(word))
    });
    assert!(shared, "no overlap between neighbouring chunks");

    // Without overlap, chunk texts do not repeat; a smaller limit gives more chunks.
    let none = Settings {
        overlap: 0,
        ..settings
    };
    let small = Settings {
        max_word_pieces: 32,
        overlap: 0,
        ..settings
    };
    assert!(split(&doc, &small, &pieces)?.len() > split(&doc, &none, &pieces)?.len());
    Ok(())
}
