//! The BERT encoder of an embedding model as an ONNX graph that Leitwerk writes itself from the
//! `model.safetensors` weights, built from ONNX Runtime's fused operators (`com.microsoft`
//! `EmbedLayerNormalization`, `Attention`, `SkipLayerNormalization`, `BiasGelu`): each layer
//! is five kernels, and nothing depends on an optimizer recognising a pattern in a graph of
//! primitive operators.
//!
//! Inputs: `input_ids` and `attention_mask`, `int32 [batch, sequence]`, padded on the right
//! (one segment: the token-type embedding of segment 0 is added to the position embeddings).
//! Output: `hidden`, `float [batch, sequence, hidden]`, the last layer's states; pooling over
//! the mask and normalisation happen outside (see [`crate::embed`]).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_onnx::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use candle_transformers::models::bert::Config;
use prost::Message;

/// The graph's input of word-piece ids.
pub const INPUT_IDS: &str = "input_ids";
/// The graph's input of the attention mask (1 for a word piece, 0 for padding).
pub const ATTENTION_MASK: &str = "attention_mask";
/// The graph's output of the last layer's states.
pub const HIDDEN: &str = "hidden";

/// Why a graph could not be written from the weights.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A tensor the architecture needs is missing from the weights.
    #[error("the weights have no tensor {0} (is this a BERT model?)")]
    Missing(String),
    /// Reading or reshaping a tensor failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str) -> Result<&Tensor, GraphError> {
        self.tensors
            .get(&format!("{}{name}", self.prefix))
            .ok_or_else(|| GraphError::Missing(name.to_string()))
    }
}

struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// A float attribute (the trainer's graphs use it too).
pub fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// An integer attribute (the trainer's graphs use it too).
pub fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(n) => tensor_shape_proto::dimension::Value::DimValue(n),
                Err(_) => tensor_shape_proto::dimension::Value::DimParam((*d).into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Graph {
    /// Adds `tensor` (f32) as the initializer `name`.
    fn weight(&mut self, name: &str, tensor: &Tensor) -> Result<String, GraphError> {
        let dims = tensor.dims().iter().map(|&d| d as i64).collect();
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        self.initializers.push(TensorProto {
            name: name.into(),
            dims,
            data_type: DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Ok(name.to_string())
    }

    fn node(
        &mut self,
        op: &str,
        microsoft: bool,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            domain: if microsoft {
                "com.microsoft".into()
            } else {
                String::new()
            },
            name: outputs
                .first()
                .map_or_else(String::new, |o| (*o).to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
    }
}

/// A PyTorch `Linear` weight (`[out, in]`) as the right operand of a MatMul (`[in, out]`).
fn transposed(t: &Tensor) -> Result<Tensor, GraphError> {
    Ok(t.t()?.contiguous()?)
}

/// Writes the encoder of `config` with the weights in `safetensors` as a serialized ONNX model.
pub fn graph(config: &Config, safetensors: &[u8]) -> Result<Vec<u8>, GraphError> {
    let tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)?;
    let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let w = Weights { tensors, prefix };
    let eps = config.layer_norm_eps as f32;
    let mut g = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
    };

    // Embeddings: word + position + segment 0, then LayerNorm; the mask's row lengths come
    // out as the attention's mask index.
    let segment0 = w.get("embeddings.token_type_embeddings.weight")?.get(0)?;
    let positions = w
        .get("embeddings.position_embeddings.weight")?
        .broadcast_add(&segment0)?;
    let word = g.weight("word", w.get("embeddings.word_embeddings.weight")?)?;
    let position = g.weight("position", &positions)?;
    let gamma = g.weight("emb_gamma", w.get("embeddings.LayerNorm.weight")?)?;
    let beta = g.weight("emb_beta", w.get("embeddings.LayerNorm.bias")?)?;
    g.node(
        "EmbedLayerNormalization",
        true,
        &[
            INPUT_IDS,
            "",
            &word,
            &position,
            "",
            &gamma,
            &beta,
            ATTENTION_MASK,
        ],
        &["x0", "mask_index"],
        vec![attr_f("epsilon", eps)],
    );

    let mut x = "x0".to_string();
    for l in 0..config.num_hidden_layers {
        let p = |name: &str| format!("encoder.layer.{l}.{name}");
        let qkv_weight = Tensor::cat(
            &[
                transposed(w.get(&p("attention.self.query.weight"))?)?,
                transposed(w.get(&p("attention.self.key.weight"))?)?,
                transposed(w.get(&p("attention.self.value.weight"))?)?,
            ],
            1,
        )?;
        let qkv_bias = Tensor::cat(
            &[
                w.get(&p("attention.self.query.bias"))?,
                w.get(&p("attention.self.key.bias"))?,
                w.get(&p("attention.self.value.bias"))?,
            ],
            0,
        )?;
        let qkv_weight = g.weight(&format!("l{l}_qkv_w"), &qkv_weight)?;
        let qkv_bias = g.weight(&format!("l{l}_qkv_b"), &qkv_bias)?;
        let out_w = g.weight(
            &format!("l{l}_out_w"),
            &transposed(w.get(&p("attention.output.dense.weight"))?)?,
        )?;
        let out_b = g.weight(
            &format!("l{l}_out_b"),
            w.get(&p("attention.output.dense.bias"))?,
        )?;
        let ln1_g = g.weight(
            &format!("l{l}_ln1_g"),
            w.get(&p("attention.output.LayerNorm.weight"))?,
        )?;
        let ln1_b = g.weight(
            &format!("l{l}_ln1_b"),
            w.get(&p("attention.output.LayerNorm.bias"))?,
        )?;
        let up_w = g.weight(
            &format!("l{l}_up_w"),
            &transposed(w.get(&p("intermediate.dense.weight"))?)?,
        )?;
        let up_b = g.weight(&format!("l{l}_up_b"), w.get(&p("intermediate.dense.bias"))?)?;
        let down_w = g.weight(
            &format!("l{l}_down_w"),
            &transposed(w.get(&p("output.dense.weight"))?)?,
        )?;
        let down_b = g.weight(&format!("l{l}_down_b"), w.get(&p("output.dense.bias"))?)?;
        let ln2_g = g.weight(
            &format!("l{l}_ln2_g"),
            w.get(&p("output.LayerNorm.weight"))?,
        )?;
        let ln2_b = g.weight(&format!("l{l}_ln2_b"), w.get(&p("output.LayerNorm.bias"))?)?;

        let n = |s: &str| format!("l{l}_{s}");
        let (attn, proj, h, up, act, down) =
            (n("attn"), n("proj"), n("h"), n("up"), n("act"), n("down"));
        let next = if l + 1 == config.num_hidden_layers {
            HIDDEN.to_string()
        } else {
            n("x")
        };
        g.node(
            "Attention",
            true,
            &[&x, &qkv_weight, &qkv_bias, "mask_index"],
            &[&attn],
            vec![attr_i("num_heads", config.num_attention_heads as i64)],
        );
        g.node("MatMul", false, &[&attn, &out_w], &[&proj], Vec::new());
        g.node(
            "SkipLayerNormalization",
            true,
            &[&proj, &x, &ln1_g, &ln1_b, &out_b],
            &[&h],
            vec![attr_f("epsilon", eps)],
        );
        g.node("MatMul", false, &[&h, &up_w], &[&up], Vec::new());
        g.node("BiasGelu", true, &[&up, &up_b], &[&act], Vec::new());
        g.node("MatMul", false, &[&act, &down_w], &[&down], Vec::new());
        g.node(
            "SkipLayerNormalization",
            true,
            &[&down, &h, &ln2_g, &ln2_b, &down_b],
            &[&next],
            vec![attr_f("epsilon", eps)],
        );
        x = next;
    }

    let hidden_size = config.hidden_size.to_string();
    let graph = GraphProto {
        name: "bert-encoder".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![
            value_info(INPUT_IDS, DataType::Int32, &["batch", "sequence"]),
            value_info(ATTENTION_MASK, DataType::Int32, &["batch", "sequence"]),
        ],
        output: vec![value_info(
            HIDDEN,
            DataType::Float,
            &["batch", "sequence", &hidden_size],
        )],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "leitwerk-rag".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: "com.microsoft".into(),
                version: 1,
            },
        ],
        graph: Some(graph),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
