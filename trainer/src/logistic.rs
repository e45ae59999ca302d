//! Logistic regression through linfa, returning P(label = true).

use linfa::{Dataset, traits::Fit};
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

/// A fitted binary classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    /// Weights per encoded feature, for P(true).
    pub weights: Array1<f64>,
    /// Intercept, for P(true).
    pub intercept: f64,
}

/// Errors of fitting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// linfa refused the data or did not converge.
    #[error("failed to fit logistic regression")]
    Fit(#[source] linfa_logistic::error::Error),
}

impl Logistic {
    /// Fits with L2 penalty `l2` (the objective is the summed log loss plus `l2`/2·‖w‖², so
    /// `l2 = 1` is scikit-learn's default `C = 1`).
    pub fn fit(
        x: &Array2<f64>,
        y: &[bool],
        l2: f64,
        max_iterations: u64,
    ) -> Result<Logistic, Error> {
        let targets = Array1::from_iter(y.iter().copied());
        let dataset = Dataset::new(x.clone(), targets);
        let fitted = LogisticRegression::default()
            .alpha(l2)
            .max_iterations(max_iterations)
            .fit(&dataset)
            .map_err(Error::Fit)?;
        // linfa calls the MORE FREQUENT class "positive"; turn its parameters into P(true).
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        Ok(Logistic {
            weights: fitted.params().mapv(|w| sign * w),
            intercept: sign * fitted.intercept(),
        })
    }

    /// P(true) for each row.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        x.dot(&self.weights)
            .iter()
            .map(|z| crate::datagen::sigmoid(z + self.intercept))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_for_true_even_when_true_is_the_minority() {
        // 1 in 4 rows is true, and true goes with large x.
        let x = Array2::from_shape_vec((8, 1), vec![-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.8, 2.2])
            .unwrap_or_default();
        let y = [false, false, false, false, false, false, true, true];
        let model = Logistic::fit(&x, &y, 0.01, 500).unwrap();
        let p = model.predict(&x);
        assert!(p[7] > 0.5 && p[0] < 0.1, "{p:?}");
        assert!(model.weights[0] > 0.0);
    }
}
