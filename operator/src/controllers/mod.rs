//! One controller per resource kind, each with the same small surface: `run`, `reconcile`,
//! `error_policy` and a local `Error`. This module registers them; what they share lives in
//! the crate's own modules ([`crate::watch`], [`crate::references`], [`crate::jobs`], …).

pub mod content_pipeline;
pub mod experiment;
pub mod feature_set;
pub mod model;
pub mod rag_index;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::core::DeserializeGuard;
use leitwerk_crds::{FeatureSet, Model};

use crate::cache::{JobStores, SharedWatch, Stores, trim_job, trim_service, trim_service_account};
use crate::context::Context;
pub use crate::watch::Scope;
use crate::workloads::MANAGED_BY;
use feature_set::FEATURE_SET_LABEL;

/// Runs every controller, and the watches they share (see [`crate::cache`]), until shutdown is
/// requested.
pub async fn run_all(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let mut models = SharedWatch::<DeserializeGuard<Model>>::new();
    let mut feature_sets = SharedWatch::<DeserializeGuard<FeatureSet>>::new();
    let mut accounts = SharedWatch::<ServiceAccount, _>::packed(None).trimmed(trim_service_account);
    let services = SharedWatch::<Service, _>::packed(None).trimmed(trim_service);
    let mut feature_set_jobs =
        SharedWatch::<Job, _>::packed(Some(FEATURE_SET_LABEL)).trimmed(trim_job);
    let mut feature_set_cron_jobs = SharedWatch::<CronJob, _>::packed(Some(FEATURE_SET_LABEL));
    let mut ctx = ctx;
    ctx.stores = Stores {
        models: Some(models.store()),
        feature_sets: Some(feature_sets.store()),
        service_accounts: Some(accounts.store()),
        services: Some(services.store()),
        feature_set_jobs: Some(JobStores::new(
            FEATURE_SET_LABEL,
            feature_set_jobs.store(),
            feature_set_cron_jobs.store(),
        )),
    };
    let feature_set_shared = feature_set::Shared {
        store: feature_sets.store(),
        feature_sets: feature_sets.subscribe(),
        jobs: feature_set_jobs.subscribe(),
        cron_jobs: feature_set_cron_jobs.subscribe(),
    };
    let model_shared = model::Shared {
        store: models.store(),
        models: models.subscribe(),
        feature_sets: feature_sets.subscribe(),
        service_accounts: accounts.subscribe(),
    };
    let controllers = futures::future::join5(
        feature_set::run(ctx.clone(), feature_set_shared, shutdown.clone()),
        model::run(ctx.clone(), scope.clone(), model_shared, shutdown.clone()),
        experiment::run(
            ctx.clone(),
            scope.clone(),
            models.subscribe(),
            shutdown.clone(),
        ),
        rag_index::run(
            ctx.clone(),
            scope.clone(),
            accounts.subscribe(),
            shutdown.clone(),
        ),
        content_pipeline::run(ctx, scope.clone(), accounts.subscribe(), shutdown),
    );
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let watches = futures::future::join3(
        feature_set_jobs.run(
            scope.api::<Job>(client.clone()),
            crate::watch::watch_config().labels(FEATURE_SET_LABEL),
        ),
        feature_set_cron_jobs.run(
            scope.api::<CronJob>(client.clone()),
            crate::watch::watch_config().labels(FEATURE_SET_LABEL),
        ),
        futures::future::join4(
            models.run(
                scope.api::<DeserializeGuard<Model>>(client.clone()),
                crate::watch::watch_config(),
            ),
            feature_sets.run(
                scope.api::<DeserializeGuard<FeatureSet>>(client.clone()),
                crate::watch::watch_config(),
            ),
            accounts.run(
                scope.api::<ServiceAccount>(client.clone()),
                crate::watch::watch_config().labels(&managed),
            ),
            services.run(
                scope.api::<Service>(client),
                crate::watch::watch_config().labels(&managed),
            ),
        ),
    );
    // The watches run until the process ends; the controllers end on shutdown.
    futures::pin_mut!(controllers, watches);
    futures::future::select(controllers, watches).await;
}
