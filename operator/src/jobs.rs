//! The one reader of Job outcomes that every Job-driven kind uses (Model training, FeatureSet
//! materialization, RagIndex builds, and the content pipeline's stages when they come).
//!
//! The operator believes a Job only when it made it: the Job's controller ownerReference
//! names the resource by uid (or, for a FeatureSet's scheduled runs, a CronJob whose
//! controller is the resource), and the pod whose termination message is read is controlled
//! by that Job. A Job that carries the labels without that chain is foreign: it is never read,
//! and a Warning Event names it. Without this, anyone who may create Jobs in the namespace
//! could make a forged summary serve a file and bypass the evaluation gate.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, LogParams},
};
use leitwerk_crds::progress::{Progress, Report};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::context::Context;
use crate::reconcile::{Error, Notice, truncate};
use crate::workloads::{JobState, job_state, termination_message, unschedulable};

/// What a trusted Job shows.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome<S> {
    /// Still running or waiting for a node; why the scheduler cannot place it, if it says so.
    Running {
        /// The scheduler's message when the pod is unschedulable.
        unschedulable: Option<String>,
        /// The newest progress report in the running pod's log, if it printed one.
        progress: Option<Progress>,
    },
    /// Finished with a readable summary.
    Succeeded {
        /// The summary the Job's pod wrote as its termination message.
        summary: S,
        /// When the Job completed (RFC 3339), if it says.
        finished: Option<String>,
    },
    /// Failed, or succeeded without a readable summary: why, in words.
    Failed {
        /// The trainer's error, else the pod's message, else the Job's own reason.
        reason: String,
    },
}

impl<S> JobOutcome<S> {
    /// Whether the Job has not finished.
    pub fn is_running(&self) -> bool {
        matches!(self, JobOutcome::Running { .. })
    }
}

/// The Jobs (and CronJobs) that carry a resource's label, as read from the API server or a
/// shared store, before anything is trusted.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    /// Jobs carrying the label.
    pub jobs: Vec<Job>,
    /// CronJobs carrying the label (read only for kinds that schedule Jobs).
    pub cron_jobs: Vec<CronJob>,
}

/// The Jobs of one resource, split by whether the operator made them.
#[derive(Debug, Clone, Default)]
pub struct OwnedJobs {
    /// Jobs whose controller chain leads to the resource.
    pub trusted: Vec<Job>,
    /// Warning Events naming each Job that carries the resource's labels but not its owner.
    pub foreign: Vec<Notice>,
    /// The CronJobs the resource controls.
    pub cron_jobs: Vec<CronJob>,
}

/// Whether `meta`'s controller ownerReference has `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Splits `jobs` into those controlled by one of `owners` (uids) and the others. Pure.
pub fn split_trusted(
    jobs: Vec<Job>,
    owners: &[String],
    kind: &str,
    name: &str,
    action: &'static str,
) -> OwnedJobs {
    let mut owned = OwnedJobs::default();
    for job in jobs {
        if owners.iter().any(|uid| controlled_by(&job.metadata, uid)) {
            owned.trusted.push(job);
        } else {
            let by = job
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| format!("{} {}", o.kind, o.name))
                .unwrap_or_else(|| "nothing".into());
            owned.foreign.push(Notice::warning(
                action,
                "UntrustedJob",
                format!(
                    "Job {} carries the labels of {kind} {name} but was not created by it (its controller is {by}): it is ignored, and nothing it reports is recorded",
                    job.name_any()
                ),
            ));
        }
    }
    owned
}

/// What `owner` may trust of `labelled` (pure): the Jobs it controls, and those of the
/// CronJobs it controls.
pub fn own<K>(owner: &K, labelled: Labelled, action: &'static str) -> OwnedJobs
where
    K: Resource<DynamicType = ()>,
{
    let Some(uid) = owner.meta().uid.clone() else {
        return OwnedJobs::default();
    };
    let cron_jobs: Vec<CronJob> = labelled
        .cron_jobs
        .into_iter()
        .filter(|c| controlled_by(&c.metadata, &uid))
        .collect();
    let mut owners = vec![uid];
    owners.extend(cron_jobs.iter().filter_map(|c| c.metadata.uid.clone()));
    OwnedJobs {
        cron_jobs,
        ..split_trusted(
            labelled.jobs,
            &owners,
            K::kind(&()).as_ref(),
            &owner.name_any(),
            action,
        )
    }
}

/// The Jobs matching `selector` in `owner`'s namespace, read from the API server and split by
/// trust. With `via_cron_jobs`, the CronJobs matching it are read too, and Jobs created by one
/// that `owner` controls (a FeatureSet's schedule) are trusted.
pub async fn list_owned<K>(
    ctx: &Context,
    owner: &K,
    selector: &str,
    via_cron_jobs: bool,
    action: &'static str,
) -> Result<OwnedJobs, Error>
where
    K: Resource<DynamicType = ()>,
{
    if owner.meta().uid.is_none() {
        return Ok(OwnedJobs::default());
    }
    let ns = owner.namespace().unwrap_or_default();
    let params = ListParams::default().labels(selector);
    let mut labelled = Labelled::default();
    if via_cron_jobs {
        labelled.cron_jobs = Api::<CronJob>::namespaced(ctx.client.clone(), &ns)
            .list(&params)
            .await
            .map_err(|source| Error::Read {
                what: "CronJobs".into(),
                source,
            })?
            .items;
    }
    labelled.jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns)
        .list(&params)
        .await
        .map_err(|source| Error::Read {
            what: "Jobs".into(),
            source,
        })?
        .items;
    Ok(own(owner, labelled, action))
}

/// The outcomes of `jobs` by Job name: the reads a plan needs, made before it so that the
/// plan itself is pure. A Job without an entry is one the caller did not ask about.
pub async fn outcomes<'a, S: DeserializeOwned>(
    ctx: &Context,
    jobs: impl IntoIterator<Item = &'a Job>,
) -> Result<BTreeMap<String, JobOutcome<S>>, Error> {
    let mut read = BTreeMap::new();
    for job in jobs {
        read.insert(job.name_any(), outcome(ctx, job).await?);
    }
    Ok(read)
}

/// The outcome of `job` in what was read. A Job that was not read is one the plan just
/// decided to create: it runs.
pub fn outcome_in<S: Clone>(
    outcomes: &BTreeMap<String, JobOutcome<S>>,
    job: &Job,
) -> JobOutcome<S> {
    outcomes
        .get(&job.name_any())
        .cloned()
        .unwrap_or(JobOutcome::Running {
            unschedulable: None,
            progress: None,
        })
}

/// Reads a trusted Job's outcome: its state, and the summary its own pod wrote. The pods are
/// read only where they can tell something (see [`pods_tell`]).
pub async fn outcome<S: DeserializeOwned>(
    ctx: &Context,
    job: &Job,
) -> Result<JobOutcome<S>, Error> {
    let pods = if pods_tell(job) {
        job_pods(ctx, &job.namespace().unwrap_or_default(), job).await?
    } else {
        Vec::new()
    };
    let mut outcome = outcome_of(job, &pods);
    if let JobOutcome::Running { progress, .. } = &mut outcome {
        *progress = read_progress(ctx, job, &pods).await;
    }
    Ok(outcome)
}

/// Whether a Job's pods can add to what the Job shows (pure). A finished Job's pod holds its
/// summary or error. A running Job's pods tell why the scheduler cannot place one, or carry
/// its progress in the log of a running one: both are pods the Job counts as active (pending
/// or running). A Job with none, just created, has nothing to read yet; its pod's creation
/// changes the Job's status, which reconciles again.
pub fn pods_tell(job: &Job) -> bool {
    job_state(job) != JobState::Active
        || job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0
}

/// The lines of a running pod's log read for its newest progress report.
const PROGRESS_TAIL_LINES: i64 = 50;

/// The newest progress report of a running Job, from the log tail of the running pod that it
/// controls (its main container). Display only: a log that cannot be read (no `pods/log`
/// right, a node that serves no logs) shows no progress and is not an error.
async fn read_progress(ctx: &Context, job: &Job, pods: &[Pod]) -> Option<Progress> {
    let uid = job.metadata.uid.as_deref()?;
    let pod = pods.iter().find(|p| {
        controlled_by(&p.metadata, uid)
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })?;
    let container = pod.spec.as_ref()?.containers.first()?.name.clone();
    let params = LogParams {
        container: Some(container),
        tail_lines: Some(PROGRESS_TAIL_LINES),
        limit_bytes: Some(64 * 1024),
        ..LogParams::default()
    };
    let ns = pod.namespace().unwrap_or_default();
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .logs(&pod.name_any(), &params)
        .await
    {
        Ok(log) => Report::last_in(&log).map(|r| Progress::of(&job.name_any(), &r)),
        Err(e) => {
            debug!(job = %job.name_any(), pod = %pod.name_any(), error = %e, "no progress: the pod's log cannot be read");
            None
        }
    }
}

/// A Job's outcome from the Job and its pods (pure). Pods not controlled by the Job are
/// ignored: their status proves nothing about it.
pub fn outcome_of<S: DeserializeOwned>(job: &Job, pods: &[Pod]) -> JobOutcome<S> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Pod> = pods
        .iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .cloned()
        .collect();
    match job_state(job) {
        JobState::Active => JobOutcome::Running {
            unschedulable: unschedulable(&pods),
            progress: None,
        },
        JobState::Failed(reason) => JobOutcome::Failed {
            reason: failure_message(termination_message(&pods).as_deref(), &reason),
        },
        JobState::Succeeded => match termination_message(&pods) {
            None => JobOutcome::Failed {
                reason: "the Job succeeded but its pod left no summary".into(),
            },
            Some(m) => match serde_json::from_str::<S>(&m) {
                Ok(summary) => JobOutcome::Succeeded {
                    summary,
                    finished: job
                        .status
                        .as_ref()
                        .and_then(|s| s.completion_time.as_ref())
                        .map(|t| t.0.to_string()),
                },
                Err(e) => JobOutcome::Failed {
                    reason: format!(
                        "the Job's summary is not readable ({e}): {}",
                        truncate(&m, 300)
                    ),
                },
            },
        },
    }
}

/// Why a Job failed: the trainer's `{"error": …}` summary, else the pod's message (its log
/// tail), else the Job's own reason.
pub fn failure_message(message: Option<&str>, reason: &str) -> String {
    let Some(m) = message.filter(|m| !m.trim().is_empty()) else {
        return reason.to_string();
    };
    serde_json::from_str::<serde_json::Value>(m)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| format!("{reason}: {}", m.trim()))
}

/// Pods of a Job.
pub async fn job_pods(ctx: &Context, ns: &str, job: &Job) -> Result<Vec<Pod>, Error> {
    let name = job.name_any();
    Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Read {
            what: format!("pods of Job {name}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Summary {
        version: String,
    }

    fn owned_by(uid: &str, kind: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("{kind}-child")),
            uid: Some(format!("{uid}-child")),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: kind.into(),
                name: "owner".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        }
    }

    fn job(meta: ObjectMeta, condition: Option<&str>) -> Job {
        Job {
            metadata: meta,
            status: Some(JobStatus {
                conditions: condition.map(|c| {
                    vec![JobCondition {
                        type_: c.into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(owner_uid: &str, message: &str) -> Pod {
        Pod {
            metadata: owned_by(owner_uid, "Job"),
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            message: Some(message.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_jobs_controlled_by_the_resource_are_trusted_and_the_others_are_named() {
        let mut forged = job(ObjectMeta::default(), Some("Complete"));
        forged.metadata.name = Some("forged".into());
        let mut other = job(owned_by("someone-else", "Deployment"), Some("Complete"));
        other.metadata.name = Some("other".into());
        let mut not_controller = job(owned_by("idx", "RagIndex"), None);
        not_controller.metadata.name = Some("weak".into());
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = None;
        let mine = job(owned_by("idx", "RagIndex"), None);
        let split = split_trusted(
            vec![forged, other, not_controller, mine],
            &["idx".to_string()],
            "RagIndex",
            "docs",
            "Index",
        );
        assert_eq!(split.trusted.len(), 1);
        assert_eq!(split.trusted[0].name_any(), "RagIndex-child");
        let notes: Vec<&str> = split.foreign.iter().map(|n| n.note.as_str()).collect();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].starts_with("Job forged carries the labels of RagIndex docs"));
        assert!(notes[0].contains("its controller is nothing"));
        assert!(notes[1].contains("its controller is Deployment owner"));
        assert!(
            split
                .foreign
                .iter()
                .all(|n| n.warning && n.reason == "UntrustedJob")
        );
    }

    #[test]
    fn jobs_of_a_cron_job_the_resource_controls_are_trusted_and_no_other_cron_jobs() {
        let fs = k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some("features".into()),
                uid: Some("fs".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let cron = |meta: ObjectMeta, uid: &str| CronJob {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..meta
            },
            ..Default::default()
        };
        let mine = cron(owned_by("fs", "FeatureSet"), "cron-mine");
        let planted = cron(owned_by("else", "Deployment"), "cron-planted");
        let mut own_run = job(owned_by("cron-mine", "CronJob"), None);
        own_run.metadata.name = Some("run-1".into());
        let mut planted_run = job(owned_by("cron-planted", "CronJob"), None);
        planted_run.metadata.name = Some("run-2".into());
        let owned = own(
            &fs,
            Labelled {
                jobs: vec![own_run, planted_run],
                cron_jobs: vec![mine, planted],
            },
            "Materialize",
        );
        let names = |jobs: &[Job]| jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&owned.trusted), ["run-1"]);
        assert_eq!(owned.foreign.len(), 1);
        assert!(
            owned.foreign[0]
                .note
                .starts_with("Job run-2 carries the labels of ConfigMap features")
        );
        let crons: Vec<_> = owned
            .cron_jobs
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .collect();
        assert_eq!(crons, ["cron-mine"]);
    }

    #[test]
    fn pods_are_read_for_a_finished_job_or_one_with_an_active_pod() {
        let mut running = job(owned_by("fs", "FeatureSet"), None);
        assert!(!pods_tell(&running), "a Job without pods yet");
        running.status.as_mut().unwrap().active = Some(1);
        assert!(pods_tell(&running), "a pending or running pod");
        for finished in ["Complete", "Failed"] {
            assert!(pods_tell(&job(
                owned_by("fs", "FeatureSet"),
                Some(finished)
            )));
        }
    }

    #[test]
    fn a_summary_counts_only_from_a_pod_the_job_controls() {
        let done = job(owned_by("idx", "RagIndex"), Some("Complete"));
        let uid = done.metadata.uid.clone().unwrap();
        let good = pod(&uid, r#"{"version":"v3"}"#);
        let planted = pod("another-job", r#"{"version":"v666"}"#);
        assert_eq!(
            outcome_of::<Summary>(&done, std::slice::from_ref(&planted)),
            JobOutcome::Failed {
                reason: "the Job succeeded but its pod left no summary".into()
            }
        );
        match outcome_of::<Summary>(&done, &[planted, good]) {
            JobOutcome::Succeeded { summary, .. } => assert_eq!(summary.version, "v3"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outcomes_are_typed_running_succeeded_or_failed_with_a_reason() {
        let running = job(owned_by("m", "Model"), None);
        assert!(outcome_of::<Summary>(&running, &[]).is_running());
        let failed = job(owned_by("m", "Model"), Some("Failed"));
        let uid = failed.metadata.uid.clone().unwrap();
        assert_eq!(
            outcome_of::<Summary>(&failed, &[pod(&uid, r#"{"error":"label has NaN"}"#)]),
            JobOutcome::Failed {
                reason: "label has NaN".into()
            }
        );
        let done = job(owned_by("m", "Model"), Some("Complete"));
        let uid = done.metadata.uid.clone().unwrap();
        match outcome_of::<Summary>(&done, &[pod(&uid, "not json")]) {
            JobOutcome::Failed { reason } => {
                assert!(
                    reason.starts_with("the Job's summary is not readable"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
