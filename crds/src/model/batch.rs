//! `spec.batchScoring`: a Model scores a table on a schedule, for CRM and ad-platform uploads.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Scores a table on a schedule with the serving version: a Job writes one file per run with
/// the entity id, the score, the version and the largest attributions of each row.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.source) == has(self.entityColumn)").message("batchScoring.source and batchScoring.entityColumn go together: the entity column names the row ids of the source (a snapshot's entity key is its own)"))]
pub struct BatchScoring {
    /// When to score: a five-field cron schedule in UTC, e.g. `0 5 * * *`. Each due time
    /// starts one run; due times missed while the operator was down start one run.
    #[schemars(length(min = 9, max = 100))]
    pub schedule: String,
    /// Where each run's file goes: a URL prefix in the artifact store's scheme (`file://…`,
    /// `s3://…`, `gs://…`, `az://…`). A run writes
    /// `<output>/<model>-<version>-<due time>.parquet` (or `.csv`).
    #[schemars(
        length(min = 8, max = 1000),
        regex(pattern = r"^(file|s3|gs|az)://\S+$")
    )]
    pub output: String,
    /// The file format.
    #[serde(default)]
    pub format: ScoreFormat,
    /// How many attributions each row carries (the features with the largest |SHAP value|,
    /// as feature/value column pairs); 0 leaves them out.
    #[serde(default = "default_attributions")]
    #[schemars(range(min = 0, max = 10))]
    pub attributions: i32,
    /// A table to score instead of the FeatureSet's newest snapshot: the URL of a Parquet
    /// (`.parquet`) or CSV file with the model's input columns. Without it, each entity's row
    /// at the snapshot's newest cutoff is scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 8, max = 1000),
        regex(pattern = r"^(file|s3|gs|az)://\S+$")
    )]
    pub source: Option<String>,
    /// The column of `source` that identifies each row (written as the entity id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub entity_column: Option<String>,
}

fn default_attributions() -> i32 {
    3
}

crate::common::named_enum! {
    /// The format of a batch scoring file.
    #[derive(Default)]
    pub enum ScoreFormat {
        /// Apache Parquet.
        #[default]
        Parquet,
        /// Comma-separated values with a header line.
        Csv = "CSV",
    }
}

impl ScoreFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ScoreFormat::Parquet => "parquet",
            ScoreFormat::Csv => "csv",
        }
    }
}

/// Where batch scoring stands: the schedule and the newest run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchScoringStatus {
    /// The due time (RFC 3339) of the newest run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// The next due time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The Job of the newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// `Running`, `Succeeded` or `Failed`; `Waiting` while no version serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The version that scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Rows scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// The file written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_url: Option<String>,
    /// `sha256:<hex>` of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_digest: Option<String>,
    /// When the run finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why the run failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What a CustomerLifetimeValue run fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<LifetimeFit>,
}

/// Customer lifetime value: the transactions BG/NBD (purchase frequency) and Gamma-Gamma
/// (spend) are fitted on by maximum likelihood, and the horizon each customer is scored over.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.horizon > 0.0").message("lifetimeValue.horizon must be above 0 (units of unitDays days)"))]
pub struct LifetimeValue {
    /// URL of the transactions: a CSV file with a header, one row per purchase (customer id,
    /// date as YYYY-MM-DD or a timestamp starting with one, value ≥ 0). A value below 0 or a
    /// date after the run's due time fails the run, naming the line.
    #[schemars(
        length(min = 8, max = 1000),
        regex(pattern = r"^(file|s3|gs|az)://\S+$")
    )]
    pub transactions: String,
    /// The customer id column.
    #[serde(default = "default_customer")]
    #[schemars(length(min = 1, max = 128))]
    pub customer_column: String,
    /// The date column.
    #[serde(default = "default_date")]
    #[schemars(length(min = 1, max = 128))]
    pub date_column: String,
    /// The value column.
    #[serde(default = "default_value")]
    #[schemars(length(min = 1, max = 128))]
    pub value_column: String,
    /// How far ahead purchases and value are expected, in units of `unitDays`.
    #[serde(default = "default_horizon")]
    #[schemars(range(min = 0.001, max = 5200.0))]
    pub horizon: f64,
    /// Days per unit (7: weeks, the usual unit of BG/NBD).
    #[serde(default = "default_unit_days")]
    #[schemars(range(min = 1, max = 366))]
    pub unit_days: i32,
}

fn default_customer() -> String {
    "customer_id".into()
}
fn default_date() -> String {
    "date".into()
}
fn default_value() -> String {
    "value".into()
}
fn default_horizon() -> f64 {
    52.0
}
fn default_unit_days() -> i32 {
    7
}

/// The parameters a lifetime value run fitted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LifetimeFit {
    /// BG/NBD r.
    pub r: f64,
    /// BG/NBD α.
    pub alpha: f64,
    /// BG/NBD a.
    pub a: f64,
    /// BG/NBD b.
    pub b: f64,
    /// Gamma-Gamma p.
    pub p: f64,
    /// Gamma-Gamma q.
    pub q: f64,
    /// Gamma-Gamma v.
    pub v: f64,
    /// Last day of the period fitted on.
    pub period_end: String,
    /// Sum of the customers' CLV over the horizon.
    pub total_clv: f64,
}
