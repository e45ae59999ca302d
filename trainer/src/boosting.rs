//! Gradient-boosted trees, grown by LightGBM 4.7 (the `lightgbm3` bindings build it from its
//! source), read back from LightGBM's own model text into the trainer's flat trees so that the
//! exported graph, the in-process scores and the explanations all walk the same trees.
//!
//! LightGBM is given the encoded rows as `f32`, the type ONNX Runtime compares in, and each
//! threshold (a `f64` between two bins) becomes the largest `f32` not above it: for every `f32`
//! input `x`, `x <= t` holds exactly when `x <= floor_f32(t)` does, so LightGBM, the trainer
//! and ONNX Runtime take the same branch on every row.

use leitwerk_crds::model::GradientBoosting;
use lightgbm3::{Booster, Dataset};
use ndarray::{Array2, ArrayView1};

use crate::tree::{Node, Tree};

/// Errors of boosting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// LightGBM refused the data or the parameters.
    #[error("LightGBM failed: {0}")]
    Engine(String),
    /// LightGBM's model text holds something the export cannot express.
    #[error("LightGBM's model cannot be exported: {0}")]
    Model(String),
}

fn engine(e: lightgbm3::Error) -> Error {
    Error::Engine(e.to_string())
}

/// What the trees' summed leaf values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Log-odds of the positive class (`binary`).
    Binary,
    /// The target itself (`regression`, squared error).
    Regression,
}

/// A boosted ensemble: the score is the sum of every tree's leaf value, through the logistic
/// function for a binary objective.
#[derive(Debug, Clone)]
pub struct Boosted {
    /// The trees; leaf values already carry the learning rate.
    pub trees: Vec<Tree>,
    /// What the sum means.
    pub objective: Objective,
    /// Rounds grown before early stopping stopped them (equal to `trees.len()` without it).
    pub rounds_grown: usize,
    /// LightGBM's own model text, kept for the model card and for explanations.
    pub model_text: String,
    /// Training rows per node of each tree (LightGBM's `internal_count` and `leaf_count`), in
    /// the trees' node order: the covers TreeSHAP weighs by, as LightGBM's own does.
    pub covers: Vec<Vec<f64>>,
}

impl Boosted {
    /// The summed leaf values of one encoded row (log-odds for a binary objective).
    pub fn raw_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        self.trees.iter().map(|t| t.predict_row(row)).sum()
    }

    /// Scores of encoded rows: P(true) for a binary objective, the prediction for regression.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        x.rows()
            .into_iter()
            .map(|row| {
                let raw = self.raw_row(row);
                match self.objective {
                    Objective::Binary => 1.0 / (1.0 + (-raw).exp()),
                    Objective::Regression => raw,
                }
            })
            .collect()
    }
}

impl Boosted {
    /// LightGBM's own TreeSHAP contributions of encoded rows: the expected raw score and, per
    /// row, one value per encoded column, summing with it to the row's raw score.
    pub fn contributions(&self, x: &Array2<f64>) -> Result<(f64, Array2<f64>), Error> {
        let booster = Booster::from_string(&self.model_text).map_err(engine)?;
        let width = x.ncols();
        let flat = booster
            .predict_contrib(&flat_f32(x), width as i32, true)
            .map_err(engine)?;
        if flat.len() != x.nrows() * (width + 1) {
            return Err(Error::Engine(format!(
                "{} contributions for {} rows of {width} columns",
                flat.len(),
                x.nrows()
            )));
        }
        let base = flat.get(width).copied().unwrap_or_default();
        let values = Array2::from_shape_fn((x.nrows(), width), |(r, c)| flat[r * (width + 1) + c]);
        Ok((base, values))
    }
}

/// LightGBM's parameters for a spec. `metric` is what early stopping judges by.
pub fn parameters(p: &GradientBoosting, objective: Objective) -> serde_json::Value {
    let mut v = serde_json::json!({
        "objective": match objective { Objective::Binary => "binary", Objective::Regression => "regression" },
        "metric": match objective { Objective::Binary => "auc", Objective::Regression => "l2" },
        "num_iterations": p.rounds.max(1),
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves.max(2),
        "max_depth": p.max_depth.unwrap_or(-1),
        "min_data_in_leaf": p.min_rows_per_leaf.max(1),
        "lambda_l1": p.l1,
        "lambda_l2": p.l2,
        "bagging_fraction": p.row_subsample,
        "bagging_freq": i32::from(p.row_subsample < 1.0),
        "feature_fraction": p.column_subsample,
        "seed": p.seed,
        "deterministic": true,
        "verbosity": -1,
    });
    if let (Some(es), Some(map)) = (&p.early_stopping, v.as_object_mut()) {
        map.insert("early_stopping_rounds".into(), es.rounds.max(1).into());
    }
    v
}

fn flat_f32(x: &Array2<f64>) -> Vec<f32> {
    x.rows()
        .into_iter()
        .flat_map(|r| r.iter().map(|&v| v as f32).collect::<Vec<_>>())
        .collect()
}

/// Grows the ensemble on encoded rows `x` with targets `y` (0/1 for a binary objective). With
/// `early` (the held-out newest training rows) and `p.earlyStopping`, stops when the held-out
/// score has not improved for that many rounds and keeps the best round.
pub fn fit(
    x: &Array2<f64>,
    y: &[f64],
    early: Option<(&Array2<f64>, &[f64])>,
    p: &GradientBoosting,
    objective: Objective,
) -> Result<Boosted, Error> {
    if x.nrows() != y.len() || x.nrows() == 0 || x.ncols() == 0 {
        return Err(Error::Engine(format!(
            "{} rows of {} columns for {} targets",
            x.nrows(),
            x.ncols(),
            y.len()
        )));
    }
    let width = x.ncols() as i32;
    let labels: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let train = Dataset::from_slice(&flat_f32(x), &labels, width, true).map_err(engine)?;
    let valid = match (early, &p.early_stopping) {
        (Some((xv, yv)), Some(_)) if xv.nrows() > 0 => {
            let lv: Vec<f32> = yv.iter().map(|&v| v as f32).collect();
            Some(
                Dataset::from_slice_with_reference(&flat_f32(xv), &lv, width, true, Some(&train))
                    .map_err(engine)?,
            )
        }
        _ => None,
    };
    let booster =
        Booster::train_with_valid(train, valid, &parameters(p, objective)).map_err(engine)?;
    let model_text = booster.save_string().map_err(engine)?;
    let trees = read_trees(&model_text)?;
    let covers = read_covers(&model_text)?;
    Ok(Boosted {
        rounds_grown: booster.num_iterations().max(0) as usize,
        trees,
        covers,
        objective,
        model_text,
    })
}

/// The largest `f32` not above `t`.
pub fn floor_f32(t: f64) -> f32 {
    let f = t as f32;
    if f64::from(f) > t { f.next_down() } else { f }
}

fn list<T: std::str::FromStr>(
    fields: &[(&str, &str)],
    key: &str,
    tree: usize,
) -> Result<Vec<T>, Error> {
    let Some((_, text)) = fields.iter().find(|(k, _)| *k == key) else {
        return Err(Error::Model(format!("tree {tree} has no {key}")));
    };
    text.split_whitespace()
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| Error::Model(format!("tree {tree}: {key} holds {s:?}")))
        })
        .collect()
}

/// Reads the trees of LightGBM's model text (`Tree=` sections of `key=value` lines) into flat
/// trees: internal nodes first (root at 0), then the leaves. Refuses categorical splits,
/// linear trees and zero-as-missing splits, which a `BRANCH_LEQ` node cannot express.
pub fn read_trees(model: &str) -> Result<Vec<Tree>, Error> {
    let mut trees = Vec::new();
    for (t, section) in model.split("\nTree=").skip(1).enumerate() {
        let body = section.split("\n\n").next().unwrap_or_default();
        let fields: Vec<(&str, &str)> = body.lines().filter_map(|l| l.split_once('=')).collect();
        let leaves: Vec<f64> = list(&fields, "leaf_value", t)?;
        if list::<i64>(&fields, "num_cat", t)?.iter().any(|&c| c != 0) {
            return Err(Error::Model(format!("tree {t} has categorical splits")));
        }
        if fields
            .iter()
            .any(|(k, v)| *k == "is_linear" && v.trim() != "0")
        {
            return Err(Error::Model(format!("tree {t} is a linear tree")));
        }
        if leaves.len() == 1 {
            trees.push(Tree {
                nodes: vec![Node::Leaf { value: leaves[0] }],
            });
            continue;
        }
        let features: Vec<usize> = list(&fields, "split_feature", t)?;
        let thresholds: Vec<f64> = list(&fields, "threshold", t)?;
        let kinds: Vec<u32> = list(&fields, "decision_type", t)?;
        let lefts: Vec<i64> = list(&fields, "left_child", t)?;
        let rights: Vec<i64> = list(&fields, "right_child", t)?;
        let internal = features.len();
        if [thresholds.len(), kinds.len(), lefts.len(), rights.len()] != [internal; 4]
            || internal + 1 != leaves.len()
        {
            return Err(Error::Model(format!(
                "tree {t}: {internal} splits for {} leaves",
                leaves.len()
            )));
        }
        // LightGBM: a child ≥ 0 is a split, a child < 0 the leaf !child.
        let child = |c: i64| -> Result<usize, Error> {
            let at = if c >= 0 {
                c as usize
            } else {
                internal + (!c) as usize
            };
            if at < internal + leaves.len() {
                Ok(at)
            } else {
                Err(Error::Model(format!("tree {t}: child {c} out of range")))
            }
        };
        let mut nodes = Vec::with_capacity(internal + leaves.len());
        for i in 0..internal {
            // decision_type: bit 0 categorical, bits 2–3 the missing type (1: zero as missing).
            if kinds[i] & 1 != 0 || (kinds[i] >> 2) & 3 == 1 {
                return Err(Error::Model(format!(
                    "tree {t} split {i} has decision type {}",
                    kinds[i]
                )));
            }
            nodes.push(Node::Split {
                feature: features[i],
                threshold: floor_f32(thresholds[i]),
                left: child(lefts[i])?,
                right: child(rights[i])?,
            });
        }
        nodes.extend(leaves.iter().map(|&value| Node::Leaf { value }));
        trees.push(Tree { nodes });
    }
    if trees.is_empty() {
        return Err(Error::Model("the model text holds no tree".into()));
    }
    Ok(trees)
}

/// The training rows per node of each tree in LightGBM's model text, in [`read_trees`]'s node
/// order (splits, then leaves). A tree of one leaf has no counts and covers 1.
pub fn read_covers(model: &str) -> Result<Vec<Vec<f64>>, Error> {
    model
        .split("\nTree=")
        .skip(1)
        .enumerate()
        .map(|(t, section)| {
            let body = section.split("\n\n").next().unwrap_or_default();
            let fields: Vec<(&str, &str)> =
                body.lines().filter_map(|l| l.split_once('=')).collect();
            if list::<f64>(&fields, "leaf_value", t)?.len() == 1 {
                return Ok(vec![1.0]);
            }
            let mut covers: Vec<f64> = list(&fields, "internal_count", t)?;
            covers.extend(list::<f64>(&fields, "leaf_count", t)?);
            Ok(covers)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn params(rounds: i32) -> GradientBoosting {
        serde_json::from_value(serde_json::json!({"rounds": rounds, "learningRate": 0.1, "numLeaves": 8, "minRowsPerLeaf": 5})).unwrap()
    }

    /// Two informative columns and a noise column; y = 1 when x0 + x1² is large.
    fn data(n: usize, seed: u64) -> (Array2<f64>, Vec<f64>) {
        use rand::{RngExt, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 3), |_| rng.random_range(-2.0..2.0));
        let y = x
            .rows()
            .into_iter()
            .map(|r| {
                f64::from(u8::from(
                    r[0] + r[1] * r[1] + 0.3 * rng.random_range(-1.0..1.0) > 1.0,
                ))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn thresholds_round_down_to_f32() {
        for t in [0.1_f64, -0.1, 1.0 / 3.0, 1e-30, -7.25, 123456.789] {
            let f = floor_f32(t);
            assert!(f64::from(f) <= t, "{t}");
            assert!(
                f64::from(f.next_up()) > t,
                "{t}: {f} is not the largest f32 below"
            );
        }
        assert_eq!(floor_f32(0.5), 0.5);
    }

    #[test]
    fn the_read_trees_score_exactly_as_lightgbm_does() {
        let (x, y) = data(2000, 1);
        let model = fit(&x, &y, None, &params(40), Objective::Binary).unwrap();
        assert_eq!(model.trees.len(), 40);
        assert!(
            model.trees.iter().all(|t| t.nodes.len() == 15),
            "8 leaves, 7 splits per tree"
        );
        let booster = Booster::from_string(&model.model_text).unwrap();
        let (xt, _) = data(500, 2);
        let theirs = booster.predict(&flat_f32(&xt), 3, true).unwrap();
        let ours = model.predict(&xt);
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "largest difference from LightGBM {worst}");
        let labels: Vec<bool> = data(500, 2).1.iter().map(|&v| v > 0.0).collect();
        let auc = crate::metrics::roc_auc(&ours, &labels).unwrap();
        assert!(auc > 0.9, "AUC {auc}");
    }

    #[test]
    fn contributions_sum_to_the_raw_score() {
        let (x, y) = data(1500, 6);
        let model = fit(&x, &y, None, &params(30), Objective::Binary).unwrap();
        let (xt, _) = data(200, 7);
        let (base, values) = model.contributions(&xt).unwrap();
        for (r, row) in xt.rows().into_iter().enumerate() {
            let total = base + values.row(r).sum();
            assert!((total - model.raw_row(row)).abs() < 1e-9, "row {r}");
        }
        // The noise column (2) matters least.
        let mean_abs = |c: usize| values.column(c).iter().map(|v| v.abs()).sum::<f64>();
        assert!(mean_abs(2) < mean_abs(0) && mean_abs(2) < mean_abs(1));
    }

    #[test]
    fn early_stopping_keeps_the_best_round() {
        let (x, y) = data(1500, 3);
        let (xv, yv) = data(400, 4);
        let mut p = params(2000);
        p.learning_rate = 0.3;
        p.early_stopping = Some(serde_json::from_value(serde_json::json!({"rounds": 10})).unwrap());
        let model = fit(&x, &y, Some((&xv, &yv)), &p, Objective::Binary).unwrap();
        assert!(
            model.trees.len() < 2000,
            "stopped early: {} trees",
            model.trees.len()
        );
        assert_eq!(model.trees.len(), model.rounds_grown);
        // Without a held-out set every round is grown.
        let all = fit(&x, &y, None, &params(60), Objective::Binary).unwrap();
        assert_eq!(all.trees.len(), 60);
    }

    #[test]
    fn regression_sums_leaf_values() {
        let (x, _) = data(1000, 5);
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 100.0 + 20.0 * r[0] - 5.0 * r[1])
            .collect();
        let model = fit(&x, &y, None, &params(200), Objective::Regression).unwrap();
        let predicted = model.predict(&x);
        let rmse = (predicted
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / y.len() as f64)
            .sqrt();
        assert!(rmse < 3.0, "training RMSE {rmse}");
    }

    #[test]
    fn unreadable_model_text_is_refused_with_the_reason() {
        let err = read_trees("tree\nversion=v4\n").unwrap_err().to_string();
        assert!(err.contains("no tree"), "{err}");
        let text = "x\nTree=0\nnum_leaves=2\nnum_cat=1\nsplit_feature=0\nthreshold=0.5\ndecision_type=1\nleft_child=-1\nright_child=-2\nleaf_value=0.1 0.2\n\n";
        let err = read_trees(text).unwrap_err().to_string();
        assert!(err.contains("categorical"), "{err}");
    }
}
