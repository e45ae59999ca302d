#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// A random tree over `width` columns, `depth` deep, with covers from `rows`.
fn random_tree(rng: &mut StdRng, width: usize, depth: usize, rows: &[Vec<f64>]) -> Tree {
    fn grow(rng: &mut StdRng, nodes: &mut Vec<Node>, width: usize, depth: usize) -> usize {
        let at = nodes.len();
        if depth == 0 || rng.random_range(0.0..1.0) < 0.15 {
            nodes.push(Node::Leaf {
                value: rng.random_range(-2.0..2.0),
            });
            return at;
        }
        nodes.push(Node::Leaf { value: 0.0 });
        let feature = rng.random_range(0..width);
        let threshold = rng.random_range(-1.0f32..1.0);
        let left = grow(rng, nodes, width, depth - 1);
        let right = grow(rng, nodes, width, depth - 1);
        nodes[at] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
        at
    }
    let mut nodes = Vec::new();
    grow(rng, &mut nodes, width, depth);
    let covers = shap::covers(&nodes, rows.iter().map(Vec::as_slice));
    Tree { nodes, covers }
}

fn rows(rng: &mut StdRng, n: usize, width: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| (0..width).map(|_| rng.random_range(-1.5..1.5)).collect())
        .collect()
}

/// `E[f(x) | x_S]` by the tree's covers: the definition TreeSHAP computes fast.
fn conditional(tree: &Tree, row: &[f64], set: u32, node: usize) -> f64 {
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
                conditional(tree, row, set, next)
            } else {
                let (l, r) = (tree.covers[*left], tree.covers[*right]);
                if l + r == 0.0 {
                    return 0.0;
                }
                (l * conditional(tree, row, set, *left) + r * conditional(tree, row, set, *right))
                    / (l + r)
            }
        }
    }
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// Shapley values by their definition: every subset of the other features.
fn brute_force(tree: &Tree, row: &[f64]) -> Vec<f64> {
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
                    * (conditional(tree, row, set | (1 << i), 0) - conditional(tree, row, set, 0));
            }
            phi
        })
        .collect()
}

#[test]
fn tree_shap_equals_the_shapley_values_by_their_definition() {
    let mut rng = StdRng::seed_from_u64(1);
    let train = rows(&mut rng, 4000, 5);
    let probe = rows(&mut rng, 30, 5);
    for _ in 0..6 {
        let tree = random_tree(&mut rng, 5, 6, &train);
        // Trees whose subtrees no training row reaches have no cover-defined expectation.
        if tree.covers.contains(&0.0) {
            continue;
        }
        let base = shap::expected_value(&tree.nodes, &tree.covers);
        for row in &probe {
            let fast = shap::tree_values(&tree.nodes, &tree.covers, row);
            let slow = brute_force(&tree, row);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 1e-9, "{fast:?} vs {slow:?}");
            }
            let total = base + fast.iter().sum::<f64>();
            assert!((total - tree.predict(row)).abs() < 1e-9);
        }
    }
}

fn features() -> Vec<Feature> {
    vec![
        Feature::Numeric {
            name: "spend".into(),
            mean: 10.0,
            std: 4.0,
        },
        Feature::Categorical {
            name: "country".into(),
            categories: vec!["de".into(), "fr".into()],
        },
        Feature::Numeric {
            name: "visits".into(),
            mean: 3.0,
            std: 1.5,
        },
    ]
}

#[test]
fn rows_are_encoded_as_the_onnx_graph_encodes_them() {
    let e = Explainer {
        features: features(),
        head: Head::Linear {
            weights: vec![0.0; 5],
            intercept: 0.0,
            means: vec![0.0; 5],
        },
        units: Units::LogOdds,
    };
    assert_eq!(e.width(), 5);
    assert_eq!(e.groups(), vec![0..1, 1..4, 4..5]);
    let x = e
        .encode(&[Raw::Number(14.0), Raw::Text("fr"), Raw::Number(f32::NAN)])
        .unwrap();
    assert_eq!(x, vec![1.0, 0.0, 1.0, 0.0, 0.0], "NaN is the mean: 0");
    let x = e
        .encode(&[Raw::Number(11.1), Raw::Text("it"), Raw::Number(0.0)])
        .unwrap();
    assert_eq!(&x[1..4], &[0.0, 0.0, 1.0], "an unknown country");
    // In f32 arithmetic, as ONNX Runtime's Sub and Div compute it.
    assert_eq!(x[0], f64::from((11.1f32 - 10.0f32) / 4.0f32));
    let err = e
        .encode(&[Raw::Text("x"), Raw::Text("de"), Raw::Number(1.0)])
        .unwrap_err();
    assert_eq!(err, Error::Row("feature spend takes a number".into()));
    assert!(e.encode(&[Raw::Number(1.0)]).is_err());
}

#[test]
fn linear_attributions_are_exact_and_add_up_over_a_categorical_group() {
    let weights = vec![0.5, 1.0, -2.0, 0.25, -0.75];
    let means = vec![0.1, 0.3, 0.5, 0.2, -0.4];
    let e = Explainer {
        features: features(),
        head: Head::Linear {
            weights: weights.clone(),
            intercept: -1.0,
            means: means.clone(),
        },
        units: Units::LogOdds,
    };
    let row = [Raw::Number(14.0), Raw::Text("fr"), Raw::Number(4.5)];
    let x = e.encode(&row).unwrap();
    let out = e.explain(&row).unwrap();
    let raw = -1.0 + x.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>();
    assert!((out.raw - raw).abs() < 1e-12);
    assert!((e.base() + out.values.iter().sum::<f64>() - raw).abs() < 1e-12);
    // country's value is the sum over its three columns.
    let country: f64 = (1..4).map(|j| weights[j] * (x[j] - means[j])).sum();
    assert!((out.values[1] - country).abs() < 1e-12);
    assert!((out.values[0] - 0.5 * (1.0 - 0.1)).abs() < 1e-12);
    assert!((Units::LogOdds.score(0.0) - 0.5).abs() < 1e-12);
}

#[test]
fn an_ensemble_explains_its_scaled_sum_and_survives_json() {
    let mut rng = StdRng::seed_from_u64(9);
    let train = rows(&mut rng, 2000, 5);
    // As in a trained tree, every node holds training rows.
    let trees: Vec<Tree> = std::iter::repeat_with(|| random_tree(&mut rng, 5, 4, &train))
        .filter(|t| !t.covers.contains(&0.0))
        .take(5)
        .collect();
    let e = Explainer {
        features: features(),
        head: Head::Trees { trees, scale: 0.2 },
        units: Units::Probability,
    };
    e.check().unwrap();
    let back = Explainer::from_json(&e.to_json().unwrap()).unwrap();
    assert_eq!(back, e, "thresholds and values round-trip exactly");
    for row in rows(&mut rng, 50, 5) {
        let out = back.explain_encoded(&row);
        assert_eq!(out.values.len(), 3);
        assert!((back.base() + out.values.iter().sum::<f64>() - out.raw).abs() < 1e-9);
    }
}

#[test]
fn a_damaged_explainer_is_refused_with_what_is_wrong() {
    let leaf = |value| Node::Leaf { value };
    let split = |feature, left, right| Node::Split {
        feature,
        threshold: 0.0,
        left,
        right,
    };
    let with = |nodes: Vec<Node>, covers: Vec<f64>| Explainer {
        features: features(),
        head: Head::Trees {
            trees: vec![Tree { nodes, covers }],
            scale: 1.0,
        },
        units: Units::Value,
    };
    let cases = [
        (
            with(
                vec![split(0, 1, 2), leaf(1.0), leaf(2.0)],
                vec![2.0, 1.0, 1.0],
            ),
            None,
        ),
        (
            with(vec![split(0, 0, 1), leaf(1.0)], vec![2.0, 1.0]),
            Some("tree 0: node 0 is reached twice"),
        ),
        (
            with(vec![split(0, 1, 5), leaf(1.0)], vec![2.0, 1.0]),
            Some("tree 0: node 0 has child 5 of 2 nodes"),
        ),
        (
            with(
                vec![split(7, 1, 2), leaf(1.0), leaf(2.0)],
                vec![2.0, 1.0, 1.0],
            ),
            Some("tree 0: node 0 splits column 7 of 5 columns"),
        ),
        (
            with(vec![leaf(1.0), leaf(2.0)], vec![2.0, 1.0]),
            Some("tree 0: node 1 is not reached from the root"),
        ),
        (
            with(vec![leaf(1.0)], vec![]),
            Some("tree 0: 0 covers for 1 nodes"),
        ),
    ];
    for (explainer, expected) in cases {
        match (explainer.check(), expected) {
            (Ok(()), None) => {}
            (Err(Error::Invalid(m)), Some(e)) => assert_eq!(m, e),
            (got, want) => panic!("{got:?} where {want:?} was expected"),
        }
    }
    assert!(Explainer::from_json("{\"features\": 3}").is_err());
}

#[test]
fn top_ranks_by_magnitude() {
    let names = ["a", "b", "c", "d"];
    let got = top(&names, &[0.1, -0.9, 0.5, 0.5], 3);
    assert_eq!(got, vec![("b", -0.9), ("c", 0.5), ("d", 0.5)]);
}
