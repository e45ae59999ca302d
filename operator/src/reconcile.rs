//! The steps every controller shares: finishing a reconcile (status + transition Event),
//! reporting malformed objects, and the error policy.

use std::{fmt::Debug, sync::Arc, time::Duration};

use k8s_openapi::{NamespaceResourceScope, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::controller::Action,
};
use leitwerk_crds::{
    ContentPipeline, Experiment, FIELD_MANAGER, FeatureSet, Model, RagIndex, ResourceStatus,
    common::Phase, content_pipeline::ContentPipelineStatus, experiment::ExperimentStatus,
    feature_set::FeatureSetStatus, model::ModelStatus, rag_index::RagIndexStatus,
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, info, warn};

pub use crate::notice::Notice;
use crate::{
    context::Context,
    status::{Desired, READY, condition_key, differs_ignoring_time, next_status},
};

/// How long a reconcile that waits for something the operator cannot watch (a Secret, a
/// ConfigMap) waits before looking again.
pub const RECHECK_UNWATCHED: Duration = Duration::from_secs(30);

/// How soon a reconcile whose status write met a newer object looks again (the watch event
/// of the newer object usually comes first).
pub const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// A Leitwerk resource kind as the shared steps see it.
pub trait LeitwerkResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The status type.
    type Status: ResourceStatus + Serialize + Debug + Send + Sync;
    /// The kind, as used in metrics and logs.
    const KIND: &'static str;
    /// The current status.
    fn current_status(&self) -> Option<&Self::Status>;
}

macro_rules! leitwerk_resource {
    ($kind:ty, $status:ty, $name:literal) => {
        impl LeitwerkResource for $kind {
            type Status = $status;
            const KIND: &'static str = $name;
            fn current_status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
        }
    };
}

leitwerk_resource!(FeatureSet, FeatureSetStatus, "FeatureSet");
leitwerk_resource!(Model, ModelStatus, "Model");
leitwerk_resource!(Experiment, ExperimentStatus, "Experiment");
leitwerk_resource!(RagIndex, RagIndexStatus, "RagIndex");
leitwerk_resource!(ContentPipeline, ContentPipelineStatus, "ContentPipeline");

/// The phase type of a kind.
pub type PhaseOf<K> = <<K as LeitwerkResource>::Status as ResourceStatus>::Phase;

/// What a reconcile decided, before it is written: a phase, the Ready condition, any other
/// conditions, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<P> {
    /// The short phase.
    pub phase: P,
    /// The Ready condition.
    pub ready: Desired,
    /// Further conditions.
    pub conditions: Vec<Desired>,
    /// When to reconcile again without a watch event; `None` waits for a change.
    pub recheck: Option<Duration>,
    /// Events this reconcile decided to publish (besides the Ready transition's).
    pub events: Vec<Notice>,
    /// Work goes on although Ready holds (a canary shifting traffic): kstatus' Reconciling
    /// is True meanwhile, so that Flux and `kubectl wait` wait for the end.
    pub moving: bool,
}

impl<P: Phase> Outcome<P> {
    /// An outcome that waits for a watched change.
    pub fn new(phase: P, ready: Desired) -> Self {
        Self {
            phase,
            ready,
            conditions: Vec::new(),
            recheck: None,
            events: Vec::new(),
            moving: false,
        }
    }

    /// The same outcome, publishing `events` too.
    pub fn with_events(mut self, events: impl IntoIterator<Item = Notice>) -> Self {
        self.events.extend(events);
        self
    }

    /// The same outcome, re-checked after `after`.
    pub fn recheck_after(mut self, after: Duration) -> Self {
        self.recheck = Some(after);
        self
    }

    /// A reference that does not resolve: phase Pending, Ready=False with reason
    /// `<Kind>NotFound` and a message naming the object, the field and the fix. `field` may
    /// carry context after the path (`spec.variants[0].modelRef.name (variant "canary")`).
    pub fn missing(kind: &str, name: &str, field: &str, namespace: &str) -> Self {
        Self::new(
            P::PENDING,
            Desired::failed(
                READY,
                format!("{kind}NotFound"),
                format!(
                    "{kind} {name:?} named by {field} does not exist in namespace {namespace:?}: create it or fix the reference"
                ),
            ),
        )
    }

    /// An invalid spec: Ready=False, reason InvalidSpec, phase Invalid; waits for a change.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(P::INVALID, Desired::failed(READY, "InvalidSpec", message))
    }
}

/// Errors of the shared steps.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Writing the status failed.
    #[error("failed to patch the status of {kind} {name}")]
    PatchStatus {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Errors of a reconcile. All of them are transient: invalid specs never become errors,
/// they are recorded in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a referenced object failed.
    #[error("failed to read {what}")]
    Read {
        /// What was read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Applying a child object failed.
    #[error("failed to apply {what}")]
    Apply {
        /// What was applied.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing a finalizer failed (422 when another writer changed the list).
    #[error("failed to update the finalizers of {what}")]
    Finalizer {
        /// The object.
        what: String,
        /// Why.
        #[source]
        source: crate::finalizer::Error,
    },
    /// A shared step failed.
    #[error(transparent)]
    Step(#[from] StepError),
}

impl Categorized for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "ReadFailed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Finalizer { .. } => "FinalizerFailed",
            Error::Step(StepError::PatchStatus { .. }) => "StatusPatchFailed",
        }
    }
}

/// What a controller's reconcile of one valid object returns, for [`guarded`].
pub type Body<'a> = futures::future::BoxFuture<'a, Result<Action, Error>>;

/// Owns the start and end of every reconcile: times it, reports a malformed object (and
/// skips it until it changes) instead of running `body`, and resets the object's backoff once
/// `body` succeeded. Errors go to [`error_policy`].
pub async fn guarded<K: LeitwerkResource>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    body: for<'a> fn(&'a K, &'a Context) -> Body<'a>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(K::KIND);
    let resource = match &obj.0 {
        Ok(r) => r,
        Err(invalid) => return Ok(report_malformed::<K>(&ctx, invalid).await),
    };
    let action = body(resource, &ctx).await?;
    ctx.reset_backoff(&backoff_key(resource));
    Ok(action)
}

/// Writes the status that `outcome` implies, if it differs from the current one in more than
/// timestamps, and publishes an Event when the Ready condition changes. Returns the action.
pub async fn finish<K: LeitwerkResource>(
    ctx: &Context,
    obj: &K,
    outcome: Outcome<PhaseOf<K>>,
) -> Result<Action, StepError> {
    finish_with(ctx, obj, outcome, |_| {}).await
}

/// The `Reconciling` and `Stalled` conditions that kstatus (Flux, `kubectl wait`, cli-utils)
/// reads, derived from Ready: while Ready is False because the operator works or waits,
/// Reconciling is True; while it is False because something failed or is wrong (a Warning),
/// Stalled is True, with Ready's reason and message. Both are False once Ready holds, unless
/// the work goes on (`moving`: Reconciling stays True).
pub fn kstatus_conditions(ready: &Desired, moving: bool) -> [Desired; 2] {
    let failing = !ready.status && ready.severity == crate::status::Severity::Warning;
    let working = (!ready.status && !failing) || (ready.status && moving);
    let pick = |type_: &'static str, holds: bool| {
        if holds {
            Desired::ok(type_, ready.reason.clone(), ready.message.clone())
        } else {
            Desired::not(type_, "AsExpected", "")
        }
    };
    [pick("Reconciling", working), pick("Stalled", failing)]
}

/// Like [`finish`], with the resource's own status fields (versions, snapshot, …) set by
/// `fields` on top of the phase and conditions.
pub async fn finish_with<K: LeitwerkResource>(
    ctx: &Context,
    obj: &K,
    outcome: Outcome<PhaseOf<K>>,
    fields: impl FnOnce(&mut K::Status),
) -> Result<Action, StepError> {
    let generation = obj.meta().generation;
    let mut desired = vec![outcome.ready.clone()];
    desired.extend(outcome.conditions.iter().cloned());
    desired.extend(kstatus_conditions(&outcome.ready, outcome.moving));
    let current = obj.current_status();
    let mut next: K::Status = next_status(
        current,
        generation,
        outcome.phase,
        &desired,
        Timestamp::now(),
    );
    fields(&mut next);
    if differs_ignoring_time(current, &next) {
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        // The status was computed from this copy of the object: the write carries its
        // resourceVersion, so that it cannot overwrite what another writer (an Experiment
        // promoting a version, this controller's own previous write not yet in the cache)
        // recorded since. A conflict is no error: the newer object comes with a watch event.
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": obj.resource_version()},
            "status": next,
        });
        let written = api
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await;
        match written {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                debug!(kind = K::KIND, name = %obj.name_any(), "status changed since it was read; reconciling the newer object");
                ctx.metrics.status_conflict(K::KIND);
                return Ok(Action::requeue(CONFLICT_RETRY));
            }
            Err(source) => {
                return Err(StepError::PatchStatus {
                    kind: K::KIND,
                    name: obj.name_any(),
                    source,
                });
            }
        }
        ctx.metrics.wrote(K::KIND, "status");
        let before = condition_key(current, READY);
        let after = condition_key(Some(&next), READY);
        if before != after {
            info!(kind = K::KIND, name = %obj.name_any(), namespace = %ns, reason = %outcome.ready.reason, ready = outcome.ready.status, "{}", outcome.ready.message);
            let notice = Notice::of(
                needs_attention(&outcome.ready),
                "Reconcile",
                outcome.ready.reason.clone(),
                outcome.ready.message.clone(),
            );
            publish(ctx, K::KIND, &notice, &obj.object_ref(&())).await;
        }
    }
    // Published even when the status write was skipped (nothing but the Events changed) and
    // never before a write that met a newer object: that reconcile is repeated.
    for notice in &outcome.events {
        publish(ctx, K::KIND, notice, &obj.object_ref(&())).await;
    }
    Ok(match outcome.recheck {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Whether a Ready condition asks a human to act (a Warning Event). Each reason carries its
/// severity ([`Desired::failed`]); waiting for the operator's own work is Normal.
pub fn needs_attention(ready: &Desired) -> bool {
    ready.severity == crate::status::Severity::Warning
}

/// Publishes a Notice as an Event: the one place every Event of the operator goes out. A
/// failure is logged, never fatal to the reconcile.
pub async fn publish(
    ctx: &Context,
    kind: &'static str,
    notice: &Notice,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    let event = notice.event();
    match ctx.recorder.publish(&event, reference).await {
        Ok(()) => ctx.metrics.wrote(kind, "event"),
        Err(err) => warn!(kind, error = %err, "failed to publish event {}", event.reason),
    }
}

/// Reports an object that does not match the types (for example one stored before a schema
/// change): a Warning Event on it, a log line and an error metric. The controller goes on with
/// every other object.
pub async fn report_malformed<K: LeitwerkResource>(
    ctx: &Context,
    invalid: &InvalidObject,
) -> Action {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid.metadata.namespace.clone();
    warn!(kind = K::KIND, %name, namespace = ?namespace, error = %invalid.error, "object does not match the {} schema", K::KIND);
    ctx.metrics.reconcile_failed(K::KIND, "MalformedObject");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(name),
        namespace,
        uid: invalid.metadata.uid.clone(),
        resource_version: invalid.metadata.resource_version.clone(),
        ..Default::default()
    };
    let notice = Notice::warning(
        "Reconcile",
        "MalformedObject",
        format!(
            "the object does not match the {} schema and is skipped until it changes: {}",
            K::KIND,
            invalid.error
        ),
    );
    publish(ctx, K::KIND, &notice, &reference).await;
    Action::await_change()
}

/// An error that has a category (the metric label and the Event reason).
pub trait Categorized: std::error::Error {
    /// PascalCase category.
    fn category(&self) -> &'static str;
}

/// The error chain in one line, truncated to 1 KiB.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    truncate(&text, 1024)
}

/// Truncates to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The error policy of every controller. Errors that reach it are transient (the API
/// failed): they requeue with exponential backoff and are counted and published as Events.
/// Invalid specs never reach it: reconciles record them in status and wait for a change.
pub fn error_policy<K: LeitwerkResource, E: Categorized>(
    obj: Arc<DeserializeGuard<K>>,
    err: &E,
    ctx: Arc<Context>,
) -> Action {
    let (key, reference) = match &obj.0 {
        Ok(o) => (
            format!(
                "{}/{}/{}",
                K::KIND,
                o.namespace().unwrap_or_default(),
                o.name_any()
            ),
            Some(o.object_ref(&())),
        ),
        Err(invalid) => (
            format!(
                "{}/{:?}/{:?}",
                K::KIND,
                invalid.metadata.namespace,
                invalid.metadata.name
            ),
            None,
        ),
    };
    let chain = error_chain(err);
    ctx.metrics.reconcile_failed(K::KIND, err.category());
    let backoff = ctx.next_backoff(&key);
    warn!(kind = K::KIND, object = %key, category = err.category(), retry_in_s = backoff.as_secs(), "reconcile failed: {chain}");
    if let Some(reference) = reference {
        let notice = Notice::warning("Reconcile", err.category(), chain);
        let ctx = ctx.clone();
        tokio::spawn(async move { publish(&ctx, K::KIND, &notice, &reference).await });
    }
    Action::requeue(backoff)
}

/// The key used for backoff bookkeeping of an object.
pub fn backoff_key<K: LeitwerkResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        let text = "ä".repeat(600);
        let cut = truncate(&text, 1023);
        assert!(cut.len() <= 1023);
        assert!(cut.chars().all(|c| c == 'ä'));
    }

    #[test]
    fn error_chain_joins_sources() {
        let inner = std::io::Error::other("connection refused");
        let outer = StepError::PatchStatus {
            kind: "Model",
            name: "m".into(),
            source: kube::Error::Service(Box::new(inner)),
        };
        let chain = error_chain(&outer);
        assert!(
            chain.starts_with("failed to patch the status of Model m: "),
            "{chain}"
        );
        assert!(chain.contains("connection refused"), "{chain}");
    }
}

#[cfg(test)]
mod outcome_tests {
    use leitwerk_crds::model::ModelPhase;

    use super::*;

    #[test]
    fn invalid_specs_wait_for_a_change_and_need_attention() {
        let outcome: Outcome<ModelPhase> = Outcome::invalid("spec.interval: too short");
        assert_eq!(
            (outcome.phase, outcome.recheck),
            (ModelPhase::Invalid, None)
        );
        assert!(needs_attention(&outcome.ready));
    }

    #[test]
    fn waiting_for_the_operators_own_work_is_not_a_warning() {
        assert!(!needs_attention(&Desired::not(
            READY,
            "WaitingForFeatureSet",
            "x"
        )));
        assert!(needs_attention(&Desired::failed(
            READY,
            "SecretNotFound",
            "x"
        )));
        assert!(!needs_attention(&Desired::ok(READY, "Serving", "x")));
        assert_eq!(
            Outcome::new(
                ModelPhase::Pending,
                Desired::failed(READY, "SecretNotFound", "x")
            )
            .recheck_after(RECHECK_UNWATCHED)
            .recheck,
            Some(RECHECK_UNWATCHED)
        );
    }
}
