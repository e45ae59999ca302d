//! Customer lifetime value: BG/NBD for how often a customer buys and whether they are still
//! a customer (Fader, Hardie & Lee 2005, "Counting your customers the easy way"), Gamma-Gamma
//! for how much they spend per purchase (Fader, Hardie & Lee 2005, "RFM and CLV"), both fitted
//! by maximum likelihood on per-customer summaries of a transactions table.
//!
//! Summaries follow the models' definitions: purchases are counted per day; `frequency` is the
//! number of repeat purchase days, `recency` the time from the first to the last purchase,
//! `age` the time from the first purchase to the end of the calibration period (all in the
//! chosen unit, weeks by default), and `monetary` the mean value of the repeat purchases.

pub mod batch;
pub mod cli;
pub mod job;

use std::collections::BTreeMap;

use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;
use chrono::NaiveDate;
use statrs::function::gamma::ln_gamma;

/// Errors of fitting or summarising.
#[derive(Debug, thiserror::Error)]
pub enum ClvError {
    /// The data cannot support a fit.
    #[error("{0}")]
    Data(String),
    /// The optimiser failed.
    #[error("maximum-likelihood fit of {model} failed: {reason}")]
    Fit {
        /// BG/NBD or Gamma-Gamma.
        model: &'static str,
        /// What the optimiser said.
        reason: String,
    },
}

/// One customer's purchase history, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// Customer id.
    pub id: String,
    /// Repeat purchases (`x`).
    pub frequency: f64,
    /// Time from the first to the last purchase (`t_x`).
    pub recency: f64,
    /// Time from the first purchase to the end of the period (`T`).
    pub age: f64,
    /// Mean value of the repeat purchases (0 without any).
    pub monetary: f64,
}

/// One transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// Customer id.
    pub customer: String,
    /// Day of the purchase.
    pub date: NaiveDate,
    /// Value (revenue or margin).
    pub value: f64,
}

/// Summarises transactions up to and including `end` per customer, with times in units of
/// `unit_days` days (7: weeks). Purchases on one day count once, with their values summed.
/// Refuses negative values and dates after `end`, naming the first such row.
pub fn summarize(
    transactions: &[Transaction],
    end: NaiveDate,
    unit_days: f64,
) -> Result<Vec<Customer>, ClvError> {
    let mut days: BTreeMap<&str, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for (row, t) in transactions.iter().enumerate() {
        if !t.value.is_finite() || t.value < 0.0 {
            return Err(ClvError::Data(format!(
                "transaction {row} (customer {}) has value {}: values must be 0 or more (refunds belong in a separate column)",
                t.customer, t.value
            )));
        }
        if t.date > end {
            return Err(ClvError::Data(format!(
                "transaction {row} (customer {}) is dated {}, after the end of the period {end}",
                t.customer, t.date
            )));
        }
        *days
            .entry(&t.customer)
            .or_default()
            .entry(t.date)
            .or_default() += t.value;
    }
    let span = |a: NaiveDate, b: NaiveDate| (b - a).num_days() as f64 / unit_days;
    Ok(days
        .into_iter()
        .filter_map(|(id, by_day)| {
            let (&first, _) = by_day.first_key_value()?;
            let (&last, _) = by_day.last_key_value()?;
            let repeats: Vec<f64> = by_day.values().skip(1).copied().collect();
            Some(Customer {
                id: id.to_string(),
                frequency: repeats.len() as f64,
                recency: span(first, last),
                age: span(first, end),
                monetary: if repeats.is_empty() {
                    0.0
                } else {
                    repeats.iter().sum::<f64>() / repeats.len() as f64
                },
            })
        })
        .collect())
}

/// Gauss's hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, by its power series.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0_f64, 1.0_f64);
    for k in 0..100_000 {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-16 * sum.abs() {
            break;
        }
    }
    sum
}

/// Minimises `f` over log-parameters from `start` (all parameters positive).
fn minimise(
    model: &'static str,
    start: Vec<f64>,
    f: impl Fn(&[f64]) -> f64,
) -> Result<Vec<f64>, ClvError> {
    struct Cost<F>(F);
    impl<F: Fn(&[f64]) -> f64> CostFunction for Cost<F> {
        type Param = Vec<f64>;
        type Output = f64;
        fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
            let v = (self.0)(p);
            Ok(if v.is_finite() { v } else { f64::MAX })
        }
    }
    let fail = |e: argmin::core::Error| ClvError::Fit {
        model,
        reason: e.to_string(),
    };
    // A simplex of steps of 0.5 in log space around the start.
    let mut simplex = vec![start.clone()];
    for i in 0..start.len() {
        let mut v = start.clone();
        v[i] += 0.5;
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(fail)?;
    let result = Executor::new(Cost(f), solver)
        .configure(|state| state.max_iters(20_000))
        .run()
        .map_err(fail)?;
    let best = result.state().best_param.clone().ok_or(ClvError::Fit {
        model,
        reason: "no parameters".into(),
    })?;
    Ok(best.iter().map(|v| v.exp()).collect())
}

/// BG/NBD: purchases follow a Poisson process with rate λ ~ Gamma(r, α) across customers, and
/// after each purchase a customer drops out with probability p ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BgNbd {
    /// Shape of the purchase rate's Gamma distribution.
    pub r: f64,
    /// Scale (rate) of the purchase rate's Gamma distribution.
    pub alpha: f64,
    /// Beta parameter a of the dropout probability.
    pub a: f64,
    /// Beta parameter b of the dropout probability.
    pub b: f64,
}

impl BgNbd {
    /// The log-likelihood of one customer's (x, t_x, T).
    pub fn log_likelihood(&self, c: &Customer) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let (x, tx, t) = (c.frequency, c.recency, c.age);
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + tx).ln();
            let m = a3.max(a4);
            a1 + a2 + m + ((a3 - m).exp() + (a4 - m).exp()).ln()
        } else {
            a1 + a2 + a3
        }
    }

    /// Maximum-likelihood fit over the customers (at least 2, with at least one repeat
    /// purchase among them).
    pub fn fit(customers: &[Customer]) -> Result<Self, ClvError> {
        if customers.len() < 2 || customers.iter().all(|c| c.frequency == 0.0) {
            return Err(ClvError::Data(format!(
                "BG/NBD needs customers with repeat purchases; {} customer(s), {} with a repeat purchase",
                customers.len(),
                customers.iter().filter(|c| c.frequency > 0.0).count()
            )));
        }
        let p = minimise("BG/NBD", vec![0.0; 4], |v| {
            let m = Self {
                r: v[0].exp(),
                alpha: v[1].exp(),
                a: v[2].exp(),
                b: v[3].exp(),
            };
            -customers.iter().map(|c| m.log_likelihood(c)).sum::<f64>()
        })?;
        Ok(Self {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        })
    }

    /// The probability that the customer is still active at the end of the period.
    pub fn probability_alive(&self, c: &Customer) -> f64 {
        if c.frequency == 0.0 {
            return 1.0;
        }
        let Self { r, alpha, a, b } = *self;
        let (x, tx, t) = (c.frequency, c.recency, c.age);
        1.0 / (1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + tx)).powf(r + x))
    }

    /// Expected purchases in the next `horizon` units, given the customer's history.
    pub fn expected_purchases(&self, c: &Customer, horizon: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let (x, tx, t) = (c.frequency, c.recency, c.age);
        let hyp = hyp2f1(
            r + x,
            b + x,
            a + b + x - 1.0,
            horizon / (alpha + t + horizon),
        );
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * hyp;
        let alive = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + tx)).powf(r + x)
        } else {
            1.0
        };
        first * second / alive
    }
}

/// Gamma-Gamma: a customer's purchase values are Gamma(p, ν) around their own mean, with
/// ν ~ Gamma(q, v) across customers; independent of how often they buy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GammaGamma {
    /// Shape of a purchase's value.
    pub p: f64,
    /// Shape of the customers' spend rate.
    pub q: f64,
    /// Scale of the customers' spend rate.
    pub v: f64,
}

impl GammaGamma {
    /// The log-likelihood of one repeat customer's mean value `m` over `x` purchases.
    pub fn log_likelihood(&self, c: &Customer) -> f64 {
        let Self { p, q, v } = *self;
        let (x, m) = (c.frequency, c.monetary);
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * v.ln()
            + (p * x - 1.0) * m.ln()
            + (p * x) * x.ln()
            - (p * x + q) * (x * m + v).ln()
    }

    /// Maximum-likelihood fit over the customers with repeat purchases of positive value.
    pub fn fit(customers: &[Customer]) -> Result<Self, ClvError> {
        let repeat: Vec<&Customer> = customers
            .iter()
            .filter(|c| c.frequency > 0.0 && c.monetary > 0.0)
            .collect();
        if repeat.len() < 2 {
            return Err(ClvError::Data(format!(
                "Gamma-Gamma needs at least 2 customers with repeat purchases of positive value; found {}",
                repeat.len()
            )));
        }
        let p = minimise("Gamma-Gamma", vec![0.0; 3], |w| {
            let m = Self {
                p: w[0].exp(),
                q: w[1].exp(),
                v: w[2].exp(),
            };
            -repeat.iter().map(|c| m.log_likelihood(c)).sum::<f64>()
        })?;
        Ok(Self {
            p: p[0],
            q: p[1],
            v: p[2],
        })
    }

    /// Expected mean value of the customer's future purchases (the population mean for a
    /// customer without repeat purchases).
    pub fn expected_value(&self, c: &Customer) -> f64 {
        let Self { p, q, v } = *self;
        if c.frequency > 0.0 && c.monetary > 0.0 {
            p * (v + c.frequency * c.monetary) / (p * c.frequency + q - 1.0)
        } else {
            p * v / (q - 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z)/z
        for z in [0.1_f64, 0.5, 0.9] {
            let exact = -(1.0 - z).ln() / z;
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - exact).abs() < 1e-12, "{z}");
        }
        // ₂F₁(a, b; b; z) = (1 − z)^−a
        assert!((hyp2f1(2.5, 3.0, 3.0, 0.3) - 0.7_f64.powf(-2.5)).abs() < 1e-12);
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn summaries_count_purchase_days_and_refuse_bad_rows() {
        let t = |c: &str, d: &str, v: f64| Transaction {
            customer: c.into(),
            date: day(d),
            value: v,
        };
        let rows = vec![
            t("a", "2026-01-01", 10.0),
            t("a", "2026-01-15", 20.0),
            t("a", "2026-01-15", 5.0),
            t("a", "2026-01-29", 30.0),
            t("b", "2026-02-12", 7.0),
        ];
        let s = summarize(&rows, day("2026-03-12"), 7.0).unwrap();
        assert_eq!(s[0].frequency, 2.0);
        assert_eq!((s[0].recency, s[0].age), (4.0, 10.0));
        assert_eq!(s[0].monetary, 27.5);
        assert_eq!((s[1].frequency, s[1].age, s[1].monetary), (0.0, 4.0, 0.0));
        let err = summarize(&[t("c", "2026-01-01", -3.0)], day("2026-03-12"), 7.0).unwrap_err();
        assert!(err.to_string().contains("value -3"), "{err}");
        let err = summarize(&[t("c", "2026-04-01", 3.0)], day("2026-03-12"), 7.0).unwrap_err();
        assert!(err.to_string().contains("after the end"), "{err}");
    }
}
