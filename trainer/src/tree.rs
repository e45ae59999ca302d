//! Decision trees and random forests (bagged trees), grown here as CART grows them: exact
//! splits over the sorted values of every feature, chosen by the largest reduction of the
//! squared error of the target. For a 0/1 label that is Gini impurity (2·p·(1−p) is twice the
//! variance), so a classification tree splits as scikit-learn's `DecisionTreeClassifier`
//! does; for a numeric target it is `DecisionTreeRegressor`'s criterion. Leaves hold the mean
//! target of their training rows (P(true) for classification): scores, not labels.
//!
//! linfa-trees grew these trees before; it predicts labels and prunes subtrees whose leaves
//! share the majority label, which with a 4 % positive rate kept few splits (AUC 0.804
//! against scikit-learn's 0.835 on the same matrix, `benches/README.md`). Splits compare in
//! `f32`, exactly as ONNX Runtime's `TreeEnsembleRegressor` does on `float` inputs, so exported
//! and in-process predictions take the same branches: a split's threshold is the largest
//! `f32` value of its left side.

use ndarray::{Array2, ArrayView1};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// A node of a flat tree: `x[feature] <= threshold` (in f32) goes left, otherwise right; a
/// leaf holds P(true) or the mean target of its training rows. The explainer's own node type,
/// so a tree goes into a model's explainer as it is.
pub use leitwerk_explain::Node;

/// One tree, root at index 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Nodes; the root is `nodes[0]`.
    pub nodes: Vec<Node>,
}

/// Errors of growing trees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rows and the targets do not match, or there are none.
    #[error("failed to grow a decision tree: {0}")]
    Fit(String),
}

impl Tree {
    /// The child a row goes to from node `at`; `None` at a leaf.
    pub fn next(&self, at: usize, row: ArrayView1<'_, f64>) -> Option<usize> {
        match &self.nodes[at] {
            Node::Leaf { .. } => None,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => Some(if (row[*feature] as f32) <= *threshold {
                *left
            } else {
                *right
            }),
        }
    }

    fn leaf_of(&self, row: ArrayView1<'_, f64>) -> usize {
        let mut at = 0;
        while let Some(child) = self.next(at, row) {
            at = child;
        }
        at
    }

    /// The value of the leaf a row reaches.
    pub fn predict_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        match &self.nodes[self.leaf_of(row)] {
            Node::Leaf { value } => *value,
            Node::Split { .. } => f64::NAN,
        }
    }

    /// Grows a tree on rows `x` with targets `target` (0/1 for classification), at most
    /// `max_depth` deep, with at least `min_leaf` rows in every leaf.
    fn grow(
        x: &Array2<f64>,
        target: &[f64],
        max_depth: usize,
        min_leaf: usize,
    ) -> Result<Tree, Error> {
        let n = x.nrows();
        if n == 0 || target.len() != n {
            return Err(Error::Fit(format!(
                "{n} rows and {} targets: both must be the same, non-zero number",
                target.len()
            )));
        }
        let values: Vec<Vec<f32>> = x
            .columns()
            .into_iter()
            .map(|c| c.iter().map(|&v| v as f32).collect())
            .collect();
        // Every feature's rows in the order of its values, kept per node from here on.
        let orders: Vec<Vec<u32>> = values
            .iter()
            .map(|col| {
                let mut order: Vec<u32> = (0..n as u32).collect();
                order.sort_by(|&a, &b| col[a as usize].total_cmp(&col[b as usize]));
                order
            })
            .collect();
        let mut grower = Grower {
            values,
            target,
            min_leaf: min_leaf.max(1),
            max_depth,
            nodes: Vec::new(),
            left: vec![false; n],
        };
        grower.node(orders, 0);
        Ok(Tree {
            nodes: grower.nodes,
        })
    }
}

/// The state of growing one tree.
struct Grower<'a> {
    /// Each feature's values, as the splits compare them.
    values: Vec<Vec<f32>>,
    target: &'a [f64],
    min_leaf: usize,
    max_depth: usize,
    nodes: Vec<Node>,
    /// Scratch: whether a row goes left at the split being made.
    left: Vec<bool>,
}

/// The best split of a node: feature, threshold, and the score `Σl²/nl + Σr²/nr` (the larger,
/// the smaller the squared error of the children).
struct Split {
    feature: usize,
    threshold: f32,
    score: f64,
}

impl Grower<'_> {
    /// Adds the node of the rows in `orders` (each feature's rows in value order) at `depth`;
    /// returns its index.
    fn node(&mut self, orders: Vec<Vec<u32>>, depth: usize) -> usize {
        let rows = &orders[0];
        let count = rows.len();
        let sum: f64 = rows.iter().map(|&r| self.target[r as usize]).sum();
        let at = self.nodes.len();
        self.nodes.push(Node::Leaf {
            value: sum / count.max(1) as f64,
        });
        let pure = rows
            .iter()
            .all(|&r| self.target[r as usize] == self.target[rows[0] as usize]);
        if depth >= self.max_depth || count < 2 * self.min_leaf || pure {
            return at;
        }
        let Some(best) = self.best_split(&orders, sum) else {
            return at;
        };
        // No split that lowers the squared error: a leaf (as scikit-learn's
        // min_impurity_decrease = 0 keeps a node whose children would be no purer).
        if best.score <= sum * sum / count as f64 * (1.0 + 1e-12) {
            return at;
        }
        let column = &self.values[best.feature];
        for &r in rows {
            self.left[r as usize] = column[r as usize] <= best.threshold;
        }
        let (mut lefts, mut rights) = (Vec::new(), Vec::new());
        for order in orders {
            let (l, r): (Vec<u32>, Vec<u32>) =
                order.into_iter().partition(|&r| self.left[r as usize]);
            lefts.push(l);
            rights.push(r);
        }
        let left = self.node(lefts, depth + 1);
        let right = self.node(rights, depth + 1);
        self.nodes[at] = Node::Split {
            feature: best.feature,
            threshold: best.threshold,
            left,
            right,
        };
        at
    }

    /// The split with the highest score over every feature and every boundary between two
    /// distinct values that leaves `min_leaf` rows on each side; the first one on a tie.
    fn best_split(&self, orders: &[Vec<u32>], sum: f64) -> Option<Split> {
        let count = orders[0].len();
        let mut best: Option<Split> = None;
        for (feature, order) in orders.iter().enumerate() {
            let column = &self.values[feature];
            let mut left_sum = 0.0;
            for (i, pair) in order.windows(2).enumerate() {
                let row = pair[0] as usize;
                left_sum += self.target[row];
                let left_n = i + 1;
                let right_n = count - left_n;
                if left_n < self.min_leaf {
                    continue;
                }
                if right_n < self.min_leaf {
                    break;
                }
                let (here, next) = (column[row], column[pair[1] as usize]);
                if here == next {
                    continue;
                }
                let right_sum = sum - left_sum;
                let score =
                    left_sum * left_sum / left_n as f64 + right_sum * right_sum / right_n as f64;
                if best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(Split {
                        feature,
                        threshold: here,
                        score,
                    });
                }
            }
        }
        best
    }
}

/// A forest: the mean of its trees (one tree for a plain decision tree).
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// The trees.
    pub trees: Vec<Tree>,
}

/// How to grow a forest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForestParams {
    /// Number of trees (1: a single tree on all rows).
    pub trees: usize,
    /// Maximum depth.
    pub max_depth: usize,
    /// Minimum rows per leaf.
    pub min_samples_leaf: usize,
    /// Share of rows drawn (with replacement) for each tree of a forest.
    pub sample_ratio: f64,
    /// Seed of the draws.
    pub seed: u64,
}

impl Forest {
    /// Grows the forest on rows `x` and their `target` (0/1 for classification).
    pub fn fit(x: &Array2<f64>, target: &[f64], p: ForestParams) -> Result<Forest, Error> {
        if p.trees <= 1 {
            return Ok(Forest {
                trees: vec![Tree::grow(x, target, p.max_depth, p.min_samples_leaf)?],
            });
        }
        let n = x.nrows();
        let draws = ((n as f64 * p.sample_ratio).round() as usize).clamp(1, n.max(1));
        let mut rng = StdRng::seed_from_u64(p.seed);
        let mut trees = Vec::with_capacity(p.trees);
        let grown = crate::progress::stage("fitting", Some(p.trees as u64), "trees");
        for _ in 0..p.trees {
            let idx: Vec<usize> = (0..draws).map(|_| rng.random_range(0..n)).collect();
            let xs = x.select(ndarray::Axis(0), &idx);
            let ts: Vec<f64> = idx.iter().map(|&i| target[i]).collect();
            trees.push(Tree::grow(&xs, &ts, p.max_depth, p.min_samples_leaf)?);
            grown.add(1);
        }
        grown.finish();
        Ok(Forest { trees })
    }

    /// Mean prediction of the trees per row.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        let k = self.trees.len().max(1) as f64;
        x.rows()
            .into_iter()
            .map(|row| self.trees.iter().map(|t| t.predict_row(row)).sum::<f64>() / k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_hold_probabilities_and_splits_separate_the_classes() {
        // y is true for x > 0.5 except one noisy row: leaves must carry shares, not labels.
        let xs: Vec<f64> = (0..40).map(|i| i as f64 / 40.0).collect();
        let mut y: Vec<bool> = xs.iter().map(|&v| v > 0.5).collect();
        y[30] = false;
        let x = Array2::from_shape_vec((40, 1), xs).unwrap();
        let target: Vec<f64> = y.iter().map(|&b| f64::from(u8::from(b))).collect();
        let p = ForestParams {
            trees: 1,
            max_depth: 2,
            min_samples_leaf: 5,
            sample_ratio: 1.0,
            seed: 1,
        };
        let forest = Forest::fit(&x, &target, p).unwrap();
        let pred = forest.predict(&x);
        assert!(pred[0] < 0.01, "{pred:?}");
        assert!(
            pred[39] > 0.8 && pred[39] < 1.0,
            "a noisy leaf holds a share: {pred:?}"
        );
        assert!(matches!(
            forest.trees[0].nodes[0],
            Node::Split { feature: 0, .. }
        ));
    }

    #[test]
    fn a_rare_class_keeps_the_splits_whose_leaves_all_say_no() {
        // 2 % positives below 0.5, 30 % above: every leaf's majority is "no", and the split
        // is still the most informative one (linfa pruned it; scores need it).
        let n = 2000;
        let xs: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let target: Vec<f64> = (0..n)
            .map(|i| {
                let hit = if i < n / 2 { i % 50 == 0 } else { i % 10 < 3 };
                f64::from(u8::from(hit))
            })
            .collect();
        let x = Array2::from_shape_vec((n, 1), xs).unwrap();
        let p = ForestParams {
            trees: 1,
            max_depth: 1,
            min_samples_leaf: 20,
            sample_ratio: 1.0,
            seed: 0,
        };
        let forest = Forest::fit(&x, &target, p).unwrap();
        match &forest.trees[0].nodes[0] {
            Node::Split { threshold, .. } => {
                assert!((threshold - 0.4995).abs() < 1e-3, "{threshold}")
            }
            leaf => panic!("the root stayed a leaf: {leaf:?}"),
        }
        let pred = forest.predict(&x);
        assert!((pred[0] - 0.02).abs() < 1e-9 && (pred[n - 1] - 0.3).abs() < 1e-9);
    }

    /// The targets of the rows that go left and of those that go right.
    fn sides(rows: impl Iterator<Item = (bool, f64)>) -> (Vec<f64>, Vec<f64>) {
        let (l, r): (Vec<_>, Vec<_>) = rows.partition(|(left, _)| *left);
        (
            l.into_iter().map(|(_, t)| t).collect(),
            r.into_iter().map(|(_, t)| t).collect(),
        )
    }

    /// The squared error of predicting each side's mean.
    fn sse(values: &[f64]) -> f64 {
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        values.iter().map(|v| (v - mean) * (v - mean)).sum()
    }

    #[test]
    fn the_root_split_is_the_best_one_a_brute_force_search_finds() {
        // Three features of pseudo-random values with ties, a numeric target: the split must
        // lower the squared error as much as any split that keeps 7 rows per side.
        let n = 300;
        let mut state = 12345_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        let data: Vec<f64> = (0..n * 3).map(|_| (next() * 40.0).floor() / 4.0).collect();
        let x = Array2::from_shape_vec((n, 3), data).unwrap();
        let target: Vec<f64> = (0..n)
            .map(|i| x[[i, 1]] * 0.7 - x[[i, 2]].sin() + next())
            .collect();
        let (min_leaf, mut best) = (7, f64::INFINITY);
        for f in 0..3 {
            let mut cuts: Vec<f64> = x.column(f).to_vec();
            cuts.sort_by(f64::total_cmp);
            cuts.dedup();
            for &c in &cuts {
                let (l, r) = sides((0..n).map(|i| (x[[i, f]] <= c, target[i])));
                if l.len() >= min_leaf && r.len() >= min_leaf {
                    best = best.min(sse(&l) + sse(&r));
                }
            }
        }
        let p = ForestParams {
            trees: 1,
            max_depth: 1,
            min_samples_leaf: min_leaf,
            sample_ratio: 1.0,
            seed: 0,
        };
        let tree = &Forest::fit(&x, &target, p).unwrap().trees[0];
        let Node::Split {
            feature, threshold, ..
        } = tree.nodes[0]
        else {
            panic!("no split")
        };
        let (l, r) = sides((0..n).map(|i| ((x[[i, feature]] as f32) <= threshold, target[i])));
        assert!(
            (sse(&l) + sse(&r) - best).abs() < 1e-9,
            "{} vs {best}",
            sse(&l) + sse(&r)
        );
        assert!(l.len() >= min_leaf && r.len() >= min_leaf);
    }

    #[test]
    fn a_seeded_forest_is_reproducible_and_averages_its_trees() {
        let xs: Vec<f64> = (0..200).map(|i| ((i * 37) % 200) as f64).collect();
        let y: Vec<bool> = xs.iter().map(|&v| v > 120.0).collect();
        let t: Vec<f64> = y.iter().map(|&b| f64::from(u8::from(b))).collect();
        let x = Array2::from_shape_vec((200, 1), xs).unwrap();
        let p = ForestParams {
            trees: 10,
            max_depth: 4,
            min_samples_leaf: 2,
            sample_ratio: 0.8,
            seed: 7,
        };
        let a = Forest::fit(&x, &t, p).unwrap();
        let b = Forest::fit(&x, &t, p).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.trees.len(), 10);
        let manual: f64 = a
            .trees
            .iter()
            .map(|tr| tr.predict_row(x.row(3)))
            .sum::<f64>()
            / 10.0;
        assert!((a.predict(&x)[3] - manual).abs() < 1e-12);
    }
}
