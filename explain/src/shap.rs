//! TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent individualized feature attribution for
//! tree ensembles", algorithm 2): the exact Shapley values of `E[f(x) | x_S]`, where a feature
//! outside `S` is integrated out by the share of training rows (the cover) that went each way
//! at its splits. Per tree the values sum with the cover-weighted mean leaf value
//! ([`expected_value`]) to the tree's prediction. It costs leaves × depth² per row and tree.
//! This is the path-dependent TreeSHAP that LightGBM's `pred_contrib` and shap's
//! `TreeExplainer` compute for trees.

use crate::Node;

const NO_FEATURE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Step {
    feature: usize,
    zero: f64,
    one: f64,
    weight: f64,
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

/// What the recursion reads and writes, apart from its path.
struct Walk<'a> {
    nodes: &'a [Node],
    covers: &'a [f64],
    row: &'a [f64],
    scale: f64,
    phi: &'a mut [f64],
}

impl Walk<'_> {
    fn recurse(&mut self, node: usize, mut path: Vec<Step>, zero: f64, one: f64, feature: usize) {
        extend(&mut path, zero, one, feature);
        match self.nodes.get(node) {
            Some(Node::Leaf { value }) => {
                for i in 1..path.len() {
                    let w = unwound_sum(&path, i);
                    if let Some(p) = self.phi.get_mut(path[i].feature) {
                        *p += self.scale * w * (path[i].one - path[i].zero) * value;
                    }
                }
            }
            Some(Node::Split {
                feature: split,
                threshold,
                left,
                right,
            }) => {
                let value = self.row.get(*split).copied().unwrap_or(f64::NAN) as f32;
                let (hot, cold) = if value <= *threshold {
                    (*left, *right)
                } else {
                    (*right, *left)
                };
                let cover = |i: usize| self.covers.get(i).copied().unwrap_or(0.0);
                let total = cover(node).max(f64::MIN_POSITIVE);
                let (hot_share, cold_share) = (cover(hot) / total, cover(cold) / total);
                let (mut in_zero, mut in_one) = (1.0, 1.0);
                if let Some(k) = (1..path.len()).find(|&k| path[k].feature == *split) {
                    in_zero = path[k].zero;
                    in_one = path[k].one;
                    unwind(&mut path, k);
                }
                self.recurse(hot, path.clone(), in_zero * hot_share, in_one, *split);
                self.recurse(cold, path, in_zero * cold_share, 0.0, *split);
            }
            None => {}
        }
    }
}

/// The cover-weighted mean leaf value: a tree's expected prediction.
pub fn expected_value(nodes: &[Node], covers: &[f64]) -> f64 {
    let root = covers
        .first()
        .copied()
        .unwrap_or(0.0)
        .max(f64::MIN_POSITIVE);
    nodes
        .iter()
        .zip(covers)
        .filter_map(|(n, c)| match n {
            Node::Leaf { value } => Some(value * c / root),
            Node::Split { .. } => None,
        })
        .sum()
}

/// Adds `scale` × one tree's SHAP values of `row` (encoded columns) to `phi`.
pub fn add_tree_values(nodes: &[Node], covers: &[f64], row: &[f64], scale: f64, phi: &mut [f64]) {
    Walk {
        nodes,
        covers,
        row,
        scale,
        phi,
    }
    .recurse(0, Vec::new(), 1.0, 1.0, NO_FEATURE);
}

/// One tree's SHAP values of `row`, one per column.
pub fn tree_values(nodes: &[Node], covers: &[f64], row: &[f64]) -> Vec<f64> {
    let mut phi = vec![0.0; row.len()];
    add_tree_values(nodes, covers, row, 1.0, &mut phi);
    phi
}

/// The training rows that reach each node, from the rows `x` the tree was grown on.
pub fn covers<'a>(nodes: &[Node], rows: impl IntoIterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut cover = vec![0.0; nodes.len()];
    for row in rows {
        let mut at = 0;
        for _ in 0..nodes.len() {
            let Some(c) = cover.get_mut(at) else { break };
            *c += 1.0;
            match &nodes[at] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    let v = row.get(*feature).copied().unwrap_or(f64::NAN) as f32;
                    at = if v <= *threshold { *left } else { *right };
                }
                Node::Leaf { .. } => break,
            }
        }
    }
    cover
}
