//! Per-prediction explanations: the model's [`Explainer`], read from the ONNX file's metadata
//! (`leitwerk.explainer`, written by the trainer), applied to the rows of a request. A request
//! asks with the parameter `explain: true` (REST: `"parameters": {"explain": true}`; gRPC: a
//! `bool_param`); the answer gains an `attributions` output, `[N, F]` FP64, one value per row
//! and feature, with the feature names, the base value and the units in its parameters. Base +
//! Σ attributions is the row's raw score: log-odds of the served score for logistic
//! regression and boosted classification, the score itself for a classification tree or
//! forest, the prediction for regression.

use leitwerk_explain::{Explainer, Raw};

use crate::model::{Column, InferError, Rows};

/// The most rows one explained request may carry (TreeSHAP costs leaves × depth² per row and
/// tree; a thousand rows of a 300-tree model take about a second on one core).
pub const MAX_EXPLAIN_ROWS: usize = 1_000;

/// Name of the output tensor with the attributions.
pub const OUTPUT: &str = "attributions";

/// A model's explainer and, per explainer feature, the model input that feeds it.
#[derive(Debug)]
pub struct Explaining {
    explainer: Explainer,
    inputs: Vec<usize>,
    base: f64,
}

/// The attributions of a request's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    /// Feature names, in column order.
    pub features: Vec<String>,
    /// What base + Σ attributions is (`logOdds`, `probability`, `value`).
    pub units: &'static str,
    /// The expected raw score.
    pub base: f64,
    /// Row-major `[rows, features]`.
    pub values: Vec<f64>,
}

impl Explaining {
    /// Reads the explainer a model carries; `Err` says why the model cannot explain.
    pub fn new(
        json: Option<String>,
        inputs: &[(String, crate::model::InputKind)],
    ) -> Result<Explaining, String> {
        let json = json.ok_or_else(|| {
            format!(
                "its ONNX file carries no explainer ({}); models trained by Leitwerk carry one, other ONNX files cannot be explained",
                leitwerk_explain::METADATA_KEY
            )
        })?;
        let explainer = Explainer::from_json(&json).map_err(|e| e.to_string())?;
        let inputs = explainer
            .names()
            .into_iter()
            .map(|name| {
                inputs.iter().position(|(n, _)| n == name).ok_or_else(|| {
                    format!(
                        "its explainer names feature {name}, which is not an input of the model"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let base = explainer.base();
        Ok(Explaining {
            explainer,
            inputs,
            base,
        })
    }

    /// Attributions of validated rows (blocking; call from a blocking thread).
    pub fn explain(&self, rows: &Rows) -> Result<Explained, InferError> {
        if rows.n > MAX_EXPLAIN_ROWS {
            return Err(InferError::Invalid(format!(
                "an explained request carries at most {MAX_EXPLAIN_ROWS} rows, not {}; split it, or leave out parameters.explain",
                rows.n
            )));
        }
        let features = self.explainer.features.len();
        let mut values = Vec::with_capacity(rows.n * features);
        let mut raw = Vec::with_capacity(features);
        for r in 0..rows.n {
            raw.clear();
            for &i in &self.inputs {
                raw.push(match rows.columns.get(i) {
                    Some(Column::Number(v)) => Raw::Number(v.get(r).copied().unwrap_or(f32::NAN)),
                    Some(Column::Text(v)) => Raw::Text(v.get(r).map(String::as_str).unwrap_or("")),
                    None => Raw::Number(f32::NAN),
                });
            }
            let explanation = self
                .explainer
                .explain(&raw)
                .map_err(|e| InferError::Invalid(format!("row {r}: {e}")))?;
            values.extend(explanation.values);
        }
        Ok(Explained {
            features: self
                .explainer
                .names()
                .into_iter()
                .map(String::from)
                .collect(),
            units: self.explainer.units.as_str(),
            base: self.base,
            values,
        })
    }
}
