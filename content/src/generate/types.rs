//! What a generator call is made of and what it yields: the generator's settings, the
//! request, its usage and cost, the attempts, the budget and the spend.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Sampling settings of one generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Temperature.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: f32,
    /// Most completion tokens per call.
    pub max_tokens: u32,
    /// Seed, for servers that honour one.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.2,
            top_p: 0.95,
            max_tokens: 512,
            seed: None,
        }
    }
}

/// Prices of one generator, in the budget's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    /// Per 1,000 prompt tokens.
    pub input_per_1k: f64,
    /// Per 1,000 completion tokens.
    pub output_per_1k: f64,
}

impl Prices {
    /// The cost of `prompt` and `completion` tokens.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        prompt as f64 / 1000.0 * self.input_per_1k + completion as f64 / 1000.0 * self.output_per_1k
    }
}

/// One OpenAI-compatible backend.
#[derive(Clone)]
pub struct Generator {
    /// Its name in the spec (recorded with every attempt).
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// API key (from the generator's Secret), sent as a bearer token.
    pub api_key: Option<String>,
    /// Sampling.
    pub sampling: Sampling,
    /// Prices.
    pub prices: Prices,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Retries after the first call on 429, 5xx and timeouts.
    pub retries: u32,
    /// Calls per minute this client makes to it at most, evenly spaced (its provider's rate
    /// limit).
    pub requests_per_minute: Option<std::num::NonZeroU32>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("sampling", &self.sampling)
            .field("prices", &self.prices)
            .finish()
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message with `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A request: messages, and the JSON schema the answer must follow when the stage needs
/// structure (the outline).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The conversation.
    pub messages: Vec<Message>,
    /// A JSON schema for structured output.
    pub schema: Option<Value>,
    /// At most this many completion tokens (never above the generator's own `max_tokens`).
    pub max_tokens: Option<u32>,
}

impl Request {
    /// The completion tokens a call to `g` may use.
    pub fn max_tokens_for(&self, g: &Generator) -> u32 {
        self.max_tokens
            .map_or(g.sampling.max_tokens, |m| m.min(g.sampling.max_tokens))
    }
}

/// Tokens of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One call to one generator and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The generator.
    pub generator: String,
    /// `ok`, `HTTP 429`, `timeout`, …, with the reason.
    pub outcome: String,
    /// How long the client waited before the next call to the same generator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<Duration>,
    /// How long the call waited for the generator's rate limit before it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Duration>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    /// The text (for a schema, the JSON).
    pub text: String,
    /// The generator that wrote it.
    pub generator: String,
    /// Its tokens.
    pub usage: Usage,
    /// Its cost (0 when served from the cache).
    pub cost: f64,
    /// Whether the cache served it.
    pub cached: bool,
    /// Every call made for it, in order.
    pub attempts: Vec<Attempt>,
}

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Most tokens (prompt and completion).
    pub max_tokens: u64,
    /// Most money, if limited.
    pub max_cost: Option<f64>,
}

/// What a run spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spend {
    /// Tokens charged.
    pub tokens: u64,
    /// Money charged.
    pub cost: f64,
    /// Calls made.
    pub calls: u64,
    /// Answers served from the cache.
    pub cache_hits: u64,
    /// Tokens the cache saved.
    pub saved_tokens: u64,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The next call could exceed the budget: it was not made.
    #[error("BudgetExceeded: {0}")]
    BudgetExceeded(String),
    /// Every generator failed.
    #[error("every generator failed: {}", summary(.0))]
    Exhausted(Vec<Attempt>),
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.generator, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}
