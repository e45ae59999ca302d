//! What `kubectl leitwerk status` and `why` print (pure): a Model as a tree of its versions,
//! the Experiments using it and its drift; an Experiment's decisions as a timeline.

use kube::ResourceExt;
use leitwerk_crds::labels::PIN;
use leitwerk_crds::{Experiment, Model};

fn branch(last: bool) -> &'static str {
    if last { "└─ " } else { "├─ " }
}

/// The tree of a Model and the Experiments using it (pure).
pub(crate) fn tree(model: &Model, experiments: &[Experiment]) -> String {
    let status = model.status.clone().unwrap_or_default();
    let mut out = format!(
        "model/{}  {}  serving {}  latest {}\n",
        model.name_any(),
        status
            .phase
            .map_or_else(|| "-".to_string(), |p| p.to_string()),
        status.serving_version.as_deref().unwrap_or("-"),
        status.latest_version.as_deref().unwrap_or("-"),
    );
    if let Some(pinned) = &status.pinned_version {
        out.push_str(&format!("pinned to {pinned} ({PIN})\n"));
    }
    out.push_str("versions\n");
    let n = status.versions.len();
    for (i, v) in status.versions.iter().enumerate() {
        let metrics: Vec<String> = ["auc", "logLoss", "rmse"]
            .iter()
            .filter_map(|m| v.metrics.get(*m).map(|x| format!("{m} {x:.4}")))
            .collect();
        out.push_str(&format!(
            "{}{:<4} {:<10} {}  data {}  {}\n",
            branch(i + 1 == n),
            v.version,
            v.state.to_string(),
            metrics.join(" "),
            v.data_version.as_deref().unwrap_or("-"),
            v.trained_at.as_deref().unwrap_or(""),
        ));
    }
    out.push_str("experiments\n");
    if experiments.is_empty() {
        out.push_str("└─ none\n");
    }
    for (i, e) in experiments.iter().enumerate() {
        let s = e.status.clone().unwrap_or_default();
        out.push_str(&format!(
            "{}{}  {}  step {}  {}\n",
            branch(i + 1 == experiments.len()),
            e.name_any(),
            s.phase.map_or_else(|| "-".to_string(), |p| p.to_string()),
            s.step.as_deref().unwrap_or("-"),
            s.weights_summary.as_deref().unwrap_or("-"),
        ));
        if let Some(d) = &s.last_decision {
            out.push_str(&format!("   last: {d}\n"));
        }
    }
    out.push_str("drift\n");
    match &status.drift {
        Some(d) => out.push_str(&format!(
            "└─ {} on {} ({} rows, {}): worst {} {}\n",
            d.level,
            d.version,
            d.rows,
            d.checked_at,
            d.worst_feature.as_deref().unwrap_or("-"),
            d.worst_value
                .map_or_else(|| "-".into(), |x| format!("{x:.4}")),
        )),
        None => out.push_str("└─ not checked yet\n"),
    }
    out
}

/// An Experiment's decisions as a timeline (pure).
pub(crate) fn timeline(exp: &Experiment) -> String {
    let s = exp.status.clone().unwrap_or_default();
    let mut out = format!(
        "experiment/{}  {}  {}\n",
        exp.name_any(),
        s.phase.map_or_else(|| "-".to_string(), |p| p.to_string()),
        s.weights_summary.as_deref().unwrap_or("-")
    );
    for d in &s.decisions {
        out.push_str(&format!(
            "{}  {:<8} {}{}\n",
            d.time,
            d.action.to_string(),
            d.step
                .as_deref()
                .map_or(String::new(), |s| format!("[{s}] ")),
            d.message
        ));
        if let Some(who) = &d.requested_by {
            out.push_str(&format!("    requested by {who}\n"));
        }
        for (k, v) in &d.values {
            let bound = ["min", "max"]
                .iter()
                .filter_map(|b| {
                    d.thresholds
                        .get(&format!("{k}/{b}"))
                        .map(|t| format!(" ({b} {t})"))
                })
                .collect::<String>();
            out.push_str(&format!("    {k} = {v}{bound}\n"));
        }
    }
    if let Some(c) = &s.last_control {
        out.push_str(&format!(
            "last control: {} by {} at {}: {}\n",
            c.request,
            c.requested_by.as_deref().unwrap_or("-"),
            c.time,
            c.result
        ));
    }
    out
}
