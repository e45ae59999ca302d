//! Personal data out of every prompt, back only where the briefing allows.
//!
//! Each value is replaced by a placeholder that names its kind and carries a salted tag:
//! `[EMAIL-3f2a9c1b]`, the first 8 hex digits of HMAC-SHA256(key, kind, value). The same value
//! gets the same placeholder across a run (a model can refer to it consistently), a different
//! key gives different placeholders (no guessing values across tenants), and no model ever
//! sees the raw value. The [`Vault`] keeps the values in memory for [`Redactor::restore`]; it
//! never serializes or prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use leitwerk_rag::scan::{self, Pii};
use regex::Regex;
use sha2::Sha256;

/// A kind of personal data the redactor replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// An IBAN (MOD-97 checked).
    Iban,
    /// A card number (Luhn checked).
    Card,
    /// An IPv4 address.
    Ip,
    /// A German tax identification number (Steuer-IdNr, ISO 7064 MOD 11,10 checked).
    TaxId,
}

impl Kind {
    /// The label in a placeholder.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Iban => "IBAN",
            Kind::Card => "CARD",
            Kind::Ip => "IP",
            Kind::TaxId => "TAXID",
        }
    }

    fn from_label(label: &str) -> Option<Kind> {
        [
            Kind::Email,
            Kind::Phone,
            Kind::Iban,
            Kind::Card,
            Kind::Ip,
            Kind::TaxId,
        ]
        .into_iter()
        .find(|k| k.label() == label)
    }
}

impl From<Pii> for Kind {
    fn from(p: Pii) -> Kind {
        match p {
            Pii::Email => Kind::Email,
            Pii::Phone => Kind::Phone,
            Pii::Iban => Kind::Iban,
            Pii::Card => Kind::Card,
            Pii::Ip => Kind::Ip,
        }
    }
}

/// The values behind the placeholders of one run. Held in memory only: its `Debug` shows
/// counts, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Vault {
    values: BTreeMap<String, (Kind, String)>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vault({} values: {:?})",
            self.values.len(),
            self.counts()
        )
    }
}

impl Vault {
    /// How many distinct values of each kind it holds.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for (kind, _) in self.values.values() {
            *counts.entry(*kind).or_default() += 1;
        }
        counts
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

static PLACEHOLDER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\[(EMAIL|PHONE|IBAN|CARD|IP|TAXID)-([0-9a-f]{8})\]").ok());

/// An 11-digit run that may be a German tax id.
static TAX_ID: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b[1-9](?:[ /]?\d){10}\b").ok());

/// The check digit of a German tax id (ISO 7064, MOD 11,10) holds.
pub fn tax_id_valid(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 11 || digits[0] == 0 {
        return false;
    }
    let mut product = 10;
    for &d in &digits[..10] {
        let mut sum = (d + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = (11 - product) % 10;
    check == digits[10]
}

/// Replaces personal data with salted placeholders and puts it back.
pub struct Redactor {
    key: Vec<u8>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(key hidden)")
    }
}

impl Redactor {
    /// A redactor with the run's HMAC key (from the pipeline's Secret).
    pub fn new(key: &[u8]) -> Redactor {
        Redactor { key: key.to_vec() }
    }

    fn placeholder(&self, kind: Kind, value: &str) -> String {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
        let tag = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(kind.label().as_bytes());
                mac.update(&[0]);
                mac.update(value.as_bytes());
                let bytes = mac.finalize().into_bytes();
                bytes[..4]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            }
            Err(_) => "00000000".to_string(),
        };
        format!("[{}-{tag}]", kind.label())
    }

    /// `text` with every personal value replaced by its placeholder; the values go into
    /// `vault`.
    pub fn redact(&self, text: &str, vault: &mut Vault) -> String {
        // Tax ids first: their 11 digits would otherwise read as a phone number.
        let mut spans: Vec<(std::ops::Range<usize>, Kind)> = TAX_ID
            .as_ref()
            .map(|re| {
                re.find_iter(text)
                    .filter(|m| tax_id_valid(m.as_str()))
                    .map(|m| (m.range(), Kind::TaxId))
                    .collect()
            })
            .unwrap_or_default();
        for (r, p) in scan::find(text) {
            if !spans
                .iter()
                .any(|(t, _)| r.start < t.end && t.start < r.end)
            {
                spans.push((r, Kind::from(p)));
            }
        }
        spans.sort_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, kind) in spans {
            let value = &text[range.clone()];
            let placeholder = self.placeholder(kind, value);
            out.push_str(&text[at..range.start]);
            out.push_str(&placeholder);
            vault.values.insert(placeholder, (kind, value.to_string()));
            at = range.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// `text` with the placeholders of the `allowed` kinds replaced by their values again;
    /// every other placeholder (and one the vault does not know, e.g. invented by a model)
    /// becomes its bare label, `[EMAIL]`, so no tag reaches a reader.
    pub fn restore(&self, text: &str, vault: &Vault, allowed: &[Kind]) -> String {
        let Some(re) = PLACEHOLDER.as_ref() else {
            return text.to_string();
        };
        re.replace_all(text, |caps: &regex::Captures<'_>| {
            let whole = caps.get(0).map_or("", |m| m.as_str());
            let label = caps.get(1).map_or("", |m| m.as_str());
            match vault.values.get(whole) {
                Some((kind, value)) if allowed.contains(kind) => value.clone(),
                _ => match Kind::from_label(label) {
                    Some(kind) => format!("[{}]", kind.label()),
                    None => String::new(),
                },
            }
        })
        .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF: &str = "Follow up with jane.doe@example.com (+49 30 1234 5678), tax id \
        86095742719, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00. \
        Mention jane.doe@example.com again. Order 2024-12-01 for 1,299.00 EUR.";

    #[test]
    fn no_raw_value_survives_and_the_same_value_gets_the_same_placeholder() {
        let r = Redactor::new(b"run-key");
        let mut vault = Vault::default();
        let redacted = r.redact(BRIEF, &mut vault);
        for raw in ["jane.doe", "1234 5678", "86095742719", "4111 1111", "DE89"] {
            assert!(!redacted.contains(raw), "{raw} left in {redacted}");
        }
        let emails: Vec<&str> = redacted.matches("[EMAIL-").collect();
        assert_eq!(emails.len(), 2);
        let first = redacted.find("[EMAIL-").unwrap_or(0);
        let second = redacted.rfind("[EMAIL-").unwrap_or(0);
        assert_eq!(redacted[first..first + 16], redacted[second..second + 16]);
        assert!(
            redacted.contains("2024-12-01") && redacted.contains("1,299.00"),
            "{redacted}"
        );
        assert_eq!(
            vault.counts(),
            BTreeMap::from([
                (Kind::Email, 1),
                (Kind::Phone, 1),
                (Kind::Iban, 1),
                (Kind::Card, 1),
                (Kind::TaxId, 1)
            ])
        );
        let shown = format!("{vault:?} {r:?}");
        assert!(
            !shown.contains("jane") && !shown.contains("run-key"),
            "{shown}"
        );
    }

    #[test]
    fn placeholders_are_salted_by_the_key() {
        let mut v = Vault::default();
        let a = Redactor::new(b"tenant-a").redact("jane@example.com", &mut v);
        let b = Redactor::new(b"tenant-b").redact("jane@example.com", &mut v);
        assert_ne!(a, b);
    }

    #[test]
    fn values_come_back_only_where_allowed_and_invented_placeholders_are_stripped() {
        let r = Redactor::new(b"k");
        let mut vault = Vault::default();
        let redacted = r.redact("Contact jane@example.com or +49 30 1234 5678.", &mut vault);
        let model_output = format!("{redacted} Also ask [EMAIL-deadbeef].");
        let restored = r.restore(&model_output, &vault, &[Kind::Email]);
        assert!(restored.contains("jane@example.com"), "{restored}");
        assert!(
            restored.contains("[PHONE]") && !restored.contains("1234"),
            "{restored}"
        );
        assert!(restored.contains("ask [EMAIL]."), "{restored}");
        assert!(!restored.contains("deadbeef"));
        let none = r.restore(&model_output, &vault, &[]);
        assert!(!none.contains("jane@"), "{none}");
    }

    #[test]
    fn tax_ids_are_checked_not_guessed() {
        assert!(tax_id_valid("86095742719"));
        assert!(!tax_id_valid("86095742718"));
        assert!(!tax_id_valid("06095742719"));
        let mut v = Vault::default();
        let r = Redactor::new(b"k");
        let spaced = r.redact("Steuer-ID 86 095 742 719.", &mut v);
        assert!(spaced.starts_with("Steuer-ID [TAXID-"), "{spaced}");
        // Eleven digits that fail the check are no tax id (as a long digit run they are still
        // redacted, as a phone number).
        let other = r.redact("Call 86095742718 now.", &mut v);
        assert!(
            other.contains("[PHONE-") && !other.contains("TAXID"),
            "{other}"
        );
    }
}
