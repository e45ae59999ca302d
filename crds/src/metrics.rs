//! The validation metrics a training Job reports (in `TrainSummary::metrics`, the model card
//! and a version's status) and `minMetrics` gates: their names and directions, written once
//! for the trainer that measures them and the operator that judges them.

use crate::model::Task;

crate::common::named_enum! {
    /// A validation metric of a trained version.
    pub enum Metric {
        /// Area under the ROC curve (classification).
        Auc = "auc",
        /// Area under the precision–recall curve (classification).
        PrAuc = "prAuc",
        /// Mean log loss (classification; lower is better).
        LogLoss = "logLoss",
        /// Brier score (classification; lower is better).
        Brier = "brier",
        /// Precision at the serving threshold (classification).
        Precision = "precision",
        /// Recall at the serving threshold (classification).
        Recall = "recall",
        /// F1 at the serving threshold (classification).
        F1 = "f1",
        /// Share of positive labels in the validation rows (classification; descriptive).
        PositiveRate = "positiveRate",
        /// Expected calibration error: the row-weighted mean |predicted − observed| over ten
        /// equal-width score bins (classification; lower is better).
        Ece = "ece",
        /// Largest difference of AUC between two segments of a declared segment column
        /// (classification; lower is better).
        MaxSegmentAucGap = "maxSegmentAucGap",
        /// Largest difference of the mean score between two segments of a declared segment
        /// column (classification; lower is better).
        MaxSegmentScoreGap = "maxSegmentScoreGap",
        /// Mean absolute error (regression; lower is better).
        Mae = "mae",
        /// Root mean squared error (regression; lower is better).
        Rmse = "rmse",
        /// Coefficient of determination (regression).
        R2 = "r2",
    }
}

impl Metric {
    /// Whether a `minMetrics` value is a maximum (losses and errors) rather than a minimum.
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Metric::LogLoss
                | Metric::Brier
                | Metric::Mae
                | Metric::Rmse
                | Metric::Ece
                | Metric::MaxSegmentAucGap
                | Metric::MaxSegmentScoreGap
        )
    }

    /// The task whose training reports the metric and whose `minMetrics` may gate on it;
    /// `None` for a descriptive figure that is never a gate.
    pub fn gates(self) -> Option<Task> {
        match self {
            Metric::PositiveRate => None,
            Metric::Mae | Metric::Rmse | Metric::R2 => Some(Task::Regression),
            _ => Some(Task::BinaryClassification),
        }
    }

    /// The metrics `minMetrics` may name for `task`, in declaration order.
    pub fn gates_of(task: Task) -> Vec<Metric> {
        Metric::ALL
            .iter()
            .copied()
            .filter(|m| m.gates() == Some(task))
            .collect()
    }

    /// Whether the metric lies in 0–1 by definition.
    pub fn is_unit_interval(self) -> bool {
        matches!(
            self,
            Metric::Auc
                | Metric::PrAuc
                | Metric::Brier
                | Metric::Precision
                | Metric::Recall
                | Metric::F1
                | Metric::PositiveRate
                | Metric::Ece
                | Metric::MaxSegmentAucGap
                | Metric::MaxSegmentScoreGap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_losses_are_maxima() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(*m));
        }
        let maxima: Vec<&str> = Metric::ALL
            .iter()
            .filter(|m| m.lower_is_better())
            .map(|m| m.as_str())
            .collect();
        assert_eq!(
            maxima,
            [
                "logLoss",
                "brier",
                "ece",
                "maxSegmentAucGap",
                "maxSegmentScoreGap",
                "mae",
                "rmse"
            ]
        );
        assert!(
            "accuracy"
                .parse::<Metric>()
                .unwrap_err()
                .contains("auc, prAuc")
        );
    }

    #[test]
    fn the_crd_rules_name_exactly_the_metrics_each_task_gates_on() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&crate::Model::crd()).unwrap_or_default();
        for task in [Task::BinaryClassification, Task::Regression] {
            let names: Vec<String> = Metric::gates_of(task)
                .iter()
                .map(|m| format!("'{m}'"))
                .collect();
            let list = format!("[{}]", names.join(", "));
            assert!(
                crd.contains(&format!("self.minMetrics.all(k, k in {list})")),
                "no CEL rule lists {list} for {task:?}"
            );
        }
    }
}
