//! What a publish Job needs to write into the ConfigMap `spec.publish.configMap` names, and
//! nothing more: the ConfigMap itself (created empty and owned by the pipeline, so it goes
//! with it), a ServiceAccount of its own, and a Role that lets that ServiceAccount `get` and
//! `patch` this one ConfigMap by name. Only the publish pod of such a pipeline mounts a token
//! (projected, short-lived); every other Leitwerk workload stays token-less.
//!
//! A ConfigMap of that name that exists and is not this pipeline's is never taken over: the
//! pipeline reports it and publishes nowhere.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use leitwerk_crds::ContentPipeline;
use leitwerk_crds::labels::CONTENT_PIPELINE;

use crate::service_account;
use crate::workloads::{MANAGED_BY, child_name};

/// The children that let the publish Job write the target ConfigMap.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The publish Job's ServiceAccount.
    pub service_account: ServiceAccount,
    /// Get and patch on the target, by name.
    pub role: Role,
    /// The Role bound to the ServiceAccount.
    pub binding: RoleBinding,
    /// The target, empty until the first publication.
    pub config_map: ConfigMap,
}

/// The target ConfigMap's name, when the pipeline publishes to one.
pub fn target(pipeline: &ContentPipeline) -> Option<&str> {
    pipeline
        .spec
        .publish
        .as_ref()?
        .config_map
        .as_ref()
        .map(|c| c.name.as_str())
}

/// Name of the publisher's ServiceAccount, Role and RoleBinding.
pub fn publisher_name(pipeline: &ContentPipeline) -> String {
    child_name(&pipeline.name_any(), "publisher")
}

fn meta(pipeline: &ContentPipeline, name: String) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: Some(name),
        namespace: pipeline.namespace(),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (CONTENT_PIPELINE.to_string(), pipeline.name_any()),
        ])),
        owner_references: Some(vec![pipeline.controller_owner_ref(&())?]),
        ..ObjectMeta::default()
    })
}

/// The publisher of a pipeline that publishes to a ConfigMap; `None` for other targets or
/// a pipeline that was never stored.
pub fn build(pipeline: &ContentPipeline) -> Option<Publisher> {
    let target = target(pipeline)?.to_string();
    let name = publisher_name(pipeline);
    let service_account = service_account::token_less(pipeline, name.clone(), CONTENT_PIPELINE)?;
    let role = Role {
        metadata: meta(pipeline, name.clone())?,
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![target.clone()]),
            verbs: vec!["get".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(pipeline, name.clone())?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: pipeline.namespace(),
            ..Subject::default()
        }]),
    };
    let config_map = ConfigMap {
        metadata: meta(pipeline, target)?,
        ..ConfigMap::default()
    };
    Some(Publisher {
        service_account,
        role,
        binding,
        config_map,
    })
}

/// Runs `job` as the publisher: its ServiceAccount, with the token projected into this pod
/// only.
pub fn run_as_publisher(job: &mut Job, pipeline: &ContentPipeline) {
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.service_account_name = Some(publisher_name(pipeline));
        pod.automount_service_account_token = Some(true);
    }
}

/// Whether `existing` (the ConfigMap named as the target) may be published into: absent (it
/// is created), or owned by this pipeline.
pub fn ours(existing: Option<&ConfigMap>, pipeline: &ContentPipeline) -> bool {
    let uid = pipeline.uid();
    existing.is_none_or(|c| {
        c.owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true))
    })
}
