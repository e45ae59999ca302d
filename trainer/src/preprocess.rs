//! Preprocessing fitted on training rows only: standardized numeric columns and one-hot
//! categorical columns (one column per category seen at least five times, plus an unknown
//! bucket for everything else, including missing values).

use ndarray::Array2;

/// A table in columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// Numeric columns as `(name, values)`.
    pub numeric: Vec<(String, Vec<f64>)>,
    /// Categorical columns as `(name, values)`.
    pub categorical: Vec<(String, Vec<String>)>,
}

impl Columns {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.numeric
            .first()
            .map(|(_, v)| v.len())
            .or_else(|| self.categorical.first().map(|(_, v)| v.len()))
            .unwrap_or(0)
    }

    /// The rows at `index`, in that order.
    pub fn take(&self, index: &[usize]) -> Columns {
        Columns {
            numeric: self
                .numeric
                .iter()
                .map(|(n, v)| (n.clone(), index.iter().map(|&i| v[i]).collect()))
                .collect(),
            categorical: self
                .categorical
                .iter()
                .map(|(n, v)| (n.clone(), index.iter().map(|&i| v[i].clone()).collect()))
                .collect(),
        }
    }
}

/// A fitted encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    /// Mean and standard deviation of each numeric column.
    pub scales: Vec<(String, f64, f64)>,
    /// Kept categories (sorted, first dropped) of each categorical column.
    pub categories: Vec<(String, Vec<String>)>,
}

impl Encoder {
    /// Fits means, standard deviations and categories on training rows. Missing numbers are
    /// NaN and are imputed with the training mean; categories seen fewer than
    /// [`MIN_CATEGORY_COUNT`] times join the unknown bucket.
    pub fn fit(train: &Columns) -> Encoder {
        let scales = train
            .numeric
            .iter()
            .map(|(name, v)| {
                let present: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                let n = present.len().max(1) as f64;
                let mean = present.iter().sum::<f64>() / n;
                let var = present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                (name.clone(), mean, std)
            })
            .collect();
        let categories = train
            .categorical
            .iter()
            .map(|(name, v)| {
                let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
                for value in v.iter().filter(|s| !s.is_empty()) {
                    *counts.entry(value.as_str()).or_default() += 1;
                }
                let kept = counts
                    .into_iter()
                    .filter(|(_, c)| *c >= MIN_CATEGORY_COUNT)
                    .map(|(k, _)| k.to_string())
                    .collect();
                (name.clone(), kept)
            })
            .collect();
        Encoder { scales, categories }
    }

    /// Names of the encoded columns: numeric names, then `name=category` and `name=<unknown>`.
    pub fn feature_names(&self) -> Vec<String> {
        let numeric = self.scales.iter().map(|(n, _, _)| n.clone());
        let onehot = self.categories.iter().flat_map(|(n, cats)| {
            let unknown = (!cats.is_empty()).then(|| format!("{n}={UNKNOWN}"));
            cats.iter().map(move |c| format!("{n}={c}")).chain(unknown)
        });
        numeric.chain(onehot).collect()
    }

    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        self.scales.len()
            + self
                .categories
                .iter()
                .map(|(_, c)| bucket_width(c))
                .sum::<usize>()
    }

    /// Encodes rows. Numbers are imputed and standardised in `f32` arithmetic, exactly as the
    /// exported ONNX graph does, so both see identical inputs.
    pub fn transform(&self, data: &Columns) -> Array2<f64> {
        let mut x = Array2::<f64>::zeros((data.rows(), self.width()));
        for (j, ((_, mean, std), (_, values))) in self.scales.iter().zip(&data.numeric).enumerate()
        {
            let (m, s) = (*mean as f32, *std as f32);
            for (i, v) in values.iter().enumerate() {
                let v = *v as f32;
                let v = if v.is_nan() { m } else { v };
                x[[i, j]] = f64::from((v - m) / s);
            }
        }
        let mut offset = self.scales.len();
        for ((_, cats), (_, values)) in self.categories.iter().zip(&data.categorical) {
            if cats.is_empty() {
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                let k = cats.iter().position(|c| c == v).unwrap_or(cats.len());
                x[[i, offset + k]] = 1.0;
            }
            offset += bucket_width(cats);
        }
        x
    }
}

/// Columns of a categorical feature: its categories and the unknown bucket, or none when no
/// category was frequent enough (a constant column carries no information).
fn bucket_width(cats: &[String]) -> usize {
    if cats.is_empty() { 0 } else { cats.len() + 1 }
}

/// The category that stands for every category not kept (seen too rarely, or never).
pub use leitwerk_crds::card::UNKNOWN;
/// Categories seen fewer times in training share the unknown bucket.
pub const MIN_CATEGORY_COUNT: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_imputation_and_categories_come_from_training_rows_only() {
        let mut cats: Vec<String> = vec!["b".into(); 5];
        cats.extend(vec!["a".to_string(); 4]);
        let mut nums = vec![1.0; 9];
        nums[0] = 3.0;
        nums[1] = f64::NAN;
        let train = Columns {
            numeric: vec![("x".into(), nums)],
            categorical: vec![("c".into(), cats)],
        };
        let enc = Encoder::fit(&train);
        assert_eq!(
            enc.feature_names(),
            vec!["x", "c=b", "c=<unknown>"],
            "a (4 rows) is rare"
        );
        let (_, mean, std) = enc.scales[0];
        assert!(
            (mean - 1.25).abs() < 1e-12,
            "NaN is left out of the mean: {mean}"
        );
        let test = Columns {
            numeric: vec![("x".into(), vec![mean + std, f64::NAN])],
            categorical: vec![("c".into(), vec!["z".into(), "b".into()])],
        };
        let x = enc.transform(&test);
        assert!((x[[0, 0]] - 1.0).abs() < 1e-6);
        assert_eq!(
            x.row(0).to_vec()[1..],
            [0.0, 1.0],
            "unknown category goes to the unknown bucket"
        );
        assert_eq!(
            x.row(1).to_vec(),
            vec![0.0, 1.0, 0.0],
            "missing number becomes the mean"
        );
    }
}
