//! `leitwerk-trainer lifetime-value`: the Job of a CustomerLifetimeValue Model. It reads the
//! transactions the Model names (`spec.lifetimeValue`) from the store, refuses a date after the
//! run's due day, fits BG/NBD and Gamma-Gamma, scores every customer over the horizon and
//! writes one file (Parquet or CSV, by the output's extension) to the output URL.

use std::path::Path;

use chrono::NaiveDate;
use leitwerk_crds::ModelSpec;
use leitwerk_crds::model::LifetimeFit;
use leitwerk_crds::summary::ScoreSummary;

use super::ClvError;
use super::batch::{self, Columns};
use crate::store::{self, Store};

fn data(message: impl Into<String>) -> ClvError {
    ClvError::Data(message.into())
}

/// Fits and scores; the summary names the file, its digest, the customers and the fit.
pub async fn run_lifetime_value(
    spec: &ModelSpec,
    output: &str,
    not_after: &str,
    work_dir: &Path,
) -> Result<ScoreSummary, ClvError> {
    let lv = spec.lifetime_value.as_ref().ok_or_else(|| {
        data("spec.lifetimeValue is missing: a CustomerLifetimeValue Model names its transactions there")
    })?;
    let not_after = NaiveDate::parse_from_str(not_after, "%Y-%m-%d").map_err(|e| {
        data(format!(
            "--not-after {not_after:?} is not a day (YYYY-MM-DD): {e}"
        ))
    })?;
    let bytes = Store::open(&lv.transactions)
        .map_err(|e| data(e.to_string()))?
        .get("")
        .await
        .map_err(|e| {
            data(format!(
                "spec.lifetimeValue.transactions: {}",
                crate::pipeline::error_chain(&e)
            ))
        })?;
    std::fs::create_dir_all(work_dir).map_err(|e| data(format!("{}: {e}", work_dir.display())))?;
    let local = work_dir.join("transactions.csv");
    std::fs::write(&local, bytes).map_err(|e| data(format!("{}: {e}", local.display())))?;
    let columns = Columns {
        customer: lv.customer_column.clone(),
        date: lv.date_column.clone(),
        value: lv.value_column.clone(),
    };
    // Errors name the line; they should name the URL, not the scratch copy.
    let named = |e: ClvError| match e {
        ClvError::Data(m) => data(m.replace(&local.display().to_string(), &lv.transactions)),
        other => other,
    };
    let transactions = batch::read_csv(&local, &columns).map_err(named)?;
    if let Some((row, t)) = transactions
        .iter()
        .enumerate()
        .find(|(_, t)| t.date > not_after)
    {
        return Err(data(format!(
            "{}: line {}: {} {} lies after the run's day {not_after}; a transaction from the future is a data error (check the export's time zone and the {} column)",
            lv.transactions,
            row + 2,
            lv.date_column,
            t.date,
            lv.date_column
        )));
    }
    let (summary, scores) = batch::score(&transactions, None, lv.horizon, f64::from(lv.unit_days))?;
    let extension = if output.ends_with(".csv") {
        "csv"
    } else {
        "parquet"
    };
    let file = work_dir.join(format!("lifetime-value.{extension}"));
    batch::write(&file, &scores)?;
    let bytes = std::fs::read(&file).map_err(|e| data(format!("{}: {e}", file.display())))?;
    let digest = store::digest(&bytes);
    Store::open(output)
        .map_err(|e| data(e.to_string()))?
        .put("", bytes)
        .await
        .map_err(|e| data(crate::pipeline::error_chain(&e)))?;
    Ok(ScoreSummary {
        version: String::new(),
        rows: summary.customers as u64,
        output_url: output.to_string(),
        digest,
        data_version: None,
        fitted: Some(LifetimeFit {
            r: summary.bg_nbd.r,
            alpha: summary.bg_nbd.alpha,
            a: summary.bg_nbd.a,
            b: summary.bg_nbd.b,
            p: summary.gamma_gamma.p,
            q: summary.gamma_gamma.q,
            v: summary.gamma_gamma.v,
            period_end: summary.period_end.to_string(),
            total_clv: summary.total_clv,
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::datagen::transactions::{TransactionsSpec, write};

    fn spec(url: &str) -> ModelSpec {
        let yaml = format!(
            "task: CustomerLifetimeValue\nlifetimeValue: {{transactions: '{url}', horizon: 26}}\nbatchScoring: {{schedule: '0 5 * * *', output: 'file:///out'}}\n"
        );
        yaml_serde::from_str(&yaml).unwrap()
    }

    #[test]
    fn a_run_fits_scores_every_customer_and_refuses_a_transaction_from_the_future() {
        let dir = std::env::temp_dir().join(format!("leitwerk-clv-job-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let tx = TransactionsSpec {
            seed: 3,
            customers: 300,
            start,
            days: 364,
        };
        write(&tx, &dir).unwrap();
        let url = format!("file://{}/transactions.csv", dir.display());
        let output = format!("file://{}/out/clv.csv", dir.display());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let work = dir.join("work");
        let summary = runtime
            .block_on(run_lifetime_value(
                &spec(&url),
                &output,
                "2026-01-01",
                &work,
            ))
            .unwrap();
        // Every customer scored, with the fit in the summary (its accuracy against lifetimes'
        // own fit is trainer/tests/clv.rs's).
        let columns = Columns {
            customer: "customer_id".into(),
            date: "date".into(),
            value: "value".into(),
        };
        let transactions = batch::read_csv(&dir.join("transactions.csv"), &columns).unwrap();
        let customers: std::collections::BTreeSet<&str> =
            transactions.iter().map(|t| t.customer.as_str()).collect();
        assert_eq!(summary.rows as usize, customers.len());
        let fitted = summary.fitted.clone().unwrap();
        for x in [
            fitted.r,
            fitted.alpha,
            fitted.a,
            fitted.b,
            fitted.p,
            fitted.q,
            fitted.v,
        ] {
            assert!(x.is_finite() && x > 0.0, "{fitted:?}");
        }
        assert_eq!(
            fitted.period_end,
            transactions
                .iter()
                .map(|t| t.date)
                .max()
                .unwrap()
                .to_string()
        );
        let written = std::fs::read(dir.join("out/clv.csv")).unwrap();
        assert_eq!(store::digest(&written), summary.digest);
        let lines = String::from_utf8(written).unwrap().lines().count();
        assert_eq!(
            lines,
            customers.len() + 1,
            "a header and one line per customer"
        );

        // The run's day before the newest purchase: refused naming the URL and the line.
        let newest = transactions.iter().map(|t| t.date).max().unwrap();
        let day_before = (newest - chrono::Duration::days(1)).to_string();
        let err = runtime
            .block_on(run_lifetime_value(&spec(&url), &output, &day_before, &work))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&url) && err.contains("line ") && err.contains("lies after the run's day"),
            "{err}"
        );
        let missing = format!("file://{}/nothing.csv", dir.display());
        let err = runtime
            .block_on(run_lifetime_value(
                &spec(&missing),
                &output,
                "2026-01-01",
                &work,
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.lifetimeValue.transactions"), "{err}");
    }
}
