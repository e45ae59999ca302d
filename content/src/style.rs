//! Style and brand: banned and required phrases, the brand glossary (preferred spellings),
//! sentence length, and readability by language (Flesch reading ease for English, Amstad's
//! adaptation for German). Every finding carries its location.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::markdown::{Draft, Location};
use crate::text::{sentences, syllables, words};

/// What a style check asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// Phrases the content must not contain (case-insensitive, whole words).
    pub banned: Vec<String>,
    /// Phrases the content must contain at least once.
    pub required: Vec<String>,
    /// Preferred spellings: a variant (`Hubspot`, `e-mail`) → the brand's spelling (`HubSpot`,
    /// `email`). A preferred spelling listed alone (mapped to itself) flags every other
    /// capitalisation of it.
    pub glossary: BTreeMap<String, String>,
    /// Most words in one sentence.
    pub max_sentence_words: usize,
    /// Lowest readability score accepted, if any.
    pub min_readability: Option<f64>,
    /// BCP 47 language of the content.
    pub language: String,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            banned: Vec::new(),
            required: Vec::new(),
            glossary: BTreeMap::new(),
            max_sentence_words: 30,
            min_readability: None,
            language: "en".into(),
        }
    }
}

/// One finding of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule (`banned`, `required`, `glossary`, `sentenceLength`, `readability`, …).
    pub rule: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where, when it is somewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// A readability score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Readability {
    /// The formula: `Flesch` (English) or `Amstad` (German).
    pub formula: &'static str,
    /// The score (higher reads more easily; 60–70 is plain language).
    pub score: f64,
    /// Words per sentence.
    pub words_per_sentence: f64,
    /// Syllables per word.
    pub syllables_per_word: f64,
}

/// Readability of `text` in `language`; `None` for a language without a formula here, or
/// for text without words.
pub fn readability(text: &str, language: &str) -> Option<Readability> {
    let sentence_count = sentences(text).len();
    let w = words(text);
    if sentence_count == 0 || w.is_empty() {
        return None;
    }
    let syllable_count: usize = w.iter().map(|x| syllables(x, language)).sum();
    let asl = w.len() as f64 / sentence_count as f64;
    let asw = syllable_count as f64 / w.len() as f64;
    let (formula, score) = if language.starts_with("en") {
        ("Flesch", 206.835 - 1.015 * asl - 84.6 * asw)
    } else if language.starts_with("de") {
        ("Amstad", 180.0 - asl - 58.5 * asw)
    } else {
        return None;
    };
    Some(Readability {
        formula,
        score: (score * 10.0).round() / 10.0,
        words_per_sentence: (asl * 10.0).round() / 10.0,
        syllables_per_word: (asw * 100.0).round() / 100.0,
    })
}

/// Byte offsets of `phrase` in `text` as whole words, case-insensitively.
pub fn find_phrase(text: &str, phrase: &str) -> Vec<usize> {
    let (t, p) = (text.to_lowercase(), phrase.to_lowercase());
    if p.is_empty() || t.len() != text.len() {
        return Vec::new();
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    t.match_indices(&p)
        .filter(|(i, _)| {
            boundary(t[..*i].chars().next_back()) && boundary(t[i + p.len()..].chars().next())
        })
        .map(|(i, _)| i)
        .collect()
}

/// The style report of a Markdown draft.
pub fn check(markdown: &str, rules: &Rules) -> (Vec<Finding>, Option<Readability>) {
    let draft = Draft::parse(markdown);
    let mut findings = Vec::new();
    for block in &draft.blocks {
        let at = || Some(block.location.clone());
        for phrase in &rules.banned {
            if !find_phrase(&block.text, phrase).is_empty() {
                findings.push(Finding {
                    rule: "banned",
                    message: format!("{phrase:?} is a banned phrase: rephrase it"),
                    location: at(),
                });
            }
        }
        for word in words(&block.text) {
            let preferred = rules
                .glossary
                .iter()
                .find(|(variant, preferred)| {
                    if variant == preferred {
                        word.eq_ignore_ascii_case(preferred) && word != preferred.as_str()
                    } else {
                        word == variant.as_str()
                    }
                })
                .map(|(_, p)| p);
            if let Some(p) = preferred {
                findings.push(Finding {
                    rule: "glossary",
                    message: format!("{word:?} is spelled {p:?} in the brand glossary"),
                    location: at(),
                });
            }
        }
        // Multi-word variants (`e mail`, `lead-scoring`) as phrases.
        for (variant, p) in &rules.glossary {
            if variant != p
                && words(variant).len() > 1
                && !find_phrase(&block.text, variant).is_empty()
            {
                findings.push(Finding {
                    rule: "glossary",
                    message: format!("{variant:?} is spelled {p:?} in the brand glossary"),
                    location: at(),
                });
            }
        }
        if !matches!(block.kind, crate::markdown::BlockKind::Heading(_)) {
            for sentence in sentences(&block.text) {
                let n = words(sentence).len();
                if n > rules.max_sentence_words {
                    findings.push(Finding {
                        rule: "sentenceLength",
                        message: format!(
                            "a sentence of {n} words (at most {}): split it — {:?}",
                            rules.max_sentence_words,
                            crate::text::words(sentence)
                                .into_iter()
                                .take(8)
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                        location: at(),
                    });
                }
            }
        }
    }
    let all_text: String = draft
        .blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for phrase in &rules.required {
        if find_phrase(&all_text, phrase).is_empty() {
            findings.push(Finding {
                rule: "required",
                message: format!("{phrase:?} is required and missing: add it"),
                location: None,
            });
        }
    }
    let body: String = draft
        .body()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let score = readability(&body, &rules.language);
    if let (Some(min), Some(r)) = (rules.min_readability, score)
        && r.score < min
    {
        findings.push(Finding {
            rule: "readability",
            message: format!(
                "{} reading ease {:.1} is below {min:.1} ({:.1} words per sentence, {:.2} syllables per word): shorter sentences and words",
                r.formula, r.score, r.words_per_sentence, r.syllables_per_word
            ),
            location: None,
        });
    }
    (findings, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAFT: &str = "# Lead scoring with Leitwerk\n\nOur Hubspot sync is a game changer for every team. It scores leads.\n\n## How it works\n\nThe model evaluates the e-mail interactions, the documentation visits, the registration submissions, the organisation's industry classification, its geographical territory, the opportunity's negotiation stage and the most recent interaction of every prospective customer before it calculates a probability.\n";

    fn rules() -> Rules {
        Rules {
            banned: vec!["game changer".into()],
            required: vec!["free trial".into(), "Leitwerk".into()],
            glossary: BTreeMap::from([
                ("HubSpot".to_string(), "HubSpot".to_string()),
                ("e-mail".to_string(), "email".to_string()),
            ]),
            max_sentence_words: 25,
            min_readability: Some(60.0),
            language: "en".into(),
        }
    }

    #[test]
    fn each_rule_reports_what_is_wrong_and_where() {
        let (findings, score) = check(DRAFT, &rules());
        let got: Vec<(&str, Option<usize>)> = findings
            .iter()
            .map(|f| (f.rule, f.location.as_ref().map(|l| l.line)))
            .collect();
        assert_eq!(
            got,
            [
                ("banned", Some(3)),
                ("glossary", Some(3)),
                ("glossary", Some(7)),
                ("sentenceLength", Some(7)),
                ("required", None),
                ("readability", None),
            ],
            "{findings:#?}"
        );
        assert!(
            findings[1]
                .message
                .contains("\"Hubspot\" is spelled \"HubSpot\"")
        );
        assert!(findings[4].message.contains("free trial"));
        assert!(
            score.is_some_and(|s| s.formula == "Flesch" && s.score < 60.0),
            "{score:?}"
        );
    }

    #[test]
    fn a_clean_draft_has_no_findings() {
        let clean = "# Lead scoring with Leitwerk\n\nLeitwerk scores leads. Start a free trial. Your HubSpot data stays yours.\n";
        let (findings, _) = check(clean, &rules());
        assert_eq!(findings, []);
    }

    #[test]
    fn readability_follows_flesch_for_english_and_amstad_for_german() {
        // Flesch: 206.835 − 1.015 × 4 − 84.6 × 1 = 118.2 for four one-syllable words.
        let en = readability("The cat sat down.", "en").map(|r| r.score);
        assert_eq!(en, Some(118.2));
        // Amstad: 180 − 3 − 58.5 × (4 / 3) = 99 (der, Kun-de, kauft).
        let de = readability("Der Kunde kauft.", "de").map(|r| r.score);
        assert_eq!(de, Some(99.0));
        assert_eq!(readability("Le chat.", "fr"), None);
    }
}
