//! Publishing an approved page: Markdown rendered to HTML and sanitised with an allow-list
//! (`ammonia`: no scripts, styles, event handlers or `javascript:` links), the payload a CMS
//! receives (Markdown, HTML, JSON-LD, sources, run and experiment ids), and a webhook
//! delivery signed with HMAC-SHA256 (`X-Leitwerk-Signature: sha256=<hex>` over the exact body),
//! with the run id as `Idempotency-Key` and retries on 429, 5xx and timeouts.

use std::time::Duration;

use hmac::{Hmac, Mac};
use pulldown_cmark::{Options, Parser, html};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use crate::seo::Page;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-leitwerk-signature";
/// The header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Markdown as HTML, sanitised: only text markup, headings, lists, tables, code, quotes and
/// links with http(s), mailto or relative URLs survive (every link gets
/// `rel="noopener noreferrer"`).
pub fn render_html(markdown: &str) -> String {
    let mut raw = String::new();
    html::push_html(&mut raw, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(&raw)
        .to_string()
}

/// A source the page was grounded in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SourceRef {
    /// The chunk's id in the index.
    pub chunk: String,
    /// Its document.
    pub document: String,
}

/// What a CMS receives.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// The run's id (also the idempotency key).
    pub run_id: String,
    /// The Experiment tracking the content, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    /// The title.
    pub title: String,
    /// The meta description.
    pub description: String,
    /// The body as Markdown.
    pub markdown: String,
    /// The body as sanitised HTML.
    pub html: String,
    /// The schema.org `Article`.
    pub json_ld: Value,
    /// The chunks the claims map to.
    pub sources: Vec<SourceRef>,
}

impl Payload {
    /// The payload of a page.
    pub fn new(
        run_id: &str,
        experiment_id: Option<&str>,
        page: &Page,
        json_ld: Value,
        sources: Vec<SourceRef>,
    ) -> Payload {
        Payload {
            run_id: run_id.into(),
            experiment_id: experiment_id.map(String::from),
            title: page.title.clone(),
            description: page.description.clone(),
            markdown: page.markdown.clone(),
            html: render_html(&page.markdown),
            json_ld,
            sources,
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`key`, `body`).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let hex = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }
        Err(_) => String::new(),
    };
    format!("sha256={hex}")
}

/// Whether `header` is the signature of `body` under `key` (constant-time comparison).
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        }
        Err(_) => false,
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload could not be serialised.
    #[error("the payload could not be serialised: {0}")]
    Serialise(String),
    /// The receiver refused it (4xx other than 429): retrying would not help.
    #[error("the webhook refused the content: HTTP {status}: {body}")]
    Refused {
        /// The status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// Every try failed.
    #[error("the webhook did not take the content after {tries} tries: {last}")]
    Unreachable {
        /// Tries made.
        tries: u32,
        /// The last failure.
        last: String,
    },
}

/// Delivers `payload` to `url`, signed with `key` (and with `token` as its bearer token when
/// given), retrying `retries` times on 429, 5xx and
/// network failures (backoff from `first_wait`, doubling, or the receiver's `Retry-After`).
/// Returns the number of tries it took.
pub async fn deliver(
    url: &str,
    key: &[u8],
    token: Option<&str>,
    payload: &Payload,
    retries: u32,
    first_wait: Duration,
) -> Result<u32, Error> {
    let body = serde_json::to_vec(payload).map_err(|e| Error::Serialise(e.to_string()))?;
    let signed = signature(key, &body);
    let client = reqwest::Client::new();
    let mut last = String::new();
    for attempt in 0..=retries {
        let mut request = client.post(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let sent = request
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signed)
            .header(IDEMPOTENCY_HEADER, &payload.run_id)
            .body(body.clone())
            .send()
            .await;
        let mut wait = first_wait * 2u32.saturating_pow(attempt);
        match sent {
            Ok(r) if r.status().is_success() => return Ok(attempt + 1),
            Ok(r) => {
                let status = r.status().as_u16();
                if let Some(after) = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    wait = Duration::from_secs(after.min(30));
                }
                let text: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                if status != 429 && status < 500 {
                    return Err(Error::Refused { status, body: text });
                }
                last = format!("HTTP {status}: {text}");
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < retries {
            tokio::time::sleep(wait).await;
        }
    }
    Err(Error::Unreachable {
        tries: retries + 1,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_the_text_and_drops_what_could_run() {
        let md = "# Title\n\nSee [pricing](/pricing) and [docs](https://example.com/docs).\n\n<script>alert(1)</script>\n\n<a href=\"javascript:alert(2)\" onclick=\"x()\">click</a>\n\n<img src=x onerror=alert(3)>\n";
        let html = render_html(md);
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(
            html.contains("href=\"/pricing\"")
                && html.contains("href=\"https://example.com/docs\""),
            "{html}"
        );
        for bad in ["<script", "javascript:", "onclick", "onerror", "alert(1)"] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
    }

    #[test]
    fn signatures_verify_only_the_exact_body_and_key() {
        let s = signature(b"secret", b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert!(verify(b"secret", b"{\"a\":1}", &s));
        assert!(!verify(b"secret", b"{\"a\":2}", &s));
        assert!(!verify(b"other", b"{\"a\":1}", &s));
        assert!(!verify(b"secret", b"{\"a\":1}", "sha256=zz"));
    }
}
