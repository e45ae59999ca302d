//! The parity check: ONNX Runtime must agree with the trainer before anything is published.

use super::*;

/// The largest difference allowed between ONNX Runtime's scores and the trainer's own: absolute
/// for scores up to 1 in size (probabilities), relative above (a regression's prediction of
/// 2,000 carries only 7 significant digits in the `float` ONNX Runtime computes in).
pub const PARITY_TOLERANCE: f64 = 1e-5;

/// Scores `rows` with the exported graph in ONNX Runtime and compares with the trainer's own
/// predictions: returns the largest |difference|, or refuses the graph when a row differs by
/// more than [`PARITY_TOLERANCE`], when either side gives NaN or an infinity, or when the
/// row counts differ. Nothing may be published after a refusal.
pub fn check_parity(
    onnxruntime: &Path,
    graph: &[u8],
    rows: &Columns,
    predicted: &[f64],
) -> Result<f64, JobError> {
    let served = crate::runtime::score(onnxruntime, graph, rows)?;
    parity(&served, predicted)
}

/// The comparison behind [`check_parity`]. A NaN never hides behind a maximum: `f64::max`
/// drops NaN, so every pair is checked on its own.
pub fn parity(served: &[f64], predicted: &[f64]) -> Result<f64, JobError> {
    if served.len() != predicted.len() {
        return Err(invalid(format!(
            "ONNX Runtime returned {} scores for {} validation rows; nothing was published",
            served.len(),
            predicted.len()
        )));
    }
    let mut worst = 0.0_f64;
    for (row, (a, b)) in served.iter().zip(predicted).enumerate() {
        let diff = (a - b).abs();
        if !diff.is_finite() || diff > PARITY_TOLERANCE * b.abs().max(1.0) {
            return Err(invalid(format!(
                "ONNX Runtime and the trained model disagree on validation row {row}: {a} served vs {b} trained (tolerance {PARITY_TOLERANCE:e}); nothing was published"
            )));
        }
        worst = worst.max(diff);
    }
    Ok(worst)
}
