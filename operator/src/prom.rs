//! Reading KPIs from Prometheus.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_http_query::{Client, response::Data};

/// How long one query may take, end to end.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A Prometheus endpoint.
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    url: String,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .finish()
    }
}

/// One series of a query result: its labels and value.
pub type Series = (HashMap<String, String>, f64);

impl Prometheus {
    /// A client for `url` (e.g. `http://prometheus.monitoring:9090`).
    pub fn new(url: &str) -> Result<Prometheus, String> {
        let http = prometheus_http_query::reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let client = Client::from(http, url)
            .map_err(|e| format!("Prometheus URL {url:?} is not usable: {e}"))?;
        Ok(Prometheus {
            client,
            url: url.to_string(),
        })
    }

    /// Runs an instant query and returns every series (a scalar is one series without labels).
    pub async fn series(&self, query: &str) -> Result<Vec<Series>, String> {
        let result = self
            .client
            .query(query)
            .timeout(QUERY_TIMEOUT.as_millis() as i64)
            .get()
            .await
            .map_err(|e| format!("query to {} failed: {e}", self.url))?;
        Ok(match result.data() {
            Data::Vector(v) => v
                .iter()
                .map(|s| (s.metric().clone(), s.sample().value()))
                .collect(),
            Data::Scalar(s) => vec![(HashMap::new(), s.value())],
            Data::Matrix(_) => {
                return Err(format!(
                    "query {query:?} returned a range vector; KPI queries must return one value (wrap ranges in increase() or rate())"
                ));
            }
        })
    }

    /// Runs an instant query that should produce one value: `None` when it returns no series
    /// or not a number (0/0); several series are an error (aggregate them in the query).
    /// Infinities are kept: `+Inf` is a real answer (spend divided by zero conversions).
    pub async fn value(&self, query: &str) -> Result<Option<f64>, String> {
        let series = self.series(query).await?;
        if series.len() > 1 {
            return Err(format!(
                "query {query:?} returned {} series; a KPI must be one value: aggregate with sum(...)",
                series.len()
            ));
        }
        Ok(series.first().map(|(_, v)| *v).filter(|v| !v.is_nan()))
    }
}
