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
