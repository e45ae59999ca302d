//! Feature attributions in SHAP's sense: per row, one value per raw feature that sums with the
//! base value to the model's raw score (log-odds for classification). The model's
//! [`Explainer`] (`leitwerk-explain`) is built here and travels inside the ONNX file, so the
//! inference server and the batch scorer explain exactly as the model card does: exact for
//! logistic regression (`w·(x − E[x])` per encoded column), TreeSHAP over the training rows'
//! covers for the trainer's own trees and forests (on at most [`TREE_ROWS`] rows here: it
//! costs leaves × depth² per row and tree), and, in the trainer, LightGBM's own TreeSHAP
//! contributions for gradient boosting (the explainer's TreeSHAP over LightGBM's counts gives
//! the same values, `tests::boosted_explainer_equals_lightgbms_contributions`). A categorical
//! feature's attribution is the sum over its one-hot and unknown columns. Global importance is
//! the mean |attribution| per feature over the validation rows.

use leitwerk_crds::model::Task;
use leitwerk_explain::{Explainer, Feature, Head, Units};
use ndarray::{Array2, Axis};

use crate::boosting::Objective;
use crate::pipeline::Fitted;
use crate::preprocess::Encoder;
use crate::tree::Tree;

/// The most rows a single tree or a forest is explained on (evenly spaced over the rows).
pub const TREE_ROWS: usize = 500;

/// The raw features in encoding order, as the explainer describes them.
pub fn features(encoder: &Encoder) -> Vec<Feature> {
    encoder
        .scales
        .iter()
        .map(|(name, mean, std)| Feature::Numeric {
            name: name.clone(),
            mean: *mean,
            std: *std,
        })
        .chain(
            encoder
                .categories
                .iter()
                .map(|(name, categories)| Feature::Categorical {
                    name: name.clone(),
                    categories: categories.clone(),
                }),
        )
        .collect()
}

fn covered(tree: &Tree, covers: Vec<f64>) -> leitwerk_explain::Tree {
    leitwerk_explain::Tree {
        nodes: tree.nodes.clone(),
        covers,
    }
}

/// The explainer of a fitted model: its preprocessing and head, trees with their covers (the
/// training rows `x_train` per node for the trainer's trees, LightGBM's counts for boosting).
pub fn explainer(
    model: &Fitted,
    encoder: &Encoder,
    x_train: &Array2<f64>,
    task: Task,
) -> Explainer {
    let (head, units) = match model {
        Fitted::Logistic(m) => (
            Head::Linear {
                weights: m.weights.to_vec(),
                intercept: m.intercept,
                means: x_train
                    .mean_axis(Axis(0))
                    .map(|m| m.to_vec())
                    .unwrap_or_else(|| vec![0.0; m.weights.len()]),
            },
            Units::LogOdds,
        ),
        Fitted::Trees(forest) => {
            let trees = forest
                .trees
                .iter()
                .map(|tree| {
                    let mut cover = vec![0.0; tree.nodes.len()];
                    for row in x_train.rows() {
                        let mut at = Some(0);
                        while let Some(node) = at {
                            cover[node] += 1.0;
                            at = tree.next(node, row);
                        }
                    }
                    covered(tree, cover)
                })
                .collect();
            let units = match task {
                Task::BinaryClassification => Units::Probability,
                Task::Regression | Task::CustomerLifetimeValue => Units::Value,
            };
            let scale = 1.0 / forest.trees.len().max(1) as f64;
            (Head::Trees { trees, scale }, units)
        }
        Fitted::Boosted(b) => {
            let trees = b
                .trees
                .iter()
                .zip(&b.covers)
                .map(|(tree, covers)| covered(tree, covers.clone()))
                .collect();
            let units = match b.objective {
                Objective::Binary => Units::LogOdds,
                Objective::Regression => Units::Value,
            };
            (Head::Trees { trees, scale: 1.0 }, units)
        }
    };
    Explainer {
        features: features(encoder),
        head,
        units,
    }
}

/// Attributions of encoded rows `x`: `(base, per-row per-feature values)`, where
/// `base + Σ values[row]` is the model's raw score of the row (for a tree or a forest, its
/// prediction, of at most [`TREE_ROWS`] evenly spaced rows of `x`).
pub fn attributions(
    model: &Fitted,
    explainer: &Explainer,
    x: &Array2<f64>,
) -> Option<(f64, Array2<f64>)> {
    let groups = explainer.groups();
    let (base, columns) = match model {
        Fitted::Boosted(b) => b.contributions(x).ok()?,
        Fitted::Logistic(_) | Fitted::Trees(_) => {
            let step = match model {
                Fitted::Trees(_) => x.nrows().div_ceil(TREE_ROWS).max(1),
                _ => 1,
            };
            let rows: Vec<usize> = (0..x.nrows()).step_by(step).collect();
            let mut columns = Array2::<f64>::zeros((rows.len(), x.ncols()));
            for (r, &i) in rows.iter().enumerate() {
                let row = x.row(i).to_vec();
                let (values, _) = explainer.explain_columns(&row);
                for (c, v) in values.into_iter().enumerate() {
                    columns[[r, c]] = v;
                }
            }
            (explainer.base(), columns)
        }
    };
    let mut out = Array2::<f64>::zeros((columns.nrows(), groups.len()));
    for (f, cols) in groups.into_iter().enumerate() {
        for c in cols {
            let column = columns.column(c);
            let mut target = out.column_mut(f);
            target += &column;
        }
    }
    Some((base, out))
}

/// Mean |attribution| per feature, largest first.
pub fn importance(explainer: &Explainer, values: &Array2<f64>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = explainer
        .names()
        .into_iter()
        .enumerate()
        .map(|(f, name)| {
            let column = values.column(f);
            let mean = column.iter().map(|v| v.abs()).sum::<f64>() / column.len().max(1) as f64;
            (name.to_string(), mean)
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
        let explainer = explainer(&fitted, &encoder, &x, Task::BinaryClassification);
        let (base, values) = attributions(&fitted, &explainer, &x).unwrap();
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
        let ranked: Vec<String> = importance(&explainer, &values)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(ranked, ["x", "colour", "noise"]);
    }

    #[test]
    fn forest_attributions_sum_to_the_forest_prediction() {
        use crate::tree::{Forest, ForestParams};
        let (columns, y) = data(2000);
        let encoder = Encoder::fit(&columns);
        let x = encoder.transform(&columns);
        let y: Vec<f64> = y.iter().map(|&b| f64::from(u8::from(b))).collect();
        let params = ForestParams {
            trees: 8,
            max_depth: 5,
            min_samples_leaf: 10,
            sample_ratio: 0.7,
            seed: 4,
        };
        let forest = Forest::fit(&x, &y, params).unwrap();
        let predicted = forest.predict(&x);
        let fitted = Fitted::Trees(forest);
        let explainer = explainer(&fitted, &encoder, &x, Task::BinaryClassification);
        assert_eq!(explainer.units, Units::Probability);
        let (base, values) = attributions(&fitted, &explainer, &x).unwrap();
        let step = x.nrows().div_ceil(TREE_ROWS);
        assert_eq!(values.nrows(), x.nrows().div_ceil(step));
        for (r, i) in (0..x.nrows()).step_by(step).enumerate() {
            let total = base + values.row(r).sum();
            assert!((total - predicted[i]).abs() < 1e-9, "row {i}");
        }
        let ranked: Vec<String> = importance(&explainer, &values)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(ranked.last().map(String::as_str), Some("noise"));
    }

    /// The explainer's TreeSHAP over LightGBM's node counts gives LightGBM's own contributions
    /// (what shap's `TreeExplainer` returns for a LightGBM booster), so the server and the batch
    /// scorer explain a boosted model as the model card does.
    #[test]
    fn boosted_explainer_equals_lightgbms_contributions() {
        let (columns, y) = data(3000);
        let encoder = Encoder::fit(&columns);
        let x = encoder.transform(&columns);
        let y: Vec<f64> = y.iter().map(|&b| f64::from(u8::from(b))).collect();
        let params: leitwerk_crds::model::GradientBoosting = serde_json::from_value(
            serde_json::json!({"rounds": 60, "learningRate": 0.1, "numLeaves": 15, "minRowsPerLeaf": 10, "rowSubsample": 0.8, "seed": 3}),
        )
        .unwrap();
        let boosted = crate::boosting::fit(&x, &y, None, &params, Objective::Binary).unwrap();
        let (lgb_base, lgb) = boosted.contributions(&x).unwrap();
        let fitted = Fitted::Boosted(boosted.clone());
        let explainer = explainer(&fitted, &encoder, &x, Task::BinaryClassification);
        let explainer = Explainer::from_json(&explainer.to_json().unwrap()).unwrap();
        assert_eq!(explainer.units, Units::LogOdds);
        assert!(
            (explainer.base() - lgb_base).abs() < 1e-9,
            "{} vs {lgb_base}",
            explainer.base()
        );
        let mut worst: f64 = 0.0;
        for (r, row) in x.rows().into_iter().enumerate() {
            let (values, raw) = explainer.explain_columns(&row.to_vec());
            for (c, v) in values.iter().enumerate() {
                worst = worst.max((v - lgb[[r, c]]).abs());
            }
            assert!((raw - boosted.raw_row(row)).abs() < 1e-9);
        }
        eprintln!("max |difference| against LightGBM: {worst:e}");
        assert!(worst <= 1e-6, "max |difference| {worst}");
    }
}
