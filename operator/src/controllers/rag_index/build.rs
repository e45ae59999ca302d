//! The children of a RagIndex, built from its spec (pure): indexing Jobs with their source
//! mounts, the index deletion Job, the retrieval Deployment and Service, and the token-less
//! ServiceAccount.

use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

/// Where a ConfigMap source is mounted in the indexing pod.
pub const SOURCES_DIR: &str = "/sources";
/// Where the labelled set's ConfigMap key is mounted.
pub const EVALUATION_DIR: &str = "/evaluation";

/// Name of a RagIndex's retrieval Deployment and Service.
pub fn serving_name(index: &RagIndex) -> String {
    child_name(&index.name_any(), "retrieval")
}

/// Name of the ServiceAccount a RagIndex's pods run as.
pub fn service_account_name(index: &RagIndex) -> String {
    child_name(&index.name_any(), "ragindex")
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
        "{}/indexes/{}/{}/",
        store_of(index, config).trim_end_matches('/'),
        index.namespace().unwrap_or_default(),
        index.name_any()
    )
}

/// The token-less ServiceAccount of a RagIndex's Jobs and retrieval pods.
pub fn build_service_account(index: &RagIndex) -> Option<ServiceAccount> {
    service_account::token_less(index, service_account_name(index), RAG_INDEX_LABEL)
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

fn parts(index: &RagIndex, config: &OperatorConfig, read_only_store: bool) -> PodParts {
    let mut mounts = Vec::new();
    if let Some(m) = store_mount(
        &store_of(index, config),
        &config.artifact_claim_name,
        read_only_store,
    ) {
        mounts.push(m);
    }
    let mut secret_env: Vec<String> = config.artifact_store_secret.iter().cloned().collect();
    for s in &index.spec.sources {
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
    PodParts {
        labels: BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (RAG_INDEX_LABEL.to_string(), index.name_any()),
        ]),
        mounts,
        env: Vec::new(),
        resources: resources(index.spec.resources.as_ref()),
        scheduling: None,
        service_account: service_account_name(index),
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
    /// URLs of the index files the versions in status keep; every other file is removed.
    pub keep: Vec<String>,
    /// The schedule's due time this build is for, if the schedule started it.
    pub scheduled_for: Option<String>,
}

/// `leitwerk-trainer <command>` for this RagIndex and its artifact store.
fn trainer_args(command: &str, index: &RagIndex, config: &OperatorConfig) -> Vec<String> {
    vec![
        command.to_string(),
        "--namespace".into(),
        index.namespace().unwrap_or_default(),
        "--name".into(),
        index.name_any(),
        "--artifact-store".into(),
        store_of(index, config),
    ]
}

fn spec_env(value: Option<String>) -> EnvVar {
    EnvVar {
        name: "LEITWERK_SPEC".into(),
        value,
        ..Default::default()
    }
}

/// The indexing Job of one build.
pub fn build_index_job(index: &RagIndex, config: &OperatorConfig, inputs: &BuildInputs) -> Job {
    let spec = &index.spec;
    let mut p = parts(index, config, false);
    let mut args = trainer_args("index", index, config);
    for (i, source) in spec.sources.iter().enumerate() {
        if let Some(cm) = &source.config_map_ref {
            let dir = format!("{SOURCES_DIR}/{}", source.name);
            p.mounts.push(config_map_mount(
                &format!("source-{i}"),
                &cm.name,
                &dir,
                None,
            ));
            args.extend(["--source".into(), format!("{}={dir}", source.name)]);
        }
        if let Some(file) = &source.file {
            if let Some(claim) = &file.claim_name {
                let dir = static_prefix(&file.path);
                if !p.mounts.iter().any(|m| m.mount.mount_path == dir) {
                    p.mounts
                        .push(claim_mount(&format!("source-{i}"), claim, &dir, true));
                }
            }
            args.extend(["--source".into(), format!("{}={}", source.name, file.path)]);
        }
        if let Some(objects) = &source.object_store {
            args.extend([
                "--source".into(),
                format!("{}={}", source.name, objects.url),
            ]);
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
            args.extend(["--labelled".into(), format!("{EVALUATION_DIR}/{}", cm.key)]);
        } else if let Some(url) = &evaluation.labelled_set_url {
            args.extend(["--labelled".into(), url.clone()]);
        }
        args.extend(["--k".into(), evaluation.k.to_string()]);
    }
    if let Some(previous) = &inputs.previous {
        args.extend(["--previous".into(), previous.clone()]);
    }
    args.push("--prune".into());
    for url in &inputs.keep {
        args.extend(["--keep".into(), url.clone()]);
    }
    p.labels
        .insert(BUILD_LABEL.to_string(), inputs.number.to_string());
    p.env.push(spec_env(serde_json::to_string(spec).ok()));
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
    let mut p = parts(index, config, false);
    p.env.push(spec_env(Some("{}".into())));
    // It runs as the RagIndex's ServiceAccount, which the garbage collector keeps until the
    // RagIndex itself is gone (after this Job).
    let args = trainer_args("delete-index", index, config);
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

/// The retrieval Deployment and Service of the serving version.
pub fn build_serving(
    index: &RagIndex,
    config: &OperatorConfig,
    version: &IndexVersion,
) -> (Deployment, Service) {
    let p = parts(index, config, true);
    let ns = index.namespace().unwrap_or_default();
    let args = vec![
        "--index".to_string(),
        format!("{}={}", index.name_any(), version.url),
        "--metric-label".into(),
        format!("namespace={ns}"),
        "--search-mode".into(),
        index.spec.search.mode.to_string(),
    ];
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
