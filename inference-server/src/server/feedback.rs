//! Outcomes fed back by callers: the bounded store of prediction ids and the outcome
//! metrics.

use super::*;

/// Where recent predictions are remembered for feedback, bounded.
#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    by_id: HashMap<String, (String, String)>,
    order: VecDeque<String>,
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
        self.by_id
            .insert(id.clone(), (model.to_string(), version.to_string()));
        self.order.push_back(id);
    }

    /// Takes a prediction out (each outcome counts once).
    pub fn take(&mut self, id: &str) -> Option<(String, String)> {
        let found = self.by_id.remove(id)?;
        self.order.retain(|x| x != id);
        Some(found)
    }

    /// Predictions remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl Server {
    /// Records an outcome for a prediction id; unknown (or already reported) ids are NotFound.
    pub fn feedback(
        &self,
        prediction_id: &str,
        converted: bool,
        value: Option<f64>,
    ) -> Result<(String, String), InferError> {
        let found = self
            .feedback
            .lock()
            .map_err(|_| InferError::Internal("feedback store lock poisoned".into()))?
            .take(prediction_id);
        let Some((model, version)) = found else {
            self.metrics.feedback_refused.inc();
            return Err(InferError::NotFound(format!(
                "prediction {prediction_id:?} is unknown, already reported or too old to remember"
            )));
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
        assert_eq!(store.take("p0"), None, "the oldest were forgotten");
        assert_eq!(store.take("p4"), Some(("m".into(), "v1".into())));
        assert_eq!(store.take("p4"), None, "an outcome counts once");
        assert_eq!(store.len(), 2);
    }
}
