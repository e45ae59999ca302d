//! The statistics behind Experiments, free of Kubernetes and Prometheus: KPI gates, the canary
//! state machine, Thompson sampling, holdout lift and input drift.

pub mod bandit;
pub mod canary;
pub mod drift;
pub mod gates;
pub mod holdout;
