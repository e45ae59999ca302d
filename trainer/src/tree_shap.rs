//! TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent individualized feature attribution for
//! tree ensembles", algorithm 2) for the trainer's own CART trees and forests: the exact
//! Shapley values of `E[f(x) | x_S]`, where a feature outside `S` is integrated out by the
//! share of training rows (the cover) that went each way at its splits. Per tree the values
//! sum with the cover-weighted mean leaf value to the tree's prediction; a forest averages its
//! trees. Values are in the model's output units (P(true) for classification, as shap's
//! `TreeExplainer` gives for scikit-learn trees).

use ndarray::{Array2, ArrayView1};

use crate::tree::{Forest, Node, Tree};

const NO_FEATURE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Step {
    feature: usize,
    zero: f64,
    one: f64,
    weight: f64,
}

/// The training rows that reach each node of `tree`.
pub fn covers(tree: &Tree, x: &Array2<f64>) -> Vec<f64> {
    let mut cover = vec![0.0; tree.nodes.len()];
    for row in x.rows() {
        let mut at = Some(0);
        while let Some(node) = at {
            cover[node] += 1.0;
            at = tree.next(node, row);
        }
    }
    cover
}

fn extend(path: &mut Vec<Step>, zero: f64, one: f64, feature: usize) {
    let depth = path.len();
    path.push(Step {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    });
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / (depth + 1) as f64;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / (depth + 1) as f64;
    }
}

fn unwind(path: &mut Vec<Step>, index: usize) {
    let depth = path.len() - 1;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next * (depth + 1) as f64 / ((i + 1) as f64 * one);
            next = kept - path[i].weight * zero * (depth - i) as f64 / (depth + 1) as f64;
        } else {
            path[i].weight = path[i].weight * (depth + 1) as f64 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
    path.pop();
}

fn unwound_sum(path: &[Step], index: usize) -> f64 {
    let depth = path.len() - 1;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let w = next * (depth + 1) as f64 / ((i + 1) as f64 * one);
            total += w;
            next = path[i].weight - w * zero * (depth - i) as f64 / (depth + 1) as f64;
        } else {
            total += path[i].weight * (depth + 1) as f64 / (zero * (depth - i) as f64);
        }
    }
    total
}

#[allow(clippy::too_many_arguments)] // the recursion's state, as the algorithm names it
fn recurse(
    tree: &Tree,
    cover: &[f64],
    row: ArrayView1<'_, f64>,
    phi: &mut [f64],
    node: usize,
    mut path: Vec<Step>,
    zero: f64,
    one: f64,
    feature: usize,
) {
    extend(&mut path, zero, one, feature);
    match &tree.nodes[node] {
        Node::Leaf { value } => {
            for i in 1..path.len() {
                let w = unwound_sum(&path, i);
                phi[path[i].feature] += w * (path[i].one - path[i].zero) * value;
            }
        }
        Node::Split {
            feature: split,
            threshold,
            left,
            right,
        } => {
            let (hot, cold) = if (row[*split] as f32) <= *threshold {
                (*left, *right)
            } else {
                (*right, *left)
            };
            let total = cover[node].max(f64::MIN_POSITIVE);
            let (mut in_zero, mut in_one) = (1.0, 1.0);
            if let Some(k) = (1..path.len()).find(|&k| path[k].feature == *split) {
                in_zero = path[k].zero;
                in_one = path[k].one;
                unwind(&mut path, k);
            }
            recurse(
                tree,
                cover,
                row,
                phi,
                hot,
                path.clone(),
                in_zero * cover[hot] / total,
                in_one,
                *split,
            );
            recurse(
                tree,
                cover,
                row,
                phi,
                cold,
                path,
                in_zero * cover[cold] / total,
                0.0,
                *split,
            );
        }
    }
}

/// The cover-weighted mean leaf value: a tree's expected prediction.
pub fn expected_value(tree: &Tree, cover: &[f64]) -> f64 {
    let root = cover.first().copied().unwrap_or(0.0).max(f64::MIN_POSITIVE);
    tree.nodes
        .iter()
        .zip(cover)
        .filter_map(|(n, c)| match n {
            Node::Leaf { value } => Some(value * c / root),
            Node::Split { .. } => None,
        })
        .sum()
}

/// SHAP values of one tree for one row, one per column of `row`.
pub fn tree_values(tree: &Tree, cover: &[f64], row: ArrayView1<'_, f64>) -> Vec<f64> {
    let mut phi = vec![0.0; row.len()];
    recurse(
        tree,
        cover,
        row,
        &mut phi,
        0,
        Vec::new(),
        1.0,
        1.0,
        NO_FEATURE,
    );
    phi
}

/// SHAP values of a forest (the mean of its trees) for the rows `x`, with covers from the
/// training rows `x_train`: `(expected value, values per row and column)`.
pub fn forest_values(
    forest: &Forest,
    x_train: &Array2<f64>,
    x: &Array2<f64>,
) -> (f64, Array2<f64>) {
    let k = forest.trees.len().max(1) as f64;
    let mut base = 0.0;
    let mut out = Array2::<f64>::zeros((x.nrows(), x.ncols()));
    for tree in &forest.trees {
        let cover = covers(tree, x_train);
        base += expected_value(tree, &cover) / k;
        for (r, row) in x.rows().into_iter().enumerate() {
            for (c, v) in tree_values(tree, &cover, row).into_iter().enumerate() {
                out[[r, c]] += v / k;
            }
        }
    }
    (base, out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tree::ForestParams;

    /// `E[f(x) | x_S]` by the tree's covers: the definition TreeSHAP computes fast.
    fn conditional(
        tree: &Tree,
        cover: &[f64],
        row: ArrayView1<'_, f64>,
        set: u32,
        node: usize,
    ) -> f64 {
        match &tree.nodes[node] {
            Node::Leaf { value } => *value,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => {
                if set & (1 << feature) != 0 {
                    let next = if (row[*feature] as f32) <= *threshold {
                        *left
                    } else {
                        *right
                    };
                    conditional(tree, cover, row, set, next)
                } else {
                    (cover[*left] * conditional(tree, cover, row, set, *left)
                        + cover[*right] * conditional(tree, cover, row, set, *right))
                        / cover[node]
                }
            }
        }
    }

    fn factorial(n: u32) -> f64 {
        (1..=n).map(f64::from).product()
    }

    /// Shapley values by their definition: every subset of the other features.
    fn brute_force(tree: &Tree, cover: &[f64], row: ArrayView1<'_, f64>) -> Vec<f64> {
        let m = row.len() as u32;
        (0..m)
            .map(|i| {
                let mut phi = 0.0;
                for set in 0..(1u32 << m) {
                    if set & (1 << i) != 0 {
                        continue;
                    }
                    let s = set.count_ones();
                    let weight = factorial(s) * factorial(m - s - 1) / factorial(m);
                    phi += weight
                        * (conditional(tree, cover, row, set | (1 << i), 0)
                            - conditional(tree, cover, row, set, 0));
                }
                phi
            })
            .collect()
    }

    fn data(n: usize, seed: u64) -> (Array2<f64>, Vec<f64>) {
        use rand::{RngExt, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 5), |_| rng.random_range(-2.0..2.0));
        let y = x
            .rows()
            .into_iter()
            .map(|r| {
                f64::from(u8::from(
                    r[0] * r[1] + r[2] + 0.3 * rng.random_range(-1.0..1.0) > 0.2,
                ))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn tree_shap_equals_the_shapley_values_by_their_definition() {
        let (x, y) = data(3000, 1);
        let params = ForestParams {
            trees: 1,
            max_depth: 6,
            min_samples_leaf: 20,
            sample_ratio: 1.0,
            seed: 0,
        };
        let forest = Forest::fit(&x, &y, params).unwrap();
        let tree = &forest.trees[0];
        let cover = covers(tree, &x);
        let (probe, _) = data(40, 2);
        let base = expected_value(tree, &cover);
        for row in probe.rows() {
            let fast = tree_values(tree, &cover, row);
            let slow = brute_force(tree, &cover, row);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 1e-9, "{fast:?} vs {slow:?}");
            }
            let total = base + fast.iter().sum::<f64>();
            assert!((total - tree.predict_row(row)).abs() < 1e-9);
        }
    }

    #[test]
    fn forest_values_sum_to_the_forest_prediction() {
        let (x, y) = data(2000, 3);
        let params = ForestParams {
            trees: 8,
            max_depth: 5,
            min_samples_leaf: 10,
            sample_ratio: 0.7,
            seed: 4,
        };
        let forest = Forest::fit(&x, &y, params).unwrap();
        let (probe, _) = data(100, 5);
        let (base, values) = forest_values(&forest, &x, &probe);
        for (r, p) in forest.predict(&probe).iter().enumerate() {
            assert!((base + values.row(r).sum() - p).abs() < 1e-9, "row {r}");
        }
        // Feature 4 and 3 carry nothing; 0, 1 and 2 drive the label.
        let mean_abs = |c: usize| values.column(c).iter().map(|v| v.abs()).sum::<f64>();
        assert!(mean_abs(3) < mean_abs(2) && mean_abs(4) < mean_abs(2));
    }
}
