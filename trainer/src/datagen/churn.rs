//! Subscribers of a telecom-style service: monthly snapshots of contract and charges, and
//! cancellations.
//!
//! The monthly cancellation probability is
//! `sigmoid(BASE + MONTH_TO_MONTH·[month-to-month] + FIBER·[fiber optic] + ELECTRONIC_CHECK·[electronic
//! check] + TENURE·tenure_months)`, the pattern of the public Telco churn data: short contracts,
//! fibre and electronic checks churn more, long tenure churns less.

use chrono::{Duration, NaiveDate, NaiveTime};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::{Error, pick, sigmoid};

/// Log-odds of cancelling in a month for a two-year DSL customer paying by card, tenure 0.
pub const BASE_LOG_ODDS: f64 = -4.2;
/// Log-odds added by a month-to-month contract.
pub const MONTH_TO_MONTH_EFFECT: f64 = 1.8;
/// Log-odds added by fibre-optic internet.
pub const FIBER_EFFECT: f64 = 0.5;
/// Log-odds added by paying with an electronic check.
pub const ELECTRONIC_CHECK_EFFECT: f64 = 0.4;
/// Log-odds added per month of tenure.
pub const TENURE_EFFECT: f64 = -0.03;

const CONTRACTS: [(&str, f64); 3] = [
    ("Month-to-month", 0.55),
    ("One year", 0.21),
    ("Two year", 0.24),
];
const INTERNET: [(&str, f64); 3] = [("DSL", 0.34), ("Fiber optic", 0.44), ("No", 0.22)];
const PAYMENT: [(&str, f64); 4] = [
    ("Electronic check", 0.34),
    ("Mailed check", 0.23),
    ("Bank transfer (automatic)", 0.22),
    ("Credit card (automatic)", 0.21),
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnSpec {
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of customers.
    pub customers: usize,
    /// First month of the period (its first day).
    pub start: NaiveDate,
    /// Length of the period in months.
    pub months: i64,
}

/// A monthly snapshot of a customer (`customers.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Customer id, e.g. `C000042`.
    pub customer_id: String,
    /// Time of the snapshot (first of the month).
    pub ts: chrono::NaiveDateTime,
    /// Months since sign-up.
    pub tenure: i64,
    /// Contract type.
    pub contract: String,
    /// Internet service.
    pub internet_service: String,
    /// Payment method.
    pub payment_method: String,
    /// Monthly charges.
    pub monthly_charges: f64,
    /// Charges so far.
    pub total_charges: f64,
}

/// A cancellation (`cancellations.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cancellation {
    /// Customer id.
    pub customer_id: String,
    /// When the customer cancelled.
    pub ts: chrono::NaiveDateTime,
}

/// The generated tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Churn {
    /// Monthly snapshots, by customer then time.
    pub customers: Vec<Snapshot>,
    /// Cancellations.
    pub cancellations: Vec<Cancellation>,
}

/// The monthly cancellation probability of a customer.
pub fn cancel_probability(contract: &str, internet: &str, payment: &str, tenure: i64) -> f64 {
    sigmoid(
        BASE_LOG_ODDS
            + if contract == "Month-to-month" {
                MONTH_TO_MONTH_EFFECT
            } else {
                0.0
            }
            + if internet == "Fiber optic" {
                FIBER_EFFECT
            } else {
                0.0
            }
            + if payment == "Electronic check" {
                ELECTRONIC_CHECK_EFFECT
            } else {
                0.0
            }
            + TENURE_EFFECT * tenure as f64,
    )
}

fn month_start(start: NaiveDate, months: i64) -> Option<chrono::NaiveDateTime> {
    start
        .checked_add_months(chrono::Months::new(u32::try_from(months).ok()?))
        .map(|d| d.and_time(NaiveTime::MIN))
}

/// Generates customers, their monthly snapshots and cancellations.
pub fn generate(spec: &ChurnSpec) -> Result<Churn, Error> {
    if !(3..=600).contains(&spec.months) {
        return Err(Error::Invalid {
            field: "--months",
            problem: format!("{} is outside 3–600", spec.months),
        });
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Churn::default();
    for i in 0..spec.customers {
        let customer_id = format!("C{:06}", i + 1);
        let contract = pick(&mut rng, &CONTRACTS).to_string();
        let internet = pick(&mut rng, &INTERNET).to_string();
        let payment = pick(&mut rng, &PAYMENT).to_string();
        let base_charge = match internet.as_str() {
            "Fiber optic" => 70.0,
            "DSL" => 45.0,
            _ => 20.0,
        };
        let monthly_charges = ((base_charge + 30.0 * rng.random::<f64>()) * 100.0).round() / 100.0;
        // Customers signed up before the period with a tenure of up to six years.
        let first_tenure: i64 = rng.random_range(0..72);
        let mut total = monthly_charges * first_tenure as f64;
        for (month, tenure) in (0..spec.months).zip(first_tenure..) {
            let Some(ts) = month_start(spec.start, month) else {
                break;
            };
            out.customers.push(Snapshot {
                customer_id: customer_id.clone(),
                ts,
                tenure,
                contract: contract.clone(),
                internet_service: internet.clone(),
                payment_method: payment.clone(),
                monthly_charges,
                total_charges: (total * 100.0).round() / 100.0,
            });
            if rng.random_bool(cancel_probability(&contract, &internet, &payment, tenure)) {
                let day = rng.random_range(1..28);
                out.cancellations.push(Cancellation {
                    customer_id: customer_id.clone(),
                    ts: ts + Duration::days(day),
                });
                break;
            }
            total += monthly_charges;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn spec(seed: u64) -> ChurnSpec {
        ChurnSpec {
            seed,
            customers: 4000,
            start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            months: 18,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        assert_eq!(generate(&spec(5)).unwrap(), generate(&spec(5)).unwrap());
        assert_ne!(
            generate(&spec(5)).unwrap().cancellations,
            generate(&spec(6)).unwrap().cancellations
        );
    }

    #[test]
    fn month_to_month_contracts_churn_more_and_nobody_appears_after_cancelling() {
        let data = generate(&spec(2)).unwrap();
        let cancelled: HashMap<&str, chrono::NaiveDateTime> = data
            .cancellations
            .iter()
            .map(|c| (c.customer_id.as_str(), c.ts))
            .collect();
        for s in &data.customers {
            if let Some(at) = cancelled.get(s.customer_id.as_str()) {
                assert!(s.ts <= *at, "snapshot after cancellation: {s:?}");
            }
        }
        let mut by_contract: HashMap<&str, (usize, usize)> = HashMap::new();
        for s in data
            .customers
            .iter()
            .filter(|s| s.ts == month_start(spec(2).start, 0).unwrap())
        {
            let entry = by_contract.entry(s.contract.as_str()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(cancelled.contains_key(s.customer_id.as_str()));
        }
        let rate = |c: &str| by_contract[c].1 as f64 / by_contract[c].0 as f64;
        assert!(
            rate("Month-to-month") > 2.0 * rate("Two year"),
            "{by_contract:?}"
        );
        let overall = data.cancellations.len() as f64 / 4000.0;
        assert!((0.1..0.6).contains(&overall), "overall churn {overall}");
    }

    #[test]
    fn charges_add_up_over_tenure() {
        let data = generate(&spec(9)).unwrap();
        for pair in data
            .customers
            .windows(2)
            .filter(|w| w[0].customer_id == w[1].customer_id)
        {
            assert_eq!(pair[1].tenure, pair[0].tenure + 1);
            assert!(
                (pair[1].total_charges - pair[0].total_charges - pair[0].monthly_charges).abs()
                    < 0.011,
                "{pair:?}"
            );
        }
    }
}
