//! Outcomes fed back by callers: the bounded store of prediction ids and the outcome
//! metrics.

use super::*;

/// Where recent predictions are remembered for feedback, bounded. A reported prediction stays
/// remembered (as reported) until it ages out, so that a replay is told apart from a forgery.
#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    by_id: HashMap<String, Remembered>,
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Remembered {
    model: String,
    version: String,
    reported: bool,
}

/// Why an outcome was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No prediction has this id: forged, guessed, or too old to remember.
    Unknown,
    /// The outcome of this prediction was reported before.
    Replayed,
}

impl FeedbackStore {
    /// A store that remembers at most `capacity` predictions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_id: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers a prediction, forgetting the oldest beyond the capacity.
    pub fn remember(&mut self, id: String, model: &str, version: &str) {
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        self.by_id.insert(
            id.clone(),
            Remembered {
                model: model.to_string(),
                version: version.to_string(),
                reported: false,
            },
        );
        self.order.push_back(id);
    }

    /// Marks a prediction reported and returns its model and version (each outcome counts
    /// once).
    pub fn take(&mut self, id: &str) -> Result<(String, String), Refusal> {
        let found = self.by_id.get_mut(id).ok_or(Refusal::Unknown)?;
        if found.reported {
            return Err(Refusal::Replayed);
        }
        found.reported = true;
        Ok((found.model.clone(), found.version.clone()))
    }

    /// Predictions remembered, reported or not.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Whether `given` is the expected token, in time independent of where they differ.
fn token_matches(expected: &str, given: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| bool::from(expected.as_bytes().ct_eq(g.as_bytes())))
}

impl Server {
    /// Records an outcome for a prediction id. With a feedback token configured, `token` must
    /// match it (401 otherwise); an unknown id is NotFound (404), one already reported a
    /// Conflict (409). Every refusal is counted by its reason.
    pub fn feedback(
        &self,
        token: Option<&str>,
        prediction_id: &str,
        converted: bool,
        value: Option<f64>,
    ) -> Result<(String, String), InferError> {
        let refuse = |reason: &str| {
            self.metrics
                .feedback_refused
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        };
        if let Some(expected) = self.feedback_token.get()
            && !token_matches(expected, token)
        {
            refuse("unauthenticated");
            return Err(InferError::Unauthenticated(if token.is_some() {
                "the feedback token is wrong: send the one in the Model's feedback Secret as `Authorization: Bearer <token>`".into()
            } else {
                "feedback needs `Authorization: Bearer <token>`, with the token from the Model's feedback Secret (key `token`)".into()
            }));
        }
        let found = self
            .feedback
            .lock()
            .map_err(|_| InferError::Internal("feedback store lock poisoned".into()))?
            .take(prediction_id);
        let (model, version) = match found {
            Ok(found) => found,
            Err(Refusal::Unknown) => {
                refuse("unknown");
                return Err(InferError::NotFound(format!(
                    "prediction {prediction_id:?} is unknown or too old to remember"
                )));
            }
            Err(Refusal::Replayed) => {
                refuse("replayed");
                return Err(InferError::Conflict(format!(
                    "the outcome of prediction {prediction_id:?} was already reported"
                )));
            }
        };
        let outcome = if converted {
            "converted"
        } else {
            "not_converted"
        };
        self.metrics
            .outcomes
            .get_or_create(&OutcomeLabels {
                model: model.clone(),
                version: version.clone(),
                outcome: outcome.into(),
            })
            .inc();
        if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
            self.metrics
                .outcome_value
                .get_or_create(&VersionLabels {
                    model: model.clone(),
                    version: version.clone(),
                })
                .inc_by(v);
        }
        Ok((model, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feedback_store_is_bounded_and_counts_each_outcome_once() {
        let mut store = FeedbackStore::new(3);
        for i in 0..5 {
            store.remember(format!("p{i}"), "m", "v1");
        }
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.take("p0"),
            Err(Refusal::Unknown),
            "the oldest were forgotten"
        );
        assert_eq!(store.take("p4"), Ok(("m".into(), "v1".into())));
        assert_eq!(
            store.take("p4"),
            Err(Refusal::Replayed),
            "an outcome counts once"
        );
        assert_eq!(
            store.len(),
            3,
            "a reported prediction is remembered as reported"
        );
        store.remember("p5".into(), "m", "v1");
        assert_eq!(store.take("p2"), Err(Refusal::Unknown));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("s3cret", Some("s3cret")));
        assert!(!token_matches("s3cret", Some("s3cre")));
        assert!(!token_matches("s3cret", Some("s3cret ")));
        assert!(!token_matches("s3cret", Some("")));
        assert!(!token_matches("s3cret", None));
    }
}
