//! The running-totals plan (as-of joins) against the joined plan (every event joined to every
//! (entity, cutoff) row): on random events with nulls, ties, filters, every aggregation,
//! windows and every label kind, both give the same table.

#![allow(clippy::unwrap_used, clippy::panic)] // test fixtures: a failed setup step fails the test

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use leitwerk_crds::FeatureSetSpec;
use leitwerk_trainer::materialize::{self, CUTOFF, Plan};
use polars::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leitwerk-plans-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 40 entities over 60 days. A quarter of the events fall on midnight, exactly where a cutoff,
/// a window or a horizon begins or ends. Some events share their entity's timestamp with the event before
/// (a tie, with the same values, so any order of the tie gives the same last value); amounts
/// are missing now and then; entities arrive on different days.
fn data(dir: &Path, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut entities = String::from("id,ts,segment\n");
    let mut events = String::from("id,ts,kind,amount,channel\n");
    for e in 0..40 {
        let arrival = rng.random_range(0..30);
        writeln!(
            entities,
            "E{e},2026-01-{:02}T00:00:00,s{}",
            arrival + 1,
            e % 3
        )
        .unwrap();
        let mut t: i64 = i64::from(arrival) * 86_400;
        let mut last = String::new();
        for _ in 0..rng.random_range(0..60) {
            if last.is_empty() || rng.random::<f64>() > 0.1 {
                t += rng.random_range(1..200_000);
                if rng.random::<f64>() < 0.25 {
                    // Midnight: where cutoffs, windows and horizons begin and end.
                    t = (t / 86_400 + 1) * 86_400;
                }
                let kind = ["view", "buy", "mail"][rng.random_range(0..3)];
                let amount = if rng.random::<f64>() < 0.15 {
                    String::new()
                } else {
                    format!("{:.2}", rng.random::<f64>() * 100.0)
                };
                let channel = ["web", "app", "shop", "call"][rng.random_range(0..4)];
                last = format!("{kind},{amount},{channel}");
            }
            let at = chrono::DateTime::from_timestamp(1_767_225_600 + t, 0).unwrap();
            writeln!(events, "E{e},{},{last}", at.format("%Y-%m-%dT%H:%M:%S")).unwrap();
        }
    }
    std::fs::write(dir.join("entities.csv"), entities).unwrap();
    std::fs::write(dir.join("events.csv"), events).unwrap();
}

fn spec(dir: &Path, label: &str) -> FeatureSetSpec {
    let yaml = format!(
        r#"
sources:
  - {{name: entities, format: Csv, file: {{path: {d}/entities.csv}}}}
  - {{name: events, format: Csv, file: {{path: {d}/events.csv}}}}
entityKey: id
eventTimestamp: ts
label: {label}
features:
  - {{name: segment, source: entities, aggregation: Static, column: segment, kind: Categorical}}
  - {{name: events, source: events, aggregation: Count, windows: [3d, 10d, 40d]}}
  - {{name: all_events, source: events, aggregation: Count}}
  - {{name: views, source: events, aggregation: Count, filter: "kind == 'view'", windows: [3d, 10d]}}
  - {{name: spend, source: events, aggregation: Sum, column: amount, filter: "kind == 'buy'", windows: [10d, 40d]}}
  - {{name: spend_ever, source: events, aggregation: Sum, column: amount, filter: "kind == 'buy'"}}
  - {{name: mean_amount, source: events, aggregation: Mean, column: amount, windows: [3d, 10d]}}
  - {{name: mean_ever, source: events, aggregation: Mean, column: amount}}
  - {{name: max_amount, source: events, aggregation: Max, column: amount, windows: [10d]}}
  - {{name: min_amount, source: events, aggregation: Min, column: amount, filter: "kind != 'mail'", windows: [10d]}}
  - {{name: channels, source: events, aggregation: DistinctCount, column: channel, windows: [10d]}}
  - {{name: last_amount, source: events, aggregation: Last, column: amount, windows: [3d, 40d]}}
  - {{name: last_channel, source: events, aggregation: Last, column: channel, kind: Categorical, filter: "kind == 'view'", windows: [10d]}}
  - {{name: channel_now, source: events, aggregation: Static, column: channel, kind: Categorical}}
cutoffs: {{every: 5d, count: 8}}
"#,
        d = dir.display()
    );
    yaml_serde::from_str(&yaml).unwrap()
}

fn paths(dir: &Path) -> materialize::LocalPaths {
    [("entities", "entities.csv"), ("events", "events.csv")]
        .into_iter()
        .map(|(n, f)| (n.to_string(), dir.join(f)))
        .collect()
}

fn same_table(a: &DataFrame, b: &DataFrame, what: &str) {
    assert_eq!(a.get_column_names(), b.get_column_names(), "{what}");
    assert_eq!(a.height(), b.height(), "{what}");
    let sort = |f: &DataFrame| {
        f.sort([CUTOFF, "id"], SortMultipleOptions::default())
            .unwrap()
    };
    let (a, b) = (sort(a), sort(b));
    for (x, y) in a.columns().iter().zip(b.columns()) {
        let name = x.name();
        if x.dtype() == &DataType::Float64 {
            let (x, y) = (x.f64().unwrap(), y.f64().unwrap());
            for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                match (p, q) {
                    (Some(p), Some(q)) => assert!(
                        (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                        "{what}: {name} row {i}: {p} against {q}"
                    ),
                    (None, None) => {}
                    _ => panic!("{what}: {name} row {i}: {p:?} against {q:?}"),
                }
            }
        } else {
            assert!(
                x.as_materialized_series()
                    .equals_missing(y.as_materialized_series()),
                "{what}: column {name} differs"
            );
        }
    }
}

#[test]
fn running_totals_give_the_table_of_joining_every_event_for_every_aggregation_and_label() {
    let labels = [
        r#"{name: bought, source: events, kind: EventOccurs, filter: "kind == 'buy'", horizon: 7d}"#,
        r#"{name: revenue, source: events, kind: SumOfColumn, column: amount, filter: "kind == 'buy'", horizon: 10d}"#,
        r#"{name: next_amount, source: events, kind: LastValue, column: amount, horizon: 5d}"#,
    ];
    for seed in 0..3 {
        let dir = temp(&format!("seed{seed}"));
        data(&dir, seed);
        for label in labels {
            let s = spec(&dir, label);
            let running = materialize::materialize_with(&s, &paths(&dir), Plan::RunningTotals)
                .unwrap_or_else(|e| panic!("{e}"));
            let joined = materialize::materialize_with(&s, &paths(&dir), Plan::Joined).unwrap();
            assert!(
                running.frame.height() > 60,
                "too few rows to compare ({}, label {label})",
                running.frame.height()
            );
            assert_eq!(running.features, joined.features);
            same_table(
                &running.frame,
                &joined.frame,
                &format!("seed {seed}, label {label}"),
            );
        }
    }
}
