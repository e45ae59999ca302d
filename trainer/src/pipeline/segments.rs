//! The fairness scan of `spec.evaluation.segments`: the validation rows split by the values of
//! each declared column, each segment's rows, AUC, positive rate and mean score, and the
//! largest gaps between the segments that have enough rows and both labels.

use leitwerk_crds::card::SegmentFigures;
use leitwerk_crds::metrics::Metric;
use leitwerk_crds::model::EvaluationSpec;

use super::*;

/// The scan's figures, its gap metrics and the line behind each gap.
#[derive(Debug, Clone, Default)]
pub struct SegmentScan {
    /// Every segment of every column.
    pub figures: Vec<SegmentFigures>,
    /// `maxSegmentAucGap` and `maxSegmentScoreGap` (the largest over the columns), when at
    /// least one column had two comparable segments.
    pub gaps: BTreeMap<String, f64>,
    /// For each gap, the column and the two segments behind it.
    pub explanations: BTreeMap<String, String>,
}

/// The short table for the Model's status: for each column (the first four), the compared
/// segments with the lowest and the highest AUC, in that order.
pub fn extremes(figures: &[SegmentFigures]) -> Vec<leitwerk_crds::model::SegmentStatus> {
    let mut columns: Vec<&str> = Vec::new();
    for f in figures {
        if !columns.contains(&f.column.as_str()) {
            columns.push(&f.column);
        }
    }
    let row = |f: &SegmentFigures| leitwerk_crds::model::SegmentStatus {
        column: f.column.clone(),
        value: f.value.clone(),
        rows: f.rows as i64,
        auc: f.auc.map(|a| (a * 1e4).round() / 1e4),
        positive_rate: (f.positive_rate * 1e4).round() / 1e4,
        mean_score: (f.mean_score * 1e4).round() / 1e4,
    };
    let mut out = Vec::new();
    for column in columns.into_iter().take(4) {
        let compared = figures
            .iter()
            .filter(|f| f.column == column && f.compared)
            .filter_map(|f| f.auc.map(|a| (a, f)));
        let lowest = compared.clone().min_by(|a, b| a.0.total_cmp(&b.0));
        let highest = compared.max_by(|a, b| a.0.total_cmp(&b.0));
        if let (Some((_, lo)), Some((_, hi))) = (lowest, highest) {
            out.push(row(lo));
            if !std::ptr::eq(lo, hi) {
                out.push(row(hi));
            }
        }
    }
    out
}

/// A row's segment of a numeric column: its quartile range on the validation rows.
fn quartile_labels(values: &[f64]) -> Vec<String> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return vec!["missing".to_string(); values.len()];
    }
    let mut cuts: Vec<f64> = [0.25, 0.5, 0.75]
        .iter()
        .map(|&q| crate::materialize::quantile(&sorted, q))
        .collect();
    cuts.dedup();
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return "missing".to_string();
            }
            let at = cuts.iter().position(|&c| v <= c);
            match at {
                Some(0) => format!("≤ {}", cuts[0]),
                Some(i) => format!("({}, {}]", cuts[i - 1], cuts[i]),
                None => format!("> {}", cuts[cuts.len() - 1]),
            }
        })
        .collect()
}

/// Scans `rows` (the validation rows, raw) with their scores and labels. A column that is not
/// a feature of the snapshot is refused, naming the field and the features there are.
pub fn scan(
    spec: &EvaluationSpec,
    rows: &Columns,
    scores: &[f64],
    labels: &[bool],
) -> Result<SegmentScan, JobError> {
    let mut out = SegmentScan::default();
    for (i, column) in spec.segments.iter().enumerate() {
        let values: Vec<String> = if let Some((_, v)) =
            rows.categorical.iter().find(|(n, _)| n == column)
        {
            v.clone()
        } else if let Some((_, v)) = rows.numeric.iter().find(|(n, _)| n == column) {
            quartile_labels(v)
        } else {
            let names: Vec<&str> = rows
                .numeric
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(rows.categorical.iter().map(|(n, _)| n.as_str()))
                .collect();
            return Err(invalid(format!(
                "spec.evaluation.segments[{i}]: {column:?} is not a feature of the snapshot; its features are {}",
                names.join(", ")
            )));
        };
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (row, v) in values.iter().enumerate() {
            groups.entry(v.as_str()).or_default().push(row);
        }
        let mut compared: Vec<SegmentFigures> = Vec::new();
        for (value, idx) in groups {
            let s: Vec<f64> = idx.iter().map(|&r| scores[r]).collect();
            let l: Vec<bool> = idx.iter().map(|&r| labels[r]).collect();
            let auc = metrics::roc_auc(&s, &l);
            let figures = SegmentFigures {
                column: column.clone(),
                value: value.to_string(),
                rows: idx.len(),
                auc,
                positive_rate: l.iter().filter(|&&b| b).count() as f64 / l.len().max(1) as f64,
                mean_score: s.iter().sum::<f64>() / s.len().max(1) as f64,
                compared: auc.is_some() && idx.len() >= spec.min_segment_rows.max(1) as usize,
            };
            if figures.compared {
                compared.push(figures.clone());
            }
            out.figures.push(figures);
        }
        if compared.len() < 2 {
            continue;
        }
        let describe =
            |s: &SegmentFigures, figure: f64| format!("{} {figure:.4} ({} rows)", s.value, s.rows);
        for (metric, of) in [
            (
                Metric::MaxSegmentAucGap,
                (|s: &SegmentFigures| s.auc.unwrap_or_default()) as fn(&SegmentFigures) -> f64,
            ),
            (Metric::MaxSegmentScoreGap, |s: &SegmentFigures| {
                s.mean_score
            }),
        ] {
            let by = |a: &&SegmentFigures, b: &&SegmentFigures| of(a).total_cmp(&of(b));
            let (Some(low), Some(high)) = (compared.iter().min_by(by), compared.iter().max_by(by))
            else {
                continue;
            };
            let gap = of(high) - of(low);
            let key = metric.to_string();
            if out.gaps.get(&key).is_none_or(|&g| gap > g) {
                out.gaps.insert(key.clone(), gap);
                out.explanations.insert(
                    key,
                    format!(
                        "segment column {column}: {} vs {}",
                        describe(low, of(low)),
                        describe(high, of(high))
                    ),
                );
            }
        }
    }
    Ok(out)
}
