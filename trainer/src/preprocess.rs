//! Preprocessing fitted on training rows only: standardized numeric columns and one-hot
//! categorical columns (the first category dropped, unknown categories all zero).

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
    /// Learns scales and categories from training rows.
    pub fn fit(train: &Columns) -> Encoder {
        let scales = train
            .numeric
            .iter()
            .map(|(name, v)| {
                let n = v.len().max(1) as f64;
                let mean = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                (name.clone(), mean, std)
            })
            .collect();
        let categories = train
            .categorical
            .iter()
            .map(|(name, v)| {
                let mut seen: Vec<String> = v.to_vec();
                seen.sort();
                seen.dedup();
                (name.clone(), seen.into_iter().skip(1).collect())
            })
            .collect();
        Encoder { scales, categories }
    }

    /// Names of the encoded columns, in matrix order.
    pub fn feature_names(&self) -> Vec<String> {
        let numeric = self.scales.iter().map(|(n, _, _)| n.clone());
        let onehot = self
            .categories
            .iter()
            .flat_map(|(n, cats)| cats.iter().map(move |c| format!("{n}={c}")));
        numeric.chain(onehot).collect()
    }

    /// Encodes rows into a matrix.
    pub fn transform(&self, data: &Columns) -> Array2<f64> {
        let width = self.scales.len() + self.categories.iter().map(|(_, c)| c.len()).sum::<usize>();
        let mut x = Array2::<f64>::zeros((data.rows(), width));
        for (j, ((_, mean, std), (_, values))) in self.scales.iter().zip(&data.numeric).enumerate()
        {
            for (i, v) in values.iter().enumerate() {
                x[[i, j]] = (v - mean) / std;
            }
        }
        let mut offset = self.scales.len();
        for ((_, cats), (_, values)) in self.categories.iter().zip(&data.categorical) {
            for (i, v) in values.iter().enumerate() {
                if let Some(k) = cats.iter().position(|c| c == v) {
                    x[[i, offset + k]] = 1.0;
                }
            }
            offset += cats.len();
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_one_hot_come_from_training_rows_only() {
        let train = Columns {
            numeric: vec![("x".into(), vec![1.0, 3.0])],
            categorical: vec![("c".into(), vec!["b".into(), "a".into()])],
        };
        let enc = Encoder::fit(&train);
        assert_eq!(enc.feature_names(), vec!["x", "c=b"]);
        let test = Columns {
            numeric: vec![("x".into(), vec![5.0])],
            categorical: vec![("c".into(), vec!["z".into()])],
        };
        let x = enc.transform(&test);
        assert_eq!(
            x.row(0).to_vec(),
            vec![3.0, 0.0],
            "mean 2 and std 1 from training; unknown category is all zeros"
        );
        assert_eq!(enc.transform(&train).row(0).to_vec(), vec![-1.0, 1.0]);
    }
}
