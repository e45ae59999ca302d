//! Feature attributions in SHAP's sense: per row, one value per raw feature that sums with the
//! base value to the model's raw score (log-odds for classification). Exact for logistic
//! regression (`w·(x − E[x])` per encoded column, the interventional SHAP values of a linear
//! model), LightGBM's own TreeSHAP contributions for gradient boosting, and TreeSHAP over the
//! training rows' covers for the trainer's own trees and forests ([`crate::tree_shap`], on at
//! most [`TREE_ROWS`] rows: it costs leaves × depth² per row and tree). A categorical feature's
//! attribution is the sum over its one-hot and unknown columns (SHAP values add over a group).
//! Global importance is the mean |attribution| per feature over the validation rows.

use ndarray::{Array2, Axis};

use crate::pipeline::Fitted;
use crate::preprocess::Encoder;

/// The most rows a single tree or a forest is explained on (evenly spaced over the rows).
pub const TREE_ROWS: usize = 500;

/// The raw features and the encoded columns each one became, in encoding order.
pub fn groups(encoder: &Encoder) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = encoder
        .scales
        .iter()
        .enumerate()
        .map(|(j, (name, _, _))| (name.clone(), vec![j]))
        .collect();
    let mut at = encoder.scales.len();
    for (name, cats) in &encoder.categories {
        let width = if cats.is_empty() { 0 } else { cats.len() + 1 };
        out.push((name.clone(), (at..at + width).collect()));
        at += width;
    }
    out
}

/// Attributions of encoded rows `x`: `(base, per-row per-feature values)`, where
/// `base + Σ values[row]` is the model's raw score of the row (for a tree or a forest, its
/// prediction, of at most [`TREE_ROWS`] evenly spaced rows of `x`).
pub fn attributions(
    model: &Fitted,
    encoder: &Encoder,
    x_train: &Array2<f64>,
    x: &Array2<f64>,
) -> Option<(f64, Array2<f64>)> {
    let groups = groups(encoder);
    let (base, columns) = match model {
        Fitted::Logistic(m) => {
            let means = x_train.mean_axis(Axis(0))?;
            let centred = x - &means;
            let columns = &centred * &m.weights;
            (m.intercept + means.dot(&m.weights), columns)
        }
        Fitted::Boosted(b) => b.contributions(x).ok()?,
        Fitted::Trees(forest) => {
            let step = x.nrows().div_ceil(TREE_ROWS).max(1);
            let rows: Vec<usize> = (0..x.nrows()).step_by(step).collect();
            let sample = x.select(Axis(0), &rows);
            crate::tree_shap::forest_values(forest, x_train, &sample)
        }
    };
    let mut out = Array2::<f64>::zeros((columns.nrows(), groups.len()));
    for (f, (_, cols)) in groups.iter().enumerate() {
        for &c in cols {
            let column = columns.column(c);
            let mut target = out.column_mut(f);
            target += &column;
        }
    }
    Some((base, out))
}

/// Mean |attribution| per feature, largest first.
pub fn importance(encoder: &Encoder, values: &Array2<f64>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = groups(encoder)
        .into_iter()
        .enumerate()
        .map(|(f, (name, _))| {
            let column = values.column(f);
            let mean = column.iter().map(|v| v.abs()).sum::<f64>() / column.len().max(1) as f64;
            (name, mean)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::logistic::Logistic;
    use crate::preprocess::Columns;

    /// y depends on `x` and on the colour `red`; `noise` carries nothing.
    fn data(n: usize) -> (Columns, Vec<bool>) {
        use rand::{RngExt, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(3);
        let (mut x, mut noise, mut colour, mut y) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let v: f64 = rng.random_range(-2.0..2.0);
            let c = ["red", "green", "blue"][rng.random_range(0..3)];
            let z = 1.5 * v + if c == "red" { 1.0 } else { -0.5 } + rng.random_range(-1.0..1.0);
            x.push(v);
            noise.push(rng.random_range(-1.0..1.0));
            colour.push(c.to_string());
            y.push(z > 0.0);
        }
        let columns = Columns {
            numeric: vec![("x".into(), x), ("noise".into(), noise)],
            categorical: vec![("colour".into(), colour)],
        };
        (columns, y)
    }

    #[test]
    fn linear_attributions_sum_to_the_log_odds_and_rank_the_features() {
        let (columns, y) = data(3000);
        let encoder = Encoder::fit(&columns);
        let x = encoder.transform(&columns);
        let model = Logistic::fit(&x, &y, 1.0, 100).unwrap();
        let fitted = Fitted::Logistic(model.clone());
        let (base, values) = attributions(&fitted, &encoder, &x, &x).unwrap();
        assert_eq!(values.ncols(), 3, "one column per raw feature");
        for (r, p) in model.predict(&x).iter().enumerate().take(500) {
            let log_odds = (p / (1.0 - p)).ln();
            let total = base + values.row(r).sum();
            assert!(
                (total - log_odds).abs() < 1e-9,
                "row {r}: {total} vs {log_odds}"
            );
        }
        // Over the rows the attributions average to 0 (base is the mean log-odds).
        assert!(
            values
                .mean_axis(Axis(0))
                .unwrap()
                .iter()
                .all(|m| m.abs() < 1e-9)
        );
        let ranked: Vec<String> = importance(&encoder, &values)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(ranked, ["x", "colour", "noise"]);
    }
}
