//! The serving Deployments and Services of the variants, the HTTPRoute or shared Service that
//! splits traffic, and carrying a verdict over to the Model.

use leitwerk_crds::command::MetricLabel;
use leitwerk_crds::versions::{Change, VersionState};

use k8s_openapi::{api::apps::v1::Deployment, api::core::v1::Service};
use kube::{
    Api, Resource, ResourceExt, api::ApiResource, api::DynamicObject, api::ListParams, api::Patch,
    api::PatchParams,
};
use leitwerk_crds::{
    Experiment, FIELD_MANAGER, Model, experiment::ExperimentPhase, experiment::ExperimentStatus,
    experiment::VariantRole, model::ModelVersion,
};

use super::{EXPERIMENT_LABEL, VARIANT_LABEL, candidate_name};
use crate::apply::apply_dynamic_if_changed;
use crate::apply::apply_if_changed;
use crate::{
    context::Context, controllers::model::serving_args, controllers::model::serving_image,
    controllers::model::serving_parts, reconcile::Error, reconcile::LeitwerkResource,
    workloads::MANAGED_BY, workloads::child_name, workloads::serving_deployment,
    workloads::serving_service,
};
use std::collections::BTreeMap;

/// Replicas for a weight out of `total` replicas: 0 at weight 0, else at least 1.
pub fn replicas_for(weight: i32, total: i32) -> i32 {
    if weight <= 0 {
        0
    } else {
        ((f64::from(weight) * f64::from(total.max(1)) / 100.0).round() as i32).max(1)
    }
}

/// The Deployment and Service of every variant, with replicas from the weights.
pub fn variant_workloads(
    exp: &Experiment,
    models: &[Option<Model>],
    status: &ExperimentStatus,
    config: &crate::config::OperatorConfig,
) -> Vec<(Deployment, Service)> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let owner = exp.controller_owner_ref(&()).unwrap_or_default();
    let stable_total = exp
        .spec
        .variants
        .iter()
        .zip(models)
        .find(|(v, _)| v.role == VariantRole::Stable)
        .and_then(|(_, m)| m.as_ref())
        .map_or(1, |m| m.spec.serving.replicas.max(1));
    let mirror = super::shadow_mirror(exp, status);
    let candidate = candidate_name(&exp.spec);
    status
        .variants
        .iter()
        .filter_map(|v| {
            let model = models.iter().flatten().find(|m| m.name_any() == v.model)?;
            let mut parts = serving_parts(model, config);
            parts.labels = BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (EXPERIMENT_LABEL.to_string(), name.clone()),
                (VARIANT_LABEL.to_string(), v.name.clone()),
            ]);
            // Callers reach every variant through one route, so one token for them all.
            parts
                .env
                .push(crate::feedback_secret::env(&crate::feedback_secret::name(
                    &name,
                )));
            let version = ModelVersion {
                version: v.version.clone(),
                artifact_url: v.artifact_url.clone(),
                ..Default::default()
            };
            let mut args = serving_args(model, &version);
            for (key, value) in [
                ("namespace", ns.clone()),
                ("experiment", name.clone()),
                ("variant", v.name.clone()),
            ] {
                args.metric_labels.push(MetricLabel(key.into(), value));
            }
            let mut weight = status.weights.get(&v.name).copied().unwrap_or(0);
            if mirror.is_some() && Some(&v.name) == candidate.as_ref() {
                // In the shadow the candidate scores a copy of all traffic: stable's replicas.
                weight = 100;
            }
            if mirror == Some(super::Mirror::StableServer)
                && v.name == super::stable_name(&exp.spec)
                && let Some(c) = &candidate
                && let Some(shadow) = super::shadow_of(&exp.spec)
            {
                args.shadow = Some(format!(
                    "http://{}.{ns}.svc:{}",
                    child_name(&name, c),
                    crate::workloads::HTTP_PORT
                ));
                args.shadow_threshold = shadow.threshold;
                args.shadow_model = super::other_model(&exp.spec);
            }
            let workload = child_name(&name, &v.name);
            let deployment = serving_deployment(
                &workload,
                &ns,
                owner.clone(),
                &serving_image(model, config),
                replicas_for(weight, stable_total),
                args,
                &parts,
            );
            let service = serving_service(&workload, &ns, owner.clone(), &parts.labels);
            Some((deployment, service))
        })
        .collect()
}

/// The HTTPRoute that splits traffic by weight between the variants' Services.
pub fn http_route(exp: &Experiment, status: &ExperimentStatus) -> serde_json::Value {
    let name = exp.name_any();
    let traffic = exp.spec.traffic.clone().unwrap_or_default();
    let backends: Vec<serde_json::Value> = status
        .variants
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": child_name(&name, &v.name),
                "port": crate::workloads::HTTP_PORT,
                "weight": status.weights.get(&v.name).copied().unwrap_or(0),
            })
        })
        .collect();
    let mut rule = serde_json::json!({"backendRefs": backends});
    if super::shadow_mirror(exp, status) == Some(super::Mirror::HttpRoute)
        && let Some(candidate) = candidate_name(&exp.spec)
    {
        // The Gateway sends a copy of every request to the candidate and drops its answer.
        rule["filters"] = serde_json::json!([{
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {
                "name": child_name(&name, &candidate),
                "port": crate::workloads::HTTP_PORT,
            }},
        }]);
    }
    let mut spec = serde_json::json!({"rules": [rule]});
    if let Some(gw) = &traffic.gateway_ref {
        spec["parentRefs"] = serde_json::json!([{"name": gw.name}]);
    }
    if !traffic.hostnames.is_empty() {
        spec["hostnames"] = serde_json::json!(traffic.hostnames);
    }
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": exp.namespace(),
            "labels": {MANAGED_BY.0: MANAGED_BY.1, EXPERIMENT_LABEL: name},
            "ownerReferences": [exp.controller_owner_ref(&())],
        },
        "spec": spec,
    })
}

pub(super) async fn apply_children(
    ctx: &Context,
    exp: &Experiment,
    models: &[Option<Model>],
    status: &mut ExperimentStatus,
    route: Option<&ApiResource>,
) -> Result<(), Error> {
    let ns = exp.namespace().unwrap_or_default();
    let name = exp.name_any();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |what: &str| {
        let what = what.to_string();
        move |source| Error::Read { what, source }
    };
    let current = deployments
        .list(&ListParams::default().labels(&format!("{EXPERIMENT_LABEL}={name}")))
        .await
        .map_err(read("variant Deployments"))?;
    crate::feedback_secret::ensure(ctx, exp).await?;
    for (deployment, service) in variant_workloads(exp, models, status, &ctx.config) {
        let workload = deployment.name_any();
        let existing = current.items.iter().find(|d| d.name_any() == workload);
        if let Some(v) = status
            .variants
            .iter_mut()
            .find(|v| v.workload.as_deref() == Some(&workload))
        {
            v.replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(0);
            v.ready_replicas = crate::workloads::available_replicas(existing, &deployment);
        }
        apply_if_changed(ctx, &ns, deployment, existing, "variant Deployment").await?;
        let existing_service = services
            .get_opt(&workload)
            .await
            .map_err(read("variant Service"))?;
        apply_if_changed(
            ctx,
            &ns,
            service,
            existing_service.as_ref(),
            "variant Service",
        )
        .await?;
    }
    match route {
        Some(ar) => {
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, ar);
            let existing = api.get_opt(&name).await.map_err(read("HTTPRoute"))?;
            let desired = http_route(exp, status);
            if apply_dynamic_if_changed(ctx, &api, desired, existing.as_ref(), "HTTPRoute").await? {
                ctx.metrics.wrote(Experiment::KIND, "child");
            }
        }
        None => {
            // Without a Gateway API, one Service spans every variant: traffic follows replicas.
            let owner = exp.controller_owner_ref(&()).unwrap_or_default();
            let mut labels = BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (EXPERIMENT_LABEL.to_string(), name.clone()),
            ]);
            // In the shadow only stable's pods answer callers; the candidate's get copies
            // from stable's tee through their own Service.
            if super::shadow_mirror(exp, status).is_some() {
                labels.insert(VARIANT_LABEL.to_string(), super::stable_name(&exp.spec));
            }
            let shared = serving_service(&name, &ns, owner, &labels);
            let existing = services.get_opt(&name).await.map_err(read("Service"))?;
            apply_if_changed(ctx, &ns, shared, existing.as_ref(), "Experiment Service").await?;
        }
    }
    Ok(())
}

/// A verdict of an Experiment for one version of a Model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelVerdict {
    /// The version won: it serves, and the version serving before is Retired.
    Promote {
        /// The version.
        version: String,
        /// Why, for the version's message.
        why: String,
    },
    /// The candidate lost: it is marked RolledBack; the serving version stays.
    RollBack {
        /// The version.
        version: String,
        /// Why, for the version's message.
        why: String,
    },
}

/// How often a verdict is re-read and re-tried when the Model changed in between.
const VERDICT_ATTEMPTS: usize = 5;

/// Writes a verdict into the Model's status without losing what others write at the same
/// time: the Model is read fresh, the verdict applied to its versions, and the status written
/// with the resourceVersion that was read (optimistic concurrency). A conflict (the Model
/// controller recorded a version meanwhile) reads again and retries. Returns whether the
/// Model shows the verdict (written now or before).
pub async fn write_verdict(
    client: &kube::Client,
    namespace: &str,
    model: &str,
    verdict: &ModelVerdict,
) -> Result<bool, Error> {
    let api: Api<Model> = Api::namespaced(client.clone(), namespace);
    let failed = |source| Error::Apply {
        what: format!("status of Model {model}"),
        source,
    };
    for _ in 0..VERDICT_ATTEMPTS {
        let Some(current) = api.get_opt(model).await.map_err(|source| Error::Read {
            what: format!("Model {model}"),
            source,
        })?
        else {
            return Ok(true);
        };
        let mut versions = current.status.clone().unwrap_or_default().versions;
        let change = match verdict {
            ModelVerdict::Promote { version, why } => versions.promote(version, why.clone()),
            ModelVerdict::RollBack { version, why } => {
                versions.reject_candidate(version, why.clone())
            }
        };
        if change != Change::Changed {
            return Ok(true);
        }
        let body = serde_json::json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": {
                "servingVersion": versions.serving().map(|v| v.version.clone()),
                "versions": versions,
            },
        });
        match api
            .patch_status(
                model,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(false)
}

/// Carries a verdict over to the Model: a promoted version serves (the one serving before is
/// Retired); a rolled-back candidate is marked RolledBack with the evidence. Returns whether
/// the Model shows it (then the Experiment stops touching the Model).
pub(super) async fn carry_over(
    ctx: &Context,
    exp: &Experiment,
    status: &ExperimentStatus,
    models: &[Option<Model>],
) -> Result<bool, Error> {
    let spec = &exp.spec;
    let ns = exp.namespace().unwrap_or_default();
    let promoted = status.phase == Some(ExperimentPhase::Promoted);
    let target = if promoted {
        status.winner.clone()
    } else if status.phase == Some(ExperimentPhase::RolledBack) {
        candidate_name(spec)
    } else {
        None
    };
    let Some(variant) = target.and_then(|t| status.variants.iter().find(|v| v.name == t)) else {
        return Ok(true);
    };
    let Some(model) = models
        .iter()
        .flatten()
        .find(|m| m.name_any() == variant.model)
    else {
        return Ok(true);
    };
    let evidence = status
        .decisions
        .last()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    let verdict = if promoted {
        ModelVerdict::Promote {
            version: variant.version.clone(),
            why: format!("promoted by Experiment {}: {evidence}", exp.name_any()),
        }
    } else {
        ModelVerdict::RollBack {
            version: variant.version.clone(),
            why: format!("rolled back by Experiment {}: {evidence}", exp.name_any()),
        }
    };
    // Nothing to write when the cached Model already shows it.
    let cached = model.status.clone().unwrap_or_default().versions;
    let shown = match &verdict {
        ModelVerdict::Promote { version, .. } => {
            cached.serving().is_some_and(|v| &v.version == version)
        }
        ModelVerdict::RollBack { version, .. } => cached
            .named(version)
            .is_none_or(|v| matches!(v.state, VersionState::RolledBack | VersionState::Serving)),
    };
    if shown {
        return Ok(true);
    }
    write_verdict(&ctx.client, &ns, &model.name_any(), &verdict).await?;
    ctx.metrics.wrote(Experiment::KIND, "model-status");
    // Confirmed once the Model controller's next status shows it (re-checked next reconcile).
    Ok(false)
}
