//! The public IBM Telco churn table (`tests/data/wa_churn.csv`, from the R package
//! `modeldata`; source and licence in `tests/data/README.md`) as the trainer's columns: the
//! reference protocol's 7,032 complete rows, numeric and categorical columns, churn labels.

use std::path::Path;

use crate::preprocess::Columns;

/// The numeric columns (0/1 flags, tenure, charges).
pub const NUMERIC: [&str; 9] = [
    "female",
    "senior_citizen",
    "partner",
    "dependents",
    "tenure",
    "phone_service",
    "paperless_billing",
    "monthly_charges",
    "total_charges",
];

/// The categorical columns.
pub const CATEGORICAL: [&str; 10] = [
    "multiple_lines",
    "internet_service",
    "online_security",
    "online_backup",
    "device_protection",
    "tech_support",
    "streaming_tv",
    "streaming_movies",
    "contract",
    "payment_method",
];

/// Reads the table; rows with a missing numeric value are dropped, as in the reference (11
/// rows: `total_charges` "NA"). Labels: `churn == "Yes"`.
pub fn load(path: &Path) -> Result<(Columns, Vec<bool>), String> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let index = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: column {name} missing", path.display()))
    };
    let numeric: Vec<usize> = NUMERIC.iter().map(|n| index(n)).collect::<Result<_, _>>()?;
    let categorical: Vec<usize> = CATEGORICAL
        .iter()
        .map(|n| index(n))
        .collect::<Result<_, _>>()?;
    let churn = index("churn")?;
    let mut columns = Columns {
        numeric: NUMERIC
            .iter()
            .map(|n| (n.to_string(), Vec::new()))
            .collect(),
        categorical: CATEGORICAL
            .iter()
            .map(|n| (n.to_string(), Vec::new()))
            .collect(),
    };
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let parsed: Option<Vec<f64>> = numeric
            .iter()
            .map(|&i| record[i].parse::<f64>().ok())
            .collect();
        let Some(values) = parsed else { continue };
        for ((_, column), v) in columns.numeric.iter_mut().zip(values) {
            column.push(v);
        }
        for ((_, column), &i) in columns.categorical.iter_mut().zip(&categorical) {
            column.push(record[i].to_string());
        }
        labels.push(&record[churn] == "Yes");
    }
    Ok((columns, labels))
}
