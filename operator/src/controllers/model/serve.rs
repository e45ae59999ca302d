//! Applying a Model's serving children and its ServiceAccount.

use super::*;

pub(super) async fn serve(
    ctx: &Context,
    model: &Model,
    ns: &str,
    version: &ModelVersion,
) -> Result<(i32, i32), Error> {
    let (deployment, service) = build_serving(model, &ctx.config, version);
    let current = crate::apply::apply_serving(ctx, ns, deployment, service, "serving").await?;
    let available = current
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    Ok((available, model.spec.serving.replicas))
}
