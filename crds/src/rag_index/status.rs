//! What the operator observes of a RagIndex: its status, builds and versions, and the
//! evaluation gate a version passes before it serves.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::rag_index::SearchMode;
use crate::summary::{EmbeddingModelIdentity, RetrievalQuality};
use crate::versions::{Stage, Version, Versions};

/// What the operator observed of a RagIndex.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RagIndexStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short phase; the schema lists every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RagIndexPhase>,
    /// Standard conditions: `Ready`, `Indexed` (the last build), `Evaluated` (the last
    /// version's quality against the gate), `Serving` (the retrieval Deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The progress of the Job at work now, from its newest report; absent when none runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
    /// The index version that serves retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<String>,
    /// The newest version built (it may have been refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// The retrieval Service's URL (`POST <endpoint>/v1/indexes/<name>/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Documents in the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<i64>,
    /// Chunks in the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i64>,
    /// recall@k of the serving version on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    /// nDCG@k of the serving version on the labelled set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndcg_at_k: Option<f64>,
    /// recall@k of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_recall_at_k: Option<f64>,
    /// nDCG@k of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ndcg_at_k: Option<f64>,
    /// The embedding model of the serving version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<EmbeddingModelIdentity>,
    /// When the sources were last read into a version (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_indexed: Option<String>,
    /// Personal data found in the serving version's documents (redacted or flagged, as
    /// `safety.personalData` says); counts only, never values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<i64>,
    /// Chunks of the serving version flagged for personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<i64>,
    /// Chunks of the serving version quarantined from serving (prompt-injection text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<i64>,
    /// Documents of the serving version whose HTML hid text from readers (left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_html: Option<i64>,
    /// The last indexing build: running, succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build: Option<IndexBuild>,
    /// Where `refreshSchedule` stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::model::ScheduleStatus>,
    /// Index versions, oldest first, at most `versionHistoryLimit` (the serving one is kept).
    #[serde(default, skip_serializing_if = "Versions::is_empty")]
    pub versions: Versions<IndexVersion>,
}

/// One indexing build (a Job).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexBuild {
    /// Build number, counted per RagIndex.
    pub number: i64,
    /// The Job.
    pub job: String,
    /// Where it stands.
    pub state: BuildState,
    /// The spec generation it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Digest of the ConfigMap sources (and labelled set) it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_digest: Option<String>,
    /// The version it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Documents new in this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<i64>,
    /// Documents whose content changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<i64>,
    /// Documents no longer in the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<i64>,
    /// Documents kept with their vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<i64>,
    /// Chunks embedded by this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<i64>,
    /// Where the encoder ran: `GPU` or `CPU`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_on: Option<String>,
    /// Why it ran on the CPU although the spec asks for a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_fallback: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

crate::common::named_enum! {
    /// Where an indexing build stands.
    #[derive(Default)]
    pub enum BuildState {
        /// The Job runs (or waits to be scheduled).
        #[default]
        Running,
        /// The Job wrote a version.
        Succeeded,
        /// The Job failed; the serving version stays.
        Failed,
    }
}

/// One index version: an immutable, digest-named index file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexVersion {
    /// Version (first 12 hex digits of the index file's digest).
    pub version: String,
    /// Where it stands.
    pub state: IndexVersionState,
    /// `sha256:<hex>` of the index file.
    pub digest: String,
    /// URL of the index file.
    pub url: String,
    /// Its Qdrant collection, when `spec.vectorStore.qdrant` held it: it serves through the
    /// alias `spec.vectorStore.qdrant.collection`; from the index file otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// The build that produced it.
    pub build: i64,
    /// Documents.
    pub documents: i64,
    /// Chunks.
    pub chunks: i64,
    /// Quality on the labelled set, in the mode it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<RetrievalQuality>,
    /// The search mode it serves in: `spec.search.mode`, or the better of both measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<SearchMode>,
    /// Quality in each mode, when the spec left the mode to the labelled set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quality_by_mode: BTreeMap<SearchMode, RetrievalQuality>,
    /// The embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<EmbeddingModelIdentity>,
    /// Personal data found in its documents, by kind (`e-mail address`, `IBAN`, …): counts
    /// only, never values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub personal_data: BTreeMap<String, i64>,
    /// Chunks flagged for personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<i64>,
    /// Chunks quarantined from serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<i64>,
    /// Documents whose HTML hid text from readers (that text is never indexed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_html: Option<i64>,
    /// When it was built (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
    /// Why it serves, or why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

crate::common::named_enum! {
    /// Where an index version stands.
    #[derive(Default)]
    pub enum IndexVersionState {
        /// It serves retrieval.
        #[default]
        Serving,
        /// It served before a newer version replaced it.
        Retired,
        /// It failed its evaluation; it never served.
        Refused,
    }
}

/// An index version in the shared lifecycle. Its gate decides at once whether it serves, so
/// it is never a Candidate, and an index changes by a new build rather than by a rollback: a
/// version taken out of service is Retired.
impl Version for IndexVersion {
    fn name(&self) -> &str {
        &self.version
    }
    fn order(&self) -> i64 {
        self.build
    }
    fn stage(&self) -> Stage {
        match self.state {
            IndexVersionState::Serving => Stage::Serving,
            IndexVersionState::Retired => Stage::Retired,
            IndexVersionState::Refused => Stage::Refused,
        }
    }
    fn has_artifact(&self) -> bool {
        !self.url.is_empty()
    }
    fn set_stage(&mut self, stage: Stage, why: Option<String>) {
        self.state = match stage {
            Stage::Serving => IndexVersionState::Serving,
            Stage::Candidate | Stage::Retired | Stage::RolledBack => IndexVersionState::Retired,
            Stage::Refused => IndexVersionState::Refused,
        };
        if why.is_some() {
            self.message = why;
        }
    }
}

/// Whether a new version may replace the serving one: it must reach `minRecall` and be no
/// more than `tolerance` below the serving version's recall@k. The refusal names both
/// figures.
pub fn admit(
    candidate: &RetrievalQuality,
    serving: Option<&RetrievalQuality>,
    min_recall: f64,
    tolerance: f64,
) -> Result<(), String> {
    let k = candidate.k;
    if candidate.recall_at_k < min_recall {
        return Err(format!(
            "recall@{k} {:.3} is below evaluation.minRecall {min_recall:.3}",
            candidate.recall_at_k
        ));
    }
    if let Some(s) = serving
        && candidate.recall_at_k < s.recall_at_k - tolerance
    {
        return Err(format!(
            "recall@{k} {:.3} is more than evaluation.tolerance {tolerance:.3} below the serving version's {:.3}",
            candidate.recall_at_k, s.recall_at_k
        ));
    }
    Ok(())
}

crate::common::named_enum! {
    /// The phase of a RagIndex.
    pub enum RagIndexPhase {
        /// Waiting for a reference or a Secret.
        Pending,
        /// The first index version is being built.
        Indexing,
        /// A version passed its evaluation; its retrieval Deployment is rolling out.
        Deploying,
        /// An index version serves.
        Ready,
        /// The last build failed.
        Failed,
        /// The spec cannot be acted on; waits for a change.
        Invalid,
    }
}

crate::common::impl_resource_status!(RagIndexStatus, RagIndexPhase);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_serves_only_above_the_floor_and_within_the_tolerance() {
        let q = |recall: f64| RetrievalQuality {
            k: 5,
            recall_at_k: recall,
            mrr: 0.0,
            ndcg_at_k: 0.0,
            first_relevant: 0,
            queries: 44,
        };
        assert_eq!(admit(&q(0.9), None, 0.8, 0.02), Ok(()));
        let low = admit(&q(0.7), None, 0.8, 0.02).unwrap_err();
        assert!(
            low.contains("0.700") && low.contains("minRecall 0.800"),
            "{low}"
        );
        assert_eq!(admit(&q(0.95), Some(&q(0.966)), 0.8, 0.02), Ok(()));
        let worse = admit(&q(0.90), Some(&q(0.966)), 0.8, 0.02).unwrap_err();
        assert!(
            worse.contains("0.900") && worse.contains("0.966"),
            "{worse}"
        );
        assert_eq!(admit(&q(0.99), Some(&q(0.966)), 0.8, 0.0), Ok(()));
    }
}
