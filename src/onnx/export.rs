//! The evaluation graph as an ONNX model (opset 13): what `netc export`
//! writes.
//!
//! Assumes the forward graph of `passes::forward` built from the unfused
//! training step (inputs, parameters, the forward layers: `conv` of any
//! form, `dense`, the activations, the poolings, `lrn`, `batchnorm`,
//! `dropout` at rate 0, `flatten`, `concat`, `add`, `softmax`, the loss),
//! verified, and a value for every parameter (batchnorm's running
//! statistics too: the model is the evaluation graph). Any other op is
//! refused by name.
//!
//! Towers. A layer's instances on the towers (the nodes of one name, one
//! per tower) become one ONNX node where that is exact, and one node per
//! tower where it is not:
//! - every tower reads the same value (the shared image, or an `across`
//!   concatenation, which every tower computes alike): one `Conv` or
//!   `Gemm` whose filters or units are the towers' stacked in tower order;
//! - each tower reads its own instance of one layer, every tower the same
//!   shape: a grouped `Conv` (`group` = towers) on the towers' channels
//!   side by side;
//! - ReLU and max pooling act on the towers' channels side by side; LRN,
//!   which is tower-local, runs on them viewed as `[N·towers, C/towers,
//!   H, W]` (`Reshape`, `LRN`, `Reshape`), which is exact;
//! - otherwise each tower's node is its own ONNX node, with `Slice` taking
//!   a tower's channels out and `Concat` putting towers side by side.
//!
//! LRN. netc sums over channels `i − ⌊n/2⌋ ..= i + ⌊n/2⌋` with alpha as
//! written; ONNX sums over `i − ⌊(m−1)/2⌋ ..= i + ⌈(m−1)/2⌉` and divides
//! alpha by `m`. With `m = 2⌊n/2⌋ + 1` (n for odd n, n + 1 for even n) the
//! windows are the same and `alpha_onnx = alpha · m` gives the same
//! coefficient per term; `k` is ONNX's `bias`.
//!
//! Guarantees: the model has the graph's image input (`N × C × H × W`),
//! `logits` (`N × classes`) and `probabilities` (their softmax) outputs,
//! every weight as an initializer (named by the parameter, the towers'
//! stacked under the name without `@tN`), and the metadata given, with
//! `netc.towers` (the number of towers) for a network that has them.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, ValueInfoProto,
};
use crate::ir::train::DataPrep;
use crate::ir::{Device, Graph, Node, NodeId, Op, ParamRole, order};

/// The opset the exported model imports.
pub const OPSET: i64 = 13;
/// The IR version written (ONNX 1.8 onwards reads it; opset 13's).
pub const IR_VERSION: i64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot export `{node}`: ONNX export does not cover `{op}` nodes")]
    Unsupported { node: String, op: String },
    #[error("no value for parameter `{0}`")]
    MissingWeight(String),
    #[error("parameter `{name}` has {got} values, its shape needs {want}")]
    WeightSize {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("the graph has no {0}")]
    Io(&'static str),
    #[error("the graph is not acyclic")]
    Cycle,
}

/// What the instances of one layer hold, as ONNX values.
#[derive(Clone, Debug)]
enum Val {
    /// One value: a layer outside the towers, or one every tower computes
    /// alike (the image, an `across` concatenation).
    Whole(String),
    /// Each tower its own part: `parts[t]`, and (if made) `merged`, the
    /// parts side by side along axis 1. `chans[t]`: part `t`'s channels.
    Split {
        merged: Option<String>,
        parts: Vec<Option<String>>,
        chans: Vec<u64>,
    },
}

struct Writer<'a, 'w> {
    g: &'a Graph,
    weight: &'a dyn Fn(&Node) -> Option<&'w [f32]>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    used: HashSet<String>,
    /// Layer name -> its instances' values.
    vals: HashMap<String, Val>,
    /// Flattened copies of values, by the value's name.
    flat: HashMap<String, String>,
}

/// The one number of a `[C, H, W]` or `[U]` type that tower parts split: channels or units.
fn chans(node: &Node) -> u64 {
    node.ty.dims().first().copied().unwrap_or(1)
}

fn tower(d: Device) -> usize {
    match d {
        Device::Shared => 0,
        Device::Tower(t) => t as usize,
    }
}

impl<'w> Writer<'_, 'w> {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while !self.used.insert(name.clone()) {
            i += 1;
            name = format!("{base}_{i}");
        }
        name
    }

    fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let node_name = self.fresh(name);
        let out = node_name.clone();
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: node_name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn init_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> String {
        let name = self.fresh(name);
        let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.inits.push(TensorProto::floats(&name, &d, values));
        name
    }

    fn init_i64(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.fresh(name);
        self.inits
            .push(TensorProto::int64s(&name, &[values.len() as i64], values));
        name
    }

    /// The values of parameter `p`, checked against its shape.
    fn param(&self, p: NodeId) -> Result<&'w [f32], ExportError> {
        let node = self.g.node(p);
        let v = (self.weight)(node)
            .ok_or_else(|| ExportError::MissingWeight(format!("{}@{}", node.name, node.device)))?;
        let want = node.ty.numel() as usize;
        if v.len() != want {
            return Err(ExportError::WeightSize {
                name: node.name.clone(),
                got: v.len(),
                want,
            });
        }
        Ok(v)
    }

    /// The ONNX value of node `x` (its tower's part for a split layer).
    fn value_of(&mut self, x: NodeId) -> Result<String, ExportError> {
        let node = self.g.node(x);
        let key = node.name.clone();
        let t = tower(node.device);
        match self.vals.get(&key).cloned() {
            Some(Val::Whole(v)) => Ok(v),
            Some(Val::Split {
                merged,
                parts,
                chans,
            }) => {
                if let Some(p) = &parts[t] {
                    return Ok(p.clone());
                }
                let merged = merged.ok_or(ExportError::Io("value for a tower"))?;
                let start: u64 = chans[..t].iter().sum();
                let s = self.init_i64(&format!("{key}.start@t{t}"), &[start as i64]);
                let e = self.init_i64(&format!("{key}.end@t{t}"), &[(start + chans[t]) as i64]);
                let a = self.init_i64(&format!("{key}.axes@t{t}"), &[1]);
                let out = self.push(
                    "Slice",
                    &format!("{key}/slice@t{t}"),
                    vec![merged, s, e, a],
                    vec![],
                );
                if let Some(Val::Split { parts, .. }) = self.vals.get_mut(&key) {
                    parts[t] = Some(out.clone());
                }
                Ok(out)
            }
            None => Err(ExportError::Io("value computed before its use")),
        }
    }

    /// The towers' parts of layer `key` side by side (a `Concat` if needed).
    fn merged(&mut self, key: &str) -> Result<String, ExportError> {
        match self.vals.get(key).cloned() {
            Some(Val::Whole(v)) => Ok(v),
            Some(Val::Split {
                merged: Some(m), ..
            }) => Ok(m),
            Some(Val::Split { parts, .. }) => {
                let parts: Vec<String> = parts
                    .into_iter()
                    .collect::<Option<_>>()
                    .ok_or(ExportError::Io("tower part"))?;
                let out = self.push(
                    "Concat",
                    &format!("{key}/towers"),
                    parts,
                    vec![AttributeProto::int("axis", 1)],
                );
                if let Some(Val::Split { merged, .. }) = self.vals.get_mut(key) {
                    *merged = Some(out.clone());
                }
                Ok(out)
            }
            None => Err(ExportError::Io("value computed before its use")),
        }
    }

    /// `v` as `[N, numel]` (a `Flatten` of a `[N, C, H, W]` value, once).
    fn flat(&mut self, v: String, rank: usize) -> String {
        if rank <= 1 {
            return v;
        }
        if let Some(f) = self.flat.get(&v) {
            return f.clone();
        }
        let f = self.push(
            "Flatten",
            &format!("{v}/flatten"),
            vec![v.clone()],
            vec![AttributeProto::int("axis", 1)],
        );
        self.flat.insert(v, f.clone());
        f
    }

    /// One ONNX node per tower: `emit(w, name, t, xs)` for member `t`,
    /// named `key@tN`, with `xs` the values of its inputs that are not
    /// parameters (its tower's parts).
    fn per_tower(
        &mut self,
        key: &str,
        members: &[NodeId],
        mut emit: impl FnMut(&mut Self, &str, usize, Vec<String>) -> Result<String, ExportError>,
    ) -> Result<Val, ExportError> {
        let g = self.g;
        let mut parts = Vec::new();
        for (t, &m) in members.iter().enumerate() {
            let xs = g
                .inputs(m)
                .into_iter()
                .filter(|&s| !g.node(s).op.is_param())
                .map(|s| self.value_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            let name = format!("{key}@{}", g.node(m).device);
            parts.push(Some(emit(self, &name, t, xs)?));
        }
        Ok(Val::Split {
            merged: None,
            parts,
            chans: members.iter().map(|&m| chans(g.node(m))).collect(),
        })
    }

    /// How the instances of a layer read their first input: `Same(v)` if
    /// every instance reads one value alike, `Own(layer)` if instance `t`
    /// reads tower `t`'s instance of `layer`, `Mixed` otherwise.
    fn reads(&mut self, members: &[NodeId]) -> Result<Reads, ExportError> {
        let xs: Vec<NodeId> = members
            .iter()
            .map(|&m| self.g.inputs(m).first().copied())
            .collect::<Option<_>>()
            .ok_or(ExportError::Io("input of a layer"))?;
        if members.len() == 1 || xs.iter().all(|&x| x == xs[0]) {
            return Ok(Reads::Same(self.value_of(xs[0])?));
        }
        let layer = self.g.node(xs[0]).name.clone();
        if !xs.iter().all(|&x| self.g.node(x).name == layer) {
            return Ok(Reads::Mixed);
        }
        match self.vals.get(&layer) {
            // A value every tower computes alike.
            Some(Val::Whole(v)) => Ok(Reads::Same(v.clone())),
            Some(Val::Split { parts, .. })
                if parts.len() == members.len()
                    && members.iter().zip(&xs).enumerate().all(|(t, (&m, &x))| {
                        self.g.node(m).device == Device::Tower(t as u32)
                            && self.g.node(x).device == Device::Tower(t as u32)
                    }) =>
            {
                Ok(Reads::Own(layer))
            }
            _ => Ok(Reads::Mixed),
        }
    }
}

enum Reads {
    Same(String),
    Own(String),
    Mixed,
}

/// The nodes of each layer (one name): in tower order, layers in
/// execution order.
fn layers(g: &Graph) -> Result<Vec<(String, Vec<NodeId>)>, ExportError> {
    let topo = order::topo(g).map_err(|_| ExportError::Cycle)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, Vec<NodeId>)> = Vec::new();
    for n in topo {
        let node = g.node(n);
        if node.op.is_param() {
            continue;
        }
        match index.get(&node.name) {
            Some(&i) => out[i].1.push(n),
            None => {
                index.insert(node.name.clone(), out.len());
                out.push((node.name.clone(), vec![n]));
            }
        }
    }
    for (_, m) in &mut out {
        m.sort_by_key(|&n| g.node(n).device);
    }
    Ok(out)
}

/// The ONNX model of forward graph `g`; `weight` gives each parameter's
/// values (a checkpoint's, or the initial ones).
pub fn export<'w>(
    g: &Graph,
    weight: &dyn Fn(&Node) -> Option<&'w [f32]>,
    metadata: &[(String, String)],
) -> Result<ModelProto, ExportError> {
    let mut w = Writer {
        g,
        weight,
        nodes: Vec::new(),
        inits: Vec::new(),
        used: HashSet::new(),
        vals: HashMap::new(),
        flat: HashMap::new(),
    };
    let (image, _, _, logits_node) = g.training_io().map_err(ExportError::Io)?;
    let image_node = g.node(image);
    w.used.insert(image_node.name.clone());
    w.used.insert("logits".into());
    w.used.insert("probabilities".into());
    let mut outputs = Vec::new();
    // The network's own `softmax` outputs, after `logits` and `probabilities`.
    let mut outputs_extra = Vec::new();
    for (key, members) in layers(g)? {
        let first = g.node(members[0]);
        let op = first.op.clone();
        let val = match &op {
            Op::Input { .. } => {
                if members[0] != image {
                    // The label input has no part in evaluation.
                    continue;
                }
                Val::Whole(image_node.name.clone())
            }
            Op::Conv { .. } | Op::Dense { .. } => layer(&mut w, &key, &members, &op)?,
            op if is_per_channel(op) => per_channel(&mut w, &key, &members, op)?,
            Op::BatchNorm { .. } => batchnorm(&mut w, &key, &members, &op)?,
            Op::Sum => sum(&mut w, &key, &members)?,
            Op::Softmax => {
                let [m] = members[..] else {
                    return Err(ExportError::Unsupported {
                        node: first.name.clone(),
                        op: "softmax in towers".into(),
                    });
                };
                let x = w.value_of(g.inputs(m)[0])?;
                let out = w.push(
                    "Softmax",
                    &key,
                    vec![x],
                    vec![AttributeProto::int("axis", 1)],
                );
                outputs_extra.push(ValueInfoProto::batched(&out, first.ty.dims()));
                continue;
            }
            // Evaluation's dropout is the identity.
            Op::Dropout { .. } => match w.reads(&members)? {
                Reads::Same(v) => Val::Whole(v),
                Reads::Own(src) => w.vals[&src].clone(),
                Reads::Mixed => Val::Split {
                    parts: members
                        .iter()
                        .map(|&m| w.value_of(g.inputs(m)[0]).map(Some))
                        .collect::<Result<_, _>>()?,
                    merged: None,
                    chans: members.iter().map(|&m| chans(g.node(m))).collect(),
                },
            },
            Op::Concat => concat(&mut w, &key, &members)?,
            Op::SoftmaxXent => {
                let logits = w.value_of(logits_node)?;
                let l = g.node(logits_node);
                let classes = chans(l);
                w.nodes.push(NodeProto {
                    input: vec![logits],
                    output: vec!["logits".into()],
                    name: "logits".into(),
                    op_type: "Identity".into(),
                    ..Default::default()
                });
                w.nodes.push(NodeProto {
                    input: vec!["logits".into()],
                    output: vec!["probabilities".into()],
                    name: "probabilities".into(),
                    op_type: "Softmax".into(),
                    attribute: vec![AttributeProto::int("axis", 1)],
                    ..Default::default()
                });
                outputs.push(ValueInfoProto::batched("logits", &[classes]));
                outputs.push(ValueInfoProto::batched("probabilities", &[classes]));
                continue;
            }
            other => {
                return Err(ExportError::Unsupported {
                    node: first.name.clone(),
                    op: other.mnemonic().into(),
                });
            }
        };
        w.vals.insert(key, val);
    }
    if outputs.is_empty() {
        return Err(ExportError::Io("loss"));
    }
    outputs.extend(outputs_extra);
    let graph = GraphProto {
        node: w.nodes,
        name: g.name.clone(),
        initializer: w.inits,
        input: vec![ValueInfoProto::batched(
            &image_node.name,
            image_node.ty.dims(),
        )],
        output: outputs,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "netc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .cloned()
            .chain(towers_entry(g))
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    })
}

/// `netc.towers`: how many towers the network has, for `netc import` to
/// read its grouped convolutions as towers again (none without towers:
/// then they are the convolutions' own groups).
fn towers_entry(g: &Graph) -> Option<(String, String)> {
    let towers = g
        .node_ids()
        .filter_map(|n| match g.node(n).device {
            Device::Tower(t) => Some(t as u64 + 1),
            Device::Shared => None,
        })
        .max()?;
    (towers > 1).then(|| ("netc.towers".to_string(), towers.to_string()))
}

/// [`export`], encoded.
pub fn export_bytes<'w>(
    g: &Graph,
    weight: &dyn Fn(&Node) -> Option<&'w [f32]>,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, ExportError> {
    Ok(export(g, weight, metadata)?.encode_to_vec())
}

/// A conv or dense layer's weight and (unless it has none) bias parameters.
fn params_of(g: &Graph, n: NodeId) -> Result<(NodeId, Option<NodeId>), ExportError> {
    let ins = g.inputs(n);
    let role = |i: usize, r: ParamRole| {
        ins.get(i)
            .copied()
            .filter(|&p| matches!(&g.node(p).op, Op::Param { role, .. } if *role == r))
    };
    let wt = role(1, ParamRole::Weight).ok_or(ExportError::Io("weight of a layer"))?;
    let b = role(2, ParamRole::Bias);
    let has_bias = !matches!(&g.node(n).op, Op::Conv { bias: false, .. });
    if b.is_some() != has_bias {
        return Err(ExportError::Io("bias of a layer"));
    }
    Ok((wt, b))
}

/// A batchnorm's γ, β, running mean and running variance, in that order.
fn bn_params(g: &Graph, n: NodeId) -> Result<[NodeId; 4], ExportError> {
    let ins = g.inputs(n);
    let roles = [
        ParamRole::Weight,
        ParamRole::Bias,
        ParamRole::RunningMean,
        ParamRole::RunningVar,
    ];
    let mut out = [n; 4];
    for (i, r) in roles.iter().enumerate() {
        out[i] = ins
            .get(i + 1)
            .copied()
            .filter(|&p| matches!(&g.node(p).op, Op::Param { role, .. } if role == r))
            .ok_or(ExportError::Io("parameters of a batchnorm"))?;
    }
    Ok(out)
}

/// A `Conv` or `Gemm` over `x` with the given parameters' values stacked.
fn emit_layer(
    w: &mut Writer<'_, '_>,
    name: &str,
    op: &Op,
    (x, x_rank): (String, usize),
    params: &[(NodeId, Option<NodeId>)],
    group: u64,
    per_tower: bool,
) -> Result<String, ExportError> {
    let g = w.g;
    let mut wv: Vec<f32> = Vec::new();
    let mut bv: Vec<f32> = Vec::new();
    for &(wt, b) in params {
        wv.extend_from_slice(w.param(wt)?);
        if let Some(b) = b {
            bv.extend_from_slice(w.param(b)?);
        }
    }
    let mut wdims = g.node(params[0].0).ty.dims().to_vec();
    wdims[0] *= params.len() as u64;
    // The parameter's name; a tower's own under its `@tN` key.
    let pname = |role: &str| {
        let p = g.node(params[0].0);
        let base = format!("{}.{role}", p.name.trim_end_matches(".weight"));
        if per_tower {
            format!("{base}@{}", p.device)
        } else {
            base
        }
    };
    let wn = w.init_f32(&pname("weight"), &wdims, &wv);
    let mut inputs = vec![x, wn];
    if params[0].1.is_some() {
        inputs.push(w.init_f32(&pname("bias"), &[bv.len() as u64], &bv));
    }
    Ok(match op {
        Op::Conv {
            size,
            stride,
            pad,
            dilation,
            ..
        } => {
            let i = |v: u64| v as i64;
            let (ph, pw) = (i(pad.h), i(pad.w));
            let d = i(*dilation);
            let mut attrs = vec![
                AttributeProto::ints("kernel_shape", &[i(size.h), i(size.w)]),
                AttributeProto::ints("strides", &[i(stride.h), i(stride.w)]),
                AttributeProto::ints("pads", &[ph, pw, ph, pw]),
                AttributeProto::ints("dilations", &[d, d]),
            ];
            if group > 1 {
                attrs.push(AttributeProto::int("group", group as i64));
            }
            w.push("Conv", name, inputs, attrs)
        }
        _ => {
            inputs[0] = w.flat(inputs[0].clone(), x_rank);
            w.push("Gemm", name, inputs, vec![AttributeProto::int("transB", 1)])
        }
    })
}

/// A conv or dense layer's instances.
fn layer(
    w: &mut Writer<'_, '_>,
    key: &str,
    members: &[NodeId],
    op: &Op,
) -> Result<Val, ExportError> {
    let g = w.g;
    // A conv's own filter groups (1 for a dense layer).
    let groups = match op {
        Op::Conv { groups, .. } => *groups,
        _ => 1,
    };
    let params: Vec<(NodeId, Option<NodeId>)> = members
        .iter()
        .map(|&m| params_of(g, m))
        .collect::<Result<_, _>>()?;
    let x0 = g.inputs(members[0])[0];
    let rank = g.node(x0).ty.dims().len();
    let chans: Vec<u64> = members.iter().map(|&m| chans(g.node(m))).collect();
    let same_shape = members
        .iter()
        .all(|&m| g.node(m).op == *op && g.node(m).ty == g.node(members[0]).ty)
        && params
            .iter()
            .all(|&(wt, _)| g.node(wt).ty == g.node(params[0].0).ty);
    match w.reads(members)? {
        Reads::Same(x) if members.len() == 1 => Ok(Val::Whole(emit_layer(
            w,
            key,
            op,
            (x, rank),
            &params,
            groups,
            false,
        )?)),
        // Towers' filters stacked over one input are one group each only
        // without groups of their own.
        Reads::Same(x) if groups == 1 => Ok(Val::Split {
            merged: Some(emit_layer(w, key, op, (x, rank), &params, 1, false)?),
            parts: vec![None; members.len()],
            chans,
        }),
        Reads::Own(src) if same_shape && matches!(op, Op::Conv { .. }) => {
            let x = w.merged(&src)?;
            Ok(Val::Split {
                merged: Some(emit_layer(
                    w,
                    key,
                    op,
                    (x, rank),
                    &params,
                    members.len() as u64 * groups,
                    false,
                )?),
                parts: vec![None; members.len()],
                chans,
            })
        }
        _ => w.per_tower(key, members, |w, name, t, mut xs| {
            emit_layer(
                w,
                name,
                op,
                (xs.remove(0), rank),
                &params[t..=t],
                groups,
                true,
            )
        }),
    }
}

/// Ops that act on each channel (or feature) alone, so that towers'
/// channels side by side give the towers' results side by side.
fn is_per_channel(op: &Op) -> bool {
    matches!(
        op,
        Op::Relu
            | Op::Tanh
            | Op::Sigmoid
            | Op::LeakyRelu { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Lrn { .. }
    )
}

/// The ONNX node of a per-channel op on `x`, whose netc dims (without
/// the batch) are `dims` (`towers` > 1: an LRN over that many towers'
/// channels side by side, `dims[0]` each).
fn emit_per_channel(
    w: &mut Writer<'_, '_>,
    name: &str,
    op: &Op,
    x: String,
    towers: u64,
    dims: &[u64],
) -> String {
    match op {
        Op::Relu => w.push("Relu", name, vec![x], vec![]),
        Op::Tanh => w.push("Tanh", name, vec![x], vec![]),
        Op::Sigmoid => w.push("Sigmoid", name, vec![x], vec![]),
        Op::LeakyRelu { slope } => w.push(
            "LeakyRelu",
            name,
            vec![x],
            vec![AttributeProto::float("alpha", *slope as f32)],
        ),
        // netc's padding: −∞ for max pooling (ONNX's), zeros counted in
        // the divisor for average pooling (`count_include_pad`).
        Op::MaxPool { size, stride, pad } | Op::AvgPool { size, stride, pad } => {
            let (k, s, p) = (*size as i64, *stride as i64, *pad as i64);
            let mut attrs = vec![
                AttributeProto::ints("kernel_shape", &[k, k]),
                AttributeProto::ints("strides", &[s, s]),
            ];
            if p != 0 {
                attrs.push(AttributeProto::ints("pads", &[p, p, p, p]));
            }
            if matches!(op, Op::AvgPool { .. }) {
                attrs.push(AttributeProto::int("count_include_pad", 1));
                w.push("AveragePool", name, vec![x], attrs)
            } else {
                w.push("MaxPool", name, vec![x], attrs)
            }
        }
        // netc's `[C]`: ONNX's `[N, C, 1, 1]` flattened.
        Op::GlobalAvgPool => {
            let p = w.push("GlobalAveragePool", name, vec![x], vec![]);
            w.flat(p, 3)
        }
        Op::Flatten => w.flat(x, dims.len()),
        Op::Lrn {
            size,
            alpha,
            beta,
            k,
        } => {
            let m = 2 * (size / 2) + 1;
            let attrs = vec![
                AttributeProto::int("size", m as i64),
                AttributeProto::float("alpha", (alpha * m as f64) as f32),
                AttributeProto::float("beta", *beta as f32),
                AttributeProto::float("bias", *k as f32),
            ];
            if towers <= 1 {
                return w.push("LRN", name, vec![x], attrs);
            }
            // [N, T·C, H, W] as [N·T, C, H, W]: each tower's channels alone.
            let mut per: Vec<i64> = vec![-1];
            per.extend(dims.iter().map(|&d| d as i64));
            let mut whole = per.clone();
            whole[1] *= towers as i64;
            let ps = w.init_i64(&format!("{name}.tower_shape"), &per);
            let ws = w.init_i64(&format!("{name}.shape"), &whole);
            let r = w.push("Reshape", &format!("{name}/towers"), vec![x, ps], vec![]);
            let l = w.push("LRN", name, vec![r], attrs);
            w.push("Reshape", &format!("{name}/merge"), vec![l, ws], vec![])
        }
        _ => unreachable!("per_channel takes the ops `is_per_channel` names"),
    }
}

/// A per-channel op's instances.
fn per_channel(
    w: &mut Writer<'_, '_>,
    key: &str,
    members: &[NodeId],
    op: &Op,
) -> Result<Val, ExportError> {
    let g = w.g;
    let in_dims = |m: NodeId| g.node(g.inputs(m)[0]).ty.dims().to_vec();
    let chans: Vec<u64> = members.iter().map(|&m| chans(g.node(m))).collect();
    let dims0 = in_dims(members[0]);
    let same_shape = members.iter().all(|&m| in_dims(m) == dims0);
    match w.reads(members)? {
        Reads::Same(x) => {
            let v = emit_per_channel(w, key, op, x, 1, &dims0);
            Ok(Val::Whole(v))
        }
        Reads::Own(src) if same_shape => {
            let x = w.merged(&src)?;
            let t = members.len() as u64;
            Ok(Val::Split {
                merged: Some(emit_per_channel(w, key, op, x, t, &dims0)),
                parts: vec![None; members.len()],
                chans,
            })
        }
        _ => w.per_tower(key, members, |w, name, t, mut xs| {
            let dims = in_dims(members[t]);
            Ok(emit_per_channel(w, name, op, xs.remove(0), 1, &dims))
        }),
    }
}

/// A `BatchNormalization` over `x` in evaluation (the running
/// statistics), with the parameters of `sets` (one per tower whose
/// channels `x` holds side by side) stacked.
fn emit_bn(
    w: &mut Writer<'_, '_>,
    name: &str,
    op: &Op,
    x: String,
    sets: &[[NodeId; 4]],
    per_tower: bool,
) -> Result<String, ExportError> {
    let g = w.g;
    let Op::BatchNorm { momentum, eps } = op else {
        unreachable!("emit_bn takes a batchnorm")
    };
    let mut inputs = vec![x];
    for (i, role) in ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .enumerate()
    {
        let mut v: Vec<f32> = Vec::new();
        for set in sets {
            v.extend_from_slice(w.param(set[i])?);
        }
        let p = g.node(sets[0][i]);
        let base = format!(
            "{}.{role}",
            p.name.rsplit_once('.').map_or(&*p.name, |b| b.0)
        );
        let pname = if per_tower {
            format!("{base}@{}", p.device)
        } else {
            base
        };
        inputs.push(w.init_f32(&pname, &[v.len() as u64], &v));
    }
    // ONNX's momentum weighs the running value: netc's (PyTorch's) is 1 − it.
    Ok(w.push(
        "BatchNormalization",
        name,
        inputs,
        vec![
            AttributeProto::float("epsilon", *eps as f32),
            AttributeProto::float("momentum", (1.0 - momentum) as f32),
        ],
    ))
}

/// A batchnorm's instances: one node over the towers' channels side by
/// side where each tower normalises its own instance of one layer, one
/// per tower otherwise.
fn batchnorm(
    w: &mut Writer<'_, '_>,
    key: &str,
    members: &[NodeId],
    op: &Op,
) -> Result<Val, ExportError> {
    let g = w.g;
    let sets: Vec<[NodeId; 4]> = members
        .iter()
        .map(|&m| bn_params(g, m))
        .collect::<Result<_, _>>()?;
    let chans: Vec<u64> = members.iter().map(|&m| chans(g.node(m))).collect();
    match w.reads(members)? {
        Reads::Same(x) if members.len() == 1 => {
            Ok(Val::Whole(emit_bn(w, key, op, x, &sets, false)?))
        }
        Reads::Own(src) => {
            let x = w.merged(&src)?;
            Ok(Val::Split {
                merged: Some(emit_bn(w, key, op, x, &sets, false)?),
                parts: vec![None; members.len()],
                chans,
            })
        }
        _ => w.per_tower(key, members, |w, name, t, mut xs| {
            emit_bn(w, name, op, xs.remove(0), &sets[t..=t], true)
        }),
    }
}

/// An `add` layer's instances: one `Sum` (an `Add` of two) over the
/// merged values where every tower adds its own instances of the same
/// layers, one per tower otherwise.
fn sum(w: &mut Writer<'_, '_>, key: &str, members: &[NodeId]) -> Result<Val, ExportError> {
    let g = w.g;
    let ins: Vec<Vec<NodeId>> = members.iter().map(|&m| g.inputs(m)).collect();
    let chans: Vec<u64> = members.iter().map(|&m| chans(g.node(m))).collect();
    let node = |w: &mut Writer<'_, '_>, name: &str, vals: Vec<String>| {
        let op = if vals.len() == 2 { "Add" } else { "Sum" };
        w.push(op, name, vals, vec![])
    };
    if members.len() == 1 {
        let vals = ins[0]
            .iter()
            .map(|&s| w.value_of(s))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Val::Whole(node(w, key, vals)));
    }
    // Port `p` of tower `t` reads tower `t`'s instance of layer `layers[p]`.
    let layers: Vec<String> = ins[0].iter().map(|&s| g.node(s).name.clone()).collect();
    let own = ins.iter().enumerate().all(|(t, srcs)| {
        srcs.len() == layers.len()
            && srcs
                .iter()
                .zip(&layers)
                .all(|(&s, l)| g.node(s).name == *l && g.node(s).device == Device::Tower(t as u32))
    }) && layers
        .iter()
        .all(|l| matches!(w.vals.get(l), Some(Val::Split { chans: c, .. }) if *c == chans));
    if own {
        let vals = layers
            .iter()
            .map(|l| w.merged(l))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Val::Split {
            merged: Some(node(w, key, vals)),
            parts: vec![None; members.len()],
            chans,
        });
    }
    w.per_tower(key, members, |w, name, _, xs| Ok(node(w, name, xs)))
}

/// A concatenation's instances: one `Concat` when every tower
/// concatenates the same values (an `across`), one per tower otherwise.
fn concat(w: &mut Writer<'_, '_>, key: &str, members: &[NodeId]) -> Result<Val, ExportError> {
    let g = w.g;
    let ins: Vec<Vec<NodeId>> = members.iter().map(|&m| g.inputs(m)).collect();
    if ins.iter().all(|i| *i == ins[0]) {
        let srcs = &ins[0];
        // The towers of one split layer in tower order: its merged value.
        let layer = &g.node(srcs[0]).name;
        let whole_layer = srcs.len() > 1
            && srcs.iter().enumerate().all(|(t, &s)| {
                g.node(s).name == *layer && g.node(s).device == Device::Tower(t as u32)
            })
            && matches!(w.vals.get(layer), Some(Val::Split { parts, .. }) if parts.len() == srcs.len());
        if whole_layer {
            let layer = layer.clone();
            return Ok(Val::Whole(w.merged(&layer)?));
        }
        let vals = srcs
            .iter()
            .map(|&s| w.value_of(s))
            .collect::<Result<Vec<_>, _>>()?;
        let v = w.push("Concat", key, vals, vec![AttributeProto::int("axis", 1)]);
        return Ok(Val::Whole(v));
    }
    w.per_tower(key, members, |w, name, _, xs| {
        Ok(w.push("Concat", name, xs, vec![AttributeProto::int("axis", 1)]))
    })
}

/// `netc.prep.layout`: the channels the input's first dimension gives
/// (one is grey, three are RGB, as `netc prepare` and the IDX reader give
/// them).
fn layout(channels: Option<u64>) -> String {
    match channels {
        Some(1) => "NCHW, grey, pixels 0..255".into(),
        Some(3) => "NCHW, RGB, pixels 0..255".into(),
        Some(c) => format!("NCHW, {c} channels, pixels 0..255"),
        None => "NCHW, pixels 0..255".into(),
    }
}

/// The input preparation of the `.net` file's `train { data { … } }`
/// section as metadata entries (`netc.prep.*`): what a caller does to an
/// image before the model sees it. The one place that says what the
/// model's input is, so it can read a checkpoint's record instead later.
pub fn preparation(data: &DataPrep, input_dims: &[u64]) -> Vec<(String, String)> {
    let mut v = vec![
        (
            "netc.prep.input".to_string(),
            input_dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("x"),
        ),
        (
            "netc.prep.layout".into(),
            layout(input_dims.first().copied()),
        ),
    ];
    if let Some(r) = data.rescale {
        v.push(("netc.prep.rescale".into(), r.to_string()));
    }
    if data.pad > 0 {
        v.push(("netc.prep.pad".into(), data.pad.to_string()));
    }
    if let Some(c) = data.crop {
        v.push(("netc.prep.crop".into(), c.to_string()));
    }
    v.push((
        "netc.prep.test_crop".into(),
        match data.test {
            crate::ir::train::TestCrop::Center => "center".into(),
            crate::ir::train::TestCrop::TenCrop => "ten_crop".into(),
        },
    ));
    v.push((
        "netc.prep.mean".into(),
        if data.mean {
            "subtract the training set's mean image (not recorded in the model)".into()
        } else {
            "none".into()
        },
    ));
    v.push(("netc.prep.scale".into(), format!("{}", data.scale)));
    v.push((
        "netc.prep.order".into(),
        "rescale, pad, crop, subtract the mean, multiply by scale".into(),
    ));
    v
}
