//! The claim-level fact check, fail-closed.
//!
//! Every claim of the draft must be supported by one retrieved chunk: its embedding similar
//! enough to a sentence of the chunk (`min_similarity`), AND every fact it carries (numbers,
//! names: [`crate::facts`]) present in that chunk. A claim whose facts no chunk contains fails
//! the draft outright (an invented number, feature or customer); otherwise the share of
//! supported claims must reach `min_grounded`. The ledger records, per claim, the chunk and
//! document it was checked against, the score, and the matched and unmatched facts.

use serde::Serialize;

use crate::facts::{Claim, Fact, Source, claims};
use crate::markdown::{Draft, Location};
use crate::text::sentences;

/// A retrieved chunk the draft may be grounded in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    /// Its id in the index (as tagged in the prompt).
    pub id: String,
    /// The document it comes from.
    pub document: String,
    /// Its text.
    pub text: String,
}

/// What embeds text for the similarity half of the check (the index's own model).
pub trait Embed {
    /// One unit-length vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

impl Embed for leitwerk_rag::embed::Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        leitwerk_rag::embed::Embedder::embed(self, texts).map_err(|e| e.to_string())
    }
}

/// The check's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Cosine similarity a claim needs with a sentence of its chunk.
    pub min_similarity: f32,
    /// Share of claims that must be supported (`guardrails.minGroundedClaims`).
    pub min_grounded: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_similarity: 0.6,
            min_grounded: 1.0,
        }
    }
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The claim.
    pub claim: String,
    /// Where it is in the draft.
    pub location: Location,
    /// The chunk it was checked against (the best one), if any was retrieved.
    pub chunk: Option<String>,
    /// That chunk's document.
    pub document: Option<String>,
    /// The best similarity with a sentence of that chunk.
    pub score: f32,
    /// Facts the chunk contains.
    pub matched: Vec<Fact>,
    /// Facts it does not contain.
    pub unmatched: Vec<Fact>,
    /// Whether the claim stands.
    pub supported: bool,
}

/// The verdict of the check, with its ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Every claim, in order.
    pub entries: Vec<Entry>,
    /// Claims found.
    pub claims: usize,
    /// Claims supported.
    pub supported: usize,
    /// Supported claims / claims (1 for a draft without claims, which fails all the same).
    pub faithfulness: f64,
    /// Whether the draft may go on.
    pub passed: bool,
    /// Why not, naming the claims.
    pub reason: Option<String>,
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedding model failed.
    #[error("embedding for the fact check failed: {0}")]
    Embed(String),
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks a Markdown draft against the chunks retrieved for it.
pub fn check(
    draft: &str,
    chunks: &[Chunk],
    entities: &[String],
    language: &str,
    settings: Settings,
    embed: &dyn Embed,
) -> Result<Ledger, Error> {
    let found: Vec<Claim> = claims(&Draft::parse(draft), entities, language);
    // Each chunk as its sentences (what a claim is compared with) and its facts.
    let chunk_sentences: Vec<Vec<&str>> = chunks.iter().map(|c| sentences(&c.text)).collect();
    let sources: Vec<Source> = chunks.iter().map(|c| Source::new(&c.text)).collect();
    let mut texts: Vec<&str> = found.iter().map(|c| c.text.as_str()).collect();
    let offset = texts.len();
    texts.extend(chunk_sentences.iter().flatten().copied());
    let vectors = if texts.is_empty() {
        Vec::new()
    } else {
        embed.embed(&texts).map_err(Error::Embed)?
    };
    let mut entries = Vec::with_capacity(found.len());
    for (i, claim) in found.iter().enumerate() {
        let mut best: Option<Entry> = None;
        let mut at = offset;
        for (c, chunk) in chunks.iter().enumerate() {
            let n = chunk_sentences[c].len();
            let score = vectors
                .get(at..at + n)
                .unwrap_or_default()
                .iter()
                .map(|v| cosine(&vectors[i], v))
                .fold(f32::MIN, f32::max);
            at += n;
            let (matched, unmatched): (Vec<Fact>, Vec<Fact>) = claim
                .facts
                .iter()
                .cloned()
                .partition(|f| f.found_in(&sources[c]));
            let entry = Entry {
                claim: claim.text.clone(),
                location: claim.location.clone(),
                chunk: Some(chunk.id.clone()),
                document: Some(chunk.document.clone()),
                score: (score * 1e4).round() / 1e4,
                supported: score >= settings.min_similarity && unmatched.is_empty(),
                matched,
                unmatched,
            };
            // The best chunk: supported first, then fewer unmatched facts, then similarity.
            let rank = |e: &Entry| (e.supported, std::cmp::Reverse(e.unmatched.len()), e.score);
            if best.as_ref().is_none_or(|b| rank(&entry) > rank(b)) {
                best = Some(entry);
            }
        }
        entries.push(best.unwrap_or_else(|| Entry {
            claim: claim.text.clone(),
            location: claim.location.clone(),
            chunk: None,
            document: None,
            score: 0.0,
            matched: Vec::new(),
            unmatched: claim.facts.clone(),
            supported: false,
        }));
    }
    Ok(verdict(entries, settings))
}

/// The verdict over a ledger's entries.
fn verdict(entries: Vec<Entry>, settings: Settings) -> Ledger {
    let claims = entries.len();
    let supported = entries.iter().filter(|e| e.supported).count();
    let faithfulness = if claims == 0 {
        1.0
    } else {
        supported as f64 / claims as f64
    };
    let invented: Vec<&Entry> = entries.iter().filter(|e| !e.unmatched.is_empty()).collect();
    let reason = if claims == 0 {
        // Fail-closed: a draft that states nothing a source could support is not grounded.
        Some("the draft makes no claim the fact check could map to a source".to_string())
    } else if let Some(first) = invented.first() {
        let facts: Vec<&str> = first.unmatched.iter().map(Fact::text).collect();
        Some(format!(
            "{} claim(s) state facts no retrieved source contains; first at {}: {:?} ({} not found)",
            invented.len(),
            first.location,
            first.claim,
            facts.join(", ")
        ))
    } else if faithfulness < settings.min_grounded {
        let weak: Vec<String> = entries
            .iter()
            .filter(|e| !e.supported)
            .take(3)
            .map(|e| {
                format!(
                    "{:?} at {} (similarity {:.2})",
                    e.claim, e.location, e.score
                )
            })
            .collect();
        Some(format!(
            "{supported} of {claims} claims are grounded ({:.0} %), below minGroundedClaims {:.0} %: {}",
            faithfulness * 100.0,
            settings.min_grounded * 100.0,
            weak.join("; ")
        ))
    } else {
        None
    };
    Ledger {
        claims,
        supported,
        faithfulness: (faithfulness * 1e4).round() / 1e4,
        passed: reason.is_none(),
        reason,
        entries,
    }
}
