#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: a failed expectation fails the test

//! Customer lifetime value on the CDNOW data (Fader & Hardie's 1/10 sample: 2,357 customers'
//! transactions from 1997-01-01 to 1998-06-30, calibration up to 1997-09-30), as shipped in the
//! PyPI wheel lifetimes 0.11.3 (`tests/cdnow.sh`). The references are what lifetimes' own
//! `BetaGeoFitter` and `GammaGammaFitter` (penalizer 0) fit on the same files; each figure must
//! lie within 1 %.

use chrono::NaiveDate;
use leitwerk_trainer::clv::{self, BgNbd, Customer, GammaGamma, Transaction};

fn cdnow() -> std::path::PathBuf {
    leitwerk_testkit::provided("cdnow.sh").unwrap()
}

/// A CSV of `ID, x, t_x, T[, zbar]` rows.
fn summaries(file: &str) -> Vec<Customer> {
    let mut reader = csv::Reader::from_path(cdnow().join(file)).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let f = |i: usize| r.get(i).map_or(0.0, |v| v.parse::<f64>().unwrap());
            Customer {
                id: r[0].to_string(),
                frequency: f(1),
                recency: f(2),
                age: f(3),
                monetary: f(4),
            }
        })
        .collect()
}

fn within_1_percent(name: &str, ours: f64, reference: f64) {
    let off = (ours - reference).abs() / reference;
    println!(
        "{name}: {ours:.4} (lifetimes {reference}, {:.3} % off)",
        off * 100.0
    );
    assert!(off <= 0.01, "{name} = {ours}, lifetimes {reference}");
}

#[test]
fn bg_nbd_and_gamma_gamma_fit_cdnow_as_lifetimes_does() {
    let customers = summaries("cdnow_customers_summary.csv");
    assert_eq!(customers.len(), 2357);
    let m = BgNbd::fit(&customers).unwrap();
    within_1_percent("r", m.r, 0.2426);
    within_1_percent("alpha", m.alpha, 4.4135);
    within_1_percent("a", m.a, 0.7929);
    within_1_percent("b", m.b, 2.4258);
    for (i, reference) in [1.2259, 0.2033, 0.1948].into_iter().enumerate() {
        within_1_percent(
            &format!("E[purchases in 39 weeks] of customer {}", i + 1),
            m.expected_purchases(&customers[i], 39.0),
            reference,
        );
    }
    // A customer who bought often and recently is more likely alive than one who stopped.
    let active = Customer {
        id: "a".into(),
        frequency: 10.0,
        recency: 38.0,
        age: 39.0,
        monetary: 0.0,
    };
    let lapsed = Customer {
        recency: 5.0,
        ..active.clone()
    };
    assert!(m.probability_alive(&active) > 0.9 && m.probability_alive(&lapsed) < 0.1);

    let spend = summaries("cdnow_customers_summary_with_transactions.csv");
    let g = GammaGamma::fit(&spend).unwrap();
    within_1_percent("p", g.p, 6.2488);
    within_1_percent("q", g.q, 3.7446);
    within_1_percent("v", g.v, 15.4477);
}

#[test]
fn summaries_of_the_cdnow_transactions_equal_the_published_ones() {
    let text = std::fs::read_to_string(cdnow().join("CDNOW_sample.txt")).unwrap();
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let transactions: Vec<Transaction> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let date = NaiveDate::parse_from_str(f[2], "%Y%m%d").unwrap();
            (date <= end).then(|| Transaction {
                customer: f[1].trim_start_matches('0').to_string(),
                date,
                value: f[4].parse().unwrap(),
            })
        })
        .collect();
    let ours = clv::summarize(&transactions, end, 7.0).unwrap();
    let published = summaries("cdnow_customers_summary_with_transactions.csv");
    assert_eq!(ours.len(), published.len());
    let by_id: std::collections::HashMap<&str, &Customer> =
        ours.iter().map(|c| (c.id.as_str(), c)).collect();
    for p in &published {
        let o = by_id[p.id.as_str()];
        assert_eq!(o.frequency, p.frequency, "customer {}", p.id);
        assert!(
            (o.recency - p.recency).abs() < 0.01,
            "customer {}: {o:?} vs {p:?}",
            p.id
        );
        assert!(
            (o.age - p.age).abs() < 0.01,
            "customer {}: {o:?} vs {p:?}",
            p.id
        );
        assert!(
            (o.monetary - p.monetary).abs() < 0.01,
            "customer {}: {o:?} vs {p:?}",
            p.id
        );
    }
}

#[test]
fn fits_on_generated_transactions_recover_the_generating_parameters() {
    use leitwerk_trainer::datagen::transactions::{self, TransactionsSpec};
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let spec = TransactionsSpec {
        seed: 11,
        customers: 6000,
        start,
        days: 364,
    };
    let rows: Vec<Transaction> = transactions::generate(&spec)
        .unwrap()
        .into_iter()
        .map(|p| Transaction {
            customer: p.customer_id,
            date: p.date,
            value: p.value,
        })
        .collect();
    let end = start + chrono::Duration::days(363);
    let customers = clv::summarize(&rows, end, 7.0).unwrap();
    assert_eq!(customers.len(), 6000);
    let m = BgNbd::fit(&customers).unwrap();
    let g = GammaGamma::fit(&customers).unwrap();
    println!("BG/NBD {m:?}, Gamma-Gamma {g:?}");
    // Sampling noise with 6,000 customers: each within 25 % of the truth; the mean purchase
    // rate r/α and mean value p·v/(q−1), which the data pins down best, within 10 %.
    for (name, fitted, truth) in [
        ("r", m.r, transactions::R),
        ("alpha", m.alpha, transactions::ALPHA),
        ("a", m.a, transactions::A),
        ("b", m.b, transactions::B),
    ] {
        assert!(
            (fitted - truth).abs() / truth < 0.25,
            "{name} = {fitted}, generated with {truth}"
        );
    }
    let rate = (m.r / m.alpha, transactions::R / transactions::ALPHA);
    assert!(
        (rate.0 - rate.1).abs() / rate.1 < 0.1,
        "purchase rate {rate:?}"
    );
    let mean = |p: f64, q: f64, v: f64| p * v / (q - 1.0);
    let value = (
        mean(g.p, g.q, g.v),
        mean(transactions::P, transactions::Q, transactions::V),
    );
    assert!(
        (value.0 - value.1).abs() / value.1 < 0.1,
        "mean value {value:?}"
    );
}
