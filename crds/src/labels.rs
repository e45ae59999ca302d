//! Every `leitwerk.dev/*` label, annotation and finalizer, named once: the operator writes
//! them, the node stand-in, the load generator and the tests read them.

/// Label naming the FeatureSet a materialization Job belongs to.
pub const FEATURE_SET: &str = "leitwerk.dev/featureset";
/// Label naming the Model a training Job, Deployment or ServiceAccount belongs to.
pub const MODEL: &str = "leitwerk.dev/model";
/// Label carrying the version a training Job produces or a serving pod serves.
pub const VERSION: &str = "leitwerk.dev/version";
/// Label naming the Experiment a variant Deployment belongs to.
pub const EXPERIMENT: &str = "leitwerk.dev/experiment";
/// Label on a Model's batch scoring Jobs (value `true`); training Jobs carry [`VERSION`].
pub const BATCH_SCORING: &str = "leitwerk.dev/batch-scoring";
/// Label naming an Experiment's variant.
pub const VARIANT: &str = "leitwerk.dev/variant";
/// Label naming the RagIndex an object belongs to.
pub const RAG_INDEX: &str = "leitwerk.dev/rag-index";
/// Label carrying an indexing Job's build number.
pub const BUILD: &str = "leitwerk.dev/build";
/// Label naming the ContentPipeline a Job or ServiceAccount belongs to.
pub const CONTENT_PIPELINE: &str = "leitwerk.dev/content-pipeline";
/// Label carrying the run id a content Job works on.
pub const RUN: &str = "leitwerk.dev/run";

/// Annotation with the spec generation a Job worked from.
pub const GENERATION: &str = "leitwerk.dev/generation";
/// Annotation with the FeatureSet snapshot version a training Job reads.
pub const DATA_VERSION: &str = "leitwerk.dev/data-version";
/// Annotation with the digest of the ConfigMap sources a build read.
pub const SOURCES_DIGEST: &str = "leitwerk.dev/sources-digest";
/// Annotation with the schedule's due time a Job was started for.
pub const SCHEDULED_FOR: &str = "leitwerk.dev/scheduled-for";
/// Annotation with the hash of the projection of a child the operator last applied.
pub const APPLIED_HASH: &str = "leitwerk.dev/applied-hash";

/// Annotation an editor sets on a ContentPipeline to approve a run: its value is the run id.
pub const APPROVE: &str = "leitwerk.dev/approve";
/// Annotation an editor sets on a ContentPipeline to reject a run: its value is the run id.
pub const REJECT: &str = "leitwerk.dev/reject";
/// Annotation that asks for a failed run to be run again: any new value (e.g. the time) starts
/// the next attempt of the current run id.
pub const RERUN: &str = "leitwerk.dev/rerun";
/// Annotation naming who approved or rejected (recorded in status).
pub const APPROVED_BY: &str = "leitwerk.dev/approved-by";

/// Annotation asking the operator to steer a resource by hand, as `<action>:<nonce>` (the
/// nonce makes each request unique; each is handled once): on an Experiment `abort`,
/// `promote`, `pause`, `resume` or `retry`; on a Model `retrain`.
pub const CONTROL: &str = "leitwerk.dev/control";

/// Annotation naming who asked for a `leitwerk.dev/control` request (recorded with it).
pub const REQUESTED_BY: &str = "leitwerk.dev/requested-by";

/// Annotation pinning a Model to one of its versions (e.g. `v3`): that version serves, and
/// neither an Experiment nor the drift policy changes what serves until the annotation goes.
pub const PIN: &str = "leitwerk.dev/pin";

/// Annotation listing what a `LeitwerkPolicy` filled in when the resource was created, e.g.
/// `spec.budget.maxCost=5 (LeitwerkPolicy team-limits)`.
pub const DEFAULTED: &str = "leitwerk.dev/defaulted";

/// The finalizer that removes a RagIndex's index files before it goes.
pub const INDEX_FILES_FINALIZER: &str = "leitwerk.dev/index-files";

/// Every label, annotation and finalizer above, for the test that finds no copy of them as
/// a literal anywhere else.
pub const ALL: [&str; 24] = [
    DEFAULTED,
    BATCH_SCORING,
    FEATURE_SET,
    MODEL,
    VERSION,
    EXPERIMENT,
    VARIANT,
    RAG_INDEX,
    BUILD,
    GENERATION,
    DATA_VERSION,
    SOURCES_DIGEST,
    SCHEDULED_FOR,
    APPLIED_HASH,
    INDEX_FILES_FINALIZER,
    CONTENT_PIPELINE,
    RUN,
    APPROVE,
    REJECT,
    APPROVED_BY,
    RERUN,
    CONTROL,
    REQUESTED_BY,
    PIN,
];
