//! Evaluation metrics, as pure functions.

/// ROC-AUC: the probability that a random positive scores above a random negative (ties count
/// half), computed from ranks in O(n log n). `None` when either class is missing.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0usize);
    let mut i = 0;
    while i < order.len() {
        // A run of tied scores shares the mean of its ranks (1-based).
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += mean_rank;
                positives += 1;
            }
        }
        i = j + 1;
    }
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (the area under the precision–recall curve as scikit-learn computes it:
/// the mean of precision at each positive, ties taken together). `None` without positives.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut area, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            seen += 1;
            tp += usize::from(labels[k]);
        }
        let recall = tp as f64 / positives as f64;
        area += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
        i = j + 1;
    }
    Some(area)
}

/// Mean log loss, with probabilities clipped to [1e-15, 1 − 1e-15].
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = labels.len().max(1) as f64;
    probabilities
        .iter()
        .zip(labels)
        .map(|(p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n
}

/// Brier score: mean squared difference between probability and outcome.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = labels.len().max(1) as f64;
    probabilities
        .iter()
        .zip(labels)
        .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / n
}

/// Precision, recall and F1 of predicting `true` at `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdMetrics {
    /// Share of predicted positives that are positive (0 when nothing is predicted positive).
    pub precision: f64,
    /// Share of positives predicted positive.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Precision, recall and F1 at a threshold.
pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> ThresholdMetrics {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (s, &y) in scores.iter().zip(labels) {
        match (*s >= threshold, y) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            (false, false) => {}
        }
    }
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ThresholdMetrics {
        precision,
        recall,
        f1,
    }
}

/// One bin of a calibration table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationBin {
    /// Lower edge of the predicted probability.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Rows in the bin.
    pub count: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Observed share of positives.
    pub observed: f64,
}

/// Calibration table over `bins` equal-width probability bins; empty bins are left out.
pub fn calibration(probabilities: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0, 0.0); bins];
    for (p, &y) in probabilities.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += f64::from(u8::from(y));
    }
    sums.into_iter()
        .enumerate()
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|(b, (n, p, y))| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: n,
            predicted: p / n as f64,
            observed: y / n as f64,
        })
        .collect()
}

/// Expected calibration error: the row-weighted mean |mean score − observed rate| over the
/// bins of a calibration table.
pub fn ece(bins: &[CalibrationBin]) -> f64 {
    let rows: usize = bins.iter().map(|b| b.count).sum();
    if rows == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.count as f64 * (b.predicted - b.observed).abs())
        .sum::<f64>()
        / rows as f64
}

/// Regression metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionMetrics {
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Coefficient of determination (1 − SSE/SST; 0 when the truth is constant).
    pub r2: f64,
}

/// MAE, RMSE and R² of predictions against the truth.
pub fn regression(predictions: &[f64], truth: &[f64]) -> RegressionMetrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let sse: f64 = predictions
        .iter()
        .zip(truth)
        .map(|(p, t)| (p - t).powi(2))
        .sum();
    let sst: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    RegressionMetrics {
        mae: predictions
            .iter()
            .zip(truth)
            .map(|(p, t)| (p - t).abs())
            .sum::<f64>()
            / n,
        rmse: (sse / n).sqrt(),
        r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_weighs_each_bin_by_its_rows() {
        let bin = |count, predicted, observed| CalibrationBin {
            lower: 0.0,
            upper: 1.0,
            count,
            predicted,
            observed,
        };
        let e = ece(&[bin(10, 0.3, 0.2), bin(30, 0.5, 0.52)]);
        assert!((e - (10.0 * 0.1 + 30.0 * 0.02) / 40.0).abs() < 1e-12, "{e}");
        assert_eq!(ece(&[]), 0.0);
    }

    #[test]
    fn perfect_inverted_and_tied_rankings() {
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(
            roc_auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]),
            Some(0.5)
        );
        // One positive above two of three negatives: 2/3.
        let auc = roc_auc(&[0.1, 0.3, 0.6, 0.4], &[false, false, false, true]).unwrap_or_default();
        assert!((auc - 2.0 / 3.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1], &[true, false]), None);
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = (1/1 + 2/3) / 2.
        let ap = pr_auc(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap_or_default();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{ap}");
        assert_eq!(pr_auc(&[0.1], &[false]), None);
    }

    #[test]
    fn log_loss_and_brier_of_known_predictions() {
        let (p, y) = ([0.8, 0.3], [true, false]);
        assert!((log_loss(&p, &y) - (-(0.8f64.ln()) - 0.7f64.ln()) / 2.0).abs() < 1e-12);
        assert!((brier(&p, &y) - (0.04 + 0.09) / 2.0).abs() < 1e-12);
        assert!(log_loss(&[0.0], &[true]).is_finite(), "clipped");
    }

    #[test]
    fn threshold_metrics_count_the_confusion_matrix() {
        let m = at_threshold(&[0.9, 0.6, 0.4, 0.2], &[true, false, true, false], 0.5);
        assert_eq!((m.precision, m.recall, m.f1), (0.5, 0.5, 0.5));
        assert_eq!(at_threshold(&[0.1], &[true], 0.5).f1, 0.0);
    }

    #[test]
    fn calibration_bins_report_predicted_and_observed_rates() {
        let table = calibration(&[0.05, 0.15, 0.95, 0.91], &[false, true, true, true], 10);
        assert_eq!(table.len(), 3);
        assert_eq!((table[0].count, table[0].observed), (1, 0.0));
        assert_eq!(
            (table[2].lower, table[2].count, table[2].observed),
            (0.9, 2, 1.0)
        );
        assert!((table[2].predicted - 0.93).abs() < 1e-12);
    }

    #[test]
    fn regression_metrics_of_known_predictions() {
        let m = regression(&[2.0, 4.0, 6.0], &[1.0, 4.0, 7.0]);
        assert!((m.mae - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.rmse - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 2.0 / 18.0)).abs() < 1e-12);
    }
}
