//! The lifecycle of versions, written once for every versioned kind: which one serves, and
//! what promotion, rollback, retirement and the history bound do to the list. The Model
//! controller, its drift policy, the Experiment controller and the RagIndex controller all
//! change versions through these functions.

use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use crate::model::ModelVersion;

crate::common::named_enum! {
    /// The state of one version.
    #[derive(Default)]
    pub enum VersionState {
        /// Trained (or imported), meets `minMetrics`, not serving: an Experiment may judge it.
        #[default]
        Candidate,
        /// Takes the Model's traffic. At most one version serves.
        Serving,
        /// Served before and was replaced by a promotion.
        Retired,
        /// Was rolled back by an Experiment or the drift policy; never served again by itself.
        RolledBack,
        /// Trained, but below `minMetrics`.
        Rejected,
        /// Training failed.
        Failed,
    }
}

impl VersionState {
    /// Whether the version has a usable artifact (it trained and met its gates).
    pub fn is_usable(self) -> bool {
        !matches!(self, VersionState::Failed | VersionState::Rejected)
    }
}

/// Where a version stands in the lifecycle every versioned kind shares (Model and RagIndex):
/// what [`Versions`] reads and changes. Each kind maps its own states onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Usable, not serving: may be promoted.
    Candidate,
    /// Takes the traffic. At most one version serves.
    Serving,
    /// Served before and was replaced.
    Retired,
    /// Was rolled back; never served again by itself.
    RolledBack,
    /// Never usable (failed its gate or its build).
    Refused,
}

/// A version a resource records: its name, order, stage and whether it has an artifact.
pub trait Version {
    /// Its name as status shows it.
    fn name(&self) -> &str;
    /// Its place in the history (oldest lowest).
    fn order(&self) -> i64;
    /// Where it stands.
    fn stage(&self) -> Stage;
    /// Whether it has a file a server can load.
    fn has_artifact(&self) -> bool;
    /// Moves it to `stage` ([`Versions`] sets only Serving, Retired and RolledBack), with the
    /// reason when one is given.
    fn set_stage(&mut self, stage: Stage, why: Option<String>);
}

impl Version for ModelVersion {
    fn name(&self) -> &str {
        &self.version
    }
    fn order(&self) -> i64 {
        i64::from(version_number(&self.version))
    }
    fn stage(&self) -> Stage {
        match self.state {
            VersionState::Candidate => Stage::Candidate,
            VersionState::Serving => Stage::Serving,
            VersionState::Retired => Stage::Retired,
            VersionState::RolledBack => Stage::RolledBack,
            VersionState::Rejected | VersionState::Failed => Stage::Refused,
        }
    }
    fn has_artifact(&self) -> bool {
        self.artifact_url.is_some()
    }
    fn set_stage(&mut self, stage: Stage, why: Option<String>) {
        self.state = match stage {
            Stage::Candidate => VersionState::Candidate,
            Stage::Serving => VersionState::Serving,
            Stage::Retired => VersionState::Retired,
            Stage::RolledBack => VersionState::RolledBack,
            Stage::Refused => VersionState::Rejected,
        };
        if why.is_some() {
            self.message = why;
        }
    }
}

/// A resource's recorded versions, oldest first: a Model's (the default) or a RagIndex's.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct Versions<V = ModelVersion>(pub Vec<V>);

impl<V> Default for Versions<V> {
    fn default() -> Self {
        Versions(Vec::new())
    }
}

impl<V> Deref for Versions<V> {
    type Target = Vec<V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<V> DerefMut for Versions<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<V> From<Vec<V>> for Versions<V> {
    fn from(v: Vec<V>) -> Self {
        Versions(v)
    }
}

impl<V> FromIterator<V> for Versions<V> {
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Self {
        Versions(iter.into_iter().collect())
    }
}

impl<'a, V> IntoIterator for &'a Versions<V> {
    type Item = &'a V;
    type IntoIter = std::slice::Iter<'a, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// What a change did to the versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The versions changed.
    Changed,
    /// They already showed it: nothing to write.
    AlreadyDone,
    /// The version named is not recorded.
    Unknown,
}

/// The number of a version name (`v12` → 12); 0 for anything else.
pub fn version_number(name: &str) -> u32 {
    name.trim_start_matches('v').parse().unwrap_or(0)
}

/// Versions kept when `versionHistoryLimit` is left out, for every versioned kind.
pub const DEFAULT_HISTORY: i32 = 10;

/// `versionHistoryLimit` as a count (at least 1).
pub fn history_limit(limit: i32) -> usize {
    usize::try_from(limit.max(1)).unwrap_or(1)
}

impl<V> Versions<V> {
    /// Whether there are no versions (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Versions<ModelVersion> {
    /// The highest version number recorded.
    pub fn highest(&self) -> u32 {
        self.0
            .iter()
            .map(|v| version_number(&v.version))
            .max()
            .unwrap_or(0)
    }
}

impl<V: Version> Versions<V> {
    /// The version that serves.
    pub fn serving(&self) -> Option<&V> {
        self.0.iter().find(|v| v.stage() == Stage::Serving)
    }

    /// The version named `name`.
    pub fn named(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|v| v.name() == name)
    }

    /// The newest Candidate.
    pub fn newest_candidate(&self) -> Option<&V> {
        self.0.iter().rev().find(|v| v.stage() == Stage::Candidate)
    }

    /// Promotes `name`: it serves (with `why`), and the version serving before is Retired.
    pub fn promote(&mut self, name: &str, why: impl Into<String>) -> Change {
        match self.named(name).map(Version::stage) {
            None => return Change::Unknown,
            Some(Stage::Serving) => return Change::AlreadyDone,
            Some(_) => {}
        }
        let why = why.into();
        for v in self.0.iter_mut() {
            if v.name() == name {
                v.set_stage(Stage::Serving, Some(why.clone()));
            } else if v.stage() == Stage::Serving {
                v.set_stage(Stage::Retired, None);
            }
        }
        Change::Changed
    }

    /// Marks a candidate that lost its Experiment RolledBack (with `why`). A serving version is
    /// left alone (use [`Versions::roll_back_serving`]).
    pub fn reject_candidate(&mut self, name: &str, why: impl Into<String>) -> Change {
        match self.0.iter_mut().find(|v| v.name() == name) {
            None => Change::Unknown,
            Some(v) if matches!(v.stage(), Stage::RolledBack | Stage::Serving) => {
                Change::AlreadyDone
            }
            Some(v) => {
                v.set_stage(Stage::RolledBack, Some(why.into()));
                Change::Changed
            }
        }
    }

    /// Rolls the serving version back (with `why`): the newest earlier version that has an
    /// artifact and is Retired or a Candidate serves again. Returns that version, or `None`
    /// (and changes nothing) when there is none.
    pub fn roll_back_serving(&mut self, why: impl Into<String>) -> Option<String> {
        let current = self.0.iter().position(|v| v.stage() == Stage::Serving)?;
        let previous = self.0[..current].iter().rposition(|v| {
            v.has_artifact() && matches!(v.stage(), Stage::Retired | Stage::Candidate)
        })?;
        self.0[current].set_stage(Stage::RolledBack, Some(why.into()));
        self.0[previous].set_stage(Stage::Serving, None);
        Some(self.0[previous].name().to_string())
    }

    /// Serves the newest Candidate when nothing serves. Returns its name when it did.
    pub fn serve_newest_candidate_if_none_serves(&mut self) -> Option<String> {
        if self.serving().is_some() {
            return None;
        }
        let best = self
            .0
            .iter_mut()
            .rev()
            .find(|v| v.stage() == Stage::Candidate)?;
        best.set_stage(Stage::Serving, None);
        Some(best.name().to_string())
    }

    /// Keeps at most `limit` versions, dropping the oldest first; the serving one is kept.
    pub fn bound(&mut self, limit: usize) {
        while self.0.len() > limit.max(1) {
            match self.0.iter().position(|v| v.stage() != Stage::Serving) {
                Some(i) => {
                    self.0.remove(i);
                }
                None => break,
            }
        }
    }

    /// Adds versions recorded since (ignoring names already present), keeping the history in
    /// order.
    pub fn record(&mut self, new: impl IntoIterator<Item = V>) {
        for v in new {
            if self.named(v.name()).is_none() {
                self.0.push(v);
            }
        }
        self.0.sort_by_key(Version::order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(states: &[(&str, VersionState)]) -> Versions {
        states
            .iter()
            .map(|(name, state)| ModelVersion {
                version: name.to_string(),
                state: *state,
                artifact_url: Some(format!("file:///m/{name}.onnx")),
                ..Default::default()
            })
            .collect()
    }

    fn states(v: &Versions) -> Vec<(String, VersionState)> {
        v.iter().map(|x| (x.version.clone(), x.state)).collect()
    }

    use VersionState::*;

    #[test]
    fn promotion_serves_the_version_and_retires_the_one_before() {
        let mut v = versions(&[("v1", Serving), ("v2", Candidate), ("v3", Candidate)]);
        assert_eq!(v.promote("v2", "won"), Change::Changed);
        assert_eq!(
            states(&v),
            versions(&[("v1", Retired), ("v2", Serving), ("v3", Candidate)])
                .iter()
                .map(|x| (x.version.clone(), x.state))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            v.named("v2").and_then(|x| x.message.as_deref()),
            Some("won")
        );
        assert_eq!(v.promote("v2", "again"), Change::AlreadyDone);
        assert_eq!(v.promote("v9", "?"), Change::Unknown);
    }

    #[test]
    fn a_rolled_back_candidate_keeps_the_serving_version() {
        let mut v = versions(&[("v1", Serving), ("v2", Candidate)]);
        assert_eq!(v.reject_candidate("v2", "breach"), Change::Changed);
        assert_eq!(v.serving().map(|x| x.version.as_str()), Some("v1"));
        assert_eq!(v.named("v2").map(|x| x.state), Some(RolledBack));
        assert_eq!(v.reject_candidate("v2", "breach"), Change::AlreadyDone);
        assert_eq!(
            v.reject_candidate("v1", "?"),
            Change::AlreadyDone,
            "never the serving one"
        );
    }

    #[test]
    fn rolling_back_the_serving_version_serves_the_newest_usable_earlier_one() {
        let mut v = versions(&[("v1", Retired), ("v2", Rejected), ("v3", Serving)]);
        assert_eq!(v.roll_back_serving("drift").as_deref(), Some("v1"));
        assert_eq!(v.named("v3").map(|x| x.state), Some(RolledBack));
        let mut only = versions(&[("v1", Serving)]);
        assert_eq!(only.roll_back_serving("drift"), None);
        assert_eq!(only.serving().map(|x| x.version.as_str()), Some("v1"));
    }

    #[test]
    fn history_is_bounded_but_keeps_the_serving_version_and_states_serialise_as_strings() {
        let mut v = versions(&[("v1", Serving), ("v2", Failed), ("v3", Candidate)]);
        v.bound(2);
        assert_eq!(
            v.iter().map(|x| x.version.as_str()).collect::<Vec<_>>(),
            ["v1", "v3"]
        );
        assert_eq!(v.serve_newest_candidate_if_none_serves(), None);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json[0]["state"], "Serving");
        let back: Versions = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
        assert!(
            serde_json::from_value::<Versions>(
                serde_json::json!([{"version": "v1", "state": "Serving "}])
            )
            .is_err()
        );
    }
}
