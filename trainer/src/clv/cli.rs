//! `leitwerk-trainer clv`: customer lifetime value in batch from a local transactions CSV.

use std::path::PathBuf;

use chrono::NaiveDate;

/// Arguments of `clv`.
#[derive(Debug, clap::Args)]
pub struct ClvArgs {
    /// The transactions CSV (with a header).
    #[arg(long)]
    pub transactions: PathBuf,
    /// Its customer id column.
    #[arg(long, default_value = "customer_id")]
    pub customer_column: String,
    /// Its date column (YYYY-MM-DD, or a timestamp starting with one).
    #[arg(long, default_value = "date")]
    pub date_column: String,
    /// Its value column (0 or more).
    #[arg(long, default_value = "value")]
    pub value_column: String,
    /// Last day of the period fitted on (default: the newest transaction's day); later rows are
    /// refused.
    #[arg(long)]
    pub end: Option<NaiveDate>,
    /// Horizon of the expected purchases and CLV, in units.
    #[arg(long, default_value_t = 52.0)]
    pub horizon: f64,
    /// Days per unit (7: weeks).
    #[arg(long, default_value_t = 7.0)]
    pub unit_days: f64,
    /// Output file: `.parquet` for Parquet, anything else for CSV.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `clv`: fits, scores, writes; the summary as JSON.
pub fn clv(args: ClvArgs) -> Result<String, String> {
    use super::batch;
    let columns = batch::Columns {
        customer: args.customer_column,
        date: args.date_column,
        value: args.value_column,
    };
    let transactions = batch::read_csv(&args.transactions, &columns).map_err(|e| e.to_string())?;
    let (summary, scores) = batch::score(&transactions, args.end, args.horizon, args.unit_days)
        .map_err(|e| e.to_string())?;
    batch::write(&args.out, &scores).map_err(|e| e.to_string())?;
    serde_json::to_string(&summary).map_err(|e| e.to_string())
}
