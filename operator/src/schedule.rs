//! Schedules of every kind that has one (a Model's `training.retrain.schedule`, a RagIndex's
//! `refreshSchedule`): which due time is owed a run
//! (pure: no Kubernetes).

use chrono::{DateTime, Timelike, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use leitwerk_crds::{Model, model::ScheduleStatus};

/// Annotation on a training Job started by the schedule: the due time it trains for.
pub const SCHEDULED_FOR: &str = leitwerk_crds::labels::SCHEDULED_FOR;

/// What the schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleCheck {
    /// The due time owed a training: the latest one at or before now, if it comes after the
    /// last scheduled run (or the Model's creation). Several missed due times (an operator that
    /// was down) are owed one training, like a CronJob catching up.
    pub due: Option<DateTime<Utc>>,
    /// The first due time after now.
    pub next: Option<DateTime<Utc>>,
}

/// The Model's retraining schedule, if it has one.
pub fn schedule_of(model: &Model) -> Option<&str> {
    model
        .spec
        .training
        .as_ref()
        .and_then(|t| t.retrain.as_ref())
        .and_then(|r| r.schedule.as_deref())
}

/// Checks a five-field cron schedule (UTC) at `now`, counting from `since` (the last scheduled
/// run, or the Model's creation). `None` for a schedule that does not parse (validation
/// reports it before this is called).
pub fn check(schedule: &str, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<ScheduleCheck> {
    let cron: croner::Cron = schedule.parse().ok()?;
    // Due times are whole seconds, as the status records them: croner keeps the fraction of
    // a second of the time it searches from, and a due time of 04:00:00.4 would be "after"
    // the recorded 04:00:00 at every look, starting a new run each time the last one ends.
    let now = now.with_nanosecond(0).unwrap_or(now);
    let since = since.with_nanosecond(0).unwrap_or(since);
    let latest = cron.find_previous_occurrence(&now, true).ok();
    Some(ScheduleCheck {
        due: latest.filter(|t| *t > since),
        next: cron.find_next_occurrence(&now, false).ok(),
    })
}

/// Where a schedule stands for one object: the due time owed a run, the wait until the next
/// one, and the status to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The due time owed a run, if any.
    pub due: Option<DateTime<Utc>>,
    /// Time until the next due time.
    pub next_in: Option<std::time::Duration>,
    /// What the status shows.
    pub status: ScheduleStatus,
}

/// Where `cron` stands for an object created at `created`, whose status records `recorded` and
/// whose Jobs are `jobs` (pure): the one reading every scheduled kind shares.
pub fn standing(
    cron: &str,
    recorded: Option<&ScheduleStatus>,
    jobs: &[Job],
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Standing> {
    let last = last_run(recorded, jobs);
    let since = last.as_ref().map(|(t, _)| *t).or(created).unwrap_or(now);
    let check = check(cron, since, now)?;
    Some(Standing {
        due: check.due,
        next_in: check.next.and_then(|n| (n - now).to_std().ok()),
        status: ScheduleStatus {
            last_run: last.as_ref().map(|(t, _)| format(*t)),
            next_run: check.next.map(format),
            last_job: last.and_then(|(_, j)| j),
        },
    })
}

/// The newest due time a training was started for: from the status, or from the training
/// Jobs' annotations (a Job created just before the operator stopped, whose status write was
/// lost, still counts, so the due time is not trained twice).
pub fn last_run(
    status: Option<&ScheduleStatus>,
    jobs: &[Job],
) -> Option<(DateTime<Utc>, Option<String>)> {
    let recorded = status.and_then(|s| {
        let at = parse(s.last_run.as_deref()?)?;
        Some((at, s.last_job.clone()))
    });
    let from_jobs = jobs.iter().filter_map(|j| {
        let at = parse(j.annotations().get(SCHEDULED_FOR)?)?;
        Some((at, Some(j.name_any())))
    });
    recorded
        .into_iter()
        .chain(from_jobs)
        .max_by_key(|(at, _)| *at)
}

/// The Model's creation time (the schedule counts from it before the first scheduled run).
pub fn created(model: &Model) -> Option<DateTime<Utc>> {
    created_at(&model.metadata)
}

/// An object's creation time.
pub fn created_at(meta: &kube::api::ObjectMeta) -> Option<DateTime<Utc>> {
    parse(&meta.creation_timestamp.as_ref()?.0.to_string())
}

fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339 in UTC, to the second.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(t: &str) -> DateTime<Utc> {
        parse(t).unwrap()
    }

    #[test]
    fn a_due_time_is_owed_once_and_the_next_one_is_reported() {
        let created = at("2026-11-24T03:00:00Z");
        let before = check("0 4 * * *", created, at("2026-11-24T03:59:59Z")).unwrap();
        assert_eq!(before.due, None);
        assert_eq!(before.next, Some(at("2026-11-24T04:00:00Z")));
        let due = check("0 4 * * *", created, at("2026-11-24T04:00:01Z")).unwrap();
        assert_eq!(due.due, Some(at("2026-11-24T04:00:00Z")));
        assert_eq!(due.next, Some(at("2026-11-25T04:00:00Z")));
        // Once started for 04:00, nothing more is owed that day.
        let done = check(
            "0 4 * * *",
            at("2026-11-24T04:00:00Z"),
            at("2026-11-24T18:00:00Z"),
        )
        .unwrap();
        assert_eq!(done.due, None);
        assert_eq!(check("not a schedule", created, created), None);
    }

    #[test]
    fn every_minute_is_owed_once_a_minute_whatever_the_fraction_of_a_second() {
        let last = at("2026-12-02T16:42:00Z");
        for now in [
            "2026-12-02T16:42:00Z",
            "2026-12-02T16:42:01Z",
            "2026-12-02T16:42:59Z",
        ] {
            let c = check("* * * * *", last, at(now)).unwrap();
            assert_eq!(c.due, None, "{now}");
        }
        let c = check("* * * * *", last, at("2026-12-02T16:43:00Z")).unwrap();
        assert_eq!(c.due, Some(at("2026-12-02T16:43:00Z")));
        // A reconcile runs at a fraction of a second: the due time it finds is still the
        // recorded one, not a new one.
        let now = at("2026-12-02T16:42:03Z") + chrono::Duration::milliseconds(417);
        assert_eq!(check("* * * * *", last, now).unwrap().due, None);
        let daily = check(
            "0 4 * * *",
            at("2026-11-24T04:00:00Z"),
            at("2026-11-24T04:10:33Z") + chrono::Duration::milliseconds(123),
        )
        .unwrap();
        assert_eq!(
            daily.due, None,
            "a finished run is not owed again the same day"
        );
    }

    #[test]
    fn due_times_missed_while_the_operator_was_down_are_owed_one_training() {
        // Last run Monday 04:00; the operator was down until Thursday 09:00.
        let last = at("2026-11-23T04:00:00Z");
        let c = check("0 4 * * *", last, at("2026-11-26T09:00:00Z")).unwrap();
        assert_eq!(
            c.due,
            Some(at("2026-11-26T04:00:00Z")),
            "the latest missed due time"
        );
        let after = check("0 4 * * *", c.due.unwrap(), at("2026-11-26T09:00:05Z")).unwrap();
        assert_eq!(after.due, None, "one training for all of them");
    }

    #[test]
    fn the_last_run_survives_a_lost_status_write_through_the_job_annotation() {
        let status = ScheduleStatus {
            last_run: Some("2026-11-23T04:00:00Z".into()),
            last_job: Some("m-train-v3".into()),
            ..Default::default()
        };
        let mut job = Job::default();
        job.metadata.name = Some("m-train-v4".into());
        job.metadata.annotations = Some(BTreeMap::from([(
            SCHEDULED_FOR.to_string(),
            "2026-11-24T04:00:00Z".to_string(),
        )]));
        assert_eq!(
            last_run(Some(&status), &[job]),
            Some((at("2026-11-24T04:00:00Z"), Some("m-train-v4".into())))
        );
        assert_eq!(
            last_run(Some(&status), &[]),
            Some((at("2026-11-23T04:00:00Z"), Some("m-train-v3".into())))
        );
        assert_eq!(last_run(None, &[]), None);
    }
}
