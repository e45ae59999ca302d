//! Feature attributions of Leitwerk's models, in SHAP's sense: per row, one value per raw
//! feature that sums with the model's base value to its raw score.
//!
//! An [`Explainer`] is everything attributions need and nothing else: the preprocessing (the
//! training means and deviations, the categories) and the model head (a linear model's
//! weights, or trees with their covers). The trainer writes it as JSON into the ONNX file's
//! metadata under [`METADATA_KEY`], so the file that serves is the file that explains, under
//! the same digest; the trainer (model cards), the batch scorer and the inference server
//! (per-prediction `explain`) all compute attributions here, the same way.
//!
//! - Linear models: exact interventional SHAP values, `w·(x − E[x])` per encoded column, in
//!   log-odds for logistic regression.
//! - Trees, forests and boosted trees: TreeSHAP ([`shap`]), where a feature outside the
//!   coalition is integrated out by the share of training rows (the cover) that went each way
//!   at its splits; log-odds for boosted classification, P(true) for a classification tree or
//!   forest (as shap's `TreeExplainer` reports scikit-learn trees), the target's units for
//!   regression.
//!
//! A categorical feature's attribution is the sum over its one-hot and unknown columns (SHAP
//! values add over a group of columns).

use std::ops::Range;

use serde::{Deserialize, Serialize};

pub mod shap;

/// The ONNX metadata key that carries a model's explainer as JSON.
pub const METADATA_KEY: &str = "leitwerk.explainer";

/// What a model's attributions (and base value) add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Units {
    /// Log-odds of P(true): the score is the logistic function of base + Σ attributions.
    LogOdds,
    /// P(true) itself (a classification tree or forest averages leaf probabilities).
    Probability,
    /// The regression target.
    Value,
}

impl Units {
    /// The name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Units::LogOdds => "logOdds",
            Units::Probability => "probability",
            Units::Value => "value",
        }
    }

    /// The model's score from a raw score in these units.
    pub fn score(self, raw: f64) -> f64 {
        match self {
            Units::LogOdds => 1.0 / (1.0 + (-raw).exp()),
            Units::Probability | Units::Value => raw,
        }
    }
}

/// One raw feature and how it is encoded, in the model's encoding order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Feature {
    /// A number: a missing value (NaN) becomes `mean`, then `(x − mean) / std`, in `f32` as
    /// the ONNX graph computes it.
    Numeric {
        /// Input name.
        name: String,
        /// Training mean.
        mean: f64,
        /// Training standard deviation (1 where it was 0).
        std: f64,
    },
    /// A string: one column per category (1 where the value equals it), then an unknown
    /// column (1 where it equals none). No columns when there are no categories.
    Categorical {
        /// Input name.
        name: String,
        /// Categories in column order.
        categories: Vec<String>,
    },
}

impl Feature {
    /// The input name.
    pub fn name(&self) -> &str {
        match self {
            Feature::Numeric { name, .. } | Feature::Categorical { name, .. } => name,
        }
    }

    /// How many encoded columns the feature becomes.
    pub fn width(&self) -> usize {
        match self {
            Feature::Numeric { .. } => 1,
            Feature::Categorical { categories, .. } if categories.is_empty() => 0,
            Feature::Categorical { categories, .. } => categories.len() + 1,
        }
    }
}

/// A node of a flat tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// `x[feature] <= threshold` (compared in `f32`) goes to `left`, otherwise to `right`.
    Split {
        /// Encoded column.
        feature: usize,
        /// Threshold.
        threshold: f32,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
    },
    /// A leaf and its value.
    Leaf {
        /// The leaf's value (in the explainer's units, before the ensemble's scale).
        value: f64,
    },
}

/// A tree with its covers: root at index 0, `covers[i]` the training rows that reached node i.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Training rows per node.
    pub covers: Vec<f64>,
}

impl Tree {
    /// The leaf value a row (encoded columns) reaches.
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut at = 0;
        // A checked tree reaches a leaf in at most `nodes.len()` steps.
        for _ in 0..self.nodes.len() {
            match self.nodes.get(at) {
                Some(Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                }) => {
                    let v = x.get(*feature).copied().unwrap_or(f64::NAN) as f32;
                    at = if v <= *threshold { *left } else { *right };
                }
                Some(Node::Leaf { value }) => return *value,
                None => break,
            }
        }
        f64::NAN
    }
}

/// The model after preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Head {
    /// `x·w + b` (log-odds for logistic regression).
    Linear {
        /// Weights per encoded column.
        weights: Vec<f64>,
        /// Intercept.
        intercept: f64,
        /// Mean of each encoded column over the training rows.
        means: Vec<f64>,
    },
    /// `scale · Σ trees` (1/k for a forest's mean, 1 for boosting).
    Trees {
        /// The trees.
        trees: Vec<Tree>,
        /// Factor on the sum of leaf values.
        scale: f64,
    },
}

/// Everything attributions need: the preprocessing and the model head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explainer {
    /// Raw features in encoding order.
    pub features: Vec<Feature>,
    /// The head over the encoded columns.
    pub head: Head,
    /// What attributions add up to.
    pub units: Units,
}

/// One raw value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw<'a> {
    /// A number (NaN: missing).
    Number(f32),
    /// A string.
    Text(&'a str),
}

/// Why an explainer or a row cannot be explained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The explainer is inconsistent (a damaged or foreign file).
    #[error("the model's explainer is unusable: {0}")]
    Invalid(String),
    /// A row does not fit the explainer's features.
    #[error("{0}")]
    Row(String),
}

/// Attributions of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// One value per raw feature, in [`Explainer::features`] order.
    pub values: Vec<f64>,
    /// The model's raw score of the row: base + Σ values.
    pub raw: f64,
}

impl Explainer {
    /// Reads an explainer from its JSON and checks it.
    pub fn from_json(json: &str) -> Result<Explainer, Error> {
        let explainer: Explainer =
            serde_json::from_str(json).map_err(|e| Error::Invalid(e.to_string()))?;
        explainer.check()?;
        Ok(explainer)
    }

    /// The explainer as JSON (what [`METADATA_KEY`] holds).
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|e| Error::Invalid(e.to_string()))
    }

    /// The encoded columns of every feature, in feature order.
    pub fn groups(&self) -> Vec<Range<usize>> {
        let mut at = 0;
        self.features
            .iter()
            .map(|f| {
                let range = at..at + f.width();
                at = range.end;
                range
            })
            .collect()
    }

    /// The number of encoded columns.
    pub fn width(&self) -> usize {
        self.features.iter().map(Feature::width).sum()
    }

    /// Feature names in order.
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(Feature::name).collect()
    }

    /// Checks that every index is in range and every tree is a tree (each node reached once
    /// from the root), so explaining never panics or loops on a damaged file.
    pub fn check(&self) -> Result<(), Error> {
        let width = self.width();
        let bad = |m: String| Err(Error::Invalid(m));
        for f in &self.features {
            if let Feature::Numeric { name, std, .. } = f
                && !(std.is_finite() && *std != 0.0)
            {
                return bad(format!("feature {name} has deviation {std}"));
            }
        }
        match &self.head {
            Head::Linear { weights, means, .. } => {
                if weights.len() != width || means.len() != width {
                    return bad(format!(
                        "{} weights and {} means for {width} encoded columns",
                        weights.len(),
                        means.len()
                    ));
                }
            }
            Head::Trees { trees, .. } => {
                for (t, tree) in trees.iter().enumerate() {
                    check_tree(tree, width)
                        .map_err(|m| Error::Invalid(format!("tree {t}: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// The expected raw score: what attributions start from.
    pub fn base(&self) -> f64 {
        match &self.head {
            Head::Linear {
                weights,
                intercept,
                means,
            } => intercept + dot(weights, means),
            Head::Trees { trees, scale } => {
                scale
                    * trees
                        .iter()
                        .map(|t| shap::expected_value(&t.nodes, &t.covers))
                        .sum::<f64>()
            }
        }
    }

    /// Encodes a raw row (one value per feature, in feature order) as the ONNX graph does:
    /// numbers in `f32` arithmetic, categories one-hot with the unknown column.
    pub fn encode(&self, row: &[Raw<'_>]) -> Result<Vec<f64>, Error> {
        if row.len() != self.features.len() {
            return Err(Error::Row(format!(
                "{} values for {} features",
                row.len(),
                self.features.len()
            )));
        }
        let mut x = Vec::with_capacity(self.width());
        for (f, value) in self.features.iter().zip(row) {
            match (f, value) {
                (Feature::Numeric { mean, std, .. }, Raw::Number(v)) => {
                    let (mean, std) = (*mean as f32, *std as f32);
                    let v = if v.is_nan() { mean } else { *v };
                    x.push(f64::from((v - mean) / std));
                }
                (Feature::Categorical { categories, .. }, Raw::Text(s)) => {
                    if categories.is_empty() {
                        continue;
                    }
                    let hot = categories.iter().position(|c| c == s);
                    x.extend((0..categories.len()).map(|i| f64::from(u8::from(hot == Some(i)))));
                    x.push(f64::from(u8::from(hot.is_none())));
                }
                (f, _) => {
                    return Err(Error::Row(format!(
                        "feature {} takes {}",
                        f.name(),
                        match f {
                            Feature::Numeric { .. } => "a number",
                            Feature::Categorical { .. } => "a string",
                        }
                    )));
                }
            }
        }
        Ok(x)
    }

    /// Attributions per encoded column of an encoded row, and the row's raw score.
    pub fn explain_columns(&self, x: &[f64]) -> (Vec<f64>, f64) {
        match &self.head {
            Head::Linear {
                weights,
                intercept,
                means,
            } => {
                let values: Vec<f64> = weights
                    .iter()
                    .zip(means)
                    .zip(x)
                    .map(|((w, m), v)| w * (v - m))
                    .collect();
                (values, intercept + dot(weights, x))
            }
            Head::Trees { trees, scale } => {
                let mut phi = vec![0.0; x.len()];
                let mut raw = 0.0;
                for tree in trees {
                    shap::add_tree_values(&tree.nodes, &tree.covers, x, *scale, &mut phi);
                    raw += scale * tree.predict(x);
                }
                (phi, raw)
            }
        }
    }

    /// Attributions per feature of an encoded row.
    pub fn explain_encoded(&self, x: &[f64]) -> Explanation {
        let (columns, raw) = self.explain_columns(x);
        let values = self
            .groups()
            .into_iter()
            .map(|range| columns.get(range).map(|c| c.iter().sum()).unwrap_or(0.0))
            .collect();
        Explanation { values, raw }
    }

    /// Attributions per feature of a raw row (one value per feature, in feature order).
    pub fn explain(&self, row: &[Raw<'_>]) -> Result<Explanation, Error> {
        Ok(self.explain_encoded(&self.encode(row)?))
    }
}

/// The `k` features with the largest |attribution|, largest first (ties by name), as
/// `(name, value)`.
pub fn top<'a>(names: &[&'a str], values: &[f64], k: usize) -> Vec<(&'a str, f64)> {
    let mut pairs: Vec<(&str, f64)> = names.iter().copied().zip(values.iter().copied()).collect();
    pairs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(b.0)));
    pairs.truncate(k);
    pairs
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// The deepest tree an explainer may hold (TreeSHAP recurses once per split on a path).
pub const MAX_DEPTH: usize = 256;

fn check_tree(tree: &Tree, width: usize) -> Result<(), String> {
    let n = tree.nodes.len();
    if n == 0 {
        return Err("no nodes".into());
    }
    if tree.covers.len() != n {
        return Err(format!("{} covers for {n} nodes", tree.covers.len()));
    }
    if let Some(c) = tree.covers.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
        return Err(format!("cover {c}"));
    }
    let mut seen = vec![false; n];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((at, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[at], true) {
            return Err(format!("node {at} is reached twice"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("node {at} lies deeper than {MAX_DEPTH} splits"));
        }
        if let Node::Split {
            feature,
            left,
            right,
            threshold,
        } = &tree.nodes[at]
        {
            if *feature >= width {
                return Err(format!(
                    "node {at} splits column {feature} of {width} columns"
                ));
            }
            if threshold.is_nan() {
                return Err(format!("node {at} has no threshold"));
            }
            for child in [*left, *right] {
                if child >= n {
                    return Err(format!("node {at} has child {child} of {n} nodes"));
                }
                stack.push((child, depth + 1));
            }
        }
    }
    match seen.iter().position(|s| !s) {
        Some(orphan) => Err(format!("node {orphan} is not reached from the root")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
