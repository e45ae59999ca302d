//! Quality checks that block publication: the spec's rules and the built-in ones (numbers
//! where numbers are read, a label on every row).

use super::*;

/// Built-in quality checks, beside the spec's rules: every source column that a numeric
/// feature or the label reads as numbers holds numbers. Text such as `n/a` in such a column
/// would otherwise become a silent null (a lenient cast). One failed result per column, naming
/// the column, the count and the first offending value.
pub(super) fn numbers_where_numbers_are_read(
    spec: &FeatureSetSpec,
    sources: &BTreeMap<String, Loaded>,
) -> Result<Vec<QualityResult>, MaterializeError> {
    let mut read_as_numbers: Vec<(String, String)> = spec
        .features
        .iter()
        .filter(|f| {
            f.kind == FeatureKind::Numeric
                && !matches!(
                    f.aggregation,
                    Aggregation::Count | Aggregation::DistinctCount
                )
        })
        .filter_map(|f| Some((f.source.clone(), f.column.clone()?)))
        .collect();
    if matches!(
        spec.label.kind,
        LabelKind::SumOfColumn | LabelKind::LastValue
    ) && let Some(c) = &spec.label.column
    {
        read_as_numbers.push((spec.label.source.clone(), c.clone()));
    }
    read_as_numbers.sort();
    read_as_numbers.dedup();
    let mut out = Vec::new();
    for (source, column) in read_as_numbers {
        let Some(src) = sources.get(&source) else {
            continue;
        };
        match src.schema.get(&column) {
            Some(dtype) if !dtype.is_primitive_numeric() && !dtype.is_bool() => {}
            _ => continue,
        }
        let c = column.as_str();
        let not_a_number = col(c)
            .is_not_null()
            .and(col(c).cast(DataType::Float64).is_null());
        let found = src
            .lf
            .clone()
            .filter(not_a_number)
            .select([
                col(c).count().cast(DataType::Float64).alias("n"),
                col(c).cast(DataType::String).first().alias("first"),
            ])
            .collect()?;
        let n = found.column("n")?.f64()?.get(0).unwrap_or(0.0);
        if n > 0.0 {
            let first = found
                .column("first")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_string();
            out.push(QualityResult {
                rule: format!("numbers in {source}.{column}"),
                passed: false,
                measured: Some(n),
                limit: Some(0.0),
                message: format!(
                    "column {column:?} of source {source}: {n:.0} value(s) are not numbers (first: {first:?}); a numeric feature or label reads it"
                ),
            });
        }
    }
    Ok(out)
}

/// A failed quality result when labels of the snapshot are missing or NaN.
pub(super) fn missing_labels(
    frame: &DataFrame,
    label: &str,
) -> Result<Option<QualityResult>, MaterializeError> {
    let values = frame.column(label)?.cast(&DataType::Float64)?;
    let missing = values
        .f64()?
        .iter()
        .filter(|v| !v.is_some_and(f64::is_finite))
        .count();
    Ok((missing > 0).then(|| QualityResult {
        rule: format!("label {label}"),
        passed: false,
        measured: Some(missing as f64),
        limit: Some(0.0),
        message: format!(
            "label {label:?}: {missing} of {} rows are missing or NaN",
            frame.height()
        ),
    }))
}

pub(super) fn type_matches(expected: ColumnType, actual: &DataType) -> bool {
    match expected {
        ColumnType::Integer => actual.is_integer(),
        ColumnType::Number => actual.is_primitive_numeric(),
        ColumnType::String => matches!(actual, DataType::String),
        ColumnType::Boolean => matches!(actual, DataType::Boolean),
        ColumnType::Timestamp => matches!(actual, DataType::Datetime(_, _) | DataType::Date),
    }
}

/// Checks each rule against the source that has its column. One match over the rule kinds, on
/// purpose: every kind measures one number against one limit and reports it the same way.
pub(super) fn check_quality(
    rules: &[QualityRule],
    sources: &BTreeMap<String, Loaded>,
) -> Result<Vec<QualityResult>, MaterializeError> {
    let mut out = Vec::new();
    for rule in rules {
        let c = rule.column.as_str();
        let Some((src_name, src)) = sources.iter().find(|(_, s)| s.schema.get(c).is_some()) else {
            out.push(QualityResult {
                rule: rule.name.clone(),
                passed: false,
                measured: None,
                limit: None,
                message: format!("required column {c:?} is in no source"),
            });
            continue;
        };
        let dtype = src.schema.get(c).cloned().unwrap_or(DataType::Null);
        let fail = |measured: Option<f64>, limit: Option<f64>, message: String| QualityResult {
            rule: rule.name.clone(),
            passed: false,
            measured,
            limit,
            message,
        };
        if let Some(expected) = rule.type_
            && !type_matches(expected, &dtype)
        {
            out.push(fail(
                None,
                None,
                format!("column {c:?} of source {src_name} is {dtype}, expected {expected:?}"),
            ));
            continue;
        }
        let numeric = dtype.is_primitive_numeric();
        let needs_numbers = rule.min.is_some() || rule.max.is_some() || rule.max_z_score.is_some();
        if needs_numbers && !numeric {
            out.push(fail(None, None, format!("column {c:?} of source {src_name} is {dtype}; range and z-score rules need numbers")));
            continue;
        }
        let v = || col(c).cast(DataType::Float64);
        let mut exprs = vec![
            v().len().cast(DataType::Float64).alias("n"),
            v().null_count().cast(DataType::Float64).alias("nulls"),
        ];
        if numeric {
            exprs.push(v().min().alias("min"));
            exprs.push(v().max().alias("max"));
            exprs.push(v().mean().alias("mean"));
            exprs.push(v().std(1).alias("std"));
        }
        let stats = src.lf.clone().select(exprs).collect()?;
        let get = |name: &str| {
            stats
                .column(name)
                .ok()
                .and_then(|s| s.f64().ok())
                .and_then(|s| s.get(0))
        };
        let n = get("n").unwrap_or(0.0);
        let mut failures = Vec::new();
        let mut measured_first = None;
        if let Some(limit) = rule.max_null_ratio {
            let ratio = if n > 0.0 {
                get("nulls").unwrap_or(0.0) / n
            } else {
                1.0
            };
            measured_first.get_or_insert((ratio, limit));
            if ratio > limit {
                failures.push(fail(
                    Some(ratio),
                    Some(limit),
                    format!("null ratio of {c:?} is {ratio:.4}, above the limit {limit}"),
                ));
            }
        }
        if let Some(min) = rule.min
            && let Some(actual) = get("min")
        {
            measured_first.get_or_insert((actual, min));
            if actual < min {
                failures.push(fail(
                    Some(actual),
                    Some(min),
                    format!("minimum of {c:?} is {actual}, below {min}"),
                ));
            }
        }
        if let Some(max) = rule.max
            && let Some(actual) = get("max")
        {
            measured_first.get_or_insert((actual, max));
            if actual > max {
                failures.push(fail(
                    Some(actual),
                    Some(max),
                    format!("maximum of {c:?} is {actual}, above {max}"),
                ));
            }
        }
        if let Some(z) = rule.max_z_score {
            let limit = rule.max_outlier_ratio.unwrap_or(0.0);
            let (mean, std) = (get("mean").unwrap_or(0.0), get("std").unwrap_or(0.0));
            let ratio = if std > 0.0 && n > 0.0 {
                let outliers = src
                    .lf
                    .clone()
                    .select([{
                        let score = (v() - lit(mean)) / lit(std);
                        score
                            .clone()
                            .gt(lit(z))
                            .or(score.lt(lit(-z)))
                            .sum()
                            .cast(DataType::Float64)
                            .alias("o")
                    }])
                    .collect()?;
                outliers.column("o")?.f64()?.get(0).unwrap_or(0.0) / n
            } else {
                0.0
            };
            measured_first.get_or_insert((ratio, limit));
            if ratio > limit {
                failures.push(fail(Some(ratio), Some(limit), format!("{:.4} of {c:?} lie beyond {z} standard deviations, above the limit {limit}", ratio)));
            }
        }
        if failures.is_empty() {
            let (measured, limit) =
                measured_first.map_or((None, None), |(m, l)| (Some(m), Some(l)));
            out.push(QualityResult {
                rule: rule.name.clone(),
                passed: true,
                measured,
                limit,
                message: format!("column {c:?} passed"),
            });
        } else {
            out.extend(failures);
        }
    }
    out.sort_by_key(|r| r.passed);
    Ok(out)
}
