//! Reading one analysis's KPIs and input drift from Prometheus.

use kube::ResourceExt;
use leitwerk_crds::{Experiment, experiment::VariantRole, experiment::VariantStatus};

use super::role_of;
use crate::analysis::drift::FeatureDrift;
use crate::analysis::gates::Reading;
use crate::{prom::Prometheus, validation::parse_duration, validation::render_template};
use std::collections::BTreeMap;

/// Everything one analysis read from Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    /// `(kpi, variant)` → (value, samples).
    pub kpis: BTreeMap<(String, String), (Reading, Reading)>,
    /// variant → drift per feature.
    pub drift: BTreeMap<String, Result<Vec<FeatureDrift>, String>>,
    /// The shadow comparison, in the shadow stage of a Shadow Experiment.
    pub shadow: Option<Result<super::ShadowReading, String>>,
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
            .or_else(|| self.shadow.clone().and_then(Result::err))
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

/// Reads every KPI of every variant (and the drift of the variants a drift gate watches, and
/// in a shadow stage the comparison through `mirror`).
pub async fn measure(
    prom: &Prometheus,
    exp: &Experiment,
    variants: &[VariantStatus],
    window_secs: u64,
    mirror: Option<super::Mirror>,
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
            let d = crate::prom::input_drift(
                prom,
                &selector,
                &format!("{drift_window}s"),
                &gate.features,
            )
            .await;
            m.drift.insert(v.name.clone(), d);
        }
    }
    if let Some(mirror) = mirror {
        m.shadow = Some(super::measure_shadow(prom, exp, mirror, window_secs).await);
    }
    m
}
