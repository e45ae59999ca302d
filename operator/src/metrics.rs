//! The operator's own Prometheus metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Resource kind, e.g. `Model`.
    pub kind: String,
}

/// Labels of error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Resource kind.
    pub kind: String,
    /// Error category (also the Event reason).
    pub category: String,
}

/// Labels of write metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Resource kind being reconciled.
    pub kind: String,
    /// What was written: `status`, `child`, `event`.
    pub target: String,
}

/// Labels of per-variant Experiment series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    /// Namespace of the Experiment.
    pub namespace: String,
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
}

/// Labels of KPI series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KpiLabels {
    /// Namespace of the Experiment.
    pub namespace: String,
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// KPI name.
    pub kpi: String,
}

/// Labels of drift series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    /// Namespace of the Experiment.
    pub namespace: String,
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// Feature name.
    pub feature: String,
    /// `psi` or `js`.
    pub metric: String,
}

/// Labels of Model drift series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelDriftLabels {
    /// Namespace of the Model.
    pub namespace: String,
    /// Model name.
    pub model: String,
    /// Feature name.
    pub feature: String,
    /// `psi` or `js`.
    pub metric: String,
}

/// Labels of decision counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Namespace of the Experiment.
    pub namespace: String,
    /// Experiment name.
    pub experiment: String,
    /// Advance, Promote, RollBack, Hold, Pause, Reweight, Measure.
    pub action: String,
}

/// Labels of ContentPipeline series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContentLabels {
    /// Namespace of the ContentPipeline.
    pub namespace: String,
    /// ContentPipeline name.
    pub pipeline: String,
}

/// Labels of per-stage ContentPipeline series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContentStageLabels {
    /// Namespace of the ContentPipeline.
    pub namespace: String,
    /// ContentPipeline name.
    pub pipeline: String,
    /// `Retrieve`, `Outline`, `Draft`, `FactCheck`, `StyleCheck`, `OnPageCheck`.
    pub stage: String,
}

/// Labels of the ContentPipeline phase series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContentPhaseLabels {
    /// Namespace of the ContentPipeline.
    pub namespace: String,
    /// ContentPipeline name.
    pub pipeline: String,
    /// The phase, e.g. `AwaitingApproval`.
    pub phase: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// All metrics, registered once at start-up.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles started.
    pub reconciles: Family<KindLabels, Counter>,
    /// Reconciles that failed, by category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration.
    pub duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Write requests made by reconciles.
    pub writes: Family<WriteLabels, Counter>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Requests sent to the API server, by verb and resource.
    pub api_requests: Family<crate::api_requests::ApiRequestLabels, Counter>,
    /// Traffic weight per Experiment variant, in percent.
    pub experiment_weight: Family<VariantLabels, Gauge>,
    /// Last measured KPI value per Experiment variant.
    pub experiment_kpi: Family<KpiLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Last measured drift per Experiment variant and feature.
    pub experiment_drift: Family<DriftLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Experiment decisions by action.
    pub experiment_decisions: Family<DecisionLabels, Counter>,
    /// Last measured drift of a Model's serving version per feature.
    pub model_drift: Family<ModelDriftLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Tokens the current run of a ContentPipeline used.
    pub content_tokens: Family<ContentLabels, Gauge>,
    /// Cost of the current run, in the pipeline's currency.
    pub content_cost: Family<ContentLabels, FloatGauge>,
    /// Share of the current run's claims grounded in its sources.
    pub content_grounded: Family<ContentLabels, FloatGauge>,
    /// Seconds each stage of the current run took.
    pub content_stage_seconds: Family<ContentStageLabels, FloatGauge>,
    /// 1 for the phase a ContentPipeline is in.
    pub content_phase: Family<ContentPhaseLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            writes: Family::default(),
            leader: Gauge::default(),
            api_requests: Family::default(),
            experiment_weight: Family::default(),
            experiment_kpi: Family::default(),
            experiment_drift: Family::default(),
            experiment_decisions: Family::default(),
            model_drift: Family::default(),
            content_tokens: Family::default(),
            content_cost: Family::default(),
            content_grounded: Family::default(),
            content_stage_seconds: Family::default(),
            content_phase: Family::default(),
        };
        registry.register(
            "leitwerk_content_run_tokens",
            "Tokens the current run of a ContentPipeline used",
            metrics.content_tokens.clone(),
        );
        registry.register(
            "leitwerk_content_run_cost",
            "Cost of the current run of a ContentPipeline, in its budget's currency",
            metrics.content_cost.clone(),
        );
        registry.register(
            "leitwerk_content_grounded_ratio",
            "Share of the current run's claims grounded in its sources",
            metrics.content_grounded.clone(),
        );
        registry.register(
            "leitwerk_content_stage_seconds",
            "Seconds each stage of a ContentPipeline's current run took",
            metrics.content_stage_seconds.clone(),
        );
        registry.register(
            "leitwerk_content_phase",
            "1 for the phase a ContentPipeline is in",
            metrics.content_phase.clone(),
        );
        registry.register(
            "leitwerk_model_drift",
            "Last measured input drift of a Model's serving version per feature (PSI or JS divergence)",
            metrics.model_drift.clone(),
        );
        registry.register(
            "leitwerk_experiment_weight",
            "Traffic weight per Experiment variant, in percent",
            metrics.experiment_weight.clone(),
        );
        registry.register(
            "leitwerk_experiment_kpi",
            "Last measured KPI value per Experiment variant",
            metrics.experiment_kpi.clone(),
        );
        registry.register(
            "leitwerk_experiment_drift",
            "Last measured input drift per Experiment variant and feature (PSI or JS divergence)",
            metrics.experiment_drift.clone(),
        );
        registry.register(
            "leitwerk_experiment_decisions",
            "Experiment decisions by action",
            metrics.experiment_decisions.clone(),
        );
        registry.register(
            "leitwerk_reconcile",
            "Reconciles started, by kind",
            metrics.reconciles.clone(),
        );
        registry.register(
            "leitwerk_reconcile_errors",
            "Failed reconciles, by kind and error category",
            metrics.errors.clone(),
        );
        registry.register(
            "leitwerk_reconcile_duration_seconds",
            "Reconcile duration, by kind",
            metrics.duration.clone(),
        );
        registry.register(
            "leitwerk_writes",
            "Write requests made by reconciles, by kind and target",
            metrics.writes.clone(),
        );
        registry.register(
            "leitwerk_api_requests",
            "Requests sent to the API server, by verb and resource (watches count once, when opened)",
            metrics.api_requests.clone(),
        );
        registry.register(
            "leitwerk_leader",
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        metrics
    }

    /// Counts a reconcile of `kind` and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self, kind: &str) -> DurationGuard {
        self.reconciles
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
        DurationGuard {
            histogram: self
                .duration
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .clone(),
            start: std::time::Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// Counts a write request.
    pub fn wrote(&self, kind: &str, target: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                target: target.to_string(),
            })
            .inc();
    }

    /// Counts a status write that met a newer object (409 Conflict) and was not made.
    pub fn status_conflict(&self, kind: &str) {
        self.wrote(kind, "status-conflict");
    }
}

/// Records a reconcile's duration when dropped.
#[derive(Debug)]
pub struct DurationGuard {
    histogram: Histogram,
    start: std::time::Instant,
}

impl Drop for DurationGuard {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
