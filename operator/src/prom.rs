//! Reading KPIs and the serving inputs' drift from Prometheus.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use leitwerk_crds::card::metric;
use prometheus_http_query::{Client, response::Data};

use crate::analysis::drift::{FeatureDrift, FeatureKind, feature_drift};

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

/// Drift of the inputs of the inference servers matching `selector` (PromQL label matchers)
/// over the window, per feature, against the reference shares the servers export from the
/// model card. `only` restricts the features (all when empty).
pub async fn input_drift(
    prom: &Prometheus,
    selector: &str,
    window: &str,
    only: &[String],
) -> Result<Vec<FeatureDrift>, String> {
    let reference = prom
        .series(&format!(
            "max by (feature, kind, bucket) ({}{{{selector}}})",
            metric::FEATURE_REFERENCE
        ))
        .await?;
    let serving = prom
        .series(&format!(
            "sum by (feature, bucket) (increase({}{{{selector}}}[{window}]))",
            metric::FEATURE_BUCKET
        ))
        .await?;
    type Buckets = BTreeMap<String, f64>;
    let mut features: BTreeMap<String, (FeatureKind, Buckets, Buckets)> = BTreeMap::new();
    for (labels, share) in &reference {
        let (Some(f), Some(b)) = (labels.get("feature"), labels.get("bucket")) else {
            continue;
        };
        let kind = if labels.get("kind").map(String::as_str) == Some("categorical") {
            FeatureKind::Categorical
        } else {
            FeatureKind::Numeric
        };
        let entry = features
            .entry(f.clone())
            .or_insert_with(|| (kind, Buckets::new(), Buckets::new()));
        entry.1.insert(b.clone(), *share);
    }
    for (labels, count) in &serving {
        let (Some(f), Some(b)) = (labels.get("feature"), labels.get("bucket")) else {
            continue;
        };
        if let Some(entry) = features.get_mut(f)
            && count.is_finite()
        {
            entry.2.insert(b.clone(), *count);
        }
    }
    Ok(features
        .iter()
        .filter(|(f, _)| only.is_empty() || only.contains(f))
        .filter_map(|(f, (kind, reference, serving))| feature_drift(f, *kind, reference, serving))
        .collect())
}
