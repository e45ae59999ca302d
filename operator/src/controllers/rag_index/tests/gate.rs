//! The evaluation gate judges what is served: the serving version measured again on the same
//! labelled set, and the search mode a build measured best.

use leitwerk_crds::rag_index::SearchMode;

use super::*;
use crate::config::OperatorConfig;
use leitwerk_crds::rag_index::IndexVersionState;

#[test]
fn the_gate_compares_with_the_serving_version_measured_again_on_the_same_labelled_set() {
    let index = example();
    let mut observed = Observed::default();
    built(&index, &mut observed, 1, &"a".repeat(64), 0.95);
    // A harder labelled set: the serving version reaches only 0.85 on it, the new one 0.86.
    // Against the recorded 0.95 it would be refused; against the same set it is better.
    let mut s = summary(&"b".repeat(64), 0.86);
    s.serving_quality = Some(quality(0.85));
    let mut build = IndexBuild {
        number: 2,
        ..Default::default()
    };
    record_version(&index, &mut observed, &mut build, s, None);
    assert_eq!(observed.serving().unwrap().version, "b".repeat(12));

    // Measured again, the serving version is far better than the new one: refused, naming
    // the figure of the same set.
    let mut s = summary(&"c".repeat(64), 0.86);
    s.serving_quality = Some(quality(0.97));
    let mut build = IndexBuild {
        number: 3,
        ..Default::default()
    };
    record_version(&index, &mut observed, &mut build, s, None);
    let refused = observed.versions.last().unwrap();
    assert_eq!(refused.state, IndexVersionState::Refused);
    assert!(
        refused.message.as_deref().unwrap().contains("0.970"),
        "{refused:?}"
    );
}

#[test]
fn a_version_serves_in_the_mode_its_build_measured_best_with_both_figures_recorded() {
    let index = example();
    assert_eq!(
        index.spec.search.mode, None,
        "the example leaves the mode open"
    );
    let mut observed = Observed::default();
    let mut s = summary(&"a".repeat(64), 0.97);
    s.search_mode = SearchMode::Hybrid;
    s.quality_by_mode = [
        (SearchMode::Dense, quality(0.93)),
        (SearchMode::Hybrid, quality(0.97)),
    ]
    .into();
    let mut build = IndexBuild {
        number: 1,
        ..Default::default()
    };
    record_version(&index, &mut observed, &mut build, s, None);
    let v = observed.serving().unwrap();
    assert_eq!(v.search_mode, Some(SearchMode::Hybrid));
    assert_eq!(v.quality_by_mode[&SearchMode::Dense].recall_at_k, 0.93);
    let promoted = observed
        .events
        .iter()
        .find(|e| e.reason == "Promoted")
        .unwrap();
    assert!(
        promoted.note.contains("Hybrid search") && promoted.note.contains("Dense 0.930"),
        "{promoted:?}"
    );
    let (deployment, _) = build_serving(&index, &OperatorConfig::default(), &v);
    let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(args.contains("--search-mode Hybrid"), "{args}");

    // The same file built again under a new labelled set: the serving version's figures and
    // mode follow the new measurement.
    let mut s = summary(&"a".repeat(64), 0.90);
    s.search_mode = SearchMode::Dense;
    let mut build = IndexBuild {
        number: 2,
        ..Default::default()
    };
    record_version(&index, &mut observed, &mut build, s, None);
    let v = observed.serving().unwrap();
    assert_eq!(observed.versions.len(), 1);
    assert_eq!(v.search_mode, Some(SearchMode::Dense));
    assert_eq!(v.quality.as_ref().unwrap().recall_at_k, 0.9);
}
