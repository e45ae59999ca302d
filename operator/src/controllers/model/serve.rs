//! Applying a Model's serving children and its ServiceAccount.

use leitwerk_crds::{Model, model::ModelVersion};

use super::build_serving;
use crate::{context::Context, reconcile::Error};

pub(super) async fn serve(
    ctx: &Context,
    model: &Model,
    ns: &str,
    version: &ModelVersion,
) -> Result<(i32, i32), Error> {
    crate::feedback_secret::ensure(ctx, model).await?;
    let (deployment, service) = build_serving(model, &ctx.config, version);
    let wanted = deployment.clone();
    let current = crate::apply::apply_serving(ctx, ns, deployment, service, "serving").await?;
    let available = crate::workloads::available_replicas(current.as_ref(), &wanted);
    Ok((available, model.spec.serving.replicas))
}
