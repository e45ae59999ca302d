//! Generators, tried in order with fallback: OpenAI-compatible chat completions (vLLM, TGI,
//! Ollama, the llama.cpp server, hosted APIs, Leitwerk's own inference server).
//!
//! Every call is admitted by the run's budget first: it reserves the worst case (one token per
//! prompt byte plus the chat template's overhead, and `max_tokens` of completion, priced at the
//! generator's rates), so that retries, fallbacks and revisions can never spend past
//! `maxTokens` or `maxCost`; the usage the server reports is charged after the call. A
//! generator that answers 429 or 5xx (or times out) is retried with exponential backoff,
//! honouring `Retry-After`, then the next one is tried; 401/403 (a refused API key) and other
//! 4xx go to the next one at once. Identical requests (the normalised prompt and schema) are
//! served from a cache. Every attempt is recorded.
//!
//! The client is `reqwest` with the chat-completions body written here (a dozen fields), not
//! `async-openai`: the retry policy needs the status and `Retry-After` of every response,
//! which that crate's retry loop keeps to itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod types;

pub use types::*;

/// Tokens the chat template may add per message (role markers, separators).
const TEMPLATE_TOKENS_PER_MESSAGE: u64 = 8;
/// Longest wait between two calls, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The worst case of a request's prompt tokens: byte-level tokenizers never use more than one
/// token per byte.
pub fn prompt_upper_bound(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| (m.content.len() + m.role.len()) as u64 + TEMPLATE_TOKENS_PER_MESSAGE)
        .sum::<u64>()
        + TEMPLATE_TOKENS_PER_MESSAGE
}

/// The cache key of a request: the normalised messages (whitespace collapsed) and schema.
pub fn cache_key(request: &Request) -> String {
    let mut hash = Sha256::new();
    for m in &request.messages {
        hash.update(m.role.as_bytes());
        hash.update([0]);
        hash.update(
            m.content
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .as_bytes(),
        );
        hash.update([0]);
    }
    if let Some(schema) = &request.schema {
        hash.update(schema.to_string().as_bytes());
    }
    format!("{:x}", hash.finalize())
}

#[derive(Default)]
struct State {
    spend: Spend,
    reserved_tokens: u64,
    reserved_cost: f64,
    cache: HashMap<String, (String, Usage, String)>,
}

type Limiter = governor::DefaultDirectRateLimiter;

/// The generators of one run, its budget and its cache.
pub struct Chain {
    http: reqwest::Client,
    generators: Vec<Generator>,
    limiters: Vec<Option<Limiter>>,
    budget: Budget,
    backoff: Duration,
    state: Mutex<State>,
}

/// How one call failed.
struct Failure {
    outcome: String,
    retryable: bool,
    retry_after: Option<Duration>,
    /// Tokens the call may have used (a timeout: the provider may have billed it).
    charged: Option<(u64, u64)>,
}

impl Chain {
    /// The generators of a run, tried in order, within `budget`.
    pub fn new(generators: Vec<Generator>, budget: Budget) -> Result<Chain, Error> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let limiters = generators
            .iter()
            .map(|g| {
                // Evenly spaced (a burst of one): 60 a minute is one a second.
                g.requests_per_minute.map(|rpm| {
                    let quota =
                        governor::Quota::per_minute(rpm).allow_burst(std::num::NonZeroU32::MIN);
                    governor::RateLimiter::direct(quota)
                })
            })
            .collect();
        Ok(Chain {
            http,
            limiters,
            generators,
            budget,
            backoff: Duration::from_millis(500),
            state: Mutex::new(State::default()),
        })
    }

    /// The first wait of the exponential backoff (500 ms unless set).
    pub fn with_backoff(mut self, first: Duration) -> Chain {
        self.backoff = first;
        self
    }

    /// How many generators the chain has.
    pub fn generators(&self) -> usize {
        self.generators.len()
    }

    /// What the run spent so far.
    pub fn spend(&self) -> Spend {
        self.state.lock().map(|s| s.spend).unwrap_or_default()
    }

    /// Reserves the worst case of one call, or says which figure it would exceed.
    fn reserve(&self, g: &Generator, request: &Request) -> Result<(u64, f64), Error> {
        let prompt = prompt_upper_bound(&request.messages);
        let completion = u64::from(request.max_tokens_for(g));
        let tokens = prompt + completion;
        let cost = g.prices.cost(prompt, completion);
        let mut s = self
            .state
            .lock()
            .map_err(|_| Error::Client("the budget's lock is poisoned".into()))?;
        let committed = s.spend.tokens + s.reserved_tokens;
        if committed + tokens > self.budget.max_tokens {
            return Err(Error::BudgetExceeded(format!(
                "a call to {} may use {tokens} tokens ({prompt} prompt at most, {completion} completion); {committed} of maxTokens {} are spent or reserved",
                g.name, self.budget.max_tokens
            )));
        }
        if let Some(max) = self.budget.max_cost {
            let committed = s.spend.cost + s.reserved_cost;
            if committed + cost > max {
                return Err(Error::BudgetExceeded(format!(
                    "a call to {} may cost {cost:.4}; {committed:.4} of maxCost {max} are spent or reserved",
                    g.name
                )));
            }
        }
        s.reserved_tokens += tokens;
        s.reserved_cost += cost;
        Ok((tokens, cost))
    }

    /// Releases a reservation and charges what a call used.
    fn settle(&self, g: &Generator, reserved: (u64, f64), used: Option<Usage>) {
        if let Ok(mut s) = self.state.lock() {
            s.reserved_tokens = s.reserved_tokens.saturating_sub(reserved.0);
            s.reserved_cost = (s.reserved_cost - reserved.1).max(0.0);
            s.spend.calls += 1;
            if let Some(u) = used {
                s.spend.tokens += u.total();
                s.spend.cost += g.prices.cost(u.prompt_tokens, u.completion_tokens);
            }
        }
    }

    /// An answer to `request` from the first generator that gives one, starting at generator
    /// `start` (a stage whose check failed escalates by starting further down the list).
    pub async fn complete(&self, request: &Request, start: usize) -> Result<Completion, Error> {
        let key = cache_key(request);
        if let Ok(mut s) = self.state.lock()
            && let Some((text, usage, generator)) = s.cache.get(&key).cloned()
        {
            s.spend.cache_hits += 1;
            s.spend.saved_tokens += usage.total();
            return Ok(Completion {
                text,
                generator,
                usage,
                cost: 0.0,
                cached: true,
                attempts: Vec::new(),
            });
        }
        let mut attempts = Vec::new();
        for (index, g) in self.generators.iter().enumerate().skip(start) {
            let mut try_number = 0;
            loop {
                let reserved = self.reserve(g, request)?;
                let throttled = self.throttle(index).await;
                match self.call(g, request).await {
                    Ok((text, usage)) => {
                        self.settle(g, reserved, Some(usage));
                        attempts.push(Attempt {
                            generator: g.name.clone(),
                            outcome: "ok".into(),
                            waited: None,
                            throttled,
                        });
                        if let Ok(mut s) = self.state.lock() {
                            s.cache.insert(key, (text.clone(), usage, g.name.clone()));
                        }
                        return Ok(Completion {
                            text,
                            generator: g.name.clone(),
                            usage,
                            cost: g.prices.cost(usage.prompt_tokens, usage.completion_tokens),
                            cached: false,
                            attempts,
                        });
                    }
                    Err(f) => {
                        let used = f.charged.map(|(p, c)| Usage {
                            prompt_tokens: p,
                            completion_tokens: c,
                        });
                        self.settle(g, reserved, used);
                        let again = f.retryable && try_number < g.retries;
                        let wait = again.then(|| {
                            f.retry_after
                                .unwrap_or(self.backoff * 2u32.saturating_pow(try_number))
                                .min(MAX_WAIT)
                        });
                        attempts.push(Attempt {
                            generator: g.name.clone(),
                            outcome: f.outcome,
                            waited: wait,
                            throttled,
                        });
                        match wait {
                            Some(w) => {
                                tokio::time::sleep(w).await;
                                try_number += 1;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        Err(Error::Exhausted(attempts))
    }

    /// Waits until generator `index`'s rate limit allows a call; returns the wait, if any.
    async fn throttle(&self, index: usize) -> Option<Duration> {
        use governor::clock::{Clock, DefaultClock};
        let limiter = self.limiters.get(index)?.as_ref()?;
        match limiter.check() {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                limiter.until_ready().await;
                Some(wait)
            }
        }
    }

    /// One call: the answer and its usage, or how it failed.
    async fn call(&self, g: &Generator, request: &Request) -> Result<(String, Usage), Failure> {
        let mut body = json!({
            "model": g.model,
            "messages": request.messages,
            "temperature": g.sampling.temperature,
            "top_p": g.sampling.top_p,
            "max_tokens": request.max_tokens_for(g),
        });
        if let Some(seed) = g.sampling.seed {
            body["seed"] = json!(seed);
        }
        if let Some(schema) = &request.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "stage", "schema": schema, "strict": true},
            });
        }
        let url = format!("{}/chat/completions", g.base_url.trim_end_matches('/'));
        let mut http = self.http.post(&url).timeout(g.timeout).json(&body);
        if let Some(key) = &g.api_key {
            http = http.bearer_auth(key);
        }
        let fail = |outcome: String, retryable: bool| Failure {
            outcome,
            retryable,
            retry_after: None,
            charged: None,
        };
        let response = match http.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(Failure {
                    charged: Some((
                        prompt_upper_bound(&request.messages),
                        u64::from(request.max_tokens_for(g)),
                    )),
                    ..fail(
                        format!("timeout after {:?} (charged as spent in full)", g.timeout),
                        true,
                    )
                });
            }
            Err(e) => {
                return Err(fail(
                    format!(
                        "unreachable (check the generator's url and that the backend runs): {e}"
                    ),
                    true,
                ));
            }
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let code = status.as_u16();
            let (why, retryable) = match code {
                401 | 403 => (
                    "the API key is refused: check the generator's apiKeySecretRef",
                    false,
                ),
                429 => ("rate limited", true),
                500..=599 => ("server error", true),
                _ => (
                    "the request is refused: check the generator's url and model",
                    false,
                ),
            };
            return Err(Failure {
                retry_after,
                ..fail(format!("HTTP {code}: {why}"), retryable)
            });
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| fail(format!("an answer that is not JSON: {e}"), true))?;
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| fail("an answer without choices[0].message.content".into(), false))?;
        let usage = Usage {
            prompt_tokens: answer["usage"]["prompt_tokens"]
                .as_u64()
                .unwrap_or_else(|| prompt_upper_bound(&request.messages)),
            completion_tokens: answer["usage"]["completion_tokens"]
                .as_u64()
                .unwrap_or(u64::from(request.max_tokens_for(g))),
        };
        if request.schema.is_some() && serde_json::from_str::<Value>(&text).is_err() {
            return Err(Failure {
                charged: Some((usage.prompt_tokens, usage.completion_tokens)),
                ..fail(
                    format!(
                        "the answer is not the JSON the stage asked for: {:?}",
                        text.chars().take(80).collect::<String>()
                    ),
                    false,
                )
            });
        }
        Ok((text, usage))
    }
}
