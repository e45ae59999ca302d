//! What the schema cannot check: budgets that cannot be met, approvals nobody can give,
//! briefings that are blank or contradict themselves, and targets this version cannot publish to.

use leitwerk_crds::ContentPipelineSpec;

use crate::validation::{FieldError, into_result};

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
    if let Some(key) = &spec.guardrails.redaction_key_secret_ref {
        refs.push((
            "spec.guardrails.redactionKeySecretRef".to_string(),
            key.name.clone(),
        ));
    }
    if let Some(hook) = spec.publish.as_ref().and_then(|p| p.webhook.as_ref()) {
        for (field, reference) in [
            ("tokenSecretRef", &hook.token_secret_ref),
            ("signingSecretRef", &hook.signing_secret_ref),
        ] {
            if let Some(r) = reference {
                refs.push((format!("spec.publish.webhook.{field}"), r.name.clone()));
            }
        }
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
            let (field, price) = [
                ("pricePer1kTokens", Some(g.price_per_1k_tokens)),
                ("inputPricePer1kTokens", g.input_price_per_1k_tokens),
                ("outputPricePer1kTokens", g.output_price_per_1k_tokens),
            ]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p?)))
            .fold(
                ("pricePer1kTokens", 0.0),
                |a, b| if b.1 > a.1 { b } else { a },
            );
            let cheapest_run = price * 100.0 / 1000.0;
            if cheapest_run > max_cost {
                errors.push(FieldError::new(format!("spec.generators[{i}].{field}"), format!("even 100 tokens cost {cheapest_run:.2} {}, above budget.maxCost {max_cost}", spec.budget.currency)));
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
    if let Some(target) = spec.publish.as_ref().and_then(|p| p.config_map.as_ref()) {
        let read = [
            ("spec.linkMapRef", spec.link_map_ref.as_ref()),
            ("spec.templatesRef", spec.templates_ref.as_ref()),
        ];
        if let Some((field, _)) = read
            .iter()
            .find(|(_, r)| r.is_some_and(|r| r.name == target.name))
        {
            errors.push(FieldError::new(
                "spec.publish.configMap.name",
                format!(
                    "{:?} is also {field}: publishing would overwrite what the pipeline reads; name another ConfigMap (Leitwerk creates it)",
                    target.name
                ),
            ));
        }
    }
    if spec
        .publish
        .as_ref()
        .and_then(|p| p.webhook.as_ref())
        .is_some_and(|w| w.signing_secret_ref.is_none())
    {
        errors.push(FieldError::new(
            "spec.publish.webhook.signingSecretRef",
            "is required: the receiver verifies every delivery by its HMAC-SHA256 signature; name a Secret key holding the shared signing key",
        ));
    }
    into_result(errors)
}
