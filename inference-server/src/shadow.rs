//! Shadow mode, the stable server's side (`--shadow URL`): after answering a REST inference
//! request, the server sends the same inputs to the candidate at `URL` and compares its answer
//! with its own, row by row, in Prometheus metrics: the candidate's scores
//! (`shadow_score`, the same buckets as `score`, for the PSI of the candidate's scores against
//! stable's), the rows on the same side of the threshold (`shadow_agreed` of `shadow_rows`),
//! the candidate's latency and its errors. Callers only ever get the stable answer, never
//! wait for the candidate, and a slow candidate cannot pile work up: at most
//! [`MAX_IN_FLIGHT`] mirrored requests are open, and the rest are dropped and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::{Server, ShadowLabels, VersionLabels};

/// The most mirrored requests open at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long a mirrored request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how requests are mirrored.
#[derive(Debug)]
pub struct Shadow {
    url: String,
    threshold: f64,
    model: Option<String>,
    client: reqwest::Client,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Shadow {
    /// Mirrors to the candidate's base URL (`http://host:port`); rows agree when both scores
    /// lie on the same side of `threshold`.
    pub fn new(url: &str, threshold: f64) -> Result<Shadow, String> {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("--shadow {url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "--shadow {url:?}: the candidate's address is http:// or https://"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("--shadow: {e}"))?;
        Ok(Shadow {
            url: url.trim_end_matches('/').to_string(),
            threshold,
            model: None,
            client,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Mirrors to the candidate's model `name` (another Model than the one asked for), not to
    /// the request's model name.
    pub fn with_model(mut self, name: Option<String>) -> Shadow {
        self.model = name;
        self
    }

    /// Sends `inputs` (the request's OIP v2 input tensors) for model `name` to the candidate
    /// in the background and records how its answer compares with `stable` (this server's
    /// scores of the same rows, answered as `model`/`version`).
    pub fn tee(
        &self,
        server: Arc<Server>,
        name: &str,
        (model, version): (&str, &str),
        inputs: Value,
        stable: Vec<f32>,
    ) {
        let labels = VersionLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        let (model, version) = (model.to_string(), version.to_string());
        let outcome = move |o: &str| ShadowLabels {
            model: model.clone(),
            version: version.clone(),
            outcome: o.to_string(),
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            server
                .metrics
                .shadow_requests
                .get_or_create(&outcome("dropped"))
                .inc();
            return;
        };
        let request = self
            .client
            .post(format!(
                "{}/v2/models/{}/infer",
                self.url,
                self.model.as_deref().unwrap_or(name)
            ))
            .json(&serde_json::json!({ "inputs": inputs }));
        let threshold = self.threshold;
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let reply = match request.send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            };
            let scores: Option<Vec<f64>> = reply.and_then(|r| {
                r["outputs"][0]["data"]
                    .as_array()
                    .map(|d| d.iter().filter_map(Value::as_f64).collect())
            });
            let m = &server.metrics;
            match scores.filter(|s| s.len() == stable.len()) {
                Some(candidate) => {
                    m.shadow_requests.get_or_create(&outcome("ok")).inc();
                    m.shadow_latency
                        .get_or_create(&labels)
                        .observe(started.elapsed().as_secs_f64());
                    let histogram = m.shadow_scores.get_or_create(&labels);
                    let mut agreed = 0;
                    for (c, s) in candidate.iter().zip(&stable) {
                        histogram.observe(*c);
                        agreed += u64::from((*c >= threshold) == (f64::from(*s) >= threshold));
                    }
                    m.shadow_rows
                        .get_or_create(&labels)
                        .inc_by(candidate.len() as u64);
                    m.shadow_agreed.get_or_create(&labels).inc_by(agreed);
                }
                None => {
                    m.shadow_requests.get_or_create(&outcome("error")).inc();
                }
            }
        });
    }
}
