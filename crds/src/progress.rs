//! Progress of long work: how a Job reports it and how a resource's status shows it.
//!
//! A Job's pod prints one line per report to its log: [`MARKER`] and a JSON [`Report`]. The
//! operator reads the tail of the running pod's log (the pod its Job controls, nothing else)
//! and shows the newest report as the resource's `status.progress`, so that `kubectl get -w`
//! moves while a FeatureSet materializes, a Model trains, a RagIndex embeds or a content run
//! goes through its stages. Jobs hold no API token: the log is the only channel they have.
//!
//! A report is display only. Nothing the operator decides depends on it, and every field is
//! bounded before it reaches a status.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What starts a progress line in a Job's log.
pub const MARKER: &str = "leitwerk.progress ";

/// The longest stage or unit name a status shows.
const NAME_MAX: usize = 40;

/// One report, as a Job prints it after [`MARKER`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What the work is doing now (e.g. `loading`, `fitting`, `embedding`).
    pub stage: String,
    /// How much of the stage is done, in `unit`.
    pub done: u64,
    /// How much the stage has in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What `done` counts (`rows`, `trees`, `documents`, `stages`, …); empty for a step
    /// without a count.
    pub unit: String,
    /// When the Job printed it (RFC 3339).
    pub at: String,
}

impl Report {
    /// The line a Job prints.
    pub fn line(&self) -> String {
        format!(
            "{MARKER}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The newest well-formed report in a log, if any.
    pub fn last_in(log: &str) -> Option<Report> {
        log.lines()
            .rev()
            .filter_map(|l| l.trim().strip_prefix(MARKER))
            .find_map(|json| serde_json::from_str(json).ok())
    }
}

/// The progress of the work a resource is doing now, from its Job's newest report.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The Job doing the work.
    pub job: String,
    /// What it is doing now.
    pub stage: String,
    /// How much of the stage is done.
    pub done: u64,
    /// How much the stage has in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What `done` and `total` count.
    pub unit: String,
    /// One line for `kubectl get`: `fitting 40/200 trees (20%)`.
    pub summary: String,
    /// When the Job reported it (RFC 3339).
    pub reported_at: String,
}

impl Progress {
    /// The status of `report` from `job`, its names bounded and stripped of control characters.
    pub fn of(job: &str, report: &Report) -> Progress {
        let stage = clean(&report.stage);
        let unit = clean(&report.unit);
        let total = report.total.filter(|t| *t > 0);
        let summary = match total {
            _ if unit.is_empty() => stage.clone(),
            Some(t) => format!(
                "{stage} {}/{t} {unit} ({}%)",
                report.done,
                (report.done.min(t) * 100) / t
            ),
            None => format!("{stage} {} {unit}", report.done),
        };
        Progress {
            job: job.to_string(),
            stage,
            done: report.done,
            total,
            unit,
            summary,
            reported_at: clean(&report.at),
        }
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(NAME_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stage: &str, done: u64, total: Option<u64>) -> Report {
        Report {
            stage: stage.into(),
            done,
            total,
            unit: "rows".into(),
            at: "2026-12-06T08:00:00Z".into(),
        }
    }

    #[test]
    fn the_newest_well_formed_line_of_a_log_wins() {
        let log = [
            report("loading", 10, Some(100)).line(),
            "some other output".into(),
            report("loading", 50, Some(100)).line(),
            format!("{MARKER}{{not json"),
            "  trailing noise".into(),
        ]
        .join("\n");
        assert_eq!(
            Report::last_in(&log),
            Some(report("loading", 50, Some(100)))
        );
        assert_eq!(Report::last_in("no reports here\n"), None);
    }

    #[test]
    fn a_status_summarises_with_a_percentage_only_when_the_total_is_known() {
        let p = Progress::of("fs-mat-g1", &report("loading", 250, Some(1000)));
        assert_eq!(p.summary, "loading 250/1000 rows (25%)");
        assert_eq!(p.job, "fs-mat-g1");
        let p = Progress::of("fs-mat-g1", &report("writing", 7, None));
        assert_eq!(p.summary, "writing 7 rows");
        // A step without a count is its name.
        let mut step = report("exporting", 0, None);
        step.unit.clear();
        assert_eq!(Progress::of("j", &step).summary, "exporting");
        // A zero total is unknown, and a count past the total shows 100%.
        assert_eq!(
            Progress::of("j", &report("x", 3, Some(0))).summary,
            "x 3 rows"
        );
        assert_eq!(
            Progress::of("j", &report("x", 12, Some(10))).summary,
            "x 12/10 rows (100%)"
        );
    }

    #[test]
    fn names_from_a_pod_are_bounded_and_printable() {
        let long = format!("{}\u{1b}[31m", "s".repeat(100));
        let p = Progress::of("j", &report(&long, 1, None));
        assert_eq!(p.stage.len(), NAME_MAX);
        assert!(p.stage.chars().all(|c| !c.is_control()));
    }
}
