//! A snapshot read back as a training table, checked on the way (the trainer trusts no
//! input), and the time-ordered split.

use super::*;

/// A training table read back from a snapshot.
#[derive(Debug, Clone)]
pub struct Table {
    /// Raw feature columns.
    pub columns: Columns,
    /// Feature order and kinds.
    pub features: Vec<FeatureColumn>,
    /// Label per row (regression: the value; classification: 0/1).
    pub label: Vec<f64>,
    /// Cutoff per row (ms).
    pub cutoff: Vec<i64>,
}

/// Turns a snapshot frame into columns. The snapshot is not trusted: a numeric feature with
/// text that is not a number, and a label that is missing or NaN, are refused with the column
/// and the count (a lenient cast would turn them into silent nulls, and a NaN label into a
/// negative).
pub fn table(frame: &DataFrame, manifest: &Manifest) -> Result<Table, JobError> {
    let mut columns = Columns::default();
    for f in &manifest.features {
        match f.kind {
            FeatureKind::Numeric => {
                let values = numbers(frame, &f.name, "feature")?;
                columns.numeric.push((
                    f.name.clone(),
                    values.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
                ));
            }
            FeatureKind::Categorical => {
                let v = frame.column(&f.name)?.cast(&DataType::String)?;
                columns.categorical.push((
                    f.name.clone(),
                    v.str()?
                        .iter()
                        .map(|x| x.unwrap_or("").to_string())
                        .collect(),
                ));
            }
        }
    }
    let label = numbers(frame, &manifest.label, "label")?;
    let missing = label
        .iter()
        .filter(|x| !x.is_some_and(f64::is_finite))
        .count();
    if missing > 0 {
        return Err(invalid(format!(
            "label column {:?}: {missing} of {} rows are missing or NaN; every row needs a numeric label (check the FeatureSet's label source)",
            manifest.label,
            label.len()
        )));
    }
    let label: Vec<f64> = label.into_iter().flatten().collect();
    let cutoff = frame.column(CUTOFF)?.cast(&DataType::Int64)?;
    let cutoff: Vec<i64> = cutoff.i64()?.iter().map(|x| x.unwrap_or(0)).collect();
    Ok(Table {
        columns,
        features: manifest.features.clone(),
        label,
        cutoff,
    })
}

/// A column as numbers (`None` where it is null). Values that are present but do not read as
/// a number are an error naming the column, their count and the first of them.
pub(super) fn numbers(
    frame: &DataFrame,
    name: &str,
    role: &str,
) -> Result<Vec<Option<f64>>, JobError> {
    let column = frame.column(name)?;
    let cast = column.cast(&DataType::Float64)?;
    let values: Vec<Option<f64>> = cast.f64()?.iter().collect();
    if cast.null_count() > column.null_count() {
        let text = column.cast(&DataType::String)?;
        let text = text.str()?;
        let bad: Vec<&str> = text
            .iter()
            .zip(&values)
            .filter_map(|(t, v)| match (t, v) {
                (Some(t), None) => Some(t),
                _ => None,
            })
            .collect();
        return Err(invalid(format!(
            "{role} column {name:?}: {} of {} values are not numbers (first: {:?}); fix the source or make the feature Categorical",
            bad.len(),
            values.len(),
            bad.first().copied().unwrap_or_default()
        )));
    }
    Ok(values)
}

/// Time-ordered split: the newest `fraction` of cutoffs validate. Returns (train, validation)
/// row indices.
pub fn time_split(cutoff: &[i64], fraction: f64) -> Result<(Vec<usize>, Vec<usize>), JobError> {
    let mut distinct: Vec<i64> = cutoff.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(invalid(format!(
            "the snapshot has {} cutoff(s); a time-ordered split needs at least 2 (raise spec.cutoffs.count of the FeatureSet)",
            distinct.len()
        )));
    }
    let k = ((distinct.len() as f64 * fraction).ceil() as usize).clamp(1, distinct.len() - 1);
    let first_valid = distinct[distinct.len() - k];
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, &c) in cutoff.iter().enumerate() {
        if c >= first_valid {
            valid.push(i)
        } else {
            train.push(i)
        }
    }
    Ok((train, valid))
}
