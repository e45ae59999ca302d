//! Applying a Model's serving children and its ServiceAccount.

use super::*;

pub(super) async fn serve(
    ctx: &Context,
    model: &Model,
    ns: &str,
    version: &ModelVersion,
) -> Result<(i32, i32), Error> {
    let (deployment, service) = build_serving(model, &ctx.config, version);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = api
        .get_opt(&deployment.name_any())
        .await
        .map_err(|source| Error::Read {
            what: "serving Deployment".into(),
            source,
        })?;
    apply_if_changed(ctx, ns, deployment, current.as_ref(), "serving Deployment").await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let current_service = services
        .get_opt(&service.name_any())
        .await
        .map_err(|source| Error::Read {
            what: "serving Service".into(),
            source,
        })?;
    apply_if_changed(
        ctx,
        ns,
        service,
        current_service.as_ref(),
        "serving Service",
    )
    .await?;
    let available = current
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    Ok((available, model.spec.serving.replicas))
}

pub(super) async fn apply_service_account(
    ctx: &Context,
    ns: &str,
    desired: ServiceAccount,
) -> Result<(), Error> {
    let name = desired.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    if service_account_matches(existing.as_ref(), &desired) {
        return Ok(());
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|source| Error::Apply {
        what: format!("ServiceAccount {name}"),
        source,
    })?;
    ctx.metrics.wrote(Model::KIND, "child");
    Ok(())
}
