//! Per-feature statistics of a snapshot (`stats.json`).

use super::*;

/// Per-feature statistics of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureStats {
    /// Column name.
    pub name: String,
    /// Numeric or Categorical.
    pub kind: FeatureKind,
    /// Non-null values.
    pub count: usize,
    /// Null values.
    pub nulls: usize,
    /// Quantiles at 0, 1, 5, 25, 50, 75, 95, 99 and 100 % (numeric features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<(f64, f64)>,
    /// Ten equal-width bins between the minimum and the maximum: (lower edge, count); the last
    /// bin includes the maximum (numeric features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histogram: Vec<(f64, usize)>,
    /// The most frequent values with their counts (categorical features, at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_values: Vec<(String, usize)>,
}

/// Quantile by linear interpolation of a sorted slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Statistics of every feature column.
pub fn statistics(m: &Materialized) -> Result<Vec<FeatureStats>, MaterializeError> {
    let mut out = Vec::new();
    for f in &m.features {
        let column = m.frame.column(&f.name)?;
        let nulls = column.null_count();
        let mut stats = FeatureStats {
            name: f.name.clone(),
            kind: f.kind,
            count: column.len() - nulls,
            nulls,
            quantiles: Vec::new(),
            histogram: Vec::new(),
            top_values: Vec::new(),
        };
        match f.kind {
            FeatureKind::Numeric => {
                let mut values: Vec<f64> = column
                    .f64()?
                    .iter()
                    .flatten()
                    .filter(|v| v.is_finite())
                    .collect();
                values.sort_by(f64::total_cmp);
                if let (Some(&lo), Some(&hi)) = (values.first(), values.last()) {
                    stats.quantiles = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0]
                        .iter()
                        .map(|&q| (q, quantile(&values, q)))
                        .collect();
                    let width = (hi - lo) / 10.0;
                    let mut counts = [0usize; 10];
                    for v in &values {
                        let bin = if width > 0.0 {
                            (((v - lo) / width) as usize).min(9)
                        } else {
                            0
                        };
                        counts[bin] += 1;
                    }
                    stats.histogram = counts
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| (lo + width * i as f64, c))
                        .collect();
                }
            }
            FeatureKind::Categorical => {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for v in column.str()?.iter().flatten() {
                    *counts.entry(v.to_string()).or_default() += 1;
                }
                let mut top: Vec<(String, usize)> = counts.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(50);
                stats.top_values = top;
            }
        }
        out.push(stats);
    }
    Ok(out)
}
