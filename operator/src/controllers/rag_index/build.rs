//! The children of a RagIndex, built from its spec (pure): indexing Jobs with their source
//! mounts, the index deletion Job, the retrieval Deployment and Service, and the token-less
//! ServiceAccount.

use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use leitwerk_crds::command::{
    IndexArg, IndexArgs, JobArgs, JobCommand, MetricLabel, ServerArgs, SourceMount,
};
use leitwerk_crds::rag_index::SearchMode;

use crate::references::secret_key_env;
use crate::workloads::spec_env;

use k8s_openapi::{
    api::apps::v1::Deployment, api::batch::v1::Job, api::core::v1::Service,
    api::core::v1::ServiceAccount,
};
use kube::{Resource, ResourceExt};
use leitwerk_crds::{RagIndex, rag_index::IndexVersion};

use super::{BUILD_LABEL, GENERATION_ANNOTATION, RAG_INDEX_LABEL, SOURCES_ANNOTATION};
use crate::config::OperatorConfig;
use crate::{
    schedule, service_account, workloads::MANAGED_BY, workloads::Mount, workloads::PodParts,
    workloads::child_name, workloads::claim_mount, workloads::resources,
    workloads::serving_deployment, workloads::serving_service, workloads::store_mount,
    workloads::trainer_job,
};
use std::collections::BTreeMap;

/// Where a ConfigMap source is mounted in the indexing pod.
pub const SOURCES_DIR: &str = "/sources";
/// Where the labelled set's ConfigMap key is mounted.
pub const EVALUATION_DIR: &str = "/evaluation";

/// Name of a RagIndex's retrieval Deployment and Service.
pub fn serving_name(index: &RagIndex) -> String {
    child_name(&index.name_any(), "retrieval")
}

/// Name of the ServiceAccount a RagIndex's Jobs (build, clean-up) run as.
pub fn service_account_name(index: &RagIndex) -> String {
    child_name(&index.name_any(), "ragindex")
}

/// Name of the ServiceAccount a RagIndex's retrieval pods run as.
pub fn serving_service_account_name(index: &RagIndex) -> String {
    child_name(&index.name_any(), "retrieval")
}

/// Name of the Job of build `number`.
pub fn build_job_name(index: &RagIndex, number: i64) -> String {
    child_name(&index.name_any(), &format!("index-{number}"))
}

/// The artifact store the RagIndex's index files live in.
pub fn store_of(index: &RagIndex, config: &OperatorConfig) -> String {
    index
        .spec
        .vector_store
        .as_ref()
        .and_then(|v| v.embedded.as_ref())
        .and_then(|e| e.artifact_store.clone())
        .unwrap_or_else(|| config.artifact_store.clone())
}

/// The URL under which a RagIndex's index files live (for messages).
pub fn index_prefix_url(index: &RagIndex, config: &OperatorConfig) -> String {
    format!(
        "{}/{}",
        store_of(index, config).trim_end_matches('/'),
        leitwerk_crds::contract::index_prefix(
            &index.namespace().unwrap_or_default(),
            &index.name_any()
        )
    )
}

/// The token-less ServiceAccount of a RagIndex's Jobs.
pub fn build_service_account(index: &RagIndex) -> Option<ServiceAccount> {
    service_account::token_less(index, service_account_name(index), RAG_INDEX_LABEL)
}

/// The token-less ServiceAccount of a RagIndex's retrieval pods.
pub fn build_serving_service_account(index: &RagIndex) -> Option<ServiceAccount> {
    service_account::token_less(index, serving_service_account_name(index), RAG_INDEX_LABEL)
}

fn config_map_mount(volume: &str, config_map: &str, path: &str, item: Option<&str>) -> Mount {
    Mount {
        volume: Volume {
            name: volume.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.into(),
                items: item.map(|key| {
                    vec![KeyToPath {
                        key: key.into(),
                        path: key.into(),
                        ..Default::default()
                    }]
                }),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        },
        mount: VolumeMount {
            name: volume.into(),
            mount_path: path.into(),
            read_only: Some(true),
            ..Default::default()
        },
    }
}

/// The directory a glob or file path starts in (what a claim is mounted at): the components
/// before the first one with a wildcard, or the parent of a plain file path.
pub fn static_prefix(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let wild = parts
        .iter()
        .position(|p| p.contains(['*', '?', '[']))
        .unwrap_or(parts.len().saturating_sub(1));
    let dir = parts[..wild].join("/");
    if dir.is_empty() { "/".into() } else { dir }
}

/// What a RagIndex pod does; it decides which Secrets the pod receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    /// An indexing Job: reads the sources (with their credentials), writes the store.
    Build,
    /// The deletion Job: removes index files from the store (its credentials only).
    Delete,
    /// The retrieval pod: reads the store (its credentials only), never the sources.
    Serve,
}

/// The pod parts of `role`: least secrets — source credentials reach the indexing Job only.
pub fn parts(index: &RagIndex, config: &OperatorConfig, role: PodRole) -> PodParts {
    let mut mounts = Vec::new();
    if let Some(m) = store_mount(
        &store_of(index, config),
        &config.artifact_claim_name,
        role == PodRole::Serve,
    ) {
        mounts.push(m);
    }
    let mut secret_env: Vec<String> = config.artifact_store_secret.iter().cloned().collect();
    let sources = match role {
        PodRole::Build => index.spec.sources.as_slice(),
        PodRole::Delete | PodRole::Serve => &[],
    };
    for s in sources {
        if let Some(name) = s
            .object_store
            .as_ref()
            .and_then(|o| o.credentials_secret_ref.as_ref())
            .map(|r| r.name.clone())
            && !secret_env.contains(&name)
        {
            secret_env.push(name);
        }
    }
    // The Qdrant API key reaches the pods that talk to the server: the indexing Job and the
    // retrieval pods (the operator deletes collections itself).
    let key = index
        .spec
        .vector_store
        .as_ref()
        .and_then(|v| v.qdrant.as_ref())
        .and_then(|q| q.api_key_secret_ref.as_ref())
        .filter(|_| role != PodRole::Delete);
    let env = key
        .map(|r| secret_key_env(leitwerk_crds::contract::QDRANT_API_KEY_ENV.into(), r))
        .into_iter()
        .collect();
    PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (RAG_INDEX_LABEL.to_string(), index.name_any()),
        ]),
        mounts,
        env,
        resources: resources(index.spec.resources.as_ref()),
        scheduling: None,
        service_account: if role == PodRole::Serve {
            serving_service_account_name(index)
        } else {
            service_account_name(index)
        },
        secret_env,
    }
}

/// What one indexing Job reads and keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInputs {
    /// The build number.
    pub number: i64,
    /// Digest of the ConfigMap sources (recorded on the Job).
    pub sources_digest: String,
    /// URL of the newest version's index file, to build incrementally from.
    pub previous: Option<String>,
    /// The serving version's index file and mode, measured again on the labelled set.
    pub serving: Option<(String, SearchMode)>,
    /// URLs of the index files the versions in status keep; every other file is removed.
    pub keep: Vec<String>,
    /// The schedule's due time this build is for, if the schedule started it.
    pub scheduled_for: Option<String>,
}

/// The trainer's common arguments for this RagIndex and its artifact store.
fn job_args(index: &RagIndex, config: &OperatorConfig) -> JobArgs {
    JobArgs::new(
        &index.namespace().unwrap_or_default(),
        &index.name_any(),
        &store_of(index, config),
    )
}

/// The indexing Job of one build.
pub fn build_index_job(index: &RagIndex, config: &OperatorConfig, inputs: &BuildInputs) -> Job {
    let spec = &index.spec;
    let mut p = parts(index, config, PodRole::Build);
    let mut args = IndexArgs {
        sources: Vec::new(),
        // The trainer image sets LEITWERK_EMBEDDING_MODEL_DIR.
        model_dir: None,
        previous: inputs.previous.clone(),
        labelled: None,
        k: 5,
        prune: true,
        keep: inputs.keep.clone(),
        serving: inputs.serving.as_ref().map(|(url, _)| url.clone()),
        serving_mode: inputs.serving.as_ref().map(|(_, m)| *m).unwrap_or_default(),
        qdrant: super::qdrant::target(index),
        gpu: spec.resources.as_ref().is_some_and(|r| r.gpu.is_some()),
    };
    let mount = |name: &str, path: &str| SourceMount {
        name: name.into(),
        path: path.into(),
    };
    for (i, source) in spec.sources.iter().enumerate() {
        if let Some(cm) = &source.config_map_ref {
            let dir = format!("{SOURCES_DIR}/{}", source.name);
            p.mounts.push(config_map_mount(
                &format!("source-{i}"),
                &cm.name,
                &dir,
                None,
            ));
            args.sources.push(mount(&source.name, &dir));
        }
        if let Some(file) = &source.file {
            if let Some(claim) = &file.claim_name {
                let dir = static_prefix(&file.path);
                if !p.mounts.iter().any(|m| m.mount.mount_path == dir) {
                    p.mounts
                        .push(claim_mount(&format!("source-{i}"), claim, &dir, true));
                }
            }
            args.sources.push(mount(&source.name, &file.path));
        }
        if let Some(objects) = &source.object_store {
            args.sources.push(mount(&source.name, &objects.url));
        }
    }
    if let Some(evaluation) = &spec.evaluation {
        if let Some(cm) = &evaluation.config_map_ref {
            p.mounts.push(config_map_mount(
                "evaluation",
                &cm.name,
                EVALUATION_DIR,
                Some(&cm.key),
            ));
            args.labelled = Some(format!("{EVALUATION_DIR}/{}", cm.key));
        } else if let Some(url) = &evaluation.labelled_set_url {
            args.labelled = Some(url.clone());
        }
        args.k = usize::try_from(evaluation.k).unwrap_or(5);
    }
    let args = JobCommand::Index {
        job: job_args(index, config),
        index: args,
    }
    .to_args();
    p.labels
        .insert(BUILD_LABEL.to_string(), inputs.number.to_string());
    p.env.push(spec_env(spec));
    let owner = index.controller_owner_ref(&()).unwrap_or_default();
    let mut job = trainer_job(
        &build_job_name(index, inputs.number),
        &index.namespace().unwrap_or_default(),
        owner,
        &config.trainer_image,
        args,
        &p,
        Some(1),
        None,
    );
    let mut annotations = BTreeMap::from([
        (
            GENERATION_ANNOTATION.to_string(),
            index.metadata.generation.unwrap_or(0).to_string(),
        ),
        (
            SOURCES_ANNOTATION.to_string(),
            inputs.sources_digest.clone(),
        ),
    ]);
    if let Some(at) = &inputs.scheduled_for {
        annotations.insert(schedule::SCHEDULED_FOR.to_string(), at.clone());
    }
    job.metadata.annotations = Some(annotations);
    job
}

/// The Job that removes every index file of a RagIndex being deleted. It has no owner (its
/// owner is going) and removes itself an hour after it finished.
pub fn build_delete_job(index: &RagIndex, config: &OperatorConfig) -> Job {
    let mut p = parts(index, config, PodRole::Delete);
    p.env.push(spec_env(&serde_json::json!({})));
    // It runs as the RagIndex's ServiceAccount, which the garbage collector keeps until the
    // RagIndex itself is gone (after this Job).
    let args = JobCommand::DeleteIndex {
        job: job_args(index, config),
    }
    .to_args();
    let mut job = trainer_job(
        &child_name(&index.name_any(), "delete-index"),
        &index.namespace().unwrap_or_default(),
        Default::default(),
        &config.trainer_image,
        args,
        &p,
        Some(2),
        Some(600),
    );
    job.metadata.owner_references = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.ttl_seconds_after_finished = Some(3600);
    }
    job
}

/// The mode a version serves in: the one its build measured and chose (the gate judged that
/// mode), else the spec's, else Dense.
pub fn serving_mode(index: &RagIndex, version: &IndexVersion) -> SearchMode {
    version
        .search_mode
        .or(index.spec.search.mode)
        .unwrap_or_default()
}

/// Where the retrieval pods read a version: the Qdrant alias when the version was written to
/// the RagIndex's server (the operator points the alias at it), its index file otherwise.
pub fn serving_url(index: &RagIndex, version: &IndexVersion) -> String {
    match (super::qdrant::target(index), &version.collection) {
        (Some(target), Some(_)) => target.to_string(),
        _ => version.url.clone(),
    }
}

/// Texts per run of a retrieval pod's encoder, at most: queries and embeddings that arrive
/// while it runs are embedded together in its next run, with no wait (and at most 64 word
/// pieces per CPU). Short queries at 16 connections: 1.33–1.44× the throughput of one text
/// per run, with a lower p99; a single caller runs as without batching (benches/README.md).
pub const RETRIEVAL_BATCH_TEXTS: usize = 32;

/// The retrieval Deployment and Service of the serving version.
pub fn build_serving(
    index: &RagIndex,
    config: &OperatorConfig,
    version: &IndexVersion,
) -> (Deployment, Service) {
    let p = parts(index, config, PodRole::Serve);
    let ns = index.namespace().unwrap_or_default();
    let args = ServerArgs {
        indexes: vec![IndexArg {
            name: index.name_any(),
            url: serving_url(index, version),
        }],
        search_mode: serving_mode(index, version),
        embedding_gpu: index
            .spec
            .resources
            .as_ref()
            .is_some_and(|r| r.gpu.is_some()),
        metric_labels: vec![MetricLabel("namespace".into(), ns.clone())],
        max_batch_size: RETRIEVAL_BATCH_TEXTS,
        ..ServerArgs::default()
    };
    let owner = index.controller_owner_ref(&()).unwrap_or_default();
    let name = serving_name(index);
    let mut deployment = serving_deployment(
        &name,
        &ns,
        owner.clone(),
        &config.inference_server_image,
        1,
        args,
        &p,
    );
    // A new version rolls out beside the old one: the old pod answers until the new one is
    // ready, so no request finds the index missing.
    if let Some(spec) = deployment.spec.as_mut() {
        spec.strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        });
    }
    let service = serving_service(&name, &ns, owner, &p.labels);
    (deployment, service)
}
