//! The Leitwerk operator: one controller per resource kind, a shared context, metrics, health
//! endpoints and leader election. It decides and delegates; it never runs ML itself.

pub mod admission;
pub mod analysis;
pub mod api_requests;
pub mod apply;
pub mod cache;
pub mod config;
pub mod context;
pub mod controllers;
pub mod events;
pub mod feedback_secret;
pub mod finalizer;
pub mod http;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod network_policy;
pub mod notice;
pub mod packed;
pub mod prom;
pub mod reconcile;
pub mod references;
pub mod schedule;
pub mod service_account;
pub mod status;
pub mod validation;
pub mod watch;
pub mod workloads;
