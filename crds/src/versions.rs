//! The lifecycle of a Model's versions, written once: which one serves, and what promotion,
//! rollback and retirement do to the list. The Model controller, its drift policy and the
//! Experiment controller all change versions through these functions.

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

/// A Model's recorded versions, oldest first.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct Versions(pub Vec<ModelVersion>);

impl Deref for Versions {
    type Target = Vec<ModelVersion>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Versions {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<Vec<ModelVersion>> for Versions {
    fn from(v: Vec<ModelVersion>) -> Self {
        Versions(v)
    }
}

impl FromIterator<ModelVersion> for Versions {
    fn from_iter<I: IntoIterator<Item = ModelVersion>>(iter: I) -> Self {
        Versions(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Versions {
    type Item = &'a ModelVersion;
    type IntoIter = std::slice::Iter<'a, ModelVersion>;
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

impl Versions {
    /// Whether there are no versions (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The version that serves.
    pub fn serving(&self) -> Option<&ModelVersion> {
        self.0.iter().find(|v| v.state == VersionState::Serving)
    }

    /// The version named `name`.
    pub fn named(&self, name: &str) -> Option<&ModelVersion> {
        self.0.iter().find(|v| v.version == name)
    }

    /// The newest Candidate.
    pub fn newest_candidate(&self) -> Option<&ModelVersion> {
        self.0
            .iter()
            .rev()
            .find(|v| v.state == VersionState::Candidate)
    }

    /// The highest version number recorded.
    pub fn highest(&self) -> u32 {
        self.0
            .iter()
            .map(|v| version_number(&v.version))
            .max()
            .unwrap_or(0)
    }

    /// Promotes `name`: it serves (with `why`), and the version serving before is Retired.
    pub fn promote(&mut self, name: &str, why: impl Into<String>) -> Change {
        match self.named(name).map(|v| v.state) {
            None => return Change::Unknown,
            Some(VersionState::Serving) => return Change::AlreadyDone,
            Some(_) => {}
        }
        let why = why.into();
        for v in self.0.iter_mut() {
            if v.version == name {
                v.state = VersionState::Serving;
                v.message = Some(why.clone());
            } else if v.state == VersionState::Serving {
                v.state = VersionState::Retired;
            }
        }
        Change::Changed
    }

    /// Marks a candidate that lost its Experiment RolledBack (with `why`). A serving version is
    /// left alone (use [`Versions::roll_back_serving`]).
    pub fn reject_candidate(&mut self, name: &str, why: impl Into<String>) -> Change {
        match self.0.iter_mut().find(|v| v.version == name) {
            None => Change::Unknown,
            Some(v) if matches!(v.state, VersionState::RolledBack | VersionState::Serving) => {
                Change::AlreadyDone
            }
            Some(v) => {
                v.state = VersionState::RolledBack;
                v.message = Some(why.into());
                Change::Changed
            }
        }
    }

    /// Rolls the serving version back (with `why`): the newest earlier version that has an
    /// artifact and is Retired or a Candidate serves again. Returns that version, or `None`
    /// (and changes nothing) when there is none.
    pub fn roll_back_serving(&mut self, why: impl Into<String>) -> Option<String> {
        let current = self
            .0
            .iter()
            .position(|v| v.state == VersionState::Serving)?;
        let previous = self.0[..current].iter().rposition(|v| {
            v.artifact_url.is_some()
                && matches!(v.state, VersionState::Retired | VersionState::Candidate)
        })?;
        self.0[current].state = VersionState::RolledBack;
        self.0[current].message = Some(why.into());
        self.0[previous].state = VersionState::Serving;
        Some(self.0[previous].version.clone())
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
            .find(|v| v.state == VersionState::Candidate)?;
        best.state = VersionState::Serving;
        Some(best.version.clone())
    }

    /// Keeps at most `limit` versions, dropping the oldest first; the serving one is kept.
    pub fn bound(&mut self, limit: usize) {
        while self.0.len() > limit.max(1) {
            match self.0.iter().position(|v| v.state != VersionState::Serving) {
                Some(i) => {
                    self.0.remove(i);
                }
                None => break,
            }
        }
    }

    /// Adds versions recorded since (ignoring names already present), keeping the order by
    /// version number.
    pub fn record(&mut self, new: impl IntoIterator<Item = ModelVersion>) {
        for v in new {
            if self.named(&v.version).is_none() {
                self.0.push(v);
            }
        }
        self.0.sort_by_key(|v| version_number(&v.version));
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
