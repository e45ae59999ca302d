//! Fitting the algorithm a Model asks for.

use super::*;
use crate::boosting::{Boosted, Objective};

/// A fitted model: preprocessing plus head.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// Logistic regression.
    Logistic(crate::logistic::Logistic),
    /// One tree or a forest.
    Trees(Forest),
    /// Gradient-boosted trees.
    Boosted(Boosted),
}

impl Fitted {
    /// In-process predictions on encoded rows.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        match self {
            Fitted::Logistic(m) => m.predict(x),
            Fitted::Trees(f) => f.predict(x),
            Fitted::Boosted(b) => b.predict(x),
        }
    }

    /// The head the ONNX export writes after the preprocessing.
    pub fn head(&self) -> Head<'_> {
        match self {
            Fitted::Logistic(m) => Head::Logistic {
                weights: m.weights.as_slice().unwrap_or(&[]),
                intercept: m.intercept,
            },
            Fitted::Trees(f) => Head::Trees(f),
            Fitted::Boosted(b) => Head::Boosted(b),
        }
    }
}

/// Fits the algorithm a Model asks for. `early` holds the newest training rows, set apart
/// for early stopping (see [`early_stopping_fraction`]).
/// One arm per algorithm, each fitting and wrapping its model the same way.
pub fn fit(
    spec: &ModelSpec,
    x: &Array2<f64>,
    y: &[f64],
    early: Option<(&Array2<f64>, &[f64])>,
) -> Result<(Fitted, serde_json::Value), JobError> {
    let classes: Vec<bool> = match spec.task {
        Task::BinaryClassification => y.iter().map(|&v| v > 0.0).collect(),
        Task::Regression | Task::CustomerLifetimeValue => {
            let mut sorted = y.to_vec();
            sorted.sort_by(f64::total_cmp);
            let median = materialize::quantile(&sorted, 0.5);
            y.iter().map(|&v| v > median).collect()
        }
    };
    let algorithm = spec
        .algorithm
        .clone()
        .unwrap_or(leitwerk_crds::model::Algorithm {
            logistic_regression: None,
            decision_tree: None,
            random_forest: None,
            linear_regression: None,
            gradient_boosting: None,
        });
    if let Some(gb) = &algorithm.gradient_boosting {
        let objective = match spec.task {
            Task::BinaryClassification => Objective::Binary,
            Task::Regression | Task::CustomerLifetimeValue => Objective::Regression,
        };
        let target: Vec<f64> = match objective {
            Objective::Binary => classes.iter().map(|&c| f64::from(u8::from(c))).collect(),
            Objective::Regression => y.to_vec(),
        };
        let early = early.map(|(xe, ye)| {
            let ye: Vec<f64> = match objective {
                Objective::Binary => ye.iter().map(|&v| f64::from(u8::from(v > 0.0))).collect(),
                Objective::Regression => ye.to_vec(),
            };
            (xe, ye)
        });
        let m = crate::boosting::fit(
            x,
            &target,
            early.as_ref().map(|(xe, ye)| (*xe, ye.as_slice())),
            gb,
            objective,
        )
        .map_err(|e| invalid(format!("spec.algorithm.gradientBoosting: {e}")))?;
        let mut described = serde_json::json!({ "gradientBoosting": gb });
        described["gradientBoosting"]["roundsKept"] = m.trees.len().into();
        return Ok((Fitted::Boosted(m), described));
    }
    if let Some(lr) = &algorithm.logistic_regression {
        if spec.task != Task::BinaryClassification {
            return Err(invalid(
                "spec.algorithm.logisticRegression needs task BinaryClassification",
            ));
        }
        let m = crate::logistic::Logistic::fit(x, &classes, lr.l2, lr.max_iterations.max(1) as u64)
            .map_err(|e| {
                invalid(format!(
                    "{e}: {:?}",
                    std::error::Error::source(&e).map(ToString::to_string)
                ))
            })?;
        return Ok((
            Fitted::Logistic(m),
            serde_json::json!({"logisticRegression": {"l2": lr.l2, "maxIterations": lr.max_iterations}}),
        ));
    }
    if algorithm.linear_regression.is_some() {
        return Err(invalid(
            "spec.algorithm.linearRegression is not available in this release; use decisionTree or randomForest for regression",
        ));
    }
    let (params, described) = if let Some(rf) = &algorithm.random_forest {
        (
            ForestParams {
                trees: rf.trees.max(1) as usize,
                max_depth: rf.max_depth.max(1) as usize,
                min_samples_leaf: 5,
                sample_ratio: rf.sample_ratio,
                seed: rf.seed as u64,
            },
            serde_json::json!({"randomForest": {"trees": rf.trees, "maxDepth": rf.max_depth, "sampleRatio": rf.sample_ratio, "seed": rf.seed}}),
        )
    } else if let Some(dt) = &algorithm.decision_tree {
        (
            ForestParams {
                trees: 1,
                max_depth: dt.max_depth.max(1) as usize,
                min_samples_leaf: dt.min_samples_leaf.max(1) as usize,
                sample_ratio: 1.0,
                seed: 0,
            },
            serde_json::json!({"decisionTree": {"maxDepth": dt.max_depth, "minSamplesLeaf": dt.min_samples_leaf}}),
        )
    } else if spec.task == Task::BinaryClassification {
        let m = crate::logistic::Logistic::fit(x, &classes, 1.0, 200)
            .map_err(|e| invalid(e.to_string()))?;
        return Ok((
            Fitted::Logistic(m),
            serde_json::json!({"logisticRegression": {"l2": 1.0, "maxIterations": 200}}),
        ));
    } else {
        (
            ForestParams {
                trees: 1,
                max_depth: 8,
                min_samples_leaf: 5,
                sample_ratio: 1.0,
                seed: 0,
            },
            serde_json::json!({"decisionTree": {"maxDepth": 8, "minSamplesLeaf": 5}}),
        )
    };
    let forest = Forest::fit(x, y, params).map_err(|e| invalid(e.to_string()))?;
    Ok((Fitted::Trees(forest), described))
}

/// The share of the training rows (newest cutoffs first) held out for early stopping, when
/// the algorithm stops early.
pub fn early_stopping_fraction(spec: &ModelSpec) -> Option<f64> {
    spec.algorithm
        .as_ref()?
        .gradient_boosting
        .as_ref()?
        .early_stopping
        .as_ref()
        .map(|e| e.validation_fraction)
}
