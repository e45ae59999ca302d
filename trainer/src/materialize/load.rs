//! Loading the sources of a FeatureSet: CSV or Parquet, the timestamp as milliseconds.

use super::*;

pub(super) fn scan(source: &DataSource, path: &std::path::Path) -> PolarsResult<LazyFrame> {
    let p = PlRefPath::new(path.to_string_lossy().as_ref());
    match source.format {
        TableFormat::Csv => LazyCsvReader::new(p)
            .with_has_header(true)
            .with_try_parse_dates(true)
            .with_infer_schema_length(Some(10_000))
            .finish(),
        TableFormat::Parquet => LazyFrame::scan_parquet(p, ScanArgsParquet::default()),
    }
}

pub(super) struct Loaded {
    pub(super) lf: LazyFrame,
    pub(super) schema: SchemaRef,
}

pub(super) fn load(
    spec: &FeatureSetSpec,
    paths: &LocalPaths,
) -> Result<BTreeMap<String, Loaded>, MaterializeError> {
    let mut out = BTreeMap::new();
    for source in &spec.sources {
        let src_err = |message: String| MaterializeError::Source {
            source_name: source.name.clone(),
            message,
        };
        let path = paths
            .get(&source.name)
            .ok_or_else(|| src_err("no local path was resolved for this source".into()))?;
        let mut lf = scan(source, path)
            .map_err(|e| src_err(format!("cannot read {}: {e}", path.display())))?;
        let schema = lf
            .collect_schema()
            .map_err(|e| src_err(format!("cannot read {}: {e}", path.display())))?;
        for (col_name, what) in [
            (&spec.entity_key, "spec.entityKey"),
            (&spec.event_timestamp, "spec.eventTimestamp"),
        ] {
            if schema.get(col_name).is_none() {
                return Err(src_err(format!(
                    "has no column {col_name:?} ({what}); its columns are {}",
                    schema
                        .iter_names()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let ts_expr = match schema.get(&spec.event_timestamp) {
            Some(DataType::Datetime(_, _)) | Some(DataType::Date) => {
                col(spec.event_timestamp.as_str())
                    .cast(DataType::Datetime(TimeUnit::Milliseconds, None))
                    .cast(DataType::Int64)
            }
            Some(other) => {
                return Err(src_err(format!(
                    "column {:?} (spec.eventTimestamp) is {other}, not a timestamp; write ISO 8601 timestamps such as 2026-01-31T12:00:00",
                    spec.event_timestamp
                )));
            }
            None => unreachable_column(),
        };
        let lf = lf.with_columns([
            ts_expr.alias(TS),
            col(spec.entity_key.as_str()).cast(DataType::String),
        ]);
        out.insert(source.name.clone(), Loaded { lf, schema });
    }
    Ok(out)
}
