//! The children of a FeatureSet, built from its spec (pure): the materialization Job and
//! CronJob.

use leitwerk_crds::command::{JobArgs, JobCommand};

use k8s_openapi::{
    api::batch::v1::CronJob, api::batch::v1::CronJobSpec, api::batch::v1::Job,
    api::batch::v1::JobTemplateSpec,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};
use leitwerk_crds::FeatureSet;

use super::{FEATURE_SET_LABEL, secret_refs};
use crate::config::OperatorConfig;
use crate::{
    workloads::MANAGED_BY, workloads::Mount, workloads::PodParts, workloads::child_name,
    workloads::claim_mount, workloads::resources, workloads::spec_env, workloads::store_mount,
    workloads::trainer_job,
};
use std::collections::BTreeMap;

/// Name of the token-less ServiceAccount a FeatureSet's Jobs run as.
pub fn service_account_name(fs: &FeatureSet) -> String {
    child_name(&fs.name_any(), "featureset")
}

/// Name of the Job that materializes the current generation.
pub fn generation_job_name(fs: &FeatureSet) -> String {
    child_name(
        &fs.name_any(),
        &format!("mat-g{}", fs.metadata.generation.unwrap_or(0)),
    )
}

pub(super) fn pod_parts(fs: &FeatureSet, config: &OperatorConfig) -> (PodParts, String) {
    let store = fs
        .spec
        .artifact_store
        .clone()
        .unwrap_or_else(|| config.artifact_store.clone());
    let mut mounts: Vec<Mount> = Vec::new();
    for s in &fs.spec.sources {
        let (Some(file), Some(claim)) =
            (&s.file, s.file.as_ref().and_then(|f| f.claim_name.as_ref()))
        else {
            continue;
        };
        let dir = std::path::Path::new(&file.path)
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_else(|| "/".into());
        if mounts.iter().any(|m| m.mount.mount_path == dir) {
            continue;
        }
        let volume = format!("data-{}", mounts.len());
        mounts.push(claim_mount(&volume, claim, &dir, true));
    }
    if let Some(m) = store_mount(&store, &config.artifact_claim_name, false) {
        mounts.push(m);
    }
    let env = vec![spec_env(&fs.spec)];
    let parts = PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (FEATURE_SET_LABEL.to_string(), fs.name_any()),
        ]),
        mounts,
        env,
        resources: resources(fs.spec.resources.as_ref()),
        scheduling: None,
        service_account: service_account_name(fs),
        secret_env: {
            let mut names: Vec<String> =
                secret_refs(&fs.spec).into_iter().map(|(_, n)| n).collect();
            names.extend(config.artifact_store_secret.iter().cloned());
            names.sort();
            names.dedup();
            names
        },
    };
    (parts, store)
}

pub(super) fn job_args(fs: &FeatureSet, store: &str) -> Vec<String> {
    JobCommand::Materialize {
        job: JobArgs::new(&fs.namespace().unwrap_or_default(), &fs.name_any(), store),
    }
    .to_args()
}

/// The materialization Job of one generation.
pub fn build_job(fs: &FeatureSet, config: &OperatorConfig, name: &str) -> Job {
    let (parts, store) = pod_parts(fs, config);
    let owner = fs.controller_owner_ref(&()).unwrap_or_default();
    trainer_job(
        name,
        &fs.namespace().unwrap_or_default(),
        owner,
        &config.trainer_image,
        job_args(fs, &store),
        &parts,
        Some(2),
        Some(6 * 3600),
    )
}

/// Name of the CronJob of `cutoffs.schedule`.
pub fn cron_job_name(fs: &FeatureSet) -> String {
    child_name(&fs.name_any(), "materialize")
}

/// The CronJob that re-materializes on `spec.cutoffs.schedule`.
pub fn build_cron_job(fs: &FeatureSet, config: &OperatorConfig, schedule: &str) -> CronJob {
    let name = cron_job_name(fs);
    let job = build_job(fs, config, &name);
    CronJob {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: fs.namespace(),
            labels: job.metadata.labels.clone(),
            owner_references: job.metadata.owner_references.clone(),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: job.metadata.labels.clone(),
                    ..Default::default()
                }),
                spec: job.spec,
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
