//! The safety scan of a document before it is split and of each chunk after: personal data
//! redacted, flagged or refused, prompt-injection text quarantined or flagged, as the policy
//! says.

use std::collections::BTreeMap;

use crate::documents::Document;
use crate::scan::{InjectionPolicy, PersonalDataPolicy, Safety, scan};

use super::IndexError;

/// A piece of a chunk (its text or its section path) after the safety scan.
pub(super) struct ScreenedText {
    /// The text, redacted when the policy says so.
    pub(super) text: String,
    /// Personal data found (before any redaction).
    pub(super) personal_data: usize,
    /// Prompt-injection signs found.
    pub(super) injection: usize,
    /// Marked for a reviewer.
    pub(super) flagged: bool,
    /// Never served.
    pub(super) quarantined: bool,
}

/// Scans one piece of a chunk: redacted, flagged, quarantined or refused as `safety` says.
pub(super) fn screened(
    doc: &str,
    text: String,
    safety: Safety,
) -> Result<ScreenedText, IndexError> {
    let redact = safety.personal_data == PersonalDataPolicy::Redact;
    let (findings, redacted) = scan(&text, redact);
    let found: usize = findings.pii.values().sum();
    if found > 0 && safety.personal_data == PersonalDataPolicy::Reject {
        let kinds: Vec<&str> = findings.pii.keys().map(|k| k.name()).collect();
        return Err(IndexError::PersonalData {
            id: doc.to_string(),
            kinds: kinds.join(", "),
        });
    }
    let injected = findings.injection > 0;
    Ok(ScreenedText {
        text: redacted.unwrap_or(text),
        personal_data: found,
        injection: findings.injection,
        flagged: (found > 0 && safety.personal_data == PersonalDataPolicy::Flag)
            || (injected && safety.injection == InjectionPolicy::Flag),
        quarantined: injected && safety.injection == InjectionPolicy::Quarantine,
    })
}

/// What the scan of a whole document found, before it is split.
#[derive(Debug, Default)]
pub(super) struct Screened {
    /// Personal data by kind, over the text, title, URL and metadata.
    pub(super) personal_data: BTreeMap<String, usize>,
    /// Prompt-injection signs over the same.
    pub(super) injection: usize,
    /// Prompt-injection signs in the body text alone.
    pub(super) body_injection: usize,
    /// Injection text outside the body (title, URL, metadata) or across a chunk boundary:
    /// every chunk is marked, since none can be cleared alone.
    pub(super) mark_all: bool,
}

/// Scans a whole document before it is split — its text (so that personal data across a
/// chunk boundary is caught), title, URL and metadata values — and redacts all of them when
/// the policy says so. Refuses the document under `Reject`, naming the field.
pub(super) fn screen_document(doc: &mut Document, safety: Safety) -> Result<Screened, IndexError> {
    let redact = safety.personal_data == PersonalDataPolicy::Redact;
    let mut out = Screened::default();
    let mut outside_body = 0;
    let mut fields: Vec<(String, &mut String)> = vec![
        ("text".to_string(), &mut doc.text),
        ("title".to_string(), &mut doc.title),
    ];
    if let Some(url) = doc.url.as_mut() {
        fields.push(("url".to_string(), url));
    }
    for (key, value) in doc.metadata.iter_mut() {
        fields.push((format!("metadata {key:?}"), value));
    }
    for (field, value) in fields {
        let (findings, redacted) = scan(value, redact);
        if !findings.pii.is_empty() && safety.personal_data == PersonalDataPolicy::Reject {
            let kinds: Vec<&str> = findings.pii.keys().map(|k| k.name()).collect();
            return Err(IndexError::PersonalData {
                id: format!("{} ({field})", doc.id),
                kinds: kinds.join(", "),
            });
        }
        for (kind, n) in &findings.pii {
            *out.personal_data
                .entry(kind.name().to_string())
                .or_default() += n;
        }
        out.injection += findings.injection;
        if field == "text" {
            out.body_injection = findings.injection;
        } else {
            outside_body += findings.injection;
        }
        if let Some(r) = redacted {
            *value = r;
        }
    }
    out.mark_all = outside_body > 0;
    Ok(out)
}
