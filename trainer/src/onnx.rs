//! Export of a fitted model as ONE ONNX graph with its preprocessing inside: serving takes raw
//! features, so training and serving cannot skew.
//!
//! Inputs: one `[N, 1]` tensor per feature, `float` for numeric features and `string` for
//! categorical ones. Numbers are imputed with the training mean (`ai.onnx.ml.Imputer`) and
//! standardised (`Sub`, `Div`); categories are one-hot encoded (`ai.onnx.ml.OneHotEncoder`)
//! with an unknown bucket (`1 − sum of the one-hot columns`). The head is a logistic
//! regression (`MatMul`, `Add`, `Sigmoid`) or a tree ensemble
//! (`ai.onnx.ml.TreeEnsembleRegressor`: a forest's mean, or gradient boosting's sum followed by
//! `Sigmoid` for classification). Output: `score`, `[N, 1]` float (P(true) for binary
//! classification, the prediction for regression).

use candle_onnx::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use prost::Message;

use crate::boosting::{Boosted, Objective};
use crate::preprocess::Encoder;
use crate::tree::{Forest, Node, Tree};

/// Name of the output tensor.
pub const OUTPUT: &str = "score";

/// The model head after preprocessing.
#[derive(Debug, Clone)]
pub enum Head<'a> {
    /// `sigmoid(x·w + b)`.
    Logistic {
        /// Weights per encoded column.
        weights: &'a [f64],
        /// Intercept.
        intercept: f64,
    },
    /// Mean of the trees' leaf values.
    Trees(&'a Forest),
    /// Sum of the trees' leaf values (through `Sigmoid` for a binary objective).
    Boosted(&'a Boosted),
}

struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

use leitwerk_rag::bert_onnx::{attr_f, attr_i};
fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}
fn attr_floats(name: &str, floats: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Floats as i32,
        floats,
        ..Default::default()
    }
}
fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}
fn attr_strings(name: &str, strings: Vec<String>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Strings as i32,
        strings: strings.into_iter().map(String::into_bytes).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, width: i64) -> ValueInfoProto {
    let dims = vec![
        tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimParam("N".into())),
            ..Default::default()
        },
        tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(width)),
            ..Default::default()
        },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Graph {
    fn name(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.name(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            name: out.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn floats(&mut self, stem: &str, dims: Vec<i64>, data: Vec<f32>) -> String {
        let name = self.name(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: DataType::Float as i32,
            float_data: data,
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, stem: &str, data: Vec<i64>) -> String {
        let name = self.name(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: data,
            ..Default::default()
        });
        name
    }
}

/// Builds the ONNX model; `metadata` goes into `metadata_props`.
/// Long on purpose: the graph is written node by node in the order ONNX Runtime evaluates it
/// (encode, head, output), so that the exported graph can be read against the trainer's own
/// scoring.
pub fn export(encoder: &Encoder, head: &Head<'_>, metadata: &[(&str, String)]) -> Vec<u8> {
    let mut g = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        counter: 0,
    };
    let mut inputs = Vec::new();
    let mut parts: Vec<String> = Vec::new();

    if !encoder.scales.is_empty() {
        let mut imputed = Vec::new();
        for (name, mean, _) in &encoder.scales {
            inputs.push(value_info(name, DataType::Float, 1));
            imputed.push(g.node(
                "Imputer",
                "ai.onnx.ml",
                &[name],
                vec![
                    attr_floats("imputed_value_floats", vec![*mean as f32]),
                    attr_f("replaced_value_float", f32::NAN),
                ],
            ));
        }
        let refs: Vec<&str> = imputed.iter().map(String::as_str).collect();
        let numbers = g.node("Concat", "", &refs, vec![attr_i("axis", 1)]);
        let k = encoder.scales.len() as i64;
        let means = g.floats(
            "mean",
            vec![k],
            encoder.scales.iter().map(|(_, m, _)| *m as f32).collect(),
        );
        let stds = g.floats(
            "std",
            vec![k],
            encoder.scales.iter().map(|(_, _, s)| *s as f32).collect(),
        );
        let centred = g.node("Sub", "", &[&numbers, &means], vec![]);
        parts.push(g.node("Div", "", &[&centred, &stds], vec![]));
    }
    for (name, cats) in &encoder.categories {
        inputs.push(value_info(name, DataType::String, 1));
        let k = cats.len() as i64;
        // A feature without a frequent category carries no information and adds no column.
        if k > 0 {
            let onehot = g.node(
                "OneHotEncoder",
                "ai.onnx.ml",
                &[name],
                vec![
                    attr_strings("cats_strings", cats.clone()),
                    attr_i("zeros", 1),
                ],
            );
            let shape = g.ints("shape", vec![-1, k]);
            let flat = g.node("Reshape", "", &[&onehot, &shape], vec![]);
            let axes = g.ints("axes", vec![1]);
            let sum = g.node(
                "ReduceSum",
                "",
                &[&flat, &axes],
                vec![attr_i("keepdims", 1)],
            );
            let one = g.floats("one", vec![1], vec![1.0]);
            let unknown = g.node("Sub", "", &[&one, &sum], vec![]);
            parts.push(flat);
            parts.push(unknown);
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let features = if refs.len() == 1 {
        parts[0].clone()
    } else {
        g.node("Concat", "", &refs, vec![attr_i("axis", 1)])
    };

    let score = match head {
        Head::Logistic { weights, intercept } => {
            let w = g.floats(
                "weights",
                vec![weights.len() as i64, 1],
                weights.iter().map(|w| *w as f32).collect(),
            );
            let b = g.floats("intercept", vec![1], vec![*intercept as f32]);
            let z = g.node("MatMul", "", &[&features, &w], vec![]);
            let z = g.node("Add", "", &[&z, &b], vec![]);
            g.node("Sigmoid", "", &[&z], vec![])
        }
        Head::Trees(forest) => tree_ensemble(
            &mut g,
            &features,
            &forest.trees,
            1.0 / forest.trees.len().max(1) as f64,
        ),
        Head::Boosted(model) => {
            let raw = tree_ensemble(&mut g, &features, &model.trees, 1.0);
            match model.objective {
                Objective::Binary => g.node("Sigmoid", "", &[&raw], vec![]),
                Objective::Regression => raw,
            }
        }
    };
    g.nodes.push(NodeProto {
        op_type: "Identity".into(),
        name: "output".into(),
        input: vec![score],
        output: vec![OUTPUT.into()],
        ..Default::default()
    });

    let graph = GraphProto {
        name: "leitwerk".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: vec![value_info(OUTPUT, DataType::Float, 1)],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "leitwerk-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 3,
            },
        ],
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: (*k).into(),
                value: v.clone(),
            })
            .collect(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// `TreeEnsembleRegressor` summing every tree's leaf value times `scale` (1/k for a forest's
/// mean, 1 for boosting).
fn tree_ensemble(g: &mut Graph, features: &str, trees: &[Tree], scale: f64) -> String {
    let (mut tree_ids, mut node_ids, mut feature_ids, mut values, mut modes, mut trues, mut falses) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut t_tree, mut t_node, mut t_ids, mut t_weights) = (vec![], vec![], vec![], vec![]);
    for (t, tree) in trees.iter().enumerate() {
        for (n, node) in tree.nodes.iter().enumerate() {
            tree_ids.push(t as i64);
            node_ids.push(n as i64);
            match node {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    feature_ids.push(*feature as i64);
                    values.push(*threshold);
                    modes.push("BRANCH_LEQ".to_string());
                    trues.push(*left as i64);
                    falses.push(*right as i64);
                }
                Node::Leaf { value } => {
                    feature_ids.push(0);
                    values.push(0.0);
                    modes.push("LEAF".to_string());
                    trues.push(0);
                    falses.push(0);
                    t_tree.push(t as i64);
                    t_node.push(n as i64);
                    t_ids.push(0);
                    t_weights.push((value * scale) as f32);
                }
            }
        }
    }
    g.node(
        "TreeEnsembleRegressor",
        "ai.onnx.ml",
        &[features],
        vec![
            attr_ints("nodes_treeids", tree_ids),
            attr_ints("nodes_nodeids", node_ids),
            attr_ints("nodes_featureids", feature_ids),
            attr_floats("nodes_values", values),
            attr_strings("nodes_modes", modes),
            attr_ints("nodes_truenodeids", trues),
            attr_ints("nodes_falsenodeids", falses),
            attr_ints("target_treeids", t_tree),
            attr_ints("target_nodeids", t_node),
            attr_ints("target_ids", t_ids),
            attr_floats("target_weights", t_weights),
            attr_i("n_targets", 1),
            attr_s("aggregate_function", "SUM"),
            attr_s("post_transform", "NONE"),
        ],
    )
}
