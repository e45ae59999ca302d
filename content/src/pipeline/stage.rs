//! One stage's bookkeeping: its duration, tokens, cost, generator and fallbacks.

use std::time::Instant;

use serde::Serialize;

use crate::generate::{Completion, Request};

/// One stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    /// `Retrieve`, `Outline`, `Draft`, `FactCheck`, `StyleCheck`, `OnPageCheck`.
    pub stage: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// Milliseconds it took.
    pub duration_ms: u64,
    /// Tokens its generator calls used.
    pub tokens: u64,
    /// Their cost.
    pub cost: f64,
    /// The generator that answered last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// What it found (failures first).
    pub findings: Vec<String>,
    /// Calls that failed over to the next generator, e.g. `gateway: HTTP 500`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// What the stage read (the requests it sent, the draft it checked), for its artifact.
    #[serde(skip)]
    pub input: String,
    /// What it produced (the answers, the ledger, the findings), for its artifact.
    #[serde(skip)]
    pub output: String,
}

pub(super) struct Stage {
    name: &'static str,
    started: Instant,
    tokens: u64,
    cost: f64,
    generator: Option<String>,
    fallbacks: Vec<String>,
    input: Vec<String>,
    output: Vec<String>,
}

impl Stage {
    pub(super) fn start(name: &'static str) -> Stage {
        Stage {
            name,
            started: Instant::now(),
            tokens: 0,
            cost: 0.0,
            generator: None,
            fallbacks: Vec::new(),
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Records what the stage read and produced.
    pub(super) fn io(&mut self, input: impl Into<String>, output: impl Into<String>) {
        self.input.push(input.into());
        self.output.push(output.into());
    }

    /// Charges a generator call, recording the request and the answer.
    pub(super) fn charge(&mut self, request: &Request, c: &Completion) {
        self.io(
            serde_json::to_string(&request.messages).unwrap_or_default(),
            c.text.clone(),
        );
        self.tokens += c.usage.total();
        self.cost += c.cost;
        self.generator = Some(c.generator.clone());
        self.fallbacks.extend(
            c.attempts
                .iter()
                .filter(|a| a.outcome != "ok")
                .map(|a| format!("{}: {}", a.generator, a.outcome)),
        );
    }

    pub(super) fn end(self, passed: bool, findings: Vec<String>) -> StageReport {
        StageReport {
            stage: self.name,
            passed,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            tokens: self.tokens,
            cost: (self.cost * 1e6).round() / 1e6,
            generator: self.generator,
            findings,
            fallbacks: self.fallbacks,
            input: self.input.join("\n"),
            output: self.output.join("\n"),
        }
    }
}
