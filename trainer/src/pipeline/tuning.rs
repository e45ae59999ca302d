//! Hyper-parameter search (`spec.tuning`) for gradient boosting, inside the training Job.
//!
//! The training rows' cutoffs are cut into `folds + 1` time-ordered blocks; fold k fits on the
//! blocks up to k and scores block k + 1, so no trial is judged on rows older than the ones it
//! learned from. The validation rows, which the version's metrics come from, take no part.
//! Trials are chosen by TPE (the `tpe` crate: one tree-structured Parzen estimator per
//! parameter, as Optuna's default sampler) or at random, in batches of `parallelTrials` run on
//! threads, until `trials` have run or `maxSeconds` have passed. A trial whose first fold
//! scores worse than the median first fold of the completed trials is pruned (median
//! pruning); a trial whose fit fails is recorded as `Failed` and never becomes a version.

use std::collections::BTreeMap;
use std::time::Instant;

use leitwerk_crds::model::{
    GradientBoosting, Scale, SearchDimension, Trial, TunableParameter, Tuning, TuningMethod,
    TuningReport,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::*;

/// Random trials before TPE takes over (Optuna's `n_startup_trials`).
pub const STARTUP_TRIALS: usize = 10;

/// The objective's value of `predicted` against `truth`: `None` when the metric cannot be
/// computed on these rows (one class only).
pub fn objective_value(metric: Metric, predicted: &[f64], truth: &[f64]) -> Option<f64> {
    let labels: Vec<bool> = truth.iter().map(|&v| v > 0.0).collect();
    match metric {
        Metric::Auc => metrics::roc_auc(predicted, &labels),
        Metric::PrAuc => metrics::pr_auc(predicted, &labels),
        Metric::LogLoss => Some(metrics::log_loss(predicted, &labels)),
        Metric::Brier => Some(metrics::brier(predicted, &labels)),
        Metric::Rmse => Some(metrics::regression(predicted, truth).rmse),
        Metric::Mae => Some(metrics::regression(predicted, truth).mae),
        Metric::R2 => Some(metrics::regression(predicted, truth).r2),
        _ => None,
    }
}

/// The metric a search optimises: the spec's, or AUC / RMSE.
pub fn objective_of(spec: &ModelSpec, tuning: &Tuning) -> Result<Metric, JobError> {
    tuning
        .objective_for(spec.task)
        .map_err(|why| invalid(format!("spec.tuning.objective {why}")))
}

/// Sets one searched parameter.
pub fn apply(gb: &mut GradientBoosting, parameter: TunableParameter, value: f64) {
    let whole = |v: f64, least: f64| v.round().max(least) as i32;
    match parameter {
        TunableParameter::Rounds => gb.rounds = whole(value, 1.0),
        TunableParameter::LearningRate => gb.learning_rate = value.max(1e-6),
        TunableParameter::NumLeaves => gb.num_leaves = whole(value, 2.0),
        TunableParameter::MaxDepth => gb.max_depth = Some(whole(value, 1.0)),
        TunableParameter::MinRowsPerLeaf => gb.min_rows_per_leaf = whole(value, 1.0),
        TunableParameter::L1 => gb.l1 = value.max(0.0),
        TunableParameter::L2 => gb.l2 = value.max(0.0),
        TunableParameter::RowSubsample => gb.row_subsample = value.clamp(1e-3, 1.0),
        TunableParameter::ColumnSubsample => gb.column_subsample = value.clamp(1e-3, 1.0),
    }
}

/// A dimension in the space the sampler draws from: `(low, high)` of the value (its logarithm
/// on the Log scale), or the number of choices.
enum Axis {
    Range { low: f64, high: f64, log: bool },
    Choices(Vec<f64>),
}

fn axis(d: &SearchDimension) -> Result<Axis, JobError> {
    let name = d.parameter.as_str();
    if let Some(choices) = &d.choices {
        if choices.is_empty() {
            return Err(invalid(format!(
                "spec.tuning.space {name}: choices is empty"
            )));
        }
        return Ok(Axis::Choices(choices.clone()));
    }
    let (Some(min), Some(max)) = (d.min, d.max) else {
        return Err(invalid(format!(
            "spec.tuning.space {name}: give min and max, or choices"
        )));
    };
    if min.partial_cmp(&max) != Some(std::cmp::Ordering::Less) {
        return Err(invalid(format!(
            "spec.tuning.space {name}: min {min} is not below max {max}"
        )));
    }
    Ok(match d.scale {
        Scale::Log if min <= 0.0 => {
            return Err(invalid(format!(
                "spec.tuning.space {name}: the Log scale needs min above 0, not {min}"
            )));
        }
        Scale::Log => Axis::Range {
            low: min.ln(),
            high: max.ln(),
            log: true,
        },
        Scale::Linear => Axis::Range {
            low: min,
            high: max,
            log: false,
        },
    })
}

impl Axis {
    /// The value of a draw in the sampler's space.
    fn value(&self, draw: f64) -> f64 {
        match self {
            Axis::Range { log: true, .. } => draw.exp(),
            Axis::Range { .. } => draw,
            Axis::Choices(c) => c[(draw as usize).min(c.len() - 1)],
        }
    }
}

/// One fold: the rows it fits on and the rows it scores.
pub type Fold = (Vec<usize>, Vec<usize>);

/// The time-ordered folds of the training rows: `(fit rows, scored rows)` per fold.
pub fn folds(cutoffs: &[i64], k: usize) -> Result<Vec<Fold>, JobError> {
    let mut distinct: Vec<i64> = cutoffs.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < k + 1 {
        return Err(invalid(format!(
            "spec.tuning.folds {k} needs at least {} cutoffs among the training rows, and there are {}; lower folds or raise the FeatureSet's cutoffs.count",
            k + 1,
            distinct.len()
        )));
    }
    // Block b holds the cutoffs distinct[b·n/(k+1) .. (b+1)·n/(k+1)].
    let n = distinct.len();
    let block_of = |c: i64| {
        let at = distinct.partition_point(|&d| d < c);
        (at * (k + 1)) / n
    };
    Ok((0..k)
        .map(|fold| {
            let (mut fit_rows, mut scored) = (Vec::new(), Vec::new());
            for (row, &c) in cutoffs.iter().enumerate() {
                let b = block_of(c);
                if b <= fold {
                    fit_rows.push(row);
                } else if b == fold + 1 {
                    scored.push(row);
                }
            }
            (fit_rows, scored)
        })
        .collect())
}

/// What one trial needs.
struct Data<'a> {
    spec: &'a ModelSpec,
    x: &'a Array2<f64>,
    y: &'a [f64],
    folds: &'a [Fold],
    metric: Metric,
}

/// Runs one trial's folds; stops after the first when `prune` says its score is bad.
fn run_trial(
    data: &Data<'_>,
    gb: &GradientBoosting,
    prune: &dyn Fn(f64) -> bool,
) -> (String, Vec<f64>) {
    let mut spec = data.spec.clone();
    if let Some(a) = spec.algorithm.as_mut() {
        a.gradient_boosting = Some(gb.clone());
    }
    let mut scores = Vec::new();
    for (i, (fit_rows, scored)) in data.folds.iter().enumerate() {
        let x_fit = data.x.select(ndarray::Axis(0), fit_rows);
        let y_fit: Vec<f64> = fit_rows.iter().map(|&r| data.y[r]).collect();
        let x_scored = data.x.select(ndarray::Axis(0), scored);
        let y_scored: Vec<f64> = scored.iter().map(|&r| data.y[r]).collect();
        let Ok((model, _)) = fit(&spec, &x_fit, &y_fit, None) else {
            return ("Failed".into(), scores);
        };
        let Some(score) = objective_value(data.metric, &model.predict(&x_scored), &y_scored)
            .filter(|s| s.is_finite())
        else {
            return ("Failed".into(), scores);
        };
        scores.push(score);
        if i == 0 && prune(score) {
            return ("Pruned".into(), scores);
        }
    }
    ("Complete".into(), scores)
}

fn round4(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 4 - v.abs().log10().floor() as i32 - 1;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Runs the search on the training rows (`cutoffs` per row). Returns the spec with the best
/// trial's parameters, the report for the status, and every trial for the model card.
pub fn tune(
    spec: &ModelSpec,
    tuning: &Tuning,
    x: &Array2<f64>,
    y: &[f64],
    cutoffs: &[i64],
) -> Result<(ModelSpec, TuningReport, serde_json::Value), JobError> {
    let base = spec
        .algorithm
        .as_ref()
        .and_then(|a| a.gradient_boosting.clone())
        .ok_or_else(|| invalid("spec.tuning searches algorithm.gradientBoosting: set it"))?;
    let metric = objective_of(spec, tuning)?;
    let lower_is_better = metric.lower_is_better();
    let folds = folds(cutoffs, tuning.folds.max(2) as usize)?;
    let axes: Vec<(TunableParameter, Axis)> = tuning
        .space
        .iter()
        .map(|d| axis(d).map(|a| (d.parameter, a)))
        .collect::<Result<_, _>>()?;
    let mut optimizers: Vec<tpe::TpeOptimizer> = axes
        .iter()
        .map(|(p, a)| {
            let range = match a {
                Axis::Range { low, high, .. } => tpe::range(*low, *high),
                Axis::Choices(c) => tpe::categorical_range(c.len()),
            }
            .map_err(|e| invalid(format!("spec.tuning.space {p}: {e}")))?;
            Ok(match a {
                Axis::Choices(_) => tpe::TpeOptimizer::new(tpe::histogram_estimator(), range),
                Axis::Range { .. } => tpe::TpeOptimizer::new(tpe::parzen_estimator(), range),
            })
        })
        .collect::<Result<_, JobError>>()?;
    let mut rng = StdRng::seed_from_u64(tuning.seed as u64);
    let data = Data {
        spec,
        x,
        y,
        folds: &folds,
        metric,
    };
    let started = Instant::now();
    let budget = tuning.trials.max(1) as usize;
    let parallel = tuning.parallel_trials.clamp(1, 16) as usize;
    let startup = STARTUP_TRIALS.min(budget / 3);
    let mut trials: Vec<Trial> = Vec::new();
    let better = |a: f64, b: f64| if lower_is_better { a < b } else { a > b };
    while trials.len() < budget && started.elapsed().as_secs() < tuning.max_seconds.max(1) as u64 {
        // The median first fold of the completed trials, once there are enough.
        let mut firsts: Vec<f64> = trials
            .iter()
            .filter(|t| t.state == "Complete")
            .filter_map(|t| t.fold_scores.first().copied())
            .collect();
        firsts.sort_by(f64::total_cmp);
        let median = (tuning.prune_after > 0 && firsts.len() >= tuning.prune_after as usize)
            .then(|| firsts[firsts.len() / 2]);
        let prune = |score: f64| median.is_some_and(|m| better(m, score));
        // Draw a batch.
        let batch = parallel.min(budget - trials.len());
        let mut draws: Vec<Vec<f64>> = Vec::with_capacity(batch);
        for i in 0..batch {
            let mut draw = Vec::with_capacity(axes.len());
            // TPE starts from random trials, as Optuna's sampler does (ten, or a third of a
            // smaller budget): its densities need points on both sides of the split.
            let random = tuning.method == TuningMethod::Random || trials.len() + i < startup;
            for (o, (_, a)) in optimizers.iter_mut().zip(&axes) {
                let d = if random {
                    match a {
                        Axis::Range { low, high, .. } => rng.random_range(*low..*high),
                        Axis::Choices(c) => rng.random_range(0..c.len()) as f64,
                    }
                } else {
                    o.ask(&mut rng)
                        .map_err(|e| invalid(format!("the TPE sampler failed: {e}")))?
                };
                draw.push(d);
            }
            draws.push(draw);
        }
        let configs: Vec<(BTreeMap<String, f64>, GradientBoosting)> = draws
            .iter()
            .map(|draw| {
                let mut gb = base.clone();
                let mut shown = BTreeMap::new();
                for ((p, a), d) in axes.iter().zip(draw) {
                    let v = a.value(*d);
                    apply(&mut gb, *p, v);
                    shown.insert(
                        p.as_str().to_string(),
                        if p.whole() { v.round() } else { round4(v) },
                    );
                }
                (shown, gb)
            })
            .collect();
        let outcomes: Vec<(String, Vec<f64>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = configs
                .iter()
                .map(|(_, gb)| scope.spawn(|| run_trial(&data, gb, &prune)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| ("Failed".into(), Vec::new())))
                .collect()
        });
        for ((draw, (shown, _)), (state, scores)) in draws.iter().zip(configs).zip(outcomes) {
            let score = (state == "Complete")
                .then(|| scores.iter().sum::<f64>() / scores.len().max(1) as f64);
            // The sampler minimises; a pruned trial tells its first fold.
            let told = score.or_else(|| (state == "Pruned").then(|| scores[0]));
            if let Some(v) = told {
                let v = if lower_is_better { v } else { -v };
                for (o, d) in optimizers.iter_mut().zip(draw) {
                    o.tell(*d, v)
                        .map_err(|e| invalid(format!("the TPE sampler failed: {e}")))?;
                }
            }
            trials.push(Trial {
                number: trials.len() as i32,
                state,
                parameters: shown,
                fold_scores: scores.iter().map(|s| round4(*s)).collect(),
                score: score.map(round4),
            });
            progress::tell("tuning", trials.len() as u64, Some(budget as u64), "trials");
        }
    }
    let mut complete: Vec<&Trial> = trials.iter().filter(|t| t.score.is_some()).collect();
    complete.sort_by(|a, b| {
        let (a, b) = (a.score.unwrap_or(f64::NAN), b.score.unwrap_or(f64::NAN));
        if lower_is_better {
            a.total_cmp(&b)
        } else {
            b.total_cmp(&a)
        }
    });
    let best = complete.first().map(|t| (*t).clone()).ok_or_else(|| {
        invalid(format!(
            "spec.tuning: none of the {} trials completed ({} failed, {} pruned); widen the space or check the data",
            trials.len(),
            trials.iter().filter(|t| t.state == "Failed").count(),
            trials.iter().filter(|t| t.state == "Pruned").count()
        ))
    })?;
    let mut gb = base;
    for (p, _) in &axes {
        if let Some(v) = best.parameters.get(p.as_str()) {
            apply(&mut gb, *p, *v);
        }
    }
    let mut tuned = spec.clone();
    if let Some(a) = tuned.algorithm.as_mut() {
        a.gradient_boosting = Some(gb);
    }
    let report = TuningReport {
        version: String::new(),
        method: tuning.method.to_string(),
        objective: metric.to_string(),
        trials_run: trials.len() as i32,
        pruned: trials.iter().filter(|t| t.state == "Pruned").count() as i32,
        failed: trials.iter().filter(|t| t.state == "Failed").count() as i32,
        best: best.clone(),
        top: complete.iter().take(5).map(|t| (*t).clone()).collect(),
    };
    let card = serde_json::json!({
        "method": report.method,
        "objective": report.objective,
        "folds": folds.len(),
        "best": best,
        "trials": trials,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    Ok((tuned, report, card))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folds_fit_on_older_cutoffs_and_score_the_next_block() {
        // 12 cutoffs, three rows each, shuffled.
        let cutoffs: Vec<i64> = (0..36).map(|i| ((i * 7) % 12) as i64 * 100).collect();
        let folds = folds(&cutoffs, 3).unwrap();
        assert_eq!(folds.len(), 3);
        let mut last_scored = -1;
        for (k, (fit_rows, scored)) in folds.iter().enumerate() {
            let newest_fit = fit_rows.iter().map(|&r| cutoffs[r]).max().unwrap();
            let oldest_scored = scored.iter().map(|&r| cutoffs[r]).min().unwrap();
            assert!(
                newest_fit < oldest_scored,
                "fold {k} scores only newer rows"
            );
            assert_eq!(scored.len(), 9, "a block of three cutoffs");
            assert_eq!(
                fit_rows.len(),
                9 * (k + 1),
                "fold {k} fits on every older block"
            );
            assert!(oldest_scored > last_scored);
            last_scored = oldest_scored;
        }
        let err = folds_err(&[0, 0, 100, 100, 200, 200]);
        assert!(
            err.contains("spec.tuning.folds 3") && err.contains("cutoffs.count"),
            "{err}"
        );
    }

    fn folds_err(cutoffs: &[i64]) -> String {
        folds(cutoffs, 3).unwrap_err().to_string()
    }

    #[test]
    fn an_objective_of_the_other_task_and_a_bad_range_are_refused_naming_the_field() {
        let spec: ModelSpec = yaml_serde::from_str(
            "task: Regression\nfeatureSetRef: {name: x}\nalgorithm: {gradientBoosting: {}}\n",
        )
        .unwrap();
        let tuning: Tuning = yaml_serde::from_str(
            "objective: auc\ntrials: 5\nspace: [{parameter: learningRate, min: 0.01, max: 0.3, scale: Log}]\n",
        )
        .unwrap();
        let err = objective_of(&spec, &tuning).unwrap_err().to_string();
        assert!(
            err.contains("spec.tuning.objective auc") && err.contains("rmse"),
            "{err}"
        );
        let log_from_zero: SearchDimension =
            yaml_serde::from_str("{parameter: l2, min: 0, max: 10, scale: Log}").unwrap();
        let err = match axis(&log_from_zero) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(
            err.contains("spec.tuning.space l2") && err.contains("above 0"),
            "{err}"
        );
        let mut gb: GradientBoosting = serde_json::from_value(serde_json::json!({})).unwrap();
        apply(&mut gb, TunableParameter::NumLeaves, 12.6);
        apply(&mut gb, TunableParameter::RowSubsample, 1.7);
        assert_eq!((gb.num_leaves, gb.row_subsample), (13, 1.0));
    }
}
