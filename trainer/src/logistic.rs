//! L2-regularised logistic regression, returning P(label = true), fitted by Newton's method.
//!
//! The objective is scikit-learn's: the summed log loss plus `l2`/2·‖w‖² (the intercept is not
//! penalised), so `l2 = 1` is its default `C = 1`, and the optimum is the same. With a handful
//! of encoded columns the Hessian is a small dense matrix: each Newton step costs one pass over
//! the rows (O(n·d²)) and a Cholesky solve, and the objective is strictly convex, so a few
//! steps reach the optimum. linfa's L-BFGS fitted the same model 6–7× slower than
//! scikit-learn's lbfgs (`benches/README.md`); a step that does not lower the objective is
//! halved, so separable data cannot make it diverge.

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
    /// The rows, labels or penalty cannot be fitted.
    #[error("failed to fit logistic regression: {0}")]
    Fit(String),
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The penalised log loss of `beta` (weights, then the intercept) with margins `z`.
fn objective(z: &Array1<f64>, y: &[bool], beta: &Array1<f64>, l2: f64) -> f64 {
    let d = beta.len() - 1;
    let loss: f64 = z
        .iter()
        .zip(y)
        .map(|(&z, &t)| if t { softplus(-z) } else { softplus(z) })
        .sum();
    loss + 0.5 * l2 * beta.iter().take(d).map(|w| w * w).sum::<f64>()
}

/// Solves `a·x = b` for a symmetric positive definite `a` (Cholesky); `None` if it is not.
fn solve_spd(a: &Array2<f64>, b: &Array1<f64>) -> Option<Array1<f64>> {
    let n = b.len();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                let d = a[[i, i]] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[[i, i]] = d.sqrt();
            } else {
                l[[i, j]] = (a[[i, j]] - s) / l[[j, j]];
            }
        }
    }
    let mut y = Array1::<f64>::zeros(n);
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[[i, k]] * y[k]).sum();
        y[i] = (b[i] - s) / l[[i, i]];
    }
    let mut x = Array1::<f64>::zeros(n);
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[[k, i]] * x[k]).sum();
        x[i] = (y[i] - s) / l[[i, i]];
    }
    Some(x)
}

impl Logistic {
    /// Fits with L2 penalty `l2` (> 0) in at most `max_iterations` Newton steps.
    pub fn fit(
        x: &Array2<f64>,
        y: &[bool],
        l2: f64,
        max_iterations: u64,
    ) -> Result<Logistic, Error> {
        let (n, d) = x.dim();
        if n == 0 || y.len() != n {
            return Err(Error::Fit(format!(
                "{n} rows and {} labels: both must be the same, non-zero number",
                y.len()
            )));
        }
        if !(l2 > 0.0 && l2.is_finite()) {
            return Err(Error::Fit(format!("l2 is {l2}; it must be above 0")));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::Fit(
                "the encoded rows hold a value that is not finite".into(),
            ));
        }
        // The rows with a column of ones for the intercept: beta = (w, b), margins z = X̃·beta.
        let ones = Array2::<f64>::ones((n, 1));
        let xt = ndarray::concatenate(ndarray::Axis(1), &[x.view(), ones.view()])
            .map_err(|e| Error::Fit(e.to_string()))?;
        let mut beta = Array1::<f64>::zeros(d + 1);
        let labels = Array1::from_iter(y.iter().map(|&t| f64::from(u8::from(t))));
        let mut penalty = Array1::from_elem(d + 1, l2);
        penalty[d] = 0.0;
        let mut z = xt.dot(&beta);
        let mut current = objective(&z, y, &beta, l2);
        for _ in 0..max_iterations.max(1) {
            // Gradient X̃ᵀ(p − y) + l2·w and Hessian X̃ᵀ·diag(p(1 − p))·X̃ + l2·I (one product of
            // the row-scaled matrix with itself).
            let p = z.mapv(crate::datagen::sigmoid);
            let gradient = xt.t().dot(&(&p - &labels)) + &penalty * &beta;
            if gradient.iter().all(|g| g.abs() <= 1e-9 * (n as f64)) {
                break;
            }
            let scale = p.mapv(|p| (p * (1.0 - p)).max(1e-12).sqrt());
            let scaled = &xt * &scale.insert_axis(ndarray::Axis(1));
            let mut hessian = scaled.t().dot(&scaled);
            for a in 0..=d {
                hessian[[a, a]] += penalty[a];
            }
            let step = solve_spd(&hessian, &gradient)
                .ok_or_else(|| Error::Fit("the Hessian is not positive definite".into()))?;
            // Halve the step until the objective falls (Newton's full step almost always does).
            let mut size = 1.0;
            let mut improved = false;
            for _ in 0..40 {
                let candidate = &beta - &(&step * size);
                let cz = xt.dot(&candidate);
                let value = objective(&cz, y, &candidate, l2);
                if value <= current {
                    let change = current - value;
                    beta = candidate;
                    z = cz;
                    current = value;
                    improved = change > 1e-14 * current.abs().max(1.0);
                    break;
                }
                size /= 2.0;
            }
            if !improved {
                break;
            }
        }
        let weights_of = |beta: &Array1<f64>| Array1::from_iter(beta.iter().take(d).copied());
        Ok(Logistic {
            weights: weights_of(&beta),
            intercept: beta[d],
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

    #[test]
    fn the_fit_is_the_optimum_its_gradient_vanishes_there() {
        // Two overlapping features and an intercept; at the optimum of the penalised loss the
        // gradient Xᵀ(p − y) + l2·w is zero (and Σ(p − y) for the intercept).
        let n = 400;
        let mut state = 7_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        let data: Vec<f64> = (0..n * 2).map(|_| next() * 4.0 - 2.0).collect();
        let x = Array2::from_shape_vec((n, 2), data).unwrap();
        let y: Vec<bool> = (0..n)
            .map(|i| x[[i, 0]] - 0.5 * x[[i, 1]] + (next() - 0.5) * 2.0 > 0.3)
            .collect();
        let l2 = 0.5;
        let m = Logistic::fit(&x, &y, l2, 100).unwrap();
        let p = m.predict(&x);
        let mut g = [0.0; 3];
        for i in 0..n {
            let r = p[i] - f64::from(u8::from(y[i]));
            g[0] += r * x[[i, 0]];
            g[1] += r * x[[i, 1]];
            g[2] += r;
        }
        g[0] += l2 * m.weights[0];
        g[1] += l2 * m.weights[1];
        assert!(g.iter().all(|v| v.abs() < 1e-6), "{g:?}");
        assert!(m.weights[0] > 0.0 && m.weights[1] < 0.0);
    }

    #[test]
    fn separable_rows_still_converge_under_the_penalty() {
        let x = Array2::from_shape_vec((6, 1), vec![-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]).unwrap();
        let y = [false, false, false, true, true, true];
        let m = Logistic::fit(&x, &y, 1.0, 100).unwrap();
        assert!(m.weights[0].is_finite() && m.weights[0] > 0.0);
        assert!(
            Logistic::fit(&x, &y, 0.0, 100).is_err(),
            "l2 must be above 0"
        );
    }
}
