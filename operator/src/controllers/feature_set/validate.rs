//! What the CRD schema cannot check of a FeatureSet's spec.

use leitwerk_crds::{FeatureSetSpec, feature_set::Aggregation, filter::Filter};

use crate::{
    validation::FieldError, validation::check_cron, validation::into_result,
    validation::parse_duration,
};

/// `(field, secret name)` of every Secret the spec references.
pub fn secret_refs(spec: &FeatureSetSpec) -> Vec<(String, String)> {
    spec.sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let secret = s.object_store.as_ref()?.credentials_secret_ref.as_ref()?;
            Some((
                format!("spec.sources[{i}].objectStore.credentialsSecretRef"),
                secret.name.clone(),
            ))
        })
        .collect()
}

/// Checks what the schema cannot: durations, schedules, column names and label leakage.
/// A list of independent checks, each naming its field and the fix; long because there are
/// many of them, not because they depend on each other.
pub fn validate(spec: &FeatureSetSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let max_window = std::time::Duration::from_secs(10 * 365 * 86_400);
    for (i, f) in spec.features.iter().enumerate() {
        for (j, w) in f.windows.iter().enumerate() {
            match parse_duration(w) {
                Some(d) if d.is_zero() => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    "a window must be longer than 0",
                )),
                Some(d) if d > max_window => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("window {w} is longer than ten years"),
                )),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    format!("spec.features[{i}].windows[{j}]"),
                    format!("{w:?} is not a duration such as 7d"),
                )),
            }
            let column = format!("{}_{}", f.name, w);
            if column.len() > 63 {
                errors.push(FieldError::new(
                    format!("spec.features[{i}].name"),
                    format!(
                        "snapshot column {column:?} is longer than 63 characters: shorten the name"
                    ),
                ));
            }
        }
        if let Some(filter) = &f.filter
            && let Err(e) = Filter::parse(filter)
        {
            errors.push(FieldError::new(
                format!("spec.features[{i}].filter"),
                e.to_string(),
            ));
        }
        if f.aggregation == Aggregation::Static && f.filter.is_some() {
            errors.push(FieldError::new(
                format!("spec.features[{i}].filter"),
                "a Static feature takes no filter",
            ));
        }
        if f.name == spec.label.name {
            errors.push(FieldError::new(
                format!("spec.features[{i}].name"),
                format!(
                    "{:?} is also the label's name: a feature named like the label leaks it",
                    f.name
                ),
            ));
        }
        if f.column.as_deref() == Some(spec.entity_key.as_str())
            && f.aggregation != Aggregation::DistinctCount
            && f.aggregation != Aggregation::Count
        {
            errors.push(FieldError::new(
                format!("spec.features[{i}].column"),
                "aggregating the entity key itself is meaningless: pick another column",
            ));
        }
    }
    if let Some(filter) = &spec.label.filter
        && let Err(e) = Filter::parse(filter)
    {
        errors.push(FieldError::new("spec.label.filter", e.to_string()));
    }
    if let Some(source) = spec
        .sources
        .iter()
        .find(|s| s.file.is_none() == s.object_store.is_none())
    {
        errors.push(FieldError::new(
            "spec.sources",
            format!(
                "source {:?} sets neither or both of file and objectStore: set exactly one",
                source.name
            ),
        ));
    }
    let names: Vec<&str> = spec.sources.iter().map(|s| s.name.as_str()).collect();
    for (i, f) in spec.features.iter().enumerate() {
        if !names.contains(&f.source.as_str()) {
            errors.push(FieldError::new(
                format!("spec.features[{i}].source"),
                format!(
                    "no source is named {:?}; sources: {}",
                    f.source,
                    names.join(", ")
                ),
            ));
        }
    }
    if !names.contains(&spec.label.source.as_str()) {
        errors.push(FieldError::new(
            "spec.label.source",
            format!(
                "no source is named {:?}; sources: {}",
                spec.label.source,
                names.join(", ")
            ),
        ));
    }
    match parse_duration(&spec.label.horizon) {
        Some(d) if !d.is_zero() => {}
        _ => errors.push(FieldError::new(
            "spec.label.horizon",
            format!(
                "{:?} is not a positive duration such as 30d",
                spec.label.horizon
            ),
        )),
    }
    if let Some(every) = &spec.cutoffs.every
        && !matches!(parse_duration(every), Some(d) if !d.is_zero())
    {
        errors.push(FieldError::new(
            "spec.cutoffs.every",
            format!("{every:?} is not a positive duration such as 7d"),
        ));
    }
    if let Some(dates) = &spec.cutoffs.dates {
        for (i, d) in dates.iter().enumerate() {
            if k8s_openapi::jiff::civil::Date::strptime("%Y-%m-%d", d).is_err() {
                errors.push(FieldError::new(
                    format!("spec.cutoffs.dates[{i}]"),
                    format!("{d:?} is not a calendar date"),
                ));
            }
        }
    }
    if let Some(schedule) = &spec.cutoffs.schedule
        && let Err(problem) = check_cron(schedule)
    {
        errors.push(FieldError::new("spec.cutoffs.schedule", problem));
    }
    into_result(errors)
}
