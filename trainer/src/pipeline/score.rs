//! `leitwerk-trainer score`: batch scoring with a Model's version, for CRM and ad-platform
//! uploads. The rows are the FeatureSet snapshot's newest row of each entity (its features at
//! the newest cutoff) or a table the Model names; ONNX Runtime scores them with the version's
//! file (its digest checked first), the explainer inside that file gives each row's largest
//! attributions, and one Parquet or CSV file is written:
//! `entity_id, score, version, attribution_1_feature, attribution_1_value, …`, sorted by
//! entity id.

use std::collections::HashMap;

use leitwerk_crds::summary::ScoreSummary;
use leitwerk_explain::{Explainer, Feature, Raw};
use prost::Message;

use super::*;

/// What `score` needs.
#[derive(Debug, Clone)]
pub struct ScoreJob {
    /// The version's ONNX file, `URL#sha256:<hex>` (or the URL alone).
    pub model: String,
    /// The version.
    pub version: String,
    /// A FeatureSet snapshot directory to score.
    pub snapshot: Option<String>,
    /// A Parquet or CSV table to score instead.
    pub source: Option<String>,
    /// The row-id column of `source`.
    pub entity_column: Option<String>,
    /// URL of the file to write (`.csv`: CSV, anything else: Parquet).
    pub output: String,
    /// Attributions per row.
    pub attributions: usize,
    /// ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// Scratch directory (a CSV source is read from a file there).
    pub work_dir: PathBuf,
}

/// The explainer an ONNX file carries.
pub fn explainer_of(bytes: &[u8]) -> Result<Explainer, JobError> {
    let proto = candle_onnx::onnx::ModelProto::decode(bytes)
        .map_err(|e| invalid(format!("the model file is not ONNX: {e}")))?;
    let json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == leitwerk_explain::METADATA_KEY)
        .map(|p| p.value.as_str())
        .ok_or_else(|| {
            invalid(format!(
                "the model file carries no explainer ({}): it was not trained by this trainer; train the Model again",
                leitwerk_explain::METADATA_KEY
            ))
        })?;
    Explainer::from_json(json).map_err(|e| invalid(e.to_string()))
}

/// Reads the model file and checks its digest when the URL carries one.
async fn read_model(url: &str) -> Result<Vec<u8>, JobError> {
    let (location, expected) = match url.split_once("#sha256:") {
        Some((location, hex)) => (location, Some(format!("sha256:{hex}"))),
        None => (url, None),
    };
    let bytes = Store::open(location)?.get("").await?;
    if let Some(expected) = expected {
        let got = store::digest(&bytes);
        if got != expected {
            return Err(invalid(format!(
                "{location} has digest {got}, but the Model's version records {expected}: the file was changed after training; train the Model again"
            )));
        }
    }
    Ok(bytes)
}

/// The rows to score: ids and the frame they come from.
async fn rows(job: &ScoreJob) -> Result<(Vec<String>, DataFrame, Option<String>), JobError> {
    if let Some(url) = &job.snapshot {
        let snapshot = Store::open(url)?;
        let manifest: Manifest = serde_json::from_slice(&snapshot.get("manifest.json").await?)
            .map_err(|e| invalid(format!("{url} holds no snapshot manifest: {e}")))?;
        let parquet = snapshot.get("features.parquet").await?;
        if store::digest(&parquet) != manifest.digest {
            return Err(invalid(format!(
                "{} does not have its manifest's digest: the snapshot was changed after publication; materialize the FeatureSet again",
                snapshot.url_of("features.parquet")
            )));
        }
        let frame = materialize::from_parquet(parquet)?;
        let ids = text(&frame, &manifest.entity_key)?;
        let cutoff = frame.column(CUTOFF)?.cast(&DataType::Int64)?;
        let cutoff: Vec<i64> = cutoff
            .i64()?
            .iter()
            .map(|c| c.unwrap_or(i64::MIN))
            .collect();
        // Each entity's newest row.
        let mut newest: HashMap<&str, usize> = HashMap::new();
        for (row, id) in ids.iter().enumerate() {
            let slot = newest.entry(id.as_str()).or_insert(row);
            if cutoff[row] > cutoff[*slot] {
                *slot = row;
            }
        }
        let mut picked: Vec<(&str, usize)> = newest.into_iter().collect();
        picked.sort();
        let index: Vec<IdxSize> = picked.iter().map(|(_, r)| *r as IdxSize).collect();
        let frame = frame.take(&IdxCa::from_vec("rows".into(), index))?;
        let ids = picked.iter().map(|(id, _)| id.to_string()).collect();
        return Ok((ids, frame, Some(manifest.version)));
    }
    let (Some(url), Some(column)) = (&job.source, &job.entity_column) else {
        return Err(invalid(
            "score needs --snapshot, or --source with --entity-column",
        ));
    };
    let bytes = Store::open(url)?.get("").await?;
    let frame = if url.ends_with(".csv") {
        std::fs::create_dir_all(&job.work_dir)
            .map_err(|e| invalid(format!("{}: {e}", job.work_dir.display())))?;
        let path = job.work_dir.join("source.csv");
        std::fs::write(&path, bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        LazyCsvReader::new(PlRefPath::new(path.to_string_lossy().as_ref()))
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .finish()?
            .collect()?
    } else {
        materialize::from_parquet(bytes)?
    };
    let ids = text(&frame, column).map_err(|_| {
        invalid(format!(
            "spec.batchScoring.entityColumn: {url} has no column {column:?}; its columns are {}",
            names(&frame)
        ))
    })?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|a, b| ids[*a].cmp(&ids[*b]));
    let index: Vec<IdxSize> = order.iter().map(|&r| r as IdxSize).collect();
    let frame = frame.take(&IdxCa::from_vec("rows".into(), index))?;
    let ids = order.into_iter().map(|r| ids[r].clone()).collect();
    Ok((ids, frame, None))
}

fn names(frame: &DataFrame) -> String {
    frame
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn text(frame: &DataFrame, name: &str) -> Result<Vec<String>, JobError> {
    let column = frame.column(name)?.cast(&DataType::String)?;
    Ok(column
        .str()?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

/// The model's input columns of `frame`, by the explainer's features.
fn inputs(frame: &DataFrame, explainer: &Explainer, from: &str) -> Result<Columns, JobError> {
    let mut columns = Columns::default();
    for f in &explainer.features {
        if frame.column(f.name()).is_err() {
            return Err(invalid(format!(
                "{from} has no column {:?}, an input of the model; its columns are {}",
                f.name(),
                names(frame)
            )));
        }
        match f {
            Feature::Numeric { name, .. } => columns.numeric.push((
                name.clone(),
                table::numbers(frame, name, "feature")?
                    .into_iter()
                    .map(|x| x.unwrap_or(f64::NAN))
                    .collect(),
            )),
            Feature::Categorical { name, .. } => {
                columns.categorical.push((name.clone(), text(frame, name)?));
            }
        }
    }
    Ok(columns)
}

/// Each row's `k` largest attributions as (feature, value).
fn top_attributions(
    explainer: &Explainer,
    columns: &Columns,
    k: usize,
) -> Result<Vec<Vec<(String, f64)>>, JobError> {
    let names = explainer.names();
    let mut out = Vec::with_capacity(columns.rows());
    for r in 0..columns.rows() {
        let raw: Vec<Raw<'_>> = explainer
            .features
            .iter()
            .map(|f| match f {
                Feature::Numeric { name, .. } => Raw::Number(
                    columns
                        .numeric
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(f32::NAN, |(_, v)| v[r] as f32),
                ),
                Feature::Categorical { name, .. } => Raw::Text(
                    columns
                        .categorical
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v[r].as_str()),
                ),
            })
            .collect();
        let explanation = explainer
            .explain(&raw)
            .map_err(|e| invalid(format!("row {r}: {e}")))?;
        out.push(
            leitwerk_explain::top(&names, &explanation.values, k)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        );
    }
    Ok(out)
}

/// `leitwerk-trainer score`: reads the rows, scores them, writes the file.
pub async fn run_score(job: &ScoreJob) -> Result<ScoreSummary, JobError> {
    progress::step("loading the model");
    let bytes = read_model(&job.model).await?;
    let explainer = explainer_of(&bytes)?;
    progress::step("loading the rows");
    let (ids, frame, data_version) = rows(job).await?;
    let from = job
        .source
        .as_deref()
        .or(job.snapshot.as_deref())
        .unwrap_or_default();
    let columns = inputs(&frame, &explainer, from)?;
    progress::step("scoring");
    let scores = if ids.is_empty() {
        Vec::new()
    } else {
        crate::runtime::score(&job.onnxruntime, &bytes, &columns)?
    };
    let k = job.attributions.min(explainer.features.len());
    let top = if k > 0 {
        top_attributions(&explainer, &columns, k)?
    } else {
        Vec::new()
    };
    progress::step("writing");
    let n = ids.len();
    let mut out = vec![
        Column::new("entity_id".into(), ids),
        Column::new("score".into(), scores),
        Column::new("version".into(), vec![job.version.as_str(); n]),
    ];
    for i in 0..k {
        let feature: Vec<&str> = top.iter().map(|t| t[i].0.as_str()).collect();
        let value: Vec<f64> = top.iter().map(|t| t[i].1).collect();
        out.push(Column::new(
            format!("attribution_{}_feature", i + 1).into(),
            feature,
        ));
        out.push(Column::new(
            format!("attribution_{}_value", i + 1).into(),
            value,
        ));
    }
    let mut frame = DataFrame::new_infer_height(out)?;
    let bytes = if job.output.ends_with(".csv") {
        let mut buffer = Vec::new();
        CsvWriter::new(&mut buffer)
            .include_header(true)
            .finish(&mut frame)?;
        buffer
    } else {
        materialize::to_parquet(&frame)?
    };
    let digest = store::digest(&bytes);
    Store::open(&job.output)?.put("", bytes).await?;
    Ok(ScoreSummary {
        version: job.version.clone(),
        rows: n as u64,
        output_url: job.output.clone(),
        digest,
        data_version,
        fitted: None,
    })
}
