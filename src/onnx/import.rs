//! An ONNX model as a `.net` file and its weights: what `netc import`
//! reads.
//!
//! Assumes nothing of the bytes: a malformed file, a missing initializer,
//! an attribute netc cannot express or an operator it does not have is an
//! [`ImportError`] naming the operator and the node. Each ONNX operator is
//! one entry of [`OPS`], a table from `op_type` to the function that
//! turns its node into a netc layer (or into nothing: `Identity`,
//! `Flatten` and `Reshape` to a vector, `Softmax` at the output).
//!
//! Towers. A grouped `Conv` (`group` = T) and an `LRN` on channels viewed
//! as `[N·T, C/T, H, W]` (`Reshape`, `LRN`, `Reshape`: how `netc export`
//! writes a tower-local LRN) need their input split into T towers. The
//! layers that must be split are found backwards from those (ReLU, max
//! pooling, dropout pass the need to their input; a convolution or dense
//! layer meets it by becoming a tower layer over the whole input, its
//! filters or units divided among the towers) and forwards (ReLU, pooling
//! and dropout of a split value are split). Split layers go in `towers T`
//! blocks; whole layers read a split one through `across(…)`.
//!
//! LRN. ONNX's window `i − ⌊(m−1)/2⌋ ..= i + ⌈(m−1)/2⌉` is netc's
//! `i ± ⌊n/2⌋` for odd `m` (n = m), with alpha `alpha_onnx / m`; an even
//! `m` is not centred, so it is refused.
//!
//! Guarantees: the `.net` text is in canonical form (`syntax::fmt`) and
//! names its layers after the ONNX nodes where they are identifiers; the
//! weights are keyed as checkpoints key them (`layer/op.weight@tN`),
//! each tower's share of a split layer's filters or units under its tower.

use std::collections::HashMap;

use prost::Message;

use super::proto::{self, AttributeProto, ModelProto, NodeProto, TensorProto};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not an ONNX model: {0}")]
    Malformed(String),
    #[error("operator `{op}` (node `{node}`) has no netc layer")]
    Unsupported { op: String, node: String },
    #[error("operator `{op}` (node `{node}`): {reason}")]
    Attribute {
        op: String,
        node: String,
        reason: String,
    },
    #[error("the model {0}")]
    Graph(String),
    #[error("the imported network does not compile: {0}")]
    Compile(String),
}

/// The result of an import: canonical `.net` text and weights by checkpoint key.
pub struct Imported {
    pub source: String,
    pub weights: HashMap<String, Vec<f32>>,
    /// How many layers went into towers, and into how many towers.
    pub towers: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Conv {
        filters: u64,
        size: u64,
        stride: u64,
        pad: u64,
        group: u64,
    },
    Dense {
        units: u64,
    },
    Relu,
    Lrn {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
        /// Run on the channels viewed as this many towers (1: all channels).
        towers: u64,
    },
    MaxPool {
        size: u64,
        stride: u64,
    },
    Dropout {
        rate: f64,
    },
    Concat,
}

impl Kind {
    fn op(&self) -> &'static str {
        match self {
            Kind::Conv { .. } => "conv",
            Kind::Dense { .. } => "dense",
            Kind::Relu => "relu",
            Kind::Lrn { .. } => "lrn",
            Kind::MaxPool { .. } => "maxpool",
            Kind::Dropout { .. } => "dropout",
            Kind::Concat => "concat",
        }
    }
    /// Acts on each channel alone: a split input gives a split output.
    fn per_channel(&self) -> bool {
        matches!(
            self,
            Kind::Relu | Kind::MaxPool { .. } | Kind::Dropout { .. }
        )
    }
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    Image,
    Layer(usize),
    /// A layer's output viewed as `[N·T, C/T, H, W]`.
    TowerView(usize, u64),
}

struct Layer {
    kind: Kind,
    onnx_name: String,
    inputs: Vec<Src>,
    /// Output dims without the batch: `[C, H, W]` or `[U]`.
    dims: Vec<u64>,
    weight: Option<(Vec<u64>, Vec<f32>)>,
    bias: Option<Vec<f32>>,
    /// A `MatMul` whose bias an `Add` may still supply.
    open_bias: bool,
}

/// An initializer's or constant's dims and values.
type Const = (Vec<i64>, Vec<f64>);

struct Ctx {
    consts: HashMap<String, Const>,
    values: HashMap<String, Src>,
    layers: Vec<Layer>,
    image_dims: Vec<u64>,
    /// The value `Softmax` turned into probabilities: its input.
    softmax_of: HashMap<String, String>,
}

/// One entry of the operator table.
type Handler = fn(&mut Ctx, &NodeProto) -> Result<(), ImportError>;

/// ONNX operator -> what it becomes. A layer netc gains is one line here.
const OPS: &[(&str, Handler)] = &[
    ("Conv", conv),
    ("Gemm", gemm),
    ("MatMul", matmul),
    ("Add", add),
    ("Relu", relu),
    ("LRN", lrn),
    ("MaxPool", maxpool),
    ("Dropout", dropout),
    ("Identity", identity),
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Concat", concat),
    ("Softmax", softmax),
    ("Constant", constant),
];

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn int_attr(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}

fn float_attr(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map_or(default, |a| a.f)
}

/// An f32 attribute as the f64 its shortest decimal form reads as
/// (`0.1f32` is `0.1`, not `0.10000000149011612`).
fn short(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

fn ints_attr(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn bad(n: &NodeProto, reason: impl Into<String>) -> ImportError {
    ImportError::Attribute {
        op: n.op_type.clone(),
        node: n.name.clone(),
        reason: reason.into(),
    }
}

/// A tensor's dims and values as f64 (float, double, int32 and int64 tensors).
fn tensor_values(t: &TensorProto) -> Result<(Vec<i64>, Vec<f64>), String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(format!(
            "tensor `{}` is stored in an external file, which netc does not read",
            t.name
        ));
    }
    let n: i64 = t.dims.iter().product();
    let raw = &t.raw_data;
    let v: Vec<f64> = match t.data_type {
        proto::FLOAT if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        proto::FLOAT => t.float_data.iter().map(|&x| x as f64).collect(),
        proto::INT64 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64)
            .collect(),
        proto::INT64 => t.int64_data.iter().map(|&x| x as f64).collect(),
        6 if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        6 => t.int32_data.iter().map(|&x| x as f64).collect(),
        11 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        11 => t.double_data.clone(),
        d => {
            return Err(format!(
                "tensor `{}` has data type {d}, not a number type netc reads",
                t.name
            ));
        }
    };
    if t.dims.iter().any(|&d| d < 0) || v.len() as i64 != n {
        return Err(format!(
            "tensor `{}` holds {} values for dims {:?}",
            t.name,
            v.len(),
            t.dims
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("tensor `{}` holds {} at index {i}", t.name, v[i]));
    }
    Ok((t.dims.clone(), v))
}

impl Ctx {
    fn src(&self, n: &NodeProto, i: usize) -> Result<Src, ImportError> {
        let name = n
            .input
            .get(i)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(n, format!("has no input {i}")))?;
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| bad(n, format!("input `{name}` is not a value netc computes (a weight where a layer's input belongs, or produced by no node)")))
    }

    fn konst(&self, n: &NodeProto, i: usize) -> Result<Option<&Const>, ImportError> {
        match n.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self.consts.get(name).map(Some).ok_or_else(|| {
                bad(
                    n,
                    format!("input `{name}` must be an initializer or a constant"),
                )
            }),
        }
    }

    fn dims(&self, s: Src) -> Vec<u64> {
        match s {
            Src::Image => self.image_dims.clone(),
            Src::Layer(i) => self.layers[i].dims.clone(),
            Src::TowerView(i, t) => {
                let mut d = self.layers[i].dims.clone();
                d[0] /= t;
                d
            }
        }
    }

    fn out(&mut self, n: &NodeProto, s: Src) -> Result<(), ImportError> {
        let name = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
        self.values.insert(name.clone(), s);
        Ok(())
    }

    fn push(&mut self, n: &NodeProto, layer: Layer) -> Result<(), ImportError> {
        self.layers.push(layer);
        let i = self.layers.len() - 1;
        self.out(n, Src::Layer(i))
    }

    fn layer(&self, n: &NodeProto, kind: Kind, inputs: Vec<Src>, dims: Vec<u64>) -> Layer {
        Layer {
            kind,
            onnx_name: n.name.clone(),
            inputs,
            dims,
            weight: None,
            bias: None,
            open_bias: false,
        }
    }
}

/// A plain (not tower-viewed) source, for layers that read whole channels.
fn plain(n: &NodeProto, s: Src) -> Result<Src, ImportError> {
    match s {
        Src::TowerView(..) => Err(bad(
            n,
            "reads channels reshaped into towers; only LRN may (between two Reshapes)",
        )),
        s => Ok(s),
    }
}

/// Square kernel, equal strides and pads, no dilation: what netc expresses.
fn window(n: &NodeProto, what: &str) -> Result<(u64, u64, u64), ImportError> {
    if let Some(a) = attr(n, "auto_pad") {
        let s = String::from_utf8_lossy(&a.s);
        if s != "NOTSET" && s != "VALID" && !s.is_empty() {
            return Err(bad(n, format!("auto_pad {s} is not supported; give pads")));
        }
    }
    let k = ints_attr(n, "kernel_shape").ok_or_else(|| bad(n, "has no kernel_shape"))?;
    if k.len() != 2 || k[0] != k[1] || k[0] <= 0 {
        return Err(bad(
            n,
            format!("{what} kernel {k:?} is not square (netc's {what} `size` is one number)"),
        ));
    }
    let s = ints_attr(n, "strides").unwrap_or(vec![1, 1]);
    if s.len() != 2 || s[0] != s[1] || s[0] <= 0 {
        return Err(bad(
            n,
            format!("strides {s:?} differ (netc's `stride` is one number)"),
        ));
    }
    let p = ints_attr(n, "pads").unwrap_or(vec![0; 4]);
    if p.len() != 4 || p.iter().any(|&x| x != p[0]) || p[0] < 0 {
        return Err(bad(
            n,
            format!("pads {p:?} differ (netc's `pad` is one number on every side)"),
        ));
    }
    if let Some(d) = ints_attr(n, "dilations")
        && d.iter().any(|&x| x != 1)
    {
        return Err(bad(n, format!("dilations {d:?} are not 1")));
    }
    Ok((k[0] as u64, s[0] as u64, p[0] as u64))
}

fn out_side(h: u64, k: u64, s: u64, p: u64) -> Option<u64> {
    (h + 2 * p).checked_sub(k).map(|v| v / s + 1)
}

fn conv(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let (size, stride, pad) = window(n, "conv")?;
    let group = int_attr(n, "group", 1).max(1) as u64;
    let (wd, wv) = c
        .konst(n, 1)?
        .cloned()
        .ok_or_else(|| bad(n, "has no weight"))?;
    let xd = c.dims(x);
    if xd.len() != 3 || wd.len() != 4 {
        return Err(bad(n, "needs a C×H×W input and a 4-d weight"));
    }
    let (f, cin) = (wd[0] as u64, wd[1] as u64);
    if cin * group != xd[0]
        || wd[2] as u64 != size
        || wd[3] as u64 != size
        || !f.is_multiple_of(group)
    {
        return Err(bad(
            n,
            format!("weight {wd:?} does not fit a {group}-group convolution of {xd:?}"),
        ));
    }
    let bias = match c.konst(n, 2)? {
        Some((bd, bv)) if bd.iter().product::<i64>() as u64 == f => {
            bv.iter().map(|&v| v as f32).collect()
        }
        Some((bd, _)) => return Err(bad(n, format!("bias {bd:?} does not fit {f} filters"))),
        None => vec![0.0; f as usize],
    };
    let (Some(h), Some(w)) = (
        out_side(xd[1], size, stride, pad),
        out_side(xd[2], size, stride, pad),
    ) else {
        return Err(bad(
            n,
            format!("a {size}×{size} kernel does not fit {xd:?}"),
        ));
    };
    let kind = Kind::Conv {
        filters: f,
        size,
        stride,
        pad,
        group,
    };
    let mut l = c.layer(n, kind, vec![x], vec![f, h, w]);
    l.weight = Some((
        wd.iter().map(|&d| d as u64).collect(),
        wv.iter().map(|&v| v as f32).collect(),
    ));
    l.bias = Some(bias);
    c.push(n, l)
}

/// A dense layer `x·Wᵀ + b` from `W` (`units × in`) and `b`.
fn dense(
    c: &mut Ctx,
    n: &NodeProto,
    x: Src,
    w: Vec<f32>,
    units: u64,
    bias: Option<Vec<f32>>,
) -> Result<(), ImportError> {
    let inp: u64 = c.dims(x).iter().product();
    if w.len() as u64 != units * inp {
        return Err(bad(
            n,
            format!("a {units}-unit weight does not fit {inp} inputs"),
        ));
    }
    let mut l = c.layer(n, Kind::Dense { units }, vec![x], vec![units]);
    l.weight = Some((vec![units, inp], w));
    l.open_bias = bias.is_none();
    l.bias = Some(bias.unwrap_or_else(|| vec![0.0; units as usize]));
    c.push(n, l)
}

fn gemm(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    if int_attr(n, "transA", 0) != 0 {
        return Err(bad(n, "transA is not 0"));
    }
    let (alpha, beta) = (float_attr(n, "alpha", 1.0), float_attr(n, "beta", 1.0));
    let (wd, wv) = c.konst(n, 1)?.cloned().ok_or_else(|| bad(n, "has no B"))?;
    if wd.len() != 2 {
        return Err(bad(n, format!("B {wd:?} is not a matrix")));
    }
    let trans = int_attr(n, "transB", 0) != 0;
    let (units, inp) = if trans {
        (wd[0], wd[1])
    } else {
        (wd[1], wd[0])
    };
    let (units, inp) = (units as usize, inp as usize);
    let mut w = vec![0f32; units * inp];
    for u in 0..units {
        for i in 0..inp {
            let v = if trans {
                wv[u * inp + i]
            } else {
                wv[i * units + u]
            };
            w[u * inp + i] = (alpha as f64 * v) as f32;
        }
    }
    let bias = match c.konst(n, 2)? {
        Some((_, bv)) if bv.len() == units => {
            Some(bv.iter().map(|&v| (beta as f64 * v) as f32).collect())
        }
        Some((bd, _)) => return Err(bad(n, format!("C {bd:?} does not fit {units} units"))),
        None => None,
    };
    let bias = Some(bias.unwrap_or_else(|| vec![0.0; units]));
    dense(c, n, x, w, units as u64, bias)
}

fn matmul(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let (wd, wv) = c
        .konst(n, 1)?
        .cloned()
        .ok_or_else(|| bad(n, "has no weight"))?;
    if wd.len() != 2 {
        return Err(bad(n, format!("weight {wd:?} is not a matrix")));
    }
    let (inp, units) = (wd[0] as usize, wd[1] as usize);
    let mut w = vec![0f32; units * inp];
    for u in 0..units {
        for i in 0..inp {
            w[u * inp + i] = wv[i * units + u] as f32;
        }
    }
    dense(c, n, x, w, units as u64, None)
}

/// `Add` of a constant vector to a `MatMul`'s output: that layer's bias.
fn add(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let (a, b) = (n.input.first(), n.input.get(1));
    let (layer, k) = match (
        a.and_then(|a| c.values.get(a)),
        b.and_then(|b| c.consts.get(b)),
    ) {
        (Some(&Src::Layer(i)), Some(k)) => (i, k.clone()),
        _ => match (
            b.and_then(|b| c.values.get(b)),
            a.and_then(|a| c.consts.get(a)),
        ) {
            (Some(&Src::Layer(i)), Some(k)) => (i, k.clone()),
            _ => {
                return Err(ImportError::Unsupported {
                    op: "Add (other than a MatMul's bias)".into(),
                    node: n.name.clone(),
                });
            }
        },
    };
    let l = &mut c.layers[layer];
    let units = l.dims[0] as usize;
    if !l.open_bias || k.1.len() != units {
        return Err(ImportError::Unsupported {
            op: "Add (other than a MatMul's bias)".into(),
            node: n.name.clone(),
        });
    }
    l.bias = Some(k.1.iter().map(|&v| v as f32).collect());
    l.open_bias = false;
    c.out(n, Src::Layer(layer))
}

fn relu(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let d = c.dims(x);
    let l = c.layer(n, Kind::Relu, vec![x], d);
    c.push(n, l)
}

fn lrn(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = c.src(n, 0)?;
    let m = int_attr(n, "size", 0);
    if m <= 0 || m % 2 == 0 {
        return Err(bad(
            n,
            format!("size {m}: an even ONNX window is not centred on its channel, and netc's is"),
        ));
    }
    // Divided in f32 and read back at its shortest, so that an alpha netc
    // exported (`a·m` in f32) comes back as the `a` it was written as.
    let alpha: f64 = format!("{}", float_attr(n, "alpha", 1e-4) / m as f32)
        .parse()
        .unwrap_or(0.0);
    let (beta, k) = (
        short(float_attr(n, "beta", 0.75)),
        short(float_attr(n, "bias", 1.0)),
    );
    let (x, towers) = match x {
        Src::TowerView(i, t) => (Src::Layer(i), t),
        s => (s, 1),
    };
    let d = c.dims(x);
    if d.len() != 3 {
        return Err(bad(n, "needs a C×H×W input"));
    }
    let kind = Kind::Lrn {
        size: m as u64,
        alpha,
        beta,
        k,
        towers,
    };
    let l = c.layer(n, kind, vec![x], d);
    c.layers.push(l);
    let i = c.layers.len() - 1;
    // Its output is still viewed as towers until the Reshape back.
    c.out(
        n,
        if towers > 1 {
            Src::TowerView(i, towers)
        } else {
            Src::Layer(i)
        },
    )
}

fn maxpool(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let (size, stride, pad) = window(n, "maxpool")?;
    if pad != 0 {
        return Err(bad(n, "pads are not 0 (netc's maxpool has no padding)"));
    }
    if int_attr(n, "ceil_mode", 0) != 0 {
        return Err(bad(n, "ceil_mode is not 0"));
    }
    if n.output.len() > 1 {
        return Err(bad(n, "has an Indices output"));
    }
    let d = c.dims(x);
    let (Some(h), Some(w)) = (
        out_side(d[1], size, stride, 0),
        out_side(d[2], size, stride, 0),
    ) else {
        return Err(bad(n, format!("a {size}×{size} window does not fit {d:?}")));
    };
    let l = c.layer(n, Kind::MaxPool { size, stride }, vec![x], vec![d[0], h, w]);
    c.push(n, l)
}

fn dropout(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let rate = match c.konst(n, 1)? {
        Some((_, v)) if v.len() == 1 => v[0],
        Some(_) => return Err(bad(n, "ratio is not one number")),
        None => short(float_attr(n, "ratio", 0.5)),
    };
    if !(0.0..1.0).contains(&rate) {
        return Err(bad(n, format!("ratio {rate} is not in [0, 1)")));
    }
    let d = c.dims(x);
    let l = c.layer(n, Kind::Dropout { rate }, vec![x], d);
    c.push(n, l)
}

fn identity(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if let Some(k) = n.input.first().and_then(|i| c.consts.get(i)).cloned() {
        let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
        c.consts.insert(o.clone(), k);
        return Ok(());
    }
    let x = c.src(n, 0)?;
    c.out(n, x)
}

/// To a vector (`[N, C·H·W]`): netc's dense layer flattens its input itself.
fn flatten(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    if int_attr(n, "axis", 1) != 1 {
        return Err(bad(n, "axis is not 1"));
    }
    c.out(n, x)
}

/// To a vector (as [`flatten`]), or a tower-local LRN's views.
fn reshape(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = c.src(n, 0)?;
    let (_, shape) = c
        .konst(n, 1)?
        .cloned()
        .ok_or_else(|| bad(n, "has no shape"))?;
    let shape: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
    let base = match x {
        Src::TowerView(i, _) => Src::Layer(i),
        s => s,
    };
    let d = c.dims(base);
    let numel: u64 = d.iter().product();
    let batch_dim = |v: i64| v == -1 || v == 0;
    // [N, C·H·W]: a flatten.
    if shape.len() == 2 && batch_dim(shape[0]) && (shape[1] == -1 || shape[1] as u64 == numel)
        || shape.len() == 2 && shape[0] > 0 && shape[1] == -1
    {
        return c.out(n, plain(n, x)?);
    }
    // [-1, C/T, H, W] of a C×H×W value: its T towers' channels apart.
    if shape.len() == 4
        && d.len() == 3
        && shape[0] == -1
        && shape[2..] == [d[1] as i64, d[2] as i64]
    {
        let per = shape[1];
        if per > 0 && d[0].is_multiple_of(per as u64) {
            let t = d[0] / per as u64;
            let Src::Layer(i) = base else {
                return Err(bad(n, "reshapes the input image into towers"));
            };
            return c.out(n, if t == 1 { base } else { Src::TowerView(i, t) });
        }
        if per
            == d[0] as i64
                * match x {
                    Src::TowerView(_, t) => t as i64,
                    _ => 1,
                }
        {
            return c.out(n, base);
        }
    }
    // Back from the towers' view: the whole value.
    if let Src::TowerView(i, t) = x
        && shape.len() == 4
        && batch_dim(shape[0])
        && shape[1] as u64 == c.layers[i].dims[0]
        && t > 1
    {
        return c.out(n, Src::Layer(i));
    }
    Err(bad(
        n,
        format!("shape {shape:?} of a {d:?} value is neither a flatten nor a tower view"),
    ))
}

fn concat(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let ins: Vec<Src> = (0..n.input.len())
        .map(|i| c.src(n, i).and_then(|s| plain(n, s)))
        .collect::<Result<_, _>>()?;
    let dims: Vec<Vec<u64>> = ins.iter().map(|&s| c.dims(s)).collect();
    let axis = int_attr(n, "axis", 1);
    if axis != 1 && axis != -(dims[0].len() as i64 + 1) {
        return Err(bad(
            n,
            format!("axis {axis}: netc concatenates along channels (axis 1)"),
        ));
    }
    if dims
        .iter()
        .any(|d| d.len() != dims[0].len() || d[1..] != dims[0][1..])
    {
        return Err(bad(
            n,
            format!("inputs {dims:?} differ beyond the channels"),
        ));
    }
    let mut out = dims[0].clone();
    out[0] = dims.iter().map(|d| d[0]).sum();
    let l = c.layer(n, Kind::Concat, ins, out);
    c.push(n, l)
}

fn softmax(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let axis = int_attr(n, "axis", -1);
    if c.dims(x).len() != 1 || !(axis == 1 || axis == -1) {
        return Err(bad(
            n,
            "only a softmax over a vector of classes (the output) is supported",
        ));
    }
    let (i, o) = (
        n.input[0].clone(),
        n.output.first().cloned().unwrap_or_default(),
    );
    c.softmax_of.insert(o, i);
    Ok(())
}

fn constant(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let t = attr(n, "value")
        .and_then(|a| a.t.as_ref())
        .ok_or_else(|| bad(n, "has no tensor `value`"))?;
    let k = tensor_values(t).map_err(|e| bad(n, e))?;
    let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
    c.consts.insert(o.clone(), k);
    Ok(())
}

/// A netc identifier from an ONNX name (`conv1/conv` -> `conv1`), if it is one.
fn ident_of(name: &str) -> Option<String> {
    let head = name.split('/').next()?;
    let ok = !head.is_empty()
        && head
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    const RESERVED: &[&str] = &[
        "network", "input", "let", "towers", "across", "train", "class", "true", "false", "image",
        "label", "loss",
    ];
    (ok && !RESERVED.contains(&head)).then(|| head.to_string())
}

/// Reads `bytes` (an ONNX model) as a `.net` file and weights.
pub fn import(bytes: &[u8], origin: &str) -> Result<Imported, ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Malformed(e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Malformed("it has no graph".into()))?;
    if let Some(o) = model
        .opset_import
        .iter()
        .find(|o| !o.domain.is_empty() && o.domain != "ai.onnx")
        .filter(|_| {
            graph
                .node
                .iter()
                .any(|n| !n.domain.is_empty() && n.domain != "ai.onnx")
        })
    {
        return Err(ImportError::Graph(format!(
            "uses operators of domain `{}`",
            o.domain
        )));
    }
    let mut c = Ctx {
        consts: HashMap::new(),
        values: HashMap::new(),
        layers: Vec::new(),
        image_dims: Vec::new(),
        softmax_of: HashMap::new(),
    };
    for t in &graph.initializer {
        let v = tensor_values(t).map_err(ImportError::Graph)?;
        c.consts.insert(t.name.clone(), v);
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !c.consts.contains_key(&i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(ImportError::Graph(format!(
            "has {} inputs that are not initializers; netc networks take one image input",
            inputs.len()
        )));
    };
    let dims: Vec<i64> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(proto::DimValue::DimValue(v)) => v,
                    _ => -1,
                })
                .collect()
        })
        .unwrap_or_default();
    if dims.len() != 4 || dims[1..].iter().any(|&d| d <= 0) {
        return Err(ImportError::Graph(format!(
            "input `{}` has shape {dims:?}; netc takes N×C×H×W images with C, H and W fixed",
            input.name
        )));
    }
    c.image_dims = dims[1..].iter().map(|&d| d as u64).collect();
    c.values.insert(input.name.clone(), Src::Image);
    for n in &graph.node {
        if !n.domain.is_empty() && n.domain != "ai.onnx" {
            return Err(ImportError::Unsupported {
                op: format!("{}.{}", n.domain, n.op_type),
                node: n.name.clone(),
            });
        }
        let Some((_, h)) = OPS.iter().find(|(op, _)| *op == n.op_type) else {
            return Err(ImportError::Unsupported {
                op: n.op_type.clone(),
                node: n.name.clone(),
            });
        };
        h(&mut c, n)?;
    }
    // The logits: the output named `logits`, else the first, through a softmax.
    let out = graph
        .output
        .iter()
        .find(|o| o.name == "logits")
        .or_else(|| graph.output.first())
        .ok_or_else(|| ImportError::Graph("has no output".into()))?;
    let mut name = out.name.clone();
    if let Some(i) = c.softmax_of.get(&name) {
        name = i.clone();
    }
    let logits = match c.values.get(&name) {
        Some(&Src::Layer(i)) if c.layers[i].dims.len() == 1 => i,
        _ => {
            return Err(ImportError::Graph(format!(
                "output `{}` is not a vector of class scores computed by a layer",
                out.name
            )));
        }
    };
    let meta: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    write_net(&c, logits, &graph.name, &input.name, &meta, origin)
}

/// Which layers are split into towers, and into how many.
fn towers(c: &Ctx, logits: usize) -> Result<(u64, Vec<bool>), ImportError> {
    let mut t = 1;
    for l in &c.layers {
        let g = match l.kind {
            Kind::Conv { group, .. } => group,
            Kind::Lrn { towers, .. } => towers,
            _ => 1,
        };
        if g > 1 {
            if t > 1 && g != t {
                return Err(ImportError::Graph(format!(
                    "groups its layers in {t} and in {g}; netc's towers are one number"
                )));
            }
            t = g;
        }
    }
    let n = c.layers.len();
    let mut need = vec![false; n];
    let mut split = vec![false; n];
    if t == 1 {
        return Ok((1, split));
    }
    for (i, l) in c.layers.iter().enumerate() {
        if matches!(l.kind, Kind::Conv { group, .. } if group > 1)
            || matches!(l.kind, Kind::Lrn { towers, .. } if towers > 1)
        {
            need[i] = true;
        }
    }
    let what = |i: usize| format!("`{}` ({})", c.layers[i].onnx_name, c.layers[i].kind.op());
    for i in (0..n).rev() {
        if !need[i] {
            continue;
        }
        let l = &c.layers[i];
        let needs_input = match l.kind {
            Kind::Conv { group, filters, .. } => {
                if group == 1 && !filters.is_multiple_of(t) {
                    return Err(ImportError::Graph(format!(
                        "needs {} in {t} towers, but its {filters} filters do not divide",
                        what(i)
                    )));
                }
                group > 1
            }
            Kind::Dense { units } => {
                if !units.is_multiple_of(t) {
                    return Err(ImportError::Graph(format!(
                        "needs {} in {t} towers, but its {units} units do not divide",
                        what(i)
                    )));
                }
                false
            }
            Kind::Lrn { towers, .. } => towers > 1,
            ref k if k.per_channel() => true,
            _ => {
                return Err(ImportError::Graph(format!(
                    "needs {} split into {t} towers, which netc cannot express",
                    what(i)
                )));
            }
        };
        if needs_input {
            match l.inputs[0] {
                Src::Layer(j) => need[j] = true,
                _ => {
                    return Err(ImportError::Graph(format!(
                        "splits its input image into {t} groups at {}; netc's towers each read the whole image",
                        what(i)
                    )));
                }
            }
        }
    }
    for i in 0..n {
        let l = &c.layers[i];
        let from_split = matches!(l.inputs.first(), Some(Src::Layer(j)) if split[*j]);
        split[i] = need[i] || (l.kind.per_channel() && from_split);
    }
    if split[logits] {
        return Err(ImportError::Graph("computes its logits in towers".into()));
    }
    Ok((t, split))
}

/// The `.net` text and weights of the layers `c` read.
fn write_net(
    c: &Ctx,
    logits: usize,
    graph_name: &str,
    input_name: &str,
    meta: &HashMap<&str, &str>,
    origin: &str,
) -> Result<Imported, ImportError> {
    let (t, split) = towers(c, logits)?;
    let n = c.layers.len();
    // Consumers of each layer, to chain single-use layers into one binding.
    let mut users = vec![Vec::new(); n];
    for (i, l) in c.layers.iter().enumerate() {
        for s in &l.inputs {
            if let Src::Layer(j) = s {
                users[*j].push(i);
            }
        }
    }
    // Chains: a layer continues its input's binding when it is that
    // layer's only user and both sit alike (in towers or not), and the
    // chain starts at a conv, dense or concat... or any layer.
    let mut binding = vec![usize::MAX; n];
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let l = &c.layers[i];
        let cont = match l.inputs.as_slice() {
            [Src::Layer(j)] => {
                users[*j].len() == 1
                    && split[*j] == split[i]
                    && !matches!(
                        l.kind,
                        Kind::Conv { .. } | Kind::Dense { .. } | Kind::Concat
                    )
                    && *j != logits
                    && binding[*j] != usize::MAX
                    && chains[binding[*j]].last() == Some(j)
            }
            _ => false,
        };
        if cont {
            let b = binding[match l.inputs[0] {
                Src::Layer(j) => j,
                _ => unreachable!(),
            }];
            chains[b].push(i);
            binding[i] = b;
        } else {
            binding[i] = chains.len();
            chains.push(vec![i]);
        }
    }
    // Binding names: the ONNX node's where it is an identifier, else by kind.
    let mut names: Vec<String> = Vec::new();
    let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let input_ident = ident_of(input_name).unwrap_or_else(|| "image".into());
    used.insert(input_ident.clone());
    used.insert("label".into());
    used.insert("loss".into());
    for chain in &chains {
        let l = &c.layers[chain[0]];
        let kind = match l.kind {
            Kind::Conv { .. } => "conv",
            Kind::Dense { .. } => "fc",
            ref k => k.op(),
        };
        let mut name = ident_of(&l.onnx_name).filter(|s| !used.contains(s));
        while name.is_none() {
            let k = counts.entry(kind).or_insert(0);
            *k += 1;
            let cand = format!("{kind}{k}");
            if !used.contains(&cand) {
                name = Some(cand);
            }
        }
        let name = name.unwrap_or_default();
        used.insert(name.clone());
        names.push(name);
    }
    let num = |v: f64| crate::ir::op::num(v);
    let stage = |i: usize, with_src: bool| -> String {
        let l = &c.layers[i];
        let mut args: Vec<String> = Vec::new();
        if with_src {
            // A whole layer, or a split one over all channels (a group-1
            // conv, dense, concat, a cross-tower LRN), reads a split
            // layer's towers side by side.
            let whole_reader = !(l.kind.per_channel()
                || matches!(l.kind, Kind::Conv { group, .. } if group > 1)
                || matches!(l.kind, Kind::Lrn { towers, .. } if towers > 1));
            for s in &l.inputs {
                args.push(match s {
                    Src::Layer(j) if split[*j] && (!split[i] || whole_reader) => {
                        format!("across({})", names[binding[*j]])
                    }
                    Src::Layer(j) => names[binding[*j]].clone(),
                    Src::Image | Src::TowerView(..) => input_ident.clone(),
                });
            }
        }
        match &l.kind {
            Kind::Conv {
                filters,
                size,
                stride,
                pad,
                ..
            } => {
                args.push(format!("filters: {filters}"));
                args.push(format!("size: {size}"));
                if *stride != 1 {
                    args.push(format!("stride: {stride}"));
                }
                if *pad != 0 {
                    args.push(format!("pad: {pad}"));
                }
            }
            Kind::Dense { units } => args.push(format!("units: {units}")),
            Kind::Lrn {
                size,
                alpha,
                beta,
                k,
                ..
            } => {
                args.push(format!("size: {size}"));
                args.push(format!("alpha: {}", num(*alpha)));
                args.push(format!("beta: {}", num(*beta)));
                args.push(format!("k: {}", num(*k)));
            }
            Kind::MaxPool { size, stride } => {
                args.push(format!("size: {size}"));
                args.push(format!("stride: {stride}"));
            }
            Kind::Dropout { rate } => args.push(format!("rate: {}", num(*rate))),
            Kind::Relu | Kind::Concat => {}
        }
        if args.is_empty() {
            l.kind.op().to_string()
        } else {
            format!("{}({})", l.kind.op(), args.join(", "))
        }
    };
    let classes = c.layers[logits].dims[0];
    let d = &c.image_dims;
    let net_name = ident_of(graph_name).unwrap_or_else(|| "imported".into());
    let mut text = String::new();
    text.push_str(&format!("// Imported from the ONNX model `{origin}`.\n"));
    text.push_str(&format!("network {net_name} {{\n"));
    text.push_str(&format!(
        "  input {input_ident}: [{}]\n  input label: class({classes})\n",
        d.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    ));
    let mut k = 0;
    while k < chains.len() {
        let towered = split[chains[k][0]];
        let mut block = Vec::new();
        while k < chains.len() && split[chains[k][0]] == towered {
            let chain = &chains[k];
            let stages: Vec<String> = chain
                .iter()
                .enumerate()
                .map(|(s, &i)| stage(i, s == 0))
                .collect();
            block.push(format!("{} = {}", names[k], stages.join(" -> ")));
            k += 1;
        }
        if towered {
            text.push_str(&format!("  towers {t} {{\n"));
            for b in block {
                text.push_str(&format!("    {b}\n"));
            }
            text.push_str("  }\n");
        } else {
            for b in block {
                text.push_str(&format!("  {b}\n"));
            }
        }
    }
    text.push_str(&format!(
        "  loss = softmax_xent({}, label)\n}}\n",
        names[binding[logits]]
    ));
    text.push_str(&train_section(meta));
    let file = crate::syntax::parse(&text).map_err(|e| ImportError::Compile(e.to_string()))?;
    let source = crate::syntax::fmt::format(&file, &text);
    // Weights: `binding/op.weight@tN`, a split layer's filters or units
    // divided among the towers in order.
    let mut weights = HashMap::new();
    for (b, chain) in chains.iter().enumerate() {
        for &i in chain {
            let l = &c.layers[i];
            let (Some((wd, wv)), Some(bv)) = (&l.weight, &l.bias) else {
                continue;
            };
            let op = l.kind.op();
            let parts = if split[i] { t } else { 1 };
            let rows = wd[0] / parts;
            let per_row: u64 = wd[1..].iter().product();
            for p in 0..parts {
                let key = |role: &str| format!("{}/{op}.{role}@t{p}", names[b]);
                let (r0, r1) = ((p * rows) as usize, ((p + 1) * rows) as usize);
                weights.insert(
                    key("weight"),
                    wv[r0 * per_row as usize..r1 * per_row as usize].to_vec(),
                );
                weights.insert(key("bias"), bv[r0..r1].to_vec());
            }
        }
    }
    Ok(Imported {
        source,
        weights,
        towers: t,
    })
}

/// A `train { data { … } }` section from the `netc.prep.*` metadata
/// `netc export` writes (nothing without it).
fn train_section(meta: &HashMap<&str, &str>) -> String {
    let mut s = Vec::new();
    if let Some(v) = meta.get("netc.prep.rescale") {
        s.push(format!("rescale: {v}"));
    }
    if let Some(v) = meta.get("netc.prep.pad") {
        s.push(format!("pad: {v}"));
    }
    if let Some(v) = meta.get("netc.prep.crop") {
        s.push(format!("crop: {v}"));
    }
    if let Some(v) = meta.get("netc.prep.mean") {
        s.push(format!("mean: {}", *v != "none"));
    }
    if let Some(v) = meta.get("netc.prep.scale") {
        s.push(format!("scale: {v}"));
    }
    if let Some(v) = meta.get("netc.prep.test_crop") {
        s.push(format!("test: {v}"));
    }
    let ok = s.iter().all(|l| {
        l.split(": ").nth(1).is_some_and(|v| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-e+".contains(c))
        })
    });
    if s.is_empty() || !ok {
        return String::new();
    }
    format!(
        "\ntrain {{\n  data {{\n    {}\n  }}\n}}\n",
        s.join("\n    ")
    )
}
