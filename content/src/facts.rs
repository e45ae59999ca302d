//! Claims and the facts they carry: what a source must contain for a claim to stand.
//!
//! A claim is a declarative sentence of the draft's body (headings, questions and calls to
//! action are not claims). Its facts are every number (with percentages, prices and dates:
//! `1,299.00`, `40 %`, `2024-03-01` are numbers to the check) and every name: a product,
//! company or feature name (a capitalised word inside an English sentence; in any language a
//! word with an inner capital, a digit or all capitals, e.g. `HubSpot`, `B2B`, `GDPR`), a
//! month or weekday, and every entity of the briefing.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::markdown::{Draft, Location};
use crate::text::{folded_words, sentences, words};

/// Something a claim states that its source must contain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "text")]
pub enum Fact {
    /// A number as written (`1,299.00`, `40%`).
    Number(String),
    /// A name as written (`HubSpot`, `March`, `lead scoring`).
    Name(String),
}

impl Fact {
    /// The fact as written.
    pub fn text(&self) -> &str {
        match self {
            Fact::Number(t) | Fact::Name(t) => t,
        }
    }

    /// Whether `source` contains it: the same numeric value (in either decimal convention), or
    /// the name as a word or phrase, case-insensitively.
    pub fn found_in(&self, source: &Source) -> bool {
        match self {
            Fact::Number(t) => {
                let wanted = number_values(t);
                source
                    .numbers
                    .iter()
                    .any(|v| wanted.iter().any(|w| (v - w).abs() < 1e-9))
            }
            Fact::Name(t) => {
                let name = folded_words(t);
                !name.is_empty()
                    && source
                        .words
                        .windows(name.len())
                        .any(|window| window == name.as_slice())
            }
        }
    }
}

/// A source as the check reads it: its words and the values of its numbers.
#[derive(Debug, Clone, Default)]
pub struct Source {
    words: Vec<String>,
    numbers: Vec<f64>,
}

impl Source {
    /// Reads `text`.
    pub fn new(text: &str) -> Source {
        let numbers = NUMBER
            .as_ref()
            .map(|re| {
                re.find_iter(text)
                    .flat_map(|m| number_values(m.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        Source {
            words: folded_words(text),
            numbers,
        }
    }
}

/// A claim of the draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// The sentence.
    pub text: String,
    /// Where it is.
    pub location: Location,
    /// What its source must contain.
    pub facts: Vec<Fact>,
}

static NUMBER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)*(?:\s?%)?").ok());

const MONTHS_AND_DAYS: [&str; 38] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "januar",
    "februar",
    "märz",
    "mai",
    "juni",
    "juli",
    "oktober",
    "dezember",
    "montag",
    "dienstag",
    "mittwoch",
    "donnerstag",
    "freitag",
    "samstag",
    "sonntag",
    "q1",
    "q2",
    "q3",
    "q4",
];

/// Words that open a call to action rather than a claim.
const CALLS_TO_ACTION: [&str; 16] = [
    "book",
    "try",
    "contact",
    "learn",
    "read",
    "start",
    "sign",
    "discover",
    "get",
    "join",
    "request",
    "download",
    "buchen",
    "testen",
    "kontaktieren",
    "entdecken",
];

/// The values a written number may mean: `1,299.00` and `1.299,00` are 1299, `1.5` is 1.5,
/// `40 %` is 40.
pub fn number_values(written: &str) -> Vec<f64> {
    let s: String = written
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .collect();
    let grouped = |sep: char, dec: char| -> Option<f64> {
        let (int, frac) = match s.split_once(dec) {
            Some((i, f)) if !f.contains(sep) && !f.contains(dec) => (i, Some(f)),
            None => (s.as_str(), None),
            _ => return None,
        };
        let groups: Vec<&str> = int.split(sep).collect();
        let ok = groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3);
        if !ok {
            return None;
        }
        format!("{}.{}", groups.concat(), frac.unwrap_or("0"))
            .parse()
            .ok()
    };
    let mut values: Vec<f64> = [grouped(',', '.'), grouped('.', ',')]
        .into_iter()
        .flatten()
        .collect();
    if let Ok(v) = s.parse::<f64>() {
        values.push(v);
    }
    if let Some((int, frac)) = s.split_once(',')
        && !frac.contains([',', '.'])
        && let Ok(v) = format!("{int}.{frac}").parse::<f64>()
    {
        values.push(v);
    }
    // A date's parts count one by one (`2024-03-01` is 2024, 3 and 1 to the source too).
    values.dedup();
    values
}

/// Whether a word looks like a name in any language: an inner capital, a digit among
/// letters, or all capitals.
fn name_like(word: &str) -> bool {
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    let has_digit = word.chars().any(|c| c.is_ascii_digit());
    let inner_capital = word.chars().skip(1).any(char::is_uppercase);
    let all_caps = letters >= 2
        && word
            .chars()
            .filter(|c| c.is_alphabetic())
            .all(char::is_uppercase);
    letters >= 1 && (inner_capital || has_digit || all_caps)
}

/// Words capitalised inside a sentence somewhere in `texts`: the names a draft uses.
pub fn known_names<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in texts {
        for sentence in sentences(text) {
            for word in words(sentence).into_iter().skip(1) {
                if word.chars().next().is_some_and(char::is_uppercase) {
                    names.insert(word.to_string());
                }
            }
        }
    }
    names
}

/// The facts of one sentence; `known` are the names the draft uses ([`known_names`]).
pub fn facts_of(
    sentence: &str,
    entities: &[String],
    language: &str,
    known: &BTreeSet<String>,
) -> Vec<Fact> {
    let mut facts: Vec<Fact> = Vec::new();
    let push = |facts: &mut Vec<Fact>, f: Fact| {
        if !facts.contains(&f) {
            facts.push(f);
        }
    };
    if let Some(re) = NUMBER.as_ref() {
        for m in re.find_iter(sentence) {
            // Digits inside a name (`B2B`, `G2`) belong to the name.
            let inside_word = sentence[..m.start()]
                .chars()
                .next_back()
                .is_some_and(char::is_alphabetic)
                || sentence[m.end()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphabetic);
            if !inside_word {
                push(&mut facts, Fact::Number(m.as_str().trim().to_string()));
            }
        }
    }
    let folded = sentence.to_lowercase();
    for entity in entities {
        let e = entity.trim();
        if !e.is_empty() && folded.contains(&e.to_lowercase()) {
            push(&mut facts, Fact::Name(e.to_string()));
        }
    }
    let english = language.starts_with("en");
    let all = words(sentence);
    for (i, word) in all.iter().copied().enumerate() {
        let lower = word.to_lowercase();
        let capitalised = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
        // A capitalised word opening an English sentence is a name when it is known as one
        // (capitalised inside a sentence elsewhere in the draft) or opens a multi-word name
        // (`Globex Freight raised …`).
        // A label (`Results: …`) is not a name.
        let label = sentence.trim_start().starts_with(&format!("{word}:"));
        let opening_name = i == 0
            && capitalised(word)
            && !label
            && (known.contains(word) || all.get(1).is_some_and(|next| capitalised(next)));
        let is_name = name_like(word)
            || MONTHS_AND_DAYS.contains(&lower.as_str())
            || (english && (i > 0 || opening_name) && capitalised(word) && word != "I");
        if is_name && word.chars().any(char::is_alphabetic) {
            let already = facts.iter().any(|f| {
                matches!(f, Fact::Name(n) if n.to_lowercase().split_whitespace().any(|p| p == lower))
            });
            if !already {
                push(&mut facts, Fact::Name(word.to_string()));
            }
        }
    }
    facts
}

/// The claims of a draft.
pub fn claims(draft: &Draft, entities: &[String], language: &str) -> Vec<Claim> {
    let known = known_names(draft.body().map(|b| b.text.as_str()));
    let mut out = Vec::new();
    for block in draft.body() {
        for sentence in sentences(&block.text) {
            let n = words(sentence).len();
            let first = words(sentence)
                .first()
                .map(|w| w.to_lowercase())
                .unwrap_or_default();
            let facts = facts_of(sentence, entities, language, &known);
            let question = sentence.ends_with('?');
            let call_to_action = CALLS_TO_ACTION.contains(&first.as_str());
            if question || call_to_action || (n < 5 && facts.is_empty()) || n < 3 {
                continue;
            }
            out.push(Claim {
                text: sentence.to_string(),
                location: block.location.clone(),
                facts,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_mean_the_same_in_either_convention() {
        assert!(number_values("1,299.00").contains(&1299.0));
        assert!(number_values("1.299,00").contains(&1299.0));
        assert_eq!(number_values("1.5"), [1.5]);
        assert!(number_values("40 %").contains(&40.0));
        assert!(!number_values("1.5").contains(&15.0));
    }

    #[test]
    fn facts_are_numbers_names_months_and_the_briefings_entities() {
        let facts = facts_of(
            "Teams using Leitwerk with HubSpot raised B2B conversion by 23% in March for 1,299 EUR a month with lead scoring.",
            &["lead scoring".to_string()],
            "en",
            &BTreeSet::new(),
        );
        let texts: Vec<&str> = facts.iter().map(Fact::text).collect();
        assert_eq!(
            texts,
            [
                "23%",
                "1,299",
                "lead scoring",
                "Leitwerk",
                "HubSpot",
                "B2B",
                "March",
                "EUR"
            ]
        );
    }

    #[test]
    fn german_nouns_are_not_names_but_product_names_are() {
        let facts = facts_of(
            "Die Kunden von HubSpot sparen 20 Prozent Zeit.",
            &[],
            "de",
            &BTreeSet::new(),
        );
        let texts: Vec<&str> = facts.iter().map(Fact::text).collect();
        assert_eq!(texts, ["20", "HubSpot"]);
    }

    #[test]
    fn names_opening_a_sentence_count_when_the_draft_knows_them_or_they_run_on() {
        let known = known_names(["We compared it with Leitwerk."]);
        let texts = |s: &str| -> Vec<String> {
            facts_of(s, &[], "en", &known)
                .iter()
                .map(|f| f.text().to_string())
                .collect()
        };
        assert_eq!(texts("Leitwerk scores leads."), ["Leitwerk"]);
        assert_eq!(texts("Globex Freight buys leads."), ["Globex", "Freight"]);
        assert_eq!(texts("Teams buy leads."), Vec::<String>::new());
        assert_eq!(texts("Results: Leitwerk buys leads."), ["Leitwerk"]);
    }

    #[test]
    fn headings_questions_and_calls_to_action_are_not_claims() {
        let draft = Draft::parse(
            "# Lead scoring\n\nWhy does it matter? Leitwerk scores every lead within 5 minutes. Book a demo today to see it.\n",
        );
        let c = claims(&draft, &[], "en");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "Leitwerk scores every lead within 5 minutes.");
    }
}
