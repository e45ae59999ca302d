//! `leitwerk-trainer materialize`: a FeatureSet spec plus its sources become one training table
//! with a row per (entity, cutoff), computed with polars' lazy API.
//!
//! Point-in-time correctness: every feature for cutoff `t` is computed from rows with
//! timestamp `< t` only, and the label from rows in `[t, t + horizon)`. Cutoffs whose horizon
//! reaches past the newest event are skipped (their labels are not observed yet). The first
//! source lists the entities: an entity takes part in a cutoff once its first row is older than
//! the cutoff.
//!
//! Count, Sum, Mean, Last, Static and the label come from running totals and as-of joins
//! (`window`), linear in events plus table rows; Min, Max and DistinctCount join events to the
//! (entity, cutoff) rows they precede. [`Plan::Joined`] computes everything the second way.
//!
//! Feature columns are named `<feature>_<window>` (`page_views_7d`) or `<feature>` for Static
//! features and features without windows. The table also has the entity key and `cutoff`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use leitwerk_crds::common::{TableFormat, parse_duration};
use leitwerk_crds::feature_set::{
    Aggregation, ColumnType, DataSource, FeatureKind, FeatureSetSpec, LabelKind, QualityRule,
};
use leitwerk_crds::filter::{CompareOp, Filter, Literal as FilterLiteral};
use leitwerk_crds::summary::QualityResult;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// Name of the cutoff column in the training table.
pub const CUTOFF: &str = "cutoff";
const TS: &str = "__ts";
const FIRST: &str = "__first";
const ID: &str = "__id";

/// Errors of materialization; each names the part of the spec or the source involved.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// The spec cannot be computed as written.
    #[error("{field}: {message}")]
    Spec {
        /// The spec field, e.g. `spec.features[2].column`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A source could not be read or computed.
    #[error("source {source_name}: {message}")]
    Source {
        /// The source's name.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// polars failed while computing the table.
    #[error("computing the feature table failed")]
    Compute(#[from] PolarsError),
}

fn spec_err(field: impl Into<String>, message: impl Into<String>) -> MaterializeError {
    MaterializeError::Spec {
        field: field.into(),
        message: message.into(),
    }
}

/// One feature column of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureColumn {
    /// Column name.
    pub name: String,
    /// Numeric or Categorical.
    pub kind: FeatureKind,
}

/// The computed table and what was measured on the way.
#[derive(Debug)]
pub struct Materialized {
    /// key, `cutoff`, features…, label.
    pub frame: DataFrame,
    /// The feature columns, in order.
    pub features: Vec<FeatureColumn>,
    /// Quality results, failed first.
    pub quality: Vec<QualityResult>,
    /// Newest label-source timestamp (ms since the epoch).
    pub data_until_ms: i64,
    /// The cutoffs used (ms), oldest first.
    pub cutoffs: Vec<i64>,
    /// Cutoffs dropped because their horizon is not observed yet.
    pub skipped_cutoffs: usize,
}

/// Where a source's files are on this machine (object-store sources are downloaded first).
pub type LocalPaths = BTreeMap<String, PathBuf>;

mod expr;
mod joined;
mod load;
mod quality;
mod statistics;
mod window;

use expr::*;
pub use expr::{cutoffs, filter_expr};
use load::*;
use quality::*;
pub use statistics::{FeatureStats, quantile, statistics};
use window::{RunningTotals, by_running_totals};

/// Computes the training table of a FeatureSet: load the sources, check quality, build the
/// spine of (entity, cutoff) rows, join the windowed features per (source, filter) group, join
/// the label from `[cutoff, cutoff + horizon)`, fill the empty aggregations.
///
/// One long function on purpose: every step builds on the same lazy frame and on the column
/// names the previous steps chose, and the point-in-time rules (features strictly before the
/// cutoff, the label only after it) are easiest to audit when read top to bottom in one place.
pub fn materialize(
    spec: &FeatureSetSpec,
    paths: &LocalPaths,
) -> Result<Materialized, MaterializeError> {
    materialize_with(spec, paths, Plan::default())
}

/// How the windowed aggregations are computed; both plans give the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    /// Count, Sum, Mean, Last, Static and the label from running totals looked up by as-of
    /// joins (see `window`): linear in events plus table rows. Min, Max and DistinctCount
    /// join their events to the (entity, cutoff) rows.
    #[default]
    RunningTotals,
    /// Every aggregation by joining events to the (entity, cutoff) rows they precede and
    /// grouping (events × cutoffs rows): the reference the running totals are tested against.
    Joined,
}

/// [`materialize`] with a chosen [`Plan`].
pub fn materialize_with(
    spec: &FeatureSetSpec,
    paths: &LocalPaths,
    plan: Plan,
) -> Result<Materialized, MaterializeError> {
    let sources = load(spec, paths)?;
    let key = spec.entity_key.as_str();
    let source = |name: &str, field: &str| {
        sources.get(name).ok_or_else(|| {
            spec_err(
                field,
                format!(
                    "no source is named {name:?}; sources: {}",
                    sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    };

    let mut quality = check_quality(&spec.quality_rules, &sources)?;
    quality.extend(numbers_where_numbers_are_read(spec, &sources)?);

    let label_src = source(&spec.label.source, "spec.label.source")?;
    let until = label_src
        .lf
        .clone()
        .select([col(TS).max()])
        .collect()?
        .column(TS)?
        .i64()?
        .get(0)
        .ok_or_else(|| MaterializeError::Source {
            source_name: spec.label.source.clone(),
            message: "has no rows".into(),
        })?;
    if quality
        .iter()
        .any(|q| !q.passed && q.rule.starts_with("numbers in "))
    {
        // Aggregating text as numbers would fail or null it out: report, compute nothing.
        return Ok(Materialized {
            frame: DataFrame::empty(),
            features: Vec::new(),
            quality,
            data_until_ms: until,
            cutoffs: Vec::new(),
            skipped_cutoffs: 0,
        });
    }
    let (cutoff_list, skipped) = cutoffs(spec, until)?;
    if cutoff_list.is_empty() {
        return Err(spec_err(
            "spec.cutoffs",
            format!(
                "no cutoff has a fully observed label window ({} of data after the cutoff); the newest event is at {}",
                spec.label.horizon,
                rfc3339(until)
            ),
        ));
    }

    let first = spec
        .sources
        .first()
        .ok_or_else(|| spec_err("spec.sources", "at least one source is needed"))?;
    // Every entity with its first time and a dense number (`__id`): the as-of joins match
    // numbers, which is much faster than matching the keys' text.
    let entities = sources[&first.name]
        .lf
        .clone()
        .group_by([col(key)])
        .agg([col(TS).min().alias(FIRST)])
        .collect()?
        .with_row_index(ID.into(), None)?
        .lazy();
    let ids = entities.clone().select([col(key), col(ID)]);
    let cutoff_frame =
        DataFrame::new_infer_height(vec![Column::new(CUTOFF.into(), cutoff_list.clone())])?.lazy();
    let spine = entities
        .cross_join(cutoff_frame, None)
        .filter(col(FIRST).lt(col(CUTOFF)))
        .select([col(key), col(ID), col(CUTOFF)]);

    // Group features by (source, filter): one pass over the events per group.
    let mut groups: BTreeMap<(String, Option<String>), Vec<usize>> = BTreeMap::new();
    for (i, f) in spec.features.iter().enumerate() {
        groups
            .entry((f.source.clone(), f.filter.clone()))
            .or_default()
            .push(i);
    }
    // The running-totals plan looks rows up by as-of joins, which need the table sorted by
    // the cutoff and keep that order; the joined plan's parts are hash-joined afterwards.
    let mut table = spine.clone().sort([CUTOFF], SortMultipleOptions::default());
    let mut running_columns: Vec<Expr> = Vec::new();
    let mut parts: Vec<LazyFrame> = Vec::new();
    let mut columns: Vec<FeatureColumn> = Vec::new();
    let mut fill_zero: Vec<String> = Vec::new();
    for (g, ((src_name, filter), members)) in groups.iter().enumerate() {
        let first_field = format!("spec.features[{}]", members[0]);
        let src = source(src_name, &format!("{first_field}.source"))?;
        let mut events = src.lf.clone();
        if let Some(pred) = parsed_filter(
            filter.as_ref(),
            &format!("{first_field}.filter"),
            &src.schema,
            src_name,
        )? {
            events = events.filter(pred);
        }
        let mut running = RunningTotals::new(format!("__g{g}"));
        let mut aggs = Vec::new();
        for &i in members {
            let f = &spec.features[i];
            let field = format!("spec.features[{i}]");
            if let Some(c) = &f.column
                && src.schema.get(c).is_none()
            {
                return Err(spec_err(
                    format!("{field}.column"),
                    format!("column {c:?} is not in source {src_name}"),
                ));
            }
            if f.column.is_none() && !matches!(f.aggregation, Aggregation::Count) {
                return Err(spec_err(
                    format!("{field}.column"),
                    format!("{:?} needs a column", f.aggregation),
                ));
            }
            let windows: Vec<Option<&String>> =
                if f.windows.is_empty() || f.aggregation == Aggregation::Static {
                    vec![None]
                } else {
                    f.windows.iter().map(Some).collect()
                };
            let by_running = plan == Plan::RunningTotals && by_running_totals(f.aggregation);
            for w in windows {
                let (name, window_ms) = match w {
                    Some(w) => (
                        format!("{}_{w}", f.name),
                        Some(duration_ms(w, &format!("{field}.windows"))?),
                    ),
                    None => (f.name.clone(), None),
                };
                let kind = if f.aggregation == Aggregation::Count
                    || f.aggregation == Aggregation::DistinctCount
                {
                    FeatureKind::Numeric
                } else {
                    f.kind
                };
                let expr = if by_running {
                    running.aggregate(
                        f.aggregation,
                        f.column.as_deref(),
                        window_ms.map(|ms| -ms),
                        0,
                    )
                } else {
                    let in_window = match window_ms {
                        Some(ms) => col(TS).gt_eq(col(CUTOFF) - lit(ms)),
                        None => lit(true),
                    };
                    agg_expr(f.aggregation, f.column.as_deref(), in_window)
                };
                let expr = match kind {
                    FeatureKind::Numeric => expr.cast(DataType::Float64),
                    FeatureKind::Categorical => expr.cast(DataType::String),
                }
                .alias(name.as_str());
                if by_running {
                    running_columns.push(expr);
                } else {
                    aggs.push(expr);
                }
                if zero_when_empty(f.aggregation) {
                    fill_zero.push(name.clone());
                }
                columns.push(FeatureColumn { name, kind });
            }
        }
        table = running.join(table, events.clone(), key, &ids)?;
        if !aggs.is_empty() {
            parts.push(joined::grouped(
                &spine,
                events,
                key,
                col(TS).lt(col(CUTOFF)),
                aggs,
            ));
        }
    }

    // The label, from [cutoff, cutoff + horizon).
    let label = &spec.label;
    let horizon = duration_ms(&label.horizon, "spec.label.horizon")?;
    let mut events = label_src.lf.clone();
    if let Some(pred) = parsed_filter(
        label.filter.as_ref(),
        "spec.label.filter",
        &label_src.schema,
        &label.source,
    )? {
        events = events.filter(pred);
    }
    if let Some(c) = label.column.as_deref()
        && label.kind != LabelKind::EventOccurs
        && label_src.schema.get(c).is_none()
    {
        return Err(spec_err(
            "spec.label.column",
            format!("column {c:?} is not in source {}", label.source),
        ));
    }
    let label_column = match label.kind {
        LabelKind::EventOccurs => None,
        LabelKind::SumOfColumn | LabelKind::LastValue => {
            Some(label.column.as_deref().ok_or_else(|| {
                spec_err(
                    "spec.label.column",
                    format!("{:?} needs a column", label.kind),
                )
            })?)
        }
    };
    let mut labels_running = RunningTotals::new("__label");
    let label_value = match plan {
        Plan::RunningTotals => {
            let agg = match label.kind {
                LabelKind::EventOccurs => Aggregation::Count,
                LabelKind::SumOfColumn => Aggregation::Sum,
                LabelKind::LastValue => Aggregation::Last,
            };
            running_columns.push(
                labels_running
                    .aggregate(agg, label_column, Some(0), horizon)
                    .cast(DataType::Float64)
                    .alias(label.name.as_str()),
            );
            None
        }
        Plan::Joined => Some(match (label.kind, label_column) {
            (LabelKind::SumOfColumn, Some(c)) => col(c).sum().cast(DataType::Float64),
            (LabelKind::LastValue, Some(c)) => col(c).last().cast(DataType::Float64),
            _ => col(TS).count().cast(DataType::Float64),
        }),
    };
    table = labels_running.join(table, events.clone(), key, &ids)?;
    let mut table = table.with_columns(running_columns);
    for part in parts {
        table = joined::add_to_rows(table, part, key);
    }
    if let Some(label_value) = label_value {
        let in_horizon = col(TS)
            .gt_eq(col(CUTOFF))
            .and(col(TS).lt(col(CUTOFF) + lit(horizon)));
        let labels = joined::grouped(
            &spine,
            events,
            key,
            in_horizon,
            vec![label_value.alias(label.name.as_str())],
        );
        table = joined::add_to_rows(table, labels, key);
    }

    let mut fills: Vec<Expr> = fill_zero
        .iter()
        .map(|n| col(n.as_str()).fill_null(lit(0.0)))
        .collect();
    fills.push(match label.kind {
        LabelKind::EventOccurs => col(label.name.as_str())
            .fill_null(lit(0.0))
            .gt(lit(0.0))
            .alias(label.name.as_str()),
        LabelKind::SumOfColumn => col(label.name.as_str()).fill_null(lit(0.0)),
        LabelKind::LastValue => col(label.name.as_str()),
    });
    let mut table = table.with_columns(fills);
    if label.kind == LabelKind::LastValue {
        table = table.filter(col(label.name.as_str()).is_not_null());
    }
    let mut select = vec![
        col(key),
        col(CUTOFF).cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
    ];
    select.extend(columns.iter().map(|c| col(c.name.as_str())));
    select.push(col(label.name.as_str()));
    let frame = table
        .select(select)
        .sort([CUTOFF, key], SortMultipleOptions::default())
        .collect()?;

    if let Some(nan) = missing_labels(&frame, &label.name)? {
        quality.push(nan);
    }
    Ok(Materialized {
        frame,
        features: columns,
        quality,
        data_until_ms: until,
        cutoffs: cutoff_list,
        skipped_cutoffs: skipped,
    })
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What is written beside a snapshot (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Version (first 12 hex digits of the digest).
    pub version: String,
    /// `sha256:<hex>` of `features.parquet`.
    pub digest: String,
    /// Entity key column.
    pub entity_key: String,
    /// Label column.
    pub label: String,
    /// Feature columns in order.
    pub features: Vec<FeatureColumn>,
    /// Rows.
    pub rows: usize,
    /// The cutoffs (RFC 3339), oldest first.
    pub cutoffs: Vec<String>,
    /// Newest label-source event (RFC 3339).
    pub data_until: String,
    /// Quality results.
    pub quality: Vec<QualityResult>,
}

/// Encodes a frame as Parquet.
pub fn to_parquet(frame: &DataFrame) -> Result<Vec<u8>, MaterializeError> {
    let mut bytes = Vec::new();
    let mut df = frame.clone();
    ParquetWriter::new(&mut bytes).finish(&mut df)?;
    Ok(bytes)
}

/// Decodes a Parquet snapshot.
pub fn from_parquet(bytes: Vec<u8>) -> Result<DataFrame, MaterializeError> {
    Ok(ParquetReader::new(std::io::Cursor::new(bytes)).finish()?)
}
