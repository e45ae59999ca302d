//! Batch scoring of customer lifetime value: a transactions CSV in, one row per customer out
//! (CSV or Parquet), with the fitted parameters in a JSON summary.

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use super::{BgNbd, ClvError, Customer, GammaGamma, Transaction, summarize};

/// Which columns of the transactions file hold what.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Customer id column.
    pub customer: String,
    /// Date column (`YYYY-MM-DD`, or a timestamp starting with one).
    pub date: String,
    /// Value column (0 or more).
    pub value: String,
}

/// One customer's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Customer id.
    pub customer_id: String,
    /// Repeat purchases in the period.
    pub frequency: f64,
    /// Units from first to last purchase.
    pub recency: f64,
    /// Units from first purchase to the end of the period.
    pub age: f64,
    /// Mean value of the repeat purchases.
    pub monetary: f64,
    /// P(still a customer).
    pub probability_alive: f64,
    /// Expected purchases over the horizon.
    pub expected_purchases: f64,
    /// Expected value per purchase (Gamma-Gamma).
    pub expected_value: f64,
    /// Expected purchases × expected value: the value over the horizon.
    pub clv: f64,
}

/// What a batch run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Customers scored.
    pub customers: usize,
    /// Transactions read.
    pub transactions: usize,
    /// End of the period (the newest transaction's day unless given).
    pub period_end: NaiveDate,
    /// Horizon in units.
    pub horizon: f64,
    /// Days per unit.
    pub unit_days: f64,
    /// The fitted purchase model.
    pub bg_nbd: BgNbd,
    /// The fitted spend model.
    pub gamma_gamma: GammaGamma,
    /// Sum of the customers' CLV.
    pub total_clv: f64,
}

/// Reads transactions from a CSV file with a header, naming the file, row and column of the
/// first value that is not usable.
pub fn read_csv(path: &Path, columns: &Columns) -> Result<Vec<Transaction>, ClvError> {
    let data = |m: String| ClvError::Data(format!("{}: {m}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| data(e.to_string()))?;
    let headers = reader.headers().map_err(|e| data(e.to_string()))?.clone();
    let index = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            data(format!(
                "no column {name:?} (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let (c, d, v) = (
        index(&columns.customer)?,
        index(&columns.date)?,
        index(&columns.value)?,
    );
    let mut out = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| data(e.to_string()))?;
        let line = row + 2;
        let field = |i: usize| record.get(i).unwrap_or_default().trim();
        let date = field(d)
            .get(..10)
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .ok_or_else(|| {
                data(format!(
                    "line {line}: {} {:?} is not a date (YYYY-MM-DD)",
                    columns.date,
                    field(d)
                ))
            })?;
        let value = field(v).parse::<f64>().map_err(|_| {
            data(format!(
                "line {line}: {} {:?} is not a number",
                columns.value,
                field(v)
            ))
        })?;
        if !(value >= 0.0 && value.is_finite()) {
            return Err(data(format!(
                "line {line}: {} {value} is not 0 or more (refunds belong in a separate column)",
                columns.value
            )));
        }
        out.push(Transaction {
            customer: field(c).to_string(),
            date,
            value,
        });
    }
    Ok(out)
}

/// Fits both models on the transactions up to `end` (default: the newest day) and scores every
/// customer over `horizon` units of `unit_days` days.
pub fn score(
    transactions: &[Transaction],
    end: Option<NaiveDate>,
    horizon: f64,
    unit_days: f64,
) -> Result<(Summary, Vec<Score>), ClvError> {
    let newest = transactions.iter().map(|t| t.date).max().ok_or_else(|| {
        ClvError::Data("there are no transactions to fit customer lifetime value on".into())
    })?;
    let period_end = end.unwrap_or(newest);
    if !(horizon > 0.0 && horizon.is_finite()) {
        return Err(ClvError::Data(format!(
            "the horizon must be positive, not {horizon}"
        )));
    }
    let customers: Vec<Customer> = summarize(transactions, period_end, unit_days)?;
    let bg_nbd = BgNbd::fit(&customers)?;
    let gamma_gamma = GammaGamma::fit(&customers)?;
    let scores: Vec<Score> = customers
        .into_iter()
        .map(|c| {
            let expected_purchases = bg_nbd.expected_purchases(&c, horizon);
            let expected_value = gamma_gamma.expected_value(&c);
            Score {
                probability_alive: bg_nbd.probability_alive(&c),
                expected_purchases,
                expected_value,
                clv: expected_purchases * expected_value,
                customer_id: c.id,
                frequency: c.frequency,
                recency: c.recency,
                age: c.age,
                monetary: c.monetary,
            }
        })
        .collect();
    let summary = Summary {
        customers: scores.len(),
        transactions: transactions.len(),
        period_end,
        horizon,
        unit_days,
        bg_nbd,
        gamma_gamma,
        total_clv: scores.iter().map(|s| s.clv).sum(),
    };
    Ok((summary, scores))
}

/// Writes the scores as Parquet (`.parquet`) or CSV (anything else).
pub fn write(path: &Path, scores: &[Score]) -> Result<(), ClvError> {
    let fail = |m: String| ClvError::Data(format!("cannot write {}: {m}", path.display()));
    if path.extension().is_some_and(|e| e == "parquet") {
        let number = |name: &str, f: fn(&Score) -> f64| {
            Column::new(name.into(), scores.iter().map(f).collect::<Vec<f64>>())
        };
        let ids: Vec<&str> = scores.iter().map(|s| s.customer_id.as_str()).collect();
        let frame = DataFrame::new_infer_height(vec![
            Column::new("customer_id".into(), ids),
            number("frequency", |s| s.frequency),
            number("recency", |s| s.recency),
            number("age", |s| s.age),
            number("monetary", |s| s.monetary),
            number("probability_alive", |s| s.probability_alive),
            number("expected_purchases", |s| s.expected_purchases),
            number("expected_value", |s| s.expected_value),
            number("clv", |s| s.clv),
        ])
        .map_err(|e| fail(e.to_string()))?;
        let bytes = crate::materialize::to_parquet(&frame).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| fail(e.to_string()))?;
        Ok(())
    } else {
        let mut w = csv::Writer::from_path(path).map_err(|e| fail(e.to_string()))?;
        for s in scores {
            w.serialize(s).map_err(|e| fail(e.to_string()))?;
        }
        w.flush().map_err(|e| fail(e.to_string()))
    }
}
