//! What the model card records about the training rows: examples with scores and the
//! reference distribution of every feature.

use super::*;

/// The first `n` rows of `columns` as `{"inputs": {...}, "score": s}`.
pub fn examples(columns: &Columns, scores: &[f64], n: usize) -> Vec<serde_json::Value> {
    (0..n.min(scores.len()))
        .map(|i| {
            let mut inputs = serde_json::Map::new();
            for (name, v) in &columns.numeric {
                inputs.insert(
                    name.clone(),
                    if v[i].is_finite() {
                        serde_json::json!(v[i])
                    } else {
                        serde_json::Value::Null
                    },
                );
            }
            for (name, v) in &columns.categorical {
                inputs.insert(name.clone(), serde_json::json!(v[i]));
            }
            serde_json::json!({"inputs": inputs, "score": scores[i]})
        })
        .collect()
}

/// Reference distributions from training rows.
pub fn references(train: &Columns, encoder: &Encoder) -> Vec<Reference> {
    let mut out = Vec::new();
    for (name, values) in &train.numeric {
        let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..10)
            .map(|i| materialize::quantile(&present, i as f64 / 10.0))
            .collect();
        edges.dedup();
        let mut counts = vec![0usize; edges.len() + 1];
        for v in &present {
            counts[leitwerk_crds::card::numeric_bucket(&edges, *v)] += 1;
        }
        let n = present.len().max(1) as f64;
        out.push(Reference {
            name: name.clone(),
            kind: FeatureKind::Numeric,
            edges,
            categories: Vec::new(),
            proportions: counts.iter().map(|&c| c as f64 / n).collect(),
            missing: (values.len() - present.len()) as f64 / values.len().max(1) as f64,
        });
    }
    for ((name, values), (_, cats)) in train.categorical.iter().zip(&encoder.categories) {
        let mut counts = vec![0usize; cats.len() + 1];
        let mut missing = 0;
        for v in values {
            if v.is_empty() {
                missing += 1;
            } else {
                counts[cats.iter().position(|c| c == v).unwrap_or(cats.len())] += 1;
            }
        }
        let n = (values.len() - missing).max(1) as f64;
        let mut categories = cats.clone();
        categories.push(UNKNOWN.to_string());
        out.push(Reference {
            name: name.clone(),
            kind: FeatureKind::Categorical,
            edges: Vec::new(),
            categories,
            proportions: counts.iter().map(|&c| c as f64 / n).collect(),
            missing: missing as f64 / values.len().max(1) as f64,
        });
    }
    out
}
