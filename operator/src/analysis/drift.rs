//! Input drift: how far serving inputs have moved from the training distribution.
//!
//! Both measures compare bucket shares: the model card's reference shares (the inference server
//! exports them as `leitwerk_inference_feature_reference`) against the shares of serving rows
//! counted by `leitwerk_inference_feature_bucket_total` over a window.

use std::collections::BTreeMap;

use leitwerk_crds::model::DriftMetric;

/// Added to every share before taking logarithms, so empty buckets stay finite.
pub const EPSILON: f64 = 1e-6;

/// Population stability index `Σ (a − e) · ln(a / e)` over buckets, where `e` and `a` are the
/// expected (reference) and actual shares, each normalised to sum to 1 and offset by
/// [`EPSILON`]. `None` when either side has no mass or the lengths differ.
pub fn psi(expected: &[f64], actual: &[f64]) -> Option<f64> {
    let (e, a) = normalised_pair(expected, actual)?;
    Some(
        e.iter()
            .zip(&a)
            .map(|(e, a)| {
                let (e, a) = (e + EPSILON, a + EPSILON);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint) between two bucket
/// distributions. `None` when either side has no mass or the lengths differ.
pub fn js_divergence(expected: &[f64], actual: &[f64]) -> Option<f64> {
    let (p, q) = normalised_pair(expected, actual)?;
    let kl = |x: &[f64], m: &[f64]| -> f64 {
        x.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, m)| x * (x / m).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(p, q)| (p + q) / 2.0).collect();
    Some((0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).clamp(0.0, 1.0))
}

fn normalised_pair(expected: &[f64], actual: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    if expected.len() != actual.len() || expected.is_empty() {
        return None;
    }
    let norm = |xs: &[f64]| -> Option<Vec<f64>> {
        if xs.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return None;
        }
        let total: f64 = xs.iter().sum();
        (total > 0.0).then(|| xs.iter().map(|x| x / total).collect())
    };
    Some((norm(expected)?, norm(actual)?))
}

/// The bucket of a number under the model card's convention: bucket `i` is
/// `(edges[i-1], edges[i]]`, the first `(-inf, edges[0]]`, the last `(edges[last], +inf)`.
pub fn bucket_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|e| *e < v)
}

/// Kind of a feature, as the reference series label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Measured with PSI.
    Numeric,
    /// Measured with Jensen–Shannon divergence.
    Categorical,
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    /// Feature name.
    pub feature: String,
    /// `psi` or `js`.
    pub metric: DriftMetric,
    /// The measure.
    pub value: f64,
    /// Serving rows behind it.
    pub rows: f64,
}

/// Compares serving counts with reference shares, both keyed by bucket label (`"0"`, `"1"`, …,
/// `"missing"`). Buckets only one side knows count as zero on the other.
pub fn feature_drift(
    feature: &str,
    kind: FeatureKind,
    reference: &BTreeMap<String, f64>,
    serving: &BTreeMap<String, f64>,
) -> Option<FeatureDrift> {
    let labels: std::collections::BTreeSet<&String> =
        reference.keys().chain(serving.keys()).collect();
    let e: Vec<f64> = labels
        .iter()
        .map(|l| reference.get(*l).copied().unwrap_or(0.0))
        .collect();
    let a: Vec<f64> = labels
        .iter()
        .map(|l| serving.get(*l).copied().unwrap_or(0.0))
        .collect();
    let (metric, value) = match kind {
        FeatureKind::Numeric => (DriftMetric::Psi, psi(&e, &a)?),
        FeatureKind::Categorical => (DriftMetric::Js, js_divergence(&e, &a)?),
    };
    Some(FeatureDrift {
        feature: feature.to_string(),
        metric,
        value,
        rows: serving.values().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_have_no_drift_and_moved_mass_has_some() {
        let e = [0.25, 0.25, 0.25, 0.25];
        assert!(psi(&e, &[25.0, 25.0, 25.0, 25.0]).unwrap().abs() < 1e-12);
        assert!(js_divergence(&e, &e).unwrap().abs() < 1e-12);
        // (0.4-0.25)·ln(0.4/0.25) + (0.1-0.25)·ln(0.1/0.25) = 0.070501 + 0.137443 = 0.207944
        let shifted = [0.4, 0.1, 0.25, 0.25];
        assert!((psi(&e, &shifted).unwrap() - 0.207_944).abs() < 1e-4);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(psi(&e, &[0.0; 4]), None, "no serving rows: no verdict");
        assert_eq!(psi(&e, &[1.0]), None);
    }

    #[test]
    fn buckets_follow_the_model_card_convention() {
        let edges = [1.0, 2.0, 3.0];
        assert_eq!(bucket_of(&edges, 0.5), 0);
        assert_eq!(bucket_of(&edges, 1.0), 0, "upper edge is inclusive");
        assert_eq!(bucket_of(&edges, 1.5), 1);
        assert_eq!(bucket_of(&edges, 3.0), 2);
        assert_eq!(bucket_of(&edges, 9.0), 3);
    }

    #[test]
    fn feature_drift_aligns_labels_and_picks_the_measure_by_kind() {
        let reference = BTreeMap::from([
            ("0".to_string(), 0.5),
            ("1".to_string(), 0.5),
            ("missing".to_string(), 0.0),
        ]);
        let serving = BTreeMap::from([("1".to_string(), 80.0), ("missing".to_string(), 20.0)]);
        let d = feature_drift("x", FeatureKind::Numeric, &reference, &serving).unwrap();
        assert_eq!((d.metric, d.rows), (DriftMetric::Psi, 100.0));
        assert!(d.value > 1.0, "{d:?}");
        let c = feature_drift("x", FeatureKind::Categorical, &reference, &serving).unwrap();
        assert_eq!(c.metric, DriftMetric::Js);
        assert!(c.value > 0.3 && c.value < 1.0, "{c:?}");
    }

    /// nannyml's synthetic car-loan data: `car_value` does not drift in the first half of the
    /// analysis set and drifts strongly in the second. Reference figures (10 decile buckets,
    /// ε = 1e-6) from ../shared/data/README.md: PSI 0.0001 and 1.858.
    #[test]
    fn psi_matches_the_car_loan_reference_figures() {
        let reference = car_loan_column("reference", "car_value");
        let analysis = car_loan_column("analysis", "car_value");
        assert_eq!((reference.len(), analysis.len()), (50_000, 50_000));
        let edges = deciles(&reference);
        let shares = |xs: &[f64]| {
            let mut counts = vec![0.0; edges.len() + 1];
            xs.iter().for_each(|x| counts[bucket_of(&edges, *x)] += 1.0);
            counts
        };
        let e = shares(&reference);
        let (first, second) = analysis.split_at(25_000);
        let no_drift = psi(&e, &shares(first)).unwrap();
        let drift = psi(&e, &shares(second)).unwrap();
        assert!((no_drift - 0.0001).abs() < 0.00005, "first half {no_drift}");
        assert!((drift - 1.858).abs() < 0.0005, "second half {drift}");
    }

    /// Inner decile edges with linear interpolation between order statistics.
    fn deciles(xs: &[f64]) -> Vec<f64> {
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        (1..10)
            .map(|k| {
                let pos = (s.len() - 1) as f64 * k as f64 / 10.0;
                let (lo, frac) = (pos.floor() as usize, pos.fract());
                s[lo] + (s[(lo + 1).min(s.len() - 1)] - s[lo]) * frac
            })
            .collect()
    }

    /// One numeric column of nannyml's car-loan data, fetched from the nannyml 0.13.1 wheel
    /// into `~/.cache/leitwerk/data` on first use (Apache-2.0; see ../shared/data/README.md).
    fn car_loan_column(part: &str, column: &str) -> Vec<f64> {
        let dir =
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/leitwerk/data");
        let path = dir.join(format!("car_loan_{part}.csv"));
        if !path.exists() {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "set -e; mkdir -p '{d}'; t=$(mktemp -d); \
                     python3 -m pip download --quiet --no-deps -d \"$t\" nannyml==0.13.1; \
                     unzip -p \"$t\"/nannyml-0.13.1-py3-none-any.whl nannyml/datasets/data/synthetic_car_loan_{part}.csv > '{p}.tmp'; \
                     mv '{p}.tmp' '{p}'; rm -rf \"$t\"",
                    d = dir.display(),
                    p = path.display()
                ))
                .status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "could not fetch {}: needs pip access to nannyml==0.13.1 and unzip",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let index = header
            .split(',')
            .position(|h| h == column)
            .unwrap_or(usize::MAX);
        lines
            .filter_map(|l| l.split(',').nth(index)?.parse().ok())
            .collect()
    }
}
