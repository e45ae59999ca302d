//! The children of a Model, built from its spec (pure): training Jobs, the serving
//! Deployment and Service, and the token-less ServiceAccount.

use leitwerk_crds::command::{JobArgs, JobCommand, MetricLabel, ModelArg, ServerArgs, TrainArgs};

use k8s_openapi::{
    api::apps::v1::Deployment, api::batch::v1::Job, api::core::v1::Service,
    api::core::v1::ServiceAccount,
};
use kube::{Resource, ResourceExt};
use leitwerk_crds::{Model, model::ModelVersion};

use super::{DATA_VERSION_ANNOTATION, GENERATION_ANNOTATION, MODEL_LABEL, VERSION_LABEL};
use crate::config::OperatorConfig;
use crate::{
    service_account, workloads::MANAGED_BY, workloads::PodParts, workloads::child_name,
    workloads::resources, workloads::serving_deployment, workloads::serving_service,
    workloads::spec_env, workloads::store_mount, workloads::trainer_job,
};
use std::collections::BTreeMap;

/// Name of a Model's serving Deployment and Service.
pub fn serving_name(model: &Model) -> String {
    child_name(&model.name_any(), "serving")
}

pub(super) fn parts(
    model: &Model,
    config: &OperatorConfig,
    store_read_only: bool,
    resources_spec: Option<&leitwerk_crds::common::WorkloadResources>,
    scheduling: Option<leitwerk_crds::common::Scheduling>,
) -> PodParts {
    let mut mounts = Vec::new();
    let store = config.artifact_store.clone();
    if let Some(m) = store_mount(&store, &config.artifact_claim_name, store_read_only) {
        mounts.push(m);
    }
    let mut scheduling = scheduling.unwrap_or_default();
    if scheduling.service_account_name.is_none() {
        scheduling.service_account_name = Some(service_account_name(model));
    }
    PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (MODEL_LABEL.to_string(), model.name_any()),
        ]),
        mounts,
        env: Vec::new(),
        resources: resources(resources_spec),
        scheduling: Some(scheduling),
        service_account: config.workload_service_account.clone(),
        secret_env: config.artifact_store_secret.iter().cloned().collect(),
    }
}

/// The training Job of one version.
pub fn build_training_job(
    model: &Model,
    config: &OperatorConfig,
    version: &str,
    snapshot: &str,
    data_version: &str,
) -> Job {
    let mut spec = model.spec.clone();
    spec.serving.image = None;
    let args = JobCommand::Train {
        job: JobArgs::new(
            &model.namespace().unwrap_or_default(),
            &model.name_any(),
            &config.artifact_store,
        ),
        train: TrainArgs {
            snapshot: snapshot.into(),
            version: version.into(),
            // The trainer image sets ORT_DYLIB_PATH.
            onnxruntime: None,
        },
    }
    .to_args();
    let mut job = model_job(
        model,
        config,
        &format!("train-{version}"),
        (VERSION_LABEL, version),
        spec_env(&spec),
        args,
    );
    job.metadata.annotations = Some(BTreeMap::from([
        (
            GENERATION_ANNOTATION.to_string(),
            model.metadata.generation.unwrap_or(0).to_string(),
        ),
        (
            DATA_VERSION_ANNOTATION.to_string(),
            data_version.to_string(),
        ),
    ]));
    job
}

/// A Job of the Model that runs the trainer with `args` (`<model>-<suffix>`): the training
/// resources, scheduling, image and limits, the Model's labels and `label`, the spec in the
/// environment.
pub(super) fn model_job(
    model: &Model,
    config: &OperatorConfig,
    suffix: &str,
    label: (&str, &str),
    spec: k8s_openapi::api::core::v1::EnvVar,
    args: Vec<String>,
) -> Job {
    let training = model.spec.training.clone().unwrap_or_default();
    let mut p = parts(
        model,
        config,
        false,
        training.resources.as_ref(),
        training.scheduling.clone(),
    );
    p.labels.insert(label.0.to_string(), label.1.to_string());
    p.env.push(spec);
    let image = training
        .image
        .clone()
        .unwrap_or_else(|| config.trainer_image.clone());
    let owner = model.controller_owner_ref(&()).unwrap_or_default();
    trainer_job(
        &child_name(&model.name_any(), suffix),
        &model.namespace().unwrap_or_default(),
        owner,
        &image,
        args,
        &p,
        training.backoff_limit,
        training.active_deadline_seconds,
    )
}

/// The serving Deployment and Service of a version.
pub fn build_serving(
    model: &Model,
    config: &OperatorConfig,
    version: &ModelVersion,
) -> (Deployment, Service) {
    let serving = &model.spec.serving;
    let mut p = serving_parts(model, config);
    p.env
        .push(crate::feedback_secret::env(&crate::feedback_secret::name(
            &model.name_any(),
        )));
    let mut args = serving_args(model, version);
    let ns = model.namespace().unwrap_or_default();
    args.metric_labels
        .push(MetricLabel("namespace".into(), ns.clone()));
    let image = serving_image(model, config);
    let owner = model.controller_owner_ref(&()).unwrap_or_default();
    let name = serving_name(model);
    let deployment = serving_deployment(
        &name,
        &ns,
        owner.clone(),
        &image,
        serving.replicas,
        args,
        &p,
    );
    let service = serving_service(&name, &ns, owner, &p.labels);
    (deployment, service)
}

/// The pod parts of a Model's serving pods (its labels, store mount, resources, and their
/// own account, apart from the trainer's).
pub fn serving_parts(model: &Model, config: &OperatorConfig) -> PodParts {
    parts(
        model,
        config,
        true,
        model.spec.serving.resources.as_ref(),
        Some(leitwerk_crds::common::Scheduling {
            service_account_name: Some(serving_service_account_name(model)),
            ..Default::default()
        }),
    )
}

/// The serving image of a Model.
pub fn serving_image(model: &Model, config: &OperatorConfig) -> String {
    model
        .spec
        .serving
        .image
        .clone()
        .unwrap_or_else(|| config.inference_server_image.clone())
}

/// The inference server's arguments for one version: the digest-pinned model and batching.
pub fn serving_args(model: &Model, version: &ModelVersion) -> ServerArgs {
    let serving = &model.spec.serving;
    let url = version.artifact_url.clone().unwrap_or_default();
    let digest = version
        .artifact_digest
        .as_deref()
        .and_then(|d| d.strip_prefix("sha256:"))
        .map(str::to_string);
    let mut args = ServerArgs {
        models: vec![ModelArg {
            name: model.name_any(),
            version: version.version.clone(),
            url,
            sha256: digest,
        }],
        ..ServerArgs::default()
    };
    if let Some(b) = &serving.batching {
        args.max_batch_size = usize::try_from(b.max_batch_size).unwrap_or(1);
        args.max_batch_delay_ms = u64::try_from(b.max_delay_ms).unwrap_or(0);
    }
    args
}

/// The ServiceAccount the Model's trainer Jobs (training, batch scoring) run as, unless the
/// spec names one or the Model runs no Jobs: a bring-your-own ONNX Model without batch scoring
/// gets none (one write and one object fewer per Model; its serving pods have their own).
pub fn build_service_account(model: &Model) -> Option<ServiceAccount> {
    if !runs_jobs(model) {
        return None;
    }
    let named = model
        .spec
        .training
        .as_ref()
        .and_then(|t| t.scheduling.as_ref())
        .and_then(|s| s.service_account_name.as_ref());
    if named.is_some() {
        return None;
    }
    service_account::token_less(model, service_account_name(model), MODEL_LABEL)
}

/// Whether a Model runs trainer Jobs: it trains (no bring-your-own ONNX) or scores in batches.
fn runs_jobs(model: &Model) -> bool {
    model.spec.onnx.is_none() || model.spec.batch_scoring.is_some()
}

/// Name of the ServiceAccount a Model's trainer Jobs run as.
pub fn service_account_name(model: &Model) -> String {
    format!("{}-model", model.name_any())
}

/// Name of the ServiceAccount a Model's serving pods (and the Experiment variants serving its
/// versions) run as: one per kind of pod, both token-less and without rights.
pub fn serving_service_account_name(model: &Model) -> String {
    child_name(&model.name_any(), "serving")
}

/// The token-less ServiceAccount of the Model's serving pods.
pub fn build_serving_service_account(model: &Model) -> Option<ServiceAccount> {
    service_account::token_less(model, serving_service_account_name(model), MODEL_LABEL)
}
