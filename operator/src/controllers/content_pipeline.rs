//! The ContentPipeline controller.

use std::sync::Arc;

use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, watcher},
};
use leitwerk_crds::{
    ContentPipeline, ContentPipelineSpec, RagIndex, content_pipeline::ContentPipelinePhase,
};

use crate::references::{first_missing_secret, get_opt};
use crate::watch::{Scope, drain, referrers};
use crate::{
    context::Context,
    reconcile::{self, LeitwerkResource, Outcome, RECHECK_UNWATCHED},
    status::{Desired, READY},
    validation::{FieldError, into_result, summarize},
};

pub use crate::reconcile::Error;

/// Runs the ContentPipeline controller; it watches RagIndexes so a pipeline waiting for its
/// index moves on as soon as the index appears or becomes ready.
pub async fn run(
    ctx: Context,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<ContentPipeline>>(client.clone()),
        watcher::Config::default(),
    );
    let pipelines = controller.store();
    let stream = controller
        .watches(
            scope.api::<DeserializeGuard<RagIndex>>(client),
            watcher::Config::default(),
            referrers(pipelines, |p: &ContentPipeline, name| {
                p.spec.rag_index_ref.name == name
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, Arc::new(ctx));
    drain(ContentPipeline::KIND, stream).await;
}

/// Reconciles one ContentPipeline: validate → resolve the RagIndex and Secrets → status.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<ContentPipeline>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    reconcile::guarded(obj, ctx, |pipeline, ctx| {
        Box::pin(reconcile_content_pipeline(pipeline, ctx))
    })
    .await
}

async fn reconcile_content_pipeline(
    pipeline: &ContentPipeline,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns = pipeline.namespace().unwrap_or_default();
    let outcome = match validate(&pipeline.spec) {
        Err(errors) => Outcome::invalid(summarize(&errors)),
        Ok(()) => {
            let index_name = &pipeline.spec.rag_index_ref.name;
            let index = get_opt::<RagIndex>(ctx, &ns, index_name)
                .await
                .map_err(|source| Error::Read {
                    what: format!("RagIndex {index_name}"),
                    source,
                })?;
            match first_missing_secret(ctx, &ns, &secret_refs(&pipeline.spec))
                .await
                .map_err(|source| Error::Read {
                    what: "Secrets".into(),
                    source,
                })? {
                Some((field, name)) => {
                    Outcome::missing("Secret", &name, &field, &ns).recheck_after(RECHECK_UNWATCHED)
                }
                None => decide(pipeline, index.as_ref()),
            }
        }
    };
    let action = reconcile::finish(ctx, pipeline, outcome).await?;
    Ok(action)
}

/// The status of a valid pipeline given its RagIndex.
pub fn decide(
    pipeline: &ContentPipeline,
    index: Option<&RagIndex>,
) -> Outcome<ContentPipelinePhase> {
    let ns = pipeline.namespace().unwrap_or_default();
    let name = &pipeline.spec.rag_index_ref.name;
    let Some(index) = index else {
        return Outcome::missing("RagIndex", name, "spec.ragIndexRef.name", &ns);
    };
    let index_ready = index.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True")
    });
    if !index_ready {
        return Outcome::new(
            ContentPipelinePhase::WaitingForIndex,
            Desired::not(
                READY,
                "WaitingForRagIndex",
                format!("waiting for RagIndex {name:?} to become Ready"),
            ),
        );
    }
    Outcome::new(
        ContentPipelinePhase::Pending,
        Desired::not(
            READY,
            "AwaitingGeneration",
            "the RagIndex is ready; this operator version does not run content generation yet",
        ),
    )
}

/// `(field, secret name)` of every Secret the spec references.
pub fn secret_refs(spec: &ContentPipelineSpec) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = spec
        .generators
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            Some((
                format!("spec.generators[{i}].openAiCompatible.apiKeySecretRef"),
                g.open_ai_compatible
                    .as_ref()?
                    .api_key_secret_ref
                    .as_ref()?
                    .name
                    .clone(),
            ))
        })
        .collect();
    if let Some(token) = spec
        .publish
        .as_ref()
        .and_then(|p| p.webhook.as_ref())
        .and_then(|w| w.token_secret_ref.as_ref())
    {
        refs.push((
            "spec.publish.webhook.tokenSecretRef".to_string(),
            token.name.clone(),
        ));
    }
    refs
}

/// The fewest words a section of the briefing's structure can say something in.
pub const MIN_WORDS_PER_SECTION: i64 = 40;

/// Checks what the schema cannot: budgets that cannot be met, approvals nobody can give, and
/// briefings that are blank or contradict themselves.
pub fn validate(spec: &ContentPipelineSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(max_cost) = spec.budget.max_cost
        && max_cost > 0.0
    {
        for (i, g) in spec.generators.iter().enumerate() {
            let cheapest_run = g.price_per_1k_tokens * 100.0 / 1000.0;
            if cheapest_run > max_cost {
                errors.push(FieldError::new(format!("spec.generators[{i}].pricePer1kTokens"), format!("even 100 tokens cost {cheapest_run:.2} {}, above budget.maxCost {max_cost}", spec.budget.currency)));
            }
        }
    }
    if let Some(approval) = &spec.approval
        && approval.required
        && approval.approvers.is_empty()
    {
        errors.push(FieldError::new(
            "spec.approval.approvers",
            "approval is required but nobody may approve: list at least one user or group",
        ));
    }
    for (field, text) in [
        ("spec.briefing.goal", &spec.briefing.goal),
        ("spec.briefing.persona", &spec.briefing.persona),
    ] {
        if text.trim().is_empty() {
            errors.push(FieldError::new(
                field,
                "is blank: say what to write and for whom",
            ));
        }
    }
    let sections = spec.briefing.structure.len();
    if let Some(words) = spec.briefing.target_words
        && sections > 0
        && i64::from(words) < MIN_WORDS_PER_SECTION * sections as i64
    {
        errors.push(FieldError::new(
            "spec.briefing.targetWords",
            format!(
                "{words} words cannot hold the {sections} sections of briefing.structure (at least {MIN_WORDS_PER_SECTION} words each): raise targetWords to {} or drop sections",
                MIN_WORDS_PER_SECTION * sections as i64
            ),
        ));
    }
    if let Some(words) = spec.briefing.target_words {
        // A word is about 1.3 tokens; outline, draft and checks read it about four times.
        let needed = i64::from(words) * 13 / 10 * 4;
        if needed > spec.budget.max_tokens {
            errors.push(FieldError::new("spec.budget.maxTokens", format!("{} tokens cannot produce {words} words through every stage (about {needed} needed)", spec.budget.max_tokens)));
        }
    }
    into_result(errors)
}

#[cfg(test)]
mod tests {
    use leitwerk_crds::RagIndexStatus;

    use super::*;
    use crate::status::{Desired, next_status};

    fn example() -> ContentPipeline {
        yaml_serde::from_str(include_str!(
            "../../../examples/seo-article/contentpipeline.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn pipeline_waits_for_its_index_to_exist_and_become_ready() {
        assert_eq!(decide(&example(), None).ready.reason, "RagIndexNotFound");
        let mut index: RagIndex = yaml_serde::from_str(include_str!(
            "../../../examples/product-docs-rag/ragindex.yaml"
        ))
        .unwrap();
        assert_eq!(
            decide(&example(), Some(&index)).ready.reason,
            "WaitingForRagIndex"
        );
        let ready: RagIndexStatus = next_status(
            None,
            Some(1),
            leitwerk_crds::rag_index::RagIndexPhase::Ready,
            &[Desired::ok(READY, "Indexed", "v1")],
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        );
        index.status = Some(ready);
        assert_eq!(
            decide(&example(), Some(&index)).ready.reason,
            "AwaitingGeneration"
        );
    }

    #[test]
    fn impossible_budgets_and_approvals_are_rejected() {
        assert_eq!(validate(&example().spec), Ok(()));
        let mut spec = example().spec;
        spec.budget.max_tokens = 1000;
        spec.approval.as_mut().unwrap().approvers.clear();
        spec.generators[0].price_per_1k_tokens = 500.0;
        let fields: Vec<String> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.generators[0].pricePer1kTokens",
                "spec.approval.approvers",
                "spec.budget.maxTokens"
            ]
        );
    }

    #[test]
    fn blank_and_contradictory_briefings_name_their_fields() {
        let mut spec = example().spec;
        spec.briefing.goal = "   ".into();
        spec.briefing.target_words = Some(100);
        let errors = validate(&spec).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.briefing.goal", "spec.briefing.targetWords"]);
        assert!(
            errors[1].message.contains("3 sections") && errors[1].message.contains("120"),
            "{}",
            errors[1].message
        );
    }

    #[test]
    fn every_secret_reference_is_checked() {
        let refs = secret_refs(&example().spec);
        assert_eq!(
            refs,
            vec![(
                "spec.generators[0].openAiCompatible.apiKeySecretRef".to_string(),
                "llm-gateway".to_string()
            )]
        );
    }
}
