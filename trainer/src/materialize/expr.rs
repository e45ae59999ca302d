//! The spec's filters, windows, cutoffs and aggregations as polars expressions and times.

use super::*;

pub(super) fn unreachable_column() -> Expr {
    lit(NULL)
}

/// Turns a parsed filter into a polars predicate.
pub fn filter_expr(filter: &Filter) -> Expr {
    match filter {
        Filter::Compare { column, op, value } => {
            let right = match value {
                FilterLiteral::Text(s) => lit(s.as_str()),
                FilterLiteral::Number(n) => lit(*n),
                FilterLiteral::Bool(b) => lit(*b),
            };
            let left = col(column.as_str());
            match op {
                CompareOp::Eq => left.eq(right),
                CompareOp::Ne => left.neq(right),
                CompareOp::Lt => left.lt(right),
                CompareOp::Le => left.lt_eq(right),
                CompareOp::Gt => left.gt(right),
                CompareOp::Ge => left.gt_eq(right),
            }
        }
        Filter::And(a, b) => filter_expr(a).and(filter_expr(b)),
        Filter::Or(a, b) => filter_expr(a).or(filter_expr(b)),
        Filter::Not(inner) => filter_expr(inner).not(),
    }
}

pub(super) fn parsed_filter(
    text: Option<&String>,
    field: &str,
    schema: &Schema,
    source: &str,
) -> Result<Option<Expr>, MaterializeError> {
    let Some(text) = text else { return Ok(None) };
    let filter = Filter::parse(text).map_err(|e| spec_err(field, e.to_string()))?;
    for column in filter.columns() {
        if schema.get(column).is_none() {
            return Err(spec_err(
                field,
                format!("column {column:?} is not in source {source}"),
            ));
        }
    }
    Ok(Some(filter_expr(&filter)))
}

pub(super) fn duration_ms(text: &str, field: &str) -> Result<i64, MaterializeError> {
    parse_duration(text)
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            spec_err(
                field,
                format!("{text:?} is not a duration such as 7d, 12h or 30m"),
            )
        })
}

pub(super) fn date_ms(text: &str, field: &str) -> Result<i64, MaterializeError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| spec_err(field, format!("{text:?} is not a date (YYYY-MM-DD)")))
}

pub(super) const DAY_MS: i64 = 86_400_000;

/// The cutoffs of a spec given the newest observed timestamp; returns (used, skipped).
pub fn cutoffs(
    spec: &FeatureSetSpec,
    data_until_ms: i64,
) -> Result<(Vec<i64>, usize), MaterializeError> {
    let horizon = duration_ms(&spec.label.horizon, "spec.label.horizon")?;
    let mut all = Vec::new();
    if let Some(dates) = &spec.cutoffs.dates {
        for (i, d) in dates.iter().enumerate() {
            all.push(date_ms(d, &format!("spec.cutoffs.dates[{i}]"))?);
        }
    } else {
        let every = duration_ms(
            spec.cutoffs
                .every
                .as_deref()
                .ok_or_else(|| spec_err("spec.cutoffs", "set dates or every"))?,
            "spec.cutoffs.every",
        )?;
        let count = spec.cutoffs.count.unwrap_or(1).max(1);
        // The newest cutoff whose label window is fully observed, at midnight UTC.
        let last = (data_until_ms - horizon).div_euclid(DAY_MS) * DAY_MS;
        all.extend((0..i64::from(count)).map(|k| last - k * every));
    }
    all.sort_unstable();
    all.dedup();
    let before = all.len();
    all.retain(|t| t + horizon <= data_until_ms);
    Ok((all.clone(), before - all.len()))
}

pub(super) fn agg_expr(agg: Aggregation, column: Option<&str>, in_window: Expr) -> Expr {
    let value = || col(column.unwrap_or(TS)).filter(in_window.clone());
    match agg {
        Aggregation::Count => col(TS).filter(in_window.clone()).count(),
        Aggregation::Sum => value().sum(),
        Aggregation::Mean => value().mean(),
        Aggregation::Min => value().min(),
        Aggregation::Max => value().max(),
        Aggregation::Last => value().last(),
        Aggregation::DistinctCount => value().n_unique(),
        Aggregation::Static => value().last(),
    }
}

pub(super) fn zero_when_empty(agg: Aggregation) -> bool {
    matches!(
        agg,
        Aggregation::Count | Aggregation::Sum | Aggregation::DistinctCount
    )
}
