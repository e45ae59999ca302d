//! What a finished build records: its version through the evaluation gate (or the same
//! version measured again), and the `IngestFindings` Event of what its safety scan found.

use std::collections::BTreeMap;

use leitwerk_crds::{
    RagIndex,
    rag_index::{BuildState, IndexBuild, IndexVersion, IndexVersionState, SearchMode, admit},
    summary::{IndexSummary, RetrievalQuality},
};

use super::{Observed, history_limit, round_quality};
use crate::notice::Notice;

/// Records a finished build's version: the same digest as a known version changes nothing; a
/// new version serves when it passes the evaluation gate and is refused (the serving version
/// stays) when it does not. The versions kept are bounded by `versionHistoryLimit`.
pub fn record_version(
    index: &RagIndex,
    observed: &mut Observed,
    build: &mut IndexBuild,
    summary: IndexSummary,
    finished: Option<String>,
) {
    build.state = BuildState::Succeeded;
    build.version = Some(summary.version.clone());
    build.added = Some(summary.added);
    build.changed = Some(summary.changed);
    build.removed = Some(summary.removed);
    build.unchanged = Some(summary.unchanged);
    build.embedded = Some(summary.embedded);
    build.embedded_on = Some(
        if summary.embedded_on_gpu {
            "GPU"
        } else {
            "CPU"
        }
        .into(),
    );
    build.gpu_fallback = summary
        .gpu_fallback
        .as_deref()
        .map(|why| crate::reconcile::truncate(why, 512));
    observed.last_indexed.clone_from(&finished);
    if let Some(known) = observed
        .versions
        .iter_mut()
        .find(|v| v.digest == summary.digest)
    {
        // The same file, measured again: a changed labelled set or search mode shows in the
        // serving version's figures and in the mode its Deployment serves.
        if known.state == IndexVersionState::Serving && summary.quality.is_some() {
            known.quality = summary.quality.map(round_quality);
            known.search_mode = Some(summary.search_mode);
            known.quality_by_mode = rounded_by_mode(&summary);
        }
        let note = format!(
            "build {} found the sources unchanged: version {} ({})",
            build.number, known.version, known.state
        );
        observed.notice(false, "Unchanged", note);
        return;
    }
    let serving = observed.serving();
    let gate = match &index.spec.evaluation {
        None => Ok(()),
        // The serving version as the build measured it again on the same labelled set (a
        // summary of an older trainer has none: then its recorded figure).
        Some(e) => match &summary.quality {
            Some(q) => admit(
                q,
                summary
                    .serving_quality
                    .as_ref()
                    .or_else(|| serving.as_ref().and_then(|s| s.quality.as_ref())),
                e.min_recall,
                e.tolerance,
            ),
            None => Err("the build measured no quality on the labelled set".to_string()),
        },
    };
    let quality = summary
        .quality
        .as_ref()
        .map(|q| {
            let modes: Vec<String> = summary
                .quality_by_mode
                .iter()
                .map(|(m, q)| format!("{m} {:.3}", q.recall_at_k))
                .collect();
            let modes = match modes.is_empty() {
                true => String::new(),
                false => format!(" (measured {})", modes.join(", ")),
            };
            format!(
                ", {} search, recall@{} {:.3}, nDCG@{} {:.3}{modes}",
                summary.search_mode, q.k, q.recall_at_k, q.k, q.ndcg_at_k
            )
        })
        .unwrap_or_default();
    let summary_findings = (summary.personal_data, summary.injection);
    let mut version = IndexVersion {
        version: summary.version.clone(),
        // Joins the history out of service; promoted there below when it passes the gate.
        state: IndexVersionState::Retired,
        digest: summary.digest.clone(),
        url: summary.url.clone(),
        collection: summary.collection.clone(),
        build: build.number,
        documents: summary.documents,
        chunks: summary.chunks,
        quality: summary.quality.map(round_quality),
        search_mode: Some(summary.search_mode),
        quality_by_mode: rounded_by_mode(&summary),
        model: Some(summary.model.clone()),
        personal_data: summary.personal_data_by_kind.clone(),
        flagged: Some(summary.flagged),
        quarantined: Some(summary.quarantined),
        hidden_html: Some(summary.hidden_html),
        built_at: finished,
        message: None,
    };
    if let Some(notice) = ingest_findings(&version, &summary_findings) {
        observed.events.push(notice);
    }
    let name = version.version.clone();
    let note = match gate {
        Ok(()) => {
            let replaced = serving
                .as_ref()
                .map(|s| format!(", replacing version {}", s.version))
                .unwrap_or_default();
            format!(
                "version {name} serves: {} documents, {} chunks{quality}{replaced}",
                version.documents, version.chunks
            )
        }
        Err(why) => {
            let stays = match &serving {
                Some(s) => format!("version {} keeps serving", s.version),
                None => "nothing serves".into(),
            };
            version.message = Some(format!("{why}; {stays}"));
            version.state = IndexVersionState::Refused;
            format!("version {name} does not serve: {why}; {stays}")
        }
    };
    // A version that passes is promoted in the history, so the serving one before it is
    // retired by the same rule as a Model's.
    let refused = version.state == IndexVersionState::Refused;
    observed.versions.record([version]);
    if refused {
        observed.notice(true, "Refused", note);
    } else {
        observed.versions.promote(&name, "passed its evaluation");
        observed.notice(false, "Promoted", note);
    }
    observed.versions.bound(history_limit(index));
}

/// The quality in each mode measured, rounded like the version's own.
fn rounded_by_mode(summary: &IndexSummary) -> BTreeMap<SearchMode, RetrievalQuality> {
    summary
        .quality_by_mode
        .iter()
        .map(|(m, q)| (*m, round_quality(*q)))
        .collect()
}

/// The `IngestFindings` Event of a new version: what the safety scan found, by kind, and
/// what it did — counts only, never a value or a sample. A Warning when chunks were
/// quarantined or flagged (a reviewer should look), Normal when everything was redacted.
pub fn ingest_findings(
    version: &IndexVersion,
    (personal, injection): &(i64, i64),
) -> Option<Notice> {
    let flagged = version.flagged.unwrap_or(0);
    let quarantined = version.quarantined.unwrap_or(0);
    let hidden = version.hidden_html.unwrap_or(0);
    if *personal == 0 && *injection == 0 && flagged == 0 && quarantined == 0 && hidden == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if *personal > 0 {
        let kinds: Vec<String> = version
            .personal_data
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let kinds = if kinds.is_empty() {
            personal.to_string()
        } else {
            kinds.join(", ")
        };
        parts.push(format!("personal data: {kinds}"));
    }
    if *injection > 0 {
        parts.push(format!("{injection} prompt-injection signs"));
    }
    parts.push(format!(
        "{quarantined} chunks quarantined (never served), {flagged} flagged for review, {hidden} documents with hidden HTML text (left out)"
    ));
    let note = format!("version {}: {}", version.version, parts.join("; "));
    Some(if flagged > 0 || quarantined > 0 {
        Notice::warning("Index", "IngestFindings", note)
    } else {
        Notice::normal("Index", "IngestFindings", note)
    })
}
