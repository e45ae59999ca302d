//! Materialization: point-in-time correctness on a data set built so that any leak changes the
//! result, quality rules that block publication, and the snapshot layout in the store.

#![allow(clippy::unwrap_used, clippy::panic)] // test fixtures: a failed setup step fails the test

use std::path::{Path, PathBuf};

use leitwerk_crds::FeatureSetSpec;
use leitwerk_trainer::materialize::{self, CUTOFF};
use leitwerk_trainer::pipeline;
use polars::prelude::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leitwerk-mat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rows after the cutoff (a static update, an event exactly at the cutoff with a huge amount,
/// an entity created later) exist only to be excluded: a leaking join changes every figure.
fn leak_trap(dir: &Path) {
    std::fs::write(
        dir.join("entities.csv"),
        "id,ts,segment,employees\n\
         A,2026-01-01T00:00:00,x,10\n\
         B,2026-01-01T00:00:00,y,20\n\
         C,2026-01-20T00:00:00,x,30\n\
         A,2026-01-16T00:00:00,z,10\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("events.csv"),
        "id,ts,kind,amount\n\
         A,2026-01-10T00:00:00,view,1\n\
         A,2026-01-14T23:59:59,view,2\n\
         A,2026-01-15T00:00:00,view,100\n\
         A,2026-01-16T00:00:00,buy,0\n\
         B,2026-01-05T00:00:00,view,5\n\
         B,2026-01-30T00:00:00,buy,0\n\
         B,2026-02-01T00:00:00,view,1\n",
    )
    .unwrap();
}

fn spec(dir: &Path, rules: &str) -> FeatureSetSpec {
    let yaml = format!(
        r#"
sources:
  - {{name: entities, format: Csv, file: {{path: {d}/entities.csv}}}}
  - {{name: events, format: Csv, file: {{path: {d}/events.csv}}}}
entityKey: id
eventTimestamp: ts
label: {{name: bought, source: events, kind: EventOccurs, filter: "kind == 'buy'", horizon: 7d}}
features:
  - {{name: segment, source: entities, aggregation: Static, column: segment, kind: Categorical}}
  - {{name: views, source: events, aggregation: Count, filter: "kind == 'view'", windows: [7d, 30d]}}
  - {{name: amount, source: events, aggregation: Sum, column: amount, filter: "kind == 'view'", windows: [30d]}}
  - {{name: last_amount, source: events, aggregation: Last, column: amount, filter: "kind == 'view'", windows: [30d]}}
cutoffs: {{dates: ["2026-01-15"]}}
qualityRules: {rules}
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

fn row(frame: &DataFrame, id: &str) -> Vec<AnyValue<'static>> {
    let ids = frame.column("id").unwrap().str().unwrap().clone();
    let i = ids
        .iter()
        .position(|v| v == Some(id))
        .unwrap_or_else(|| panic!("no row for {id}"));
    frame
        .get_row(i)
        .unwrap()
        .0
        .into_iter()
        .map(|v| v.into_static())
        .collect()
}

#[test]
fn features_use_only_rows_before_the_cutoff_and_labels_only_rows_after_it() {
    let dir = temp("pit");
    leak_trap(&dir);
    let m = materialize::materialize(&spec(&dir, "[]"), &paths(&dir)).unwrap();
    let names: Vec<String> = m
        .frame
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            CUTOFF,
            "segment",
            "views_7d",
            "views_30d",
            "amount_30d",
            "last_amount_30d",
            "bought"
        ]
    );
    assert_eq!(
        m.frame.height(),
        2,
        "C is created after the cutoff and takes no part"
    );
    let a = row(&m.frame, "A");
    assert_eq!(
        a[2],
        AnyValue::StringOwned("x".into()),
        "the static update after the cutoff must not leak"
    );
    assert_eq!(
        a[3..7],
        [
            AnyValue::Float64(2.0),
            AnyValue::Float64(2.0),
            AnyValue::Float64(3.0),
            AnyValue::Float64(2.0)
        ],
        "the view at the cutoff (amount 100) belongs to the future"
    );
    assert_eq!(
        a[7],
        AnyValue::Boolean(true),
        "bought within 7 days after the cutoff"
    );
    let b = row(&m.frame, "B");
    assert_eq!(
        b[3..7],
        [
            AnyValue::Float64(0.0),
            AnyValue::Float64(1.0),
            AnyValue::Float64(5.0),
            AnyValue::Float64(5.0)
        ],
        "windows: one view 10 days before"
    );
    assert_eq!(
        b[7],
        AnyValue::Boolean(false),
        "bought 15 days later: outside the horizon"
    );
    assert_eq!(
        materialize::rfc3339(m.data_until_ms),
        "2026-02-01T00:00:00Z"
    );
}

#[test]
fn a_cutoff_whose_label_window_is_not_observed_yet_is_skipped() {
    let dir = temp("skip");
    leak_trap(&dir);
    let mut s = spec(&dir, "[]");
    s.cutoffs.dates = Some(vec!["2026-01-15".into(), "2026-01-28".into()]);
    let m = materialize::materialize(&s, &paths(&dir)).unwrap();
    assert_eq!((m.cutoffs.len(), m.skipped_cutoffs), (1, 1));
}

#[test]
fn a_failing_quality_rule_blocks_publication_and_names_the_rule_and_figure() {
    let dir = temp("quality");
    leak_trap(&dir);
    let rules = "[{name: small-companies, column: employees, max: 15}, {name: present, column: employees, maxNullRatio: 0.1}, {name: missing-column, column: revenue}, {name: typed, column: segment, type: Number}, {name: outliers, column: amount, maxZScore: 2, maxOutlierRatio: 0.1}, {name: amounts-numeric, column: amount, type: Integer}]";
    let store = format!("file://{}/store", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime
        .block_on(pipeline::run_materialize(
            &spec(&dir, rules),
            "ns",
            "fs",
            &store,
            &dir,
        ))
        .unwrap();
    assert!(!summary.published);
    assert_eq!(summary.version, None);
    let failed: Vec<(&str, Option<f64>)> = summary
        .quality
        .iter()
        .filter(|q| !q.passed)
        .map(|q| (q.rule.as_str(), q.measured))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("small-companies", Some(30.0)),
            ("missing-column", None),
            ("typed", None),
            ("outliers", Some(1.0 / 7.0))
        ],
        "{:?}",
        summary.quality
    );
    assert!(
        summary
            .quality
            .iter()
            .any(|q| q.rule == "typed" && q.message.contains("expected Number"))
    );
    assert!(
        summary
            .quality
            .iter()
            .any(|q| q.rule == "amounts-numeric" && q.passed)
    );
    assert!(
        summary.quality[0]
            .message
            .contains("maximum of \"employees\" is 30"),
        "{:?}",
        summary.quality[0]
    );
    assert!(
        !dir.join("store/featuresets").exists(),
        "nothing is published"
    );
}

#[test]
fn a_published_snapshot_is_digest_named_with_manifest_and_statistics() {
    let dir = temp("publish");
    leak_trap(&dir);
    let store = format!("file://{}/store", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fs_spec = spec(
        &dir,
        "[{name: present, column: employees, maxNullRatio: 0.1}]",
    );
    let summary = runtime
        .block_on(pipeline::run_materialize(
            &fs_spec, "ns", "fs", &store, &dir,
        ))
        .unwrap();
    assert!(summary.published);
    let version = summary.version.clone().unwrap();
    assert_eq!(
        summary.digest.as_deref().map(|d| &d[7..19]),
        Some(version.as_str())
    );
    let snap = dir.join(format!("store/featuresets/ns/fs/{version}"));
    let parquet = std::fs::read(snap.join("features.parquet")).unwrap();
    assert_eq!(
        leitwerk_trainer::store::digest(&parquet),
        summary.digest.clone().unwrap(),
        "the name is the content digest"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("stats.json")).unwrap()).unwrap();
    let views = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "views_30d")
        .unwrap();
    assert_eq!(
        (views["count"].as_u64(), views["nulls"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        views["quantiles"][4][1].as_f64(),
        Some(1.5),
        "median of 1 and 2"
    );
    let segment = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "segment")
        .unwrap();
    assert_eq!(segment["topValues"].as_array().unwrap().len(), 2);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 2);
    assert_eq!(
        summary.location.unwrap(),
        format!("{store}/featuresets/ns/fs/{version}")
    );
    // The same data gives the same version.
    let again = runtime
        .block_on(pipeline::run_materialize(
            &fs_spec, "ns", "fs", &store, &dir,
        ))
        .unwrap();
    assert_eq!(again.version, Some(version));
}

#[test]
fn parquet_sources_give_the_same_table_as_csv() {
    let dir = temp("parquet");
    leak_trap(&dir);
    let mut events = LazyCsvReader::new(PlRefPath::new(
        dir.join("events.csv").to_string_lossy().as_ref(),
    ))
    .with_try_parse_dates(true)
    .finish()
    .unwrap()
    .collect()
    .unwrap();
    ParquetWriter::new(std::fs::File::create(dir.join("events.parquet")).unwrap())
        .finish(&mut events)
        .unwrap();
    let csv = materialize::materialize(&spec(&dir, "[]"), &paths(&dir)).unwrap();
    let mut s = spec(&dir, "[]");
    s.sources[1].format = leitwerk_crds::common::TableFormat::Parquet;
    let mut p = paths(&dir);
    p.insert("events".into(), dir.join("events.parquet"));
    let parquet = materialize::materialize(&s, &p).unwrap();
    assert!(
        csv.frame.equals_missing(&parquet.frame),
        "{}\n{}",
        csv.frame,
        parquet.frame
    );
}

#[test]
fn a_filter_on_a_missing_column_names_the_field() {
    let dir = temp("badfilter");
    leak_trap(&dir);
    let mut s = spec(&dir, "[]");
    s.features[1].filter = Some("kind == 'view' && page == '/x'".into());
    let err = materialize::materialize(&s, &paths(&dir))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.features[1].filter") && err.contains("\"page\""),
        "{err}"
    );
}

#[test]
fn text_in_a_column_read_as_numbers_fails_quality_naming_the_column_and_count() {
    let dir = temp("text-numbers");
    leak_trap(&dir);
    let events = std::fs::read_to_string(dir.join("events.csv"))
        .unwrap()
        .replace("view,5", "view,n/a")
        .replace("view,2", "view,two");
    std::fs::write(dir.join("events.csv"), events).unwrap();
    let m = materialize::materialize(&spec(&dir, "[]"), &paths(&dir)).unwrap();
    let failed: Vec<_> = m.quality.iter().filter(|q| !q.passed).collect();
    assert_eq!(failed.len(), 1, "{:?}", m.quality);
    assert_eq!(failed[0].rule, "numbers in events.amount");
    assert_eq!(failed[0].measured, Some(2.0));
    assert!(
        failed[0].message.contains(
            r#"column "amount" of source events: 2 value(s) are not numbers (first: "two")"#
        ),
        "{}",
        failed[0].message
    );
    // The clean data passes the built-in check.
    leak_trap(&dir);
    let clean = materialize::materialize(&spec(&dir, "[]"), &paths(&dir)).unwrap();
    assert!(
        clean.quality.iter().all(|q| q.passed),
        "{:?}",
        clean.quality
    );
}
