//! Purchases of a shop's customers, drawn from the customer-lifetime-value models themselves:
//! each customer buys at a rate λ ~ Gamma([`R`], [`ALPHA`]) per week, drops out after each
//! repeat purchase with probability p ~ Beta([`A`], [`B`]) (BG/NBD), and spends Gamma(
//! [`P`], ν) per purchase with ν ~ Gamma([`Q`], [`V`]) (Gamma-Gamma). A fit on this data
//! should recover these constants; `transactions.csv` has `customer_id,date,value`.

use chrono::{Duration, NaiveDate};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Beta, Distribution, Gamma};
use serde::Serialize;

use super::Error;

/// Shape of the weekly purchase rate's Gamma distribution.
pub const R: f64 = 0.6;
/// Rate of the weekly purchase rate's Gamma distribution (mean rate R/ALPHA = 0.1 a week).
pub const ALPHA: f64 = 6.0;
/// Beta parameter a of the dropout probability.
pub const A: f64 = 0.8;
/// Beta parameter b of the dropout probability (mean dropout A/(A+B) ≈ 0.21).
pub const B: f64 = 3.0;
/// Shape of a purchase's value.
pub const P: f64 = 6.0;
/// Shape of the customers' spend rate.
pub const Q: f64 = 4.0;
/// Scale of the customers' spend rate (mean purchase value P·V/(Q−1) = 30).
pub const V: f64 = 15.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionsSpec {
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of customers.
    pub customers: usize,
    /// First day of the period.
    pub start: NaiveDate,
    /// Days covered; customers make their first purchase in the first quarter of them.
    pub days: i64,
}

/// One purchase (`transactions.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Purchase {
    /// Customer id, e.g. `K000042`.
    pub customer_id: String,
    /// Day of the purchase.
    pub date: NaiveDate,
    /// Value in currency units, two decimals.
    pub value: f64,
}

fn invalid(problem: String) -> Error {
    Error::Invalid {
        field: "--days",
        problem,
    }
}

/// Draws the purchases, ordered by customer and date.
pub fn generate(spec: &TransactionsSpec) -> Result<Vec<Purchase>, Error> {
    if !(28..=3650).contains(&spec.days) {
        return Err(invalid(format!("{} is outside 28–3650", spec.days)));
    }
    let rate = Gamma::new(R, 1.0 / ALPHA).map_err(|e| invalid(e.to_string()))?;
    let dropout = Beta::new(A, B).map_err(|e| invalid(e.to_string()))?;
    let spend = Gamma::new(Q, 1.0 / V).map_err(|e| invalid(e.to_string()))?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let weeks = spec.days as f64 / 7.0;
    let mut out = Vec::new();
    for i in 0..spec.customers {
        let customer_id = format!("K{:06}", i + 1);
        let lambda: f64 = rate.sample(&mut rng);
        let p: f64 = dropout.sample(&mut rng);
        let nu: f64 = spend.sample(&mut rng);
        let value = Gamma::new(P, 1.0 / nu).map_err(|e| invalid(e.to_string()))?;
        let buy = |at: f64, rng: &mut StdRng| Purchase {
            customer_id: customer_id.clone(),
            date: spec.start + Duration::days((at * 7.0).floor() as i64),
            value: (value.sample(rng) * 100.0).round() / 100.0,
        };
        let mut at = rng.random_range(0.0..weeks / 4.0);
        out.push(buy(at, &mut rng));
        loop {
            // Exponential waiting time with rate λ.
            at += -rng.random_range(f64::EPSILON..1.0).ln() / lambda.max(1e-9);
            if at >= weeks {
                break;
            }
            out.push(buy(at, &mut rng));
            if rng.random::<f64>() < p {
                break;
            }
        }
    }
    Ok(out)
}

/// Writes `transactions.csv` into `dir` and returns the number of rows.
pub fn write(spec: &TransactionsSpec, dir: &std::path::Path) -> Result<usize, Error> {
    let rows = generate(spec)?;
    super::write_csv(&dir.join("transactions.csv"), &rows)?;
    Ok(rows.len())
}
