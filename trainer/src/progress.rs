//! Progress of the trainer's long work: a bar on a terminal, report lines in a pod.
//!
//! On a terminal (stderr is a TTY) each stage draws an `indicatif` bar. Anywhere else, as in a
//! Job's pod, a stage prints a [`Report`] line to stderr when it starts, at most every
//! [`INTERVAL`] while it moves, and when it ends: a few lines a minute, which the operator
//! reads from the pod's log tail into the resource's `status.progress`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use leitwerk_crds::progress::Report;

/// The least time between two report lines of a stage.
pub const INTERVAL: Duration = Duration::from_secs(3);

/// One stage of work, reporting as it moves. Safe to share between threads.
pub struct Stage {
    name: String,
    unit: String,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

struct State {
    done: u64,
    printed: Option<Instant>,
}

/// Tells that a step without a count begins (e.g. `exporting`): one report line in a pod, one
/// line on a terminal.
pub fn step(name: &str) {
    tell(name, 0, None, "");
}

/// Tells once where the work stands: one report line in a pod, one line on a terminal.
pub fn tell(stage: &str, done: u64, total: Option<u64>, unit: &str) {
    let report = Report {
        stage: stage.to_string(),
        done,
        total,
        unit: unit.to_string(),
        at: now(),
    };
    if std::io::stderr().is_terminal() {
        eprintln!(
            "{stage:>12} {}",
            leitwerk_crds::progress::Progress::of("", &report)
                .summary
                .trim_start_matches(stage)
                .trim()
        );
    } else {
        eprintln!("{}", report.line());
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Starts a stage: `total` in `unit` when it is known.
pub fn stage(name: &str, total: Option<u64>, unit: &str) -> Stage {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({eta})"
        } else {
            "{prefix:>12} {spinner} {pos} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_string());
        bar.set_message(unit.to_string());
        bar
    });
    let stage = Stage {
        name: name.to_string(),
        unit: unit.to_string(),
        total,
        bar,
        state: Mutex::new(State {
            done: 0,
            printed: None,
        }),
    };
    stage.set(0);
    stage
}

impl Stage {
    /// Sets how much is done.
    pub fn set(&self, done: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.done = done;
        self.show(&mut state, false);
    }

    /// Adds to what is done.
    pub fn add(&self, n: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.done += n;
        self.show(&mut state, false);
    }

    /// Ends the stage where it stands, always reported.
    pub fn finish(self) {
        if let Ok(mut state) = self.state.lock() {
            self.show(&mut state, true);
        }
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// The report of where the stage stands.
    pub fn report(&self) -> Report {
        let done = self.state.lock().map(|s| s.done).unwrap_or_default();
        self.report_of(done)
    }

    fn report_of(&self, done: u64) -> Report {
        Report {
            stage: self.name.clone(),
            done,
            total: self.total,
            unit: self.unit.clone(),
            at: now(),
        }
    }

    fn show(&self, state: &mut State, always: bool) {
        if let Some(bar) = &self.bar {
            bar.set_position(state.done);
            return;
        }
        let due = state.printed.is_none_or(|at| at.elapsed() >= INTERVAL);
        if always || due {
            state.printed = Some(Instant::now());
            eprintln!("{}", self.report_of(state.done).line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_counts_and_reports_what_it_counted() {
        let s = stage("fitting", Some(10), "trees");
        s.add(3);
        s.add(4);
        let r = s.report();
        assert_eq!(
            (r.stage.as_str(), r.done, r.total, r.unit.as_str()),
            ("fitting", 7, Some(10), "trees")
        );
        s.set(10);
        assert_eq!(s.report().done, 10);
        // The line the operator parses round-trips.
        let line = s.report().line();
        assert_eq!(Report::last_in(&line).map(|r| r.done), Some(10));
        s.finish();
    }
}
