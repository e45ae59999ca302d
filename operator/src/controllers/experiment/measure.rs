//! Reading one analysis's KPIs and input drift from Prometheus.

use leitwerk_crds::card::metric;

use super::*;

/// Everything one analysis read from Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    /// `(kpi, variant)` → (value, samples).
    pub kpis: BTreeMap<(String, String), (Reading, Reading)>,
    /// variant → drift per feature.
    pub drift: BTreeMap<String, Result<Vec<FeatureDrift>, String>>,
    /// A failure before any query (e.g. an unusable URL).
    pub error: Option<String>,
}

impl Measurements {
    pub(super) fn failed(error: String) -> Measurements {
        Measurements {
            error: Some(error),
            ..Default::default()
        }
    }

    pub(super) fn first_error(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        let kpi = self
            .kpis
            .values()
            .find_map(|(v, s)| v.as_ref().err().or(s.as_ref().err()).cloned());
        kpi.or_else(|| self.drift.values().find_map(|d| d.as_ref().err().cloned()))
    }

    pub(super) fn value(&self, kpi: &str, variant: &str) -> Option<f64> {
        self.reading(kpi, variant).0
    }

    pub(super) fn reading(&self, kpi: &str, variant: &str) -> (Option<f64>, Option<f64>) {
        match self.kpis.get(&(kpi.to_string(), variant.to_string())) {
            // A value may be infinite (a KPI divided by zero conversions); a sample count is
            // a count or nothing.
            Some((v, s)) => (
                v.clone().ok().flatten().filter(|x| !x.is_nan()),
                s.clone().ok().flatten().filter(|x| x.is_finite()),
            ),
            None => (None, None),
        }
    }
}

/// Reads every KPI of every variant (and the drift of the variants a drift gate watches).
pub async fn measure(
    prom: &Prometheus,
    exp: &Experiment,
    variants: &[VariantStatus],
    window_secs: u64,
) -> Measurements {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let window = format!("{window_secs}s");
    let mut m = Measurements::default();
    for v in variants {
        let values = [
            ("namespace", ns.as_str()),
            ("experiment", name.as_str()),
            ("model", v.model.as_str()),
            ("variant", v.name.as_str()),
            ("interval", window.as_str()),
        ];
        for kpi in &exp.spec.kpis {
            let value = prom.value(&render_template(&kpi.query, &values)).await;
            let samples = match &kpi.sample_query {
                Some(q) => prom.value(&render_template(q, &values)).await,
                None => Ok(None),
            };
            m.kpis
                .insert((kpi.name.clone(), v.name.clone()), (value, samples));
        }
    }
    if let Some(gate) = &exp.spec.drift_gate {
        for v in variants {
            if role_of(&exp.spec, &v.name) == VariantRole::Stable {
                continue;
            }
            let selector = format!(
                r#"namespace="{ns}",experiment="{name}",variant="{}""#,
                v.name
            );
            // Never shorter than the analysis window: a drift window covers whole intervals.
            let drift_window = gate
                .window
                .as_deref()
                .and_then(parse_duration)
                .map_or(window_secs, |w| w.as_secs().max(window_secs));
            let d = drift_of(prom, &selector, &format!("{drift_window}s"), &gate.features).await;
            m.drift.insert(v.name.clone(), d);
        }
    }
    m
}

/// Drift of the inputs of the inference servers matching `selector` (PromQL label matchers)
/// over the window, per feature, against the reference shares the servers export from the
/// model card. `only` restricts the features (all when empty).
pub async fn drift_of(
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
