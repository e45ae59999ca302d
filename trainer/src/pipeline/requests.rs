//! Snapshot rows as inference requests (`leitwerk-trainer requests`).

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::*;

/// Which rows of a snapshot [`infer_requests`] turns into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// The rows `train` fits on (the older cutoffs): the distribution a model card's reference
    /// describes.
    Train,
    /// The rows `train` validates on (the newest cutoffs).
    Validation,
    /// Every row.
    All,
}

/// Reads a snapshot and returns one Open Inference Protocol v2 infer request (REST JSON) per
/// row of `split`: a seeded random sample of at most `limit` rows, in random order, so that
/// any stretch of a replay is a sample of the whole split (the snapshot itself is ordered by
/// cutoff and entity). `fraction` is the validation fraction
/// (`spec.training.validationFraction`, 0.2 by default). A missing number is sent as `null`,
/// which the inference server reads as missing. Replaying them against a server gives traffic
/// from the training distribution (a drift baseline) or reproduces validation scores.
pub async fn infer_requests(
    snapshot_url: &str,
    split: Split,
    fraction: f64,
    limit: usize,
    seed: u64,
) -> Result<Vec<serde_json::Value>, JobError> {
    let snapshot = Store::open(snapshot_url)?;
    let manifest: Manifest = serde_json::from_slice(&snapshot.get("manifest.json").await?)
        .map_err(|e| {
            invalid(format!(
                "{} is not a snapshot manifest: {e}",
                snapshot.url_of("manifest.json")
            ))
        })?;
    let frame = materialize::from_parquet(snapshot.get("features.parquet").await?)?;
    let table = table(&frame, &manifest)?;
    let (train, valid) = time_split(&table.cutoff, fraction)?;
    let rows: Vec<usize> = match split {
        Split::Train => train,
        Split::Validation => valid,
        Split::All => (0..table.label.len()).collect(),
    };
    let mut rows = rows;
    rows.shuffle(&mut StdRng::seed_from_u64(seed));
    rows.truncate(limit);
    Ok(rows
        .into_iter()
        .map(|i| {
            let numeric = table.columns.numeric.iter().map(|(name, v)| {
                let value = if v[i].is_finite() {
                    serde_json::json!(v[i])
                } else {
                    serde_json::Value::Null
                };
                serde_json::json!({"name": name, "datatype": "FP32", "shape": [1, 1], "data": [value]})
            });
            let categorical = table.columns.categorical.iter().map(|(name, v)| {
                serde_json::json!({"name": name, "datatype": "BYTES", "shape": [1, 1], "data": [v[i]]})
            });
            serde_json::json!({"inputs": numeric.chain(categorical).collect::<Vec<_>>()})
        })
        .collect())
}
