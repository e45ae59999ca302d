//! Decision trees and random forests (bagged trees) grown by `linfa-trees`.
//!
//! linfa's tree predicts the majority class of a leaf; a scoring model needs probabilities, so
//! each fitted tree is copied into a flat form whose leaves hold the share of positive training
//! rows (or, for regression, their mean target). Trees are grown with class-balanced weights
//! because linfa prunes subtrees whose leaves share the majority label. Splits compare in `f32`, exactly as ONNX
//! Runtime's `TreeEnsembleRegressor` does on `float` inputs, so exported and in-process
//! predictions take the same branches.

use linfa::{Dataset, traits::Fit};
use linfa_trees::{DecisionTree as LinfaTree, TreeNode};
use ndarray::{Array1, Array2, ArrayView1};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// A node of a flat tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `x[feature] <= threshold` goes to `left`, otherwise to `right`.
    Split {
        /// Column index.
        feature: usize,
        /// Threshold (compared in f32).
        threshold: f32,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
    },
    /// A leaf and its value.
    Leaf {
        /// P(true) or the mean target of the training rows that reach it.
        value: f64,
    },
}

/// One tree, root at index 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Nodes; the root is `nodes[0]`.
    pub nodes: Vec<Node>,
}

/// Errors of growing trees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// linfa refused the data or parameters.
    #[error("failed to grow a decision tree: {0}")]
    Fit(String),
}

impl Tree {
    fn leaf_of(&self, row: ArrayView1<'_, f64>) -> usize {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Leaf { .. } => return at,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if (row[*feature] as f32) <= *threshold {
                        *left
                    } else {
                        *right
                    };
                }
            }
        }
    }

    /// The value of the leaf a row reaches.
    pub fn predict_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        match &self.nodes[self.leaf_of(row)] {
            Node::Leaf { value } => *value,
            Node::Split { .. } => f64::NAN,
        }
    }

    fn copy_from(node: &TreeNode<f64, bool>, nodes: &mut Vec<Node>) -> usize {
        let at = nodes.len();
        nodes.push(Node::Leaf { value: 0.0 });
        let children = node.children();
        if let (false, [Some(left), Some(right)]) = (node.is_leaf(), children.as_slice()) {
            let (feature, threshold, _) = node.split();
            let l = Self::copy_from(left, nodes);
            let r = Self::copy_from(right, nodes);
            nodes[at] = Node::Split {
                feature,
                threshold: threshold as f32,
                left: l,
                right: r,
            };
        }
        at
    }

    /// Grows a tree on rows `x` (rows of `target` are the values a leaf averages; `classes`
    /// steer the splits: the label itself, or for regression the target above its median).
    fn grow(
        x: &Array2<f64>,
        classes: &[bool],
        target: &[f64],
        max_depth: usize,
        min_leaf: usize,
    ) -> Result<Tree, Error> {
        // Class-balanced weights: linfa prunes subtrees whose leaves share the majority label,
        // which with a rare positive class (a 4 % conversion rate) collapses the tree to a few
        // leaves. Balanced weights keep informative splits; leaf values below still come from
        // the unweighted rows, so they stay calibrated probabilities.
        let positives = classes.iter().filter(|&&c| c).count().max(1) as f32;
        let negatives = classes.iter().filter(|&&c| !c).count().max(1) as f32;
        let n = classes.len() as f32;
        let weights = Array1::from_iter(classes.iter().map(|&c| {
            if c {
                n / (2.0 * positives)
            } else {
                n / (2.0 * negatives)
            }
        }));
        let dataset = Dataset::new(x.clone(), Array1::from_iter(classes.iter().copied()))
            .with_weights(weights);
        let fitted: LinfaTree<f64, bool> = LinfaTree::params()
            .max_depth(Some(max_depth))
            .min_weight_leaf(min_leaf as f32)
            .min_weight_split((2 * min_leaf) as f32)
            .fit(&dataset)
            .map_err(|e| Error::Fit(e.to_string()))?;
        let mut nodes = Vec::new();
        Self::copy_from(fitted.root_node(), &mut nodes);
        let mut tree = Tree { nodes };
        let mut sums = vec![(0.0, 0usize); tree.nodes.len()];
        for (row, t) in x.rows().into_iter().zip(target) {
            let leaf = tree.leaf_of(row);
            sums[leaf].0 += t;
            sums[leaf].1 += 1;
        }
        let overall = target.iter().sum::<f64>() / target.len().max(1) as f64;
        for (node, (sum, n)) in tree.nodes.iter_mut().zip(sums) {
            if let Node::Leaf { value } = node {
                *value = if n > 0 { sum / n as f64 } else { overall };
            }
        }
        Ok(tree)
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
    /// Grows the forest. For regression, pass the targets as `target` and `classes` = target
    /// above its median (linfa grows classification trees); leaves still hold mean targets.
    pub fn fit(
        x: &Array2<f64>,
        classes: &[bool],
        target: &[f64],
        p: ForestParams,
    ) -> Result<Forest, Error> {
        if p.trees <= 1 {
            return Ok(Forest {
                trees: vec![Tree::grow(
                    x,
                    classes,
                    target,
                    p.max_depth,
                    p.min_samples_leaf,
                )?],
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
            let cs: Vec<bool> = idx.iter().map(|&i| classes[i]).collect();
            let ts: Vec<f64> = idx.iter().map(|&i| target[i]).collect();
            trees.push(Tree::grow(&xs, &cs, &ts, p.max_depth, p.min_samples_leaf)?);
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
        let forest = Forest::fit(&x, &y, &target, p).unwrap();
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
        let a = Forest::fit(&x, &y, &t, p).unwrap();
        let b = Forest::fit(&x, &y, &t, p).unwrap();
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
