//! The checks of Leitwerk's content pipelines, as pure functions over text, run by the
//! pipeline's stages:
//!
//! - [`redact`]: personal data replaced by salted, reversible placeholders before any prompt;
//! - [`facts`] and [`factcheck`]: the claim-level fact check, fail-closed, with its ledger;
//! - [`style`]: banned and required phrases, the brand glossary, sentence length and
//!   readability by language;
//! - [`seo`]: on-page SEO, internal links from a link map, and schema.org `Article` JSON-LD;
//! - [`generate`]: generators tried in order with retries, fallback, a budget checked before
//!   every call, and a response cache;
//! - [`pipeline`]: one run of the stages, with revisions and escalation;
//! - [`publish`]: sanitised HTML, the CMS payload, and a signed, idempotent webhook delivery.
//!
//! Every finding carries its location (line and section), so an editor can find it.

pub mod factcheck;
pub mod facts;
pub mod generate;
pub mod markdown;
pub mod pipeline;
pub mod prompts;
pub mod publish;
pub mod redact;
pub mod seo;
pub mod style;
pub mod text;

pub use markdown::Location;
