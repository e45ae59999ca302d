//! One controller per resource kind, each with the same small surface: `run`, `reconcile`,
//! `error_policy` and a local `Error`. This module registers them; what they share lives in
//! the crate's own modules ([`crate::watch`], [`crate::references`], [`crate::jobs`], …).

pub mod content_pipeline;
pub mod experiment;
pub mod feature_set;
pub mod model;
pub mod rag_index;

use crate::context::Context;
pub use crate::watch::Scope;

/// Runs every controller until shutdown is requested.
pub async fn run_all(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    futures::join!(
        feature_set::run(ctx.clone(), scope.clone(), shutdown.clone()),
        model::run(ctx.clone(), scope.clone(), shutdown.clone()),
        experiment::run(ctx.clone(), scope.clone(), shutdown.clone()),
        rag_index::run(ctx.clone(), scope.clone(), shutdown.clone()),
        content_pipeline::run(ctx, scope, shutdown),
    );
}
