//! A deterministic, seeded generator of realistic marketing data with known effects, for the
//! examples, tests and benchmarks: leads with firmographics, web and e-mail events and
//! conversions (`leads`), and subscribers with monthly snapshots and cancellations (`churn`).
//!
//! The same seed gives byte-identical files (for this `Cargo.lock`). The effects that drive
//! outcomes are public constants, so a test can check that a model recovers them.

pub mod churn;
pub mod leads;
pub mod transactions;
pub mod wa_churn;

use std::{io::Write, path::Path};

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Poisson};

/// Errors of writing generated data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be written.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: String,
        /// The CSV or I/O error.
        #[source]
        source: csv::Error,
    },
    /// A file could not be created.
    #[error("failed to create {path}")]
    Create {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A generator setting is out of range.
    #[error("invalid setting {field}: {problem}")]
    Invalid {
        /// The setting, as named on the command line.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Picks an item by weight.
pub(crate) fn pick<'a, R: Rng>(rng: &mut R, items: &'a [(&'a str, f64)]) -> &'a str {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut u = rng.random::<f64>() * total;
    for (item, weight) in items {
        if u < *weight {
            return item;
        }
        u -= weight;
    }
    items.last().map(|(item, _)| *item).unwrap_or_default()
}

/// A Poisson draw; 0 for a rate that is not positive.
pub(crate) fn poisson<R: Rng>(rng: &mut R, rate: f64) -> u64 {
    match Poisson::new(rate) {
        Ok(p) => p.sample(rng) as u64,
        Err(_) => 0,
    }
}

/// A standard normal draw (Box–Muller, so it needs nothing but uniform draws).
pub(crate) fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Writes serializable rows as CSV with a header.
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), Error> {
    let display = path.display().to_string();
    let file = std::fs::File::create(path).map_err(|source| Error::Create {
        path: display.clone(),
        source,
    })?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
    for row in rows {
        writer.serialize(row).map_err(|source| Error::Write {
            path: display.clone(),
            source,
        })?;
    }
    writer.flush().map_err(|source| Error::Create {
        path: display.clone(),
        source,
    })?;
    let mut inner = writer.into_inner().map_err(|e| Error::Create {
        path: display.clone(),
        source: e.into_error(),
    })?;
    inner.flush().map_err(|source| Error::Create {
        path: display,
        source,
    })
}
