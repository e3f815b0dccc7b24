//! An ONNX model as a `.net` file and its weights: what `netc import`
//! reads.
//!
//! Assumes nothing of the bytes: a malformed file, a missing initializer,
//! an attribute netc cannot express or an operator it does not have is an
//! [`ImportError`] naming the operator and the node. Each ONNX operator is
//! one entry of [`OPS`], a table from `op_type` to the function that
//! turns its node into a netc layer (or into nothing: `Identity`, a
//! `Flatten` or `Reshape` to a vector that a dense layer reads, since it
//! flattens its input itself, `Softmax` at the output). `Add` of two
//! layers' outputs and `Sum` are `add`; `BatchNormalization` (evaluation
//! mode) is `batchnorm` with the model's running statistics.
//!
//! Towers. A grouped `Conv` (`group` = T) and an `LRN` on channels viewed
//! as `[N·T, C/T, H, W]` (`Reshape`, `LRN`, `Reshape`: how `netc export`
//! writes a tower-local LRN) need their input split into T towers. The
//! layers that must be split are found backwards from those (the
//! per-channel layers, activations, poolings, batchnorm, dropout, pass the
//! need to their input, `add` to all its inputs; a convolution or dense
//! layer meets it by becoming a tower layer over the whole input, its
//! filters or units divided among the towers) and forwards (a per-channel
//! layer of a split value is split, an `add` of split values). Split
//! layers go in `towers T` blocks; whole layers read a split one through
//! `across(…)`. Where the layers around a grouped convolution cannot be
//! split so (a cross-channel LRN before it, groups of different counts,
//! more than [`MAX_TOWERS`]), and no LRN needs towers, no layer is split
//! and each grouped convolution keeps its `groups`; so too in a model
//! `netc export` wrote without `netc.towers` in its metadata (a network
//! of one tower, whose groups are its convolutions' own).
//!
//! LRN. ONNX's window `i − ⌊(m−1)/2⌋ ..= i + ⌈(m−1)/2⌉` is netc's
//! `i ± ⌊n/2⌋` for odd `m` (n = m), with alpha `alpha_onnx / m`; an even
//! `m` is not centred, so it is refused.
//!
//! Folding. A node whose inputs are all constants or shapes is evaluated
//! at import ([`fold`]: `Cast`, `Slice`, `Unsqueeze`, `Squeeze`,
//! `ConstantOfShape`, `Constant`, `Gather`, `Concat`, `Reshape`,
//! `Transpose`, arithmetic, `Equal`), the batch of a dynamic batch axis a
//! symbol; an `If` whose condition folds is the branch it takes.
//!
//! PyTorch's LRN. `local_response_norm` exports as `x·x`, an unsqueeze to
//! `[N, 1, C, H, W]`, a zero `Pad` along C, an `AveragePool` of
//! `[size, 1, 1]`, a squeeze back, `·alpha`, `+k`, `^beta` and `x /` that:
//! the chain is followed value by value ([`LrnPart`]) and becomes one
//! `lrn` with netc's alpha `alpha_torch / size` (the average divides the
//! sum by `size`); a node that breaks the chain (an even, uncentred
//! window, a non-scalar alpha, another numerator) is refused with what
//! broke it.
//!
//! Guarantees: the `.net` text is in canonical form (`syntax::fmt`) and
//! names its layers after the ONNX nodes where their names make
//! identifiers (the first part of the path, else the whole path); the
//! weights are keyed as checkpoints key them (`layer/op.weight@tN`),
//! each tower's share of a split layer's filters or units under its tower.

use std::collections::HashMap;

use prost::Message;

use super::fold;
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

/// Height and width of a kernel, stride or padding.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Hw {
    h: u64,
    w: u64,
}

impl Hw {
    /// As a `.net` argument: one number when square, `[h, w]` otherwise.
    fn arg(self) -> String {
        if self.h == self.w {
            self.h.to_string()
        } else {
            format!("[{}, {}]", self.h, self.w)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Conv {
        filters: u64,
        size: Hw,
        stride: Hw,
        pad: Hw,
        dilation: u64,
        /// ONNX's `group`: towers, or the conv's own `groups` (see [`towers`]).
        group: u64,
        bias: bool,
    },
    Dense {
        units: u64,
    },
    Relu,
    Tanh,
    Sigmoid,
    LeakyRelu {
        slope: f64,
    },
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
        pad: u64,
    },
    AvgPool {
        size: u64,
        stride: u64,
        pad: u64,
    },
    GlobalAvgPool,
    BatchNorm {
        momentum: f64,
        eps: f64,
    },
    Dropout {
        rate: f64,
    },
    Flatten,
    Concat,
    Sum,
}

impl Kind {
    fn op(&self) -> &'static str {
        match self {
            Kind::Conv { .. } => "conv",
            Kind::Dense { .. } => "dense",
            Kind::Relu => "relu",
            Kind::Tanh => "tanh",
            Kind::Sigmoid => "sigmoid",
            Kind::LeakyRelu { .. } => "leaky_relu",
            Kind::Lrn { .. } => "lrn",
            Kind::MaxPool { .. } => "maxpool",
            Kind::AvgPool { .. } => "avgpool",
            Kind::GlobalAvgPool => "global_avgpool",
            Kind::BatchNorm { .. } => "batchnorm",
            Kind::Dropout { .. } => "dropout",
            Kind::Flatten => "flatten",
            Kind::Concat => "concat",
            Kind::Sum => "add",
        }
    }
    /// Acts on each channel alone: a split input gives a split output.
    fn per_channel(&self) -> bool {
        matches!(
            self,
            Kind::Relu
                | Kind::Tanh
                | Kind::Sigmoid
                | Kind::LeakyRelu { .. }
                | Kind::MaxPool { .. }
                | Kind::AvgPool { .. }
                | Kind::GlobalAvgPool
                | Kind::BatchNorm { .. }
                | Kind::Dropout { .. }
                | Kind::Flatten
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
    /// A batchnorm's running mean and variance.
    stats: Option<(Vec<f32>, Vec<f32>)>,
    /// A `MatMul` whose bias an `Add` may still supply.
    open_bias: bool,
}

/// An initializer's or constant's dims, values and ONNX element type.
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<i64>,
    values: Vec<f64>,
    dtype: i32,
}

/// The most elements one tensor, or one image's value, may hold.
const MAX_ELEMENTS: u64 = 1 << 31;

/// The largest kernel, stride, padding or dilation netc reads.
const MAX_WINDOW: i64 = 1 << 16;

/// Longest a name from the model is shown in a message.
const MAX_SHOWN: usize = 80;

/// A name from the model as a message shows it: control and
/// direction-changing characters escaped, at most [`MAX_SHOWN`]
/// characters, an ellipsis where it was cut.
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (k, ch) in s.chars().enumerate() {
        if k == MAX_SHOWN {
            out.push('…');
            break;
        }
        let hidden = ch.is_control()
            || matches!(ch, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if hidden {
            out.extend(ch.escape_unicode());
        } else {
            out.push(ch);
        }
    }
    out
}

/// A list (dims, pads, a shape) as a message shows it: the first few
/// entries and how many there are in all.
fn list<T: std::fmt::Debug>(v: &[T]) -> String {
    const SHOW: usize = 8;
    if v.len() <= SHOW {
        return format!("{v:?}");
    }
    let head: Vec<String> = v[..SHOW].iter().map(|x| format!("{x:?}")).collect();
    format!("[{}, … ({} in all)]", head.join(", "), v.len())
}

/// An ONNX element type's name.
fn dtype_name(d: i32) -> String {
    let name = match d {
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BFLOAT16",
        _ => return format!("type {d}"),
    };
    name.into()
}

struct Ctx {
    consts: HashMap<String, Const>,
    values: HashMap<String, Src>,
    layers: Vec<Layer>,
    image_dims: Vec<u64>,
    /// The value `Softmax` turned into probabilities: its input.
    softmax_of: HashMap<String, String>,
    /// Integers computed from shapes (`Shape`, `Gather`, `Unsqueeze`,
    /// `Concat` of them): `None` is the batch size.
    ints: HashMap<String, Ints>,
    /// The batch size where the input fixes it.
    batch: Option<u64>,
    /// The ONNX operator set the model imports.
    opset: i64,
    /// The model's folder, where its external data lies.
    dir: Option<std::path::PathBuf>,
    /// Values on the way through PyTorch's decomposed LocalResponseNorm.
    lrn: HashMap<String, LrnPart>,
    /// Values folded so far, all nodes together (bounded: [`MAX_FOLDED_TOTAL`]).
    folded: usize,
}

/// A shape-derived integer vector (or scalar); `None` is the batch size.
#[derive(Clone, Debug)]
struct Ints {
    v: Vec<Option<i64>>,
    scalar: bool,
}

/// One entry of the operator table.
type Handler = fn(&mut Ctx, &NodeProto) -> Result<(), ImportError>;

/// ONNX operator -> what it becomes. A layer netc gains is one line here.
const OPS: &[(&str, Handler)] = &[
    ("Conv", conv),
    ("Gemm", gemm),
    ("MatMul", matmul),
    ("Add", add),
    ("Sum", sum),
    ("Relu", relu),
    ("Tanh", tanh),
    ("Sigmoid", sigmoid),
    ("LeakyRelu", leaky_relu),
    ("LRN", lrn),
    ("MaxPool", maxpool),
    ("AveragePool", avgpool),
    ("GlobalAveragePool", global_avgpool),
    ("BatchNormalization", batchnorm),
    ("Dropout", dropout),
    ("Identity", identity),
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Concat", concat),
    ("Softmax", softmax),
    ("Constant", constant),
    ("ReduceMean", reduce_mean),
    ("Shape", shape),
    ("Gather", fold_only),
    ("Unsqueeze", fold_only),
    ("Squeeze", fold_only),
    ("Cast", fold_only),
    ("Slice", fold_only),
    ("ConstantOfShape", fold_only),
    ("Transpose", fold_only),
    ("Sub", fold_only),
    ("Neg", fold_only),
    ("Sqrt", fold_only),
    ("Equal", fold_only),
    ("Mul", mul),
    ("Pow", pow),
    ("Div", div),
    ("Pad", fold_only),
    ("Clip", clip),
];

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// The attribute `name` where it has the type `ty` (an error where it has another).
fn typed<'a>(
    n: &'a NodeProto,
    name: &str,
    ty: i32,
    what: &str,
) -> Result<Option<&'a AttributeProto>, ImportError> {
    match attr(n, name) {
        Some(a) if a.r#type != ty => Err(bad(
            n,
            format!(
                "attribute `{name}` is not {what} (attribute type {})",
                a.r#type
            ),
        )),
        a => Ok(a),
    }
}

fn int_attr(n: &NodeProto, name: &str, default: i64) -> Result<i64, ImportError> {
    Ok(typed(n, name, proto::attr_type::INT, "an integer")?.map_or(default, |a| a.i))
}

fn float_attr(n: &NodeProto, name: &str, default: f32) -> Result<f32, ImportError> {
    Ok(typed(n, name, proto::attr_type::FLOAT, "a float")?.map_or(default, |a| a.f))
}

/// An f32 attribute as the f64 its shortest decimal form reads as
/// (`0.1f32` is `0.1`, not `0.10000000149011612`).
fn short(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

/// A value computed from f32 attributes, to the 7 significant digits an
/// f32 holds: so that what netc exported (`alpha·m`, `1 − momentum`) comes
/// back as the number it was written as (1e-4, 0.1), not 1.00000005e-4.
fn f32_digits(x: f64) -> f64 {
    format!("{x:.6e}").parse().unwrap_or(x)
}

fn ints_attr(n: &NodeProto, name: &str) -> Result<Option<Vec<i64>>, ImportError> {
    Ok(typed(n, name, proto::attr_type::INTS, "a list of integers")?.map(|a| a.ints.clone()))
}

/// An error of node `n` (its operator and name shown bounded).
fn bad(n: &NodeProto, reason: impl Into<String>) -> ImportError {
    ImportError::Attribute {
        op: shown(&n.op_type),
        node: shown(&n.name),
        reason: reason.into(),
    }
}

/// Node `n`'s operator (or `op`, a description of it) has no netc layer.
fn unsupported(op: &str, n: &NodeProto) -> ImportError {
    ImportError::Unsupported {
        op: shown(op),
        node: shown(&n.name),
    }
}

/// The bytes of a tensor stored in a file in `dir` (its external data).
fn external_data(t: &TensorProto, dir: &std::path::Path, want: u64) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    use std::path::Component;
    let name = shown(&t.name);
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location = entry("location")
        .ok_or_else(|| format!("tensor `{name}` has external data without a location"))?;
    let file = shown(location);
    let rel = std::path::Path::new(location);
    if location.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "tensor `{name}`: external data file `{file}` is not a path inside the model's folder"
        ));
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!(
                        "tensor `{name}`: external data {key} `{}` is not a number",
                        shown(v)
                    )
                })
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let cannot = |e: std::io::Error| format!("tensor `{name}`: cannot read `{file}`: {e}");
    let path = dir.join(rel);
    let (inside, base) = (
        path.canonicalize().map_err(cannot)?,
        dir.canonicalize().map_err(cannot)?,
    );
    if !inside.starts_with(&base) {
        return Err(format!(
            "tensor `{name}`: external data file `{file}` lies outside the model's folder"
        ));
    }
    let mut f = std::fs::File::open(&inside).map_err(cannot)?;
    let size = f.metadata().map_err(cannot)?.len();
    let length = length.unwrap_or(want);
    if length != want {
        return Err(format!(
            "tensor `{name}`: external data of {length} bytes in `{file}` for {want} bytes of values"
        ));
    }
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!(
            "tensor `{name}`: bytes {offset}..+{length} lie outside `{file}` ({size} bytes)"
        ));
    }
    let mut bytes = vec![0u8; length as usize];
    f.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    f.read_exact(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// A tensor's dims and values as f64 (float, double, int32 and int64
/// tensors), checked: dims non-negative with a product that fits
/// [`MAX_ELEMENTS`], exactly that many values (a `raw_data` of exactly
/// that many bytes), all finite.
fn tensor_values(t: &TensorProto, dir: Option<&std::path::Path>) -> Result<Const, String> {
    let name = shown(&t.name);
    let mut n: u64 = 1;
    for &d in &t.dims {
        n = u64::try_from(d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "tensor `{name}` has dims {} (negative, or more than {MAX_ELEMENTS} values)",
                    list(&t.dims)
                )
            })?;
    }
    if t.dims.iter().any(|&d| d as u64 > MAX_ELEMENTS) {
        return Err(format!(
            "tensor `{name}` has a dimension above {MAX_ELEMENTS} in {}",
            list(&t.dims)
        ));
    }
    let size = match t.data_type {
        proto::FLOAT | 6 => 4,
        proto::INT64 | 11 => 8,
        d => {
            return Err(format!(
                "tensor `{name}` has data type {}, not a number type netc reads",
                dtype_name(d)
            ));
        }
    };
    let external;
    let raw: &[u8] = if t.data_location == 1 || !t.external_data.is_empty() {
        let Some(dir) = dir else {
            return Err(format!(
                "tensor `{name}` is stored in an external file, which netc reads only beside a model file"
            ));
        };
        if !t.raw_data.is_empty() {
            return Err(format!(
                "tensor `{name}` has both raw_data and external data"
            ));
        }
        external = external_data(t, dir, n * size)?;
        &external
    } else {
        &t.raw_data
    };
    let typed_len = match t.data_type {
        proto::FLOAT => t.float_data.len(),
        6 => t.int32_data.len(),
        proto::INT64 => t.int64_data.len(),
        _ => t.double_data.len(),
    };
    if !raw.is_empty() && typed_len != 0 {
        return Err(format!(
            "tensor `{name}` has both raw_data and typed values"
        ));
    }
    if !raw.is_empty() && raw.len() as u64 != n * size {
        return Err(format!(
            "tensor `{name}` has {} bytes of raw_data for dims {} ({} values of {size} bytes)",
            raw.len(),
            list(&t.dims),
            n
        ));
    }
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
        _ if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        _ => t.double_data.clone(),
    };
    if v.len() as u64 != n {
        return Err(format!(
            "tensor `{name}` holds {} values for dims {}",
            v.len(),
            list(&t.dims)
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("tensor `{name}` holds {} at index {i}", v[i]));
    }
    Ok(Const {
        dims: t.dims.clone(),
        values: v,
        dtype: t.data_type,
    })
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
            .ok_or_else(|| bad(n, format!("input `{}` is not a value netc computes (a weight where a layer's input belongs, or produced by no node)", shown(name))))
    }

    fn konst(&self, n: &NodeProto, i: usize) -> Result<Option<&Const>, ImportError> {
        match n.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self.consts.get(name).map(Some).ok_or_else(|| {
                bad(
                    n,
                    format!(
                        "input `{}` must be an initializer or a constant",
                        shown(name)
                    ),
                )
            }),
        }
    }

    /// Input `i` as float weights (`what`): dims and values, `None` where
    /// the input is left out. A FLOAT tensor without an empty dimension.
    #[allow(clippy::type_complexity)]
    fn weights(
        &self,
        n: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<(Vec<u64>, Vec<f64>)>, ImportError> {
        let Some(k) = self.konst(n, i)? else {
            return Ok(None);
        };
        if k.dtype != proto::FLOAT {
            return Err(bad(
                n,
                format!(
                    "{what} `{}` has data type {}; netc reads FLOAT weights",
                    shown(&n.input[i]),
                    dtype_name(k.dtype)
                ),
            ));
        }
        if k.dims.contains(&0) {
            return Err(bad(
                n,
                format!(
                    "{what} `{}` is empty (dims {})",
                    shown(&n.input[i]),
                    list(&k.dims)
                ),
            ));
        }
        Ok(Some((
            k.dims.iter().map(|&d| d as u64).collect(),
            k.values.clone(),
        )))
    }

    /// Input `i` as INT64 values (`what`), `None` where it is left out.
    fn int64s(&self, n: &NodeProto, i: usize, what: &str) -> Result<Option<Vec<i64>>, ImportError> {
        let Some(k) = self.konst(n, i)? else {
            return Ok(None);
        };
        if k.dtype != proto::INT64 && k.dtype != 6 {
            return Err(bad(
                n,
                format!(
                    "{what} `{}` has data type {}, not INT64",
                    shown(&n.input[i]),
                    dtype_name(k.dtype)
                ),
            ));
        }
        Ok(Some(k.values.iter().map(|&v| v as i64).collect()))
    }

    /// Input `i` as integers: computed from a shape, or an INT64 constant.
    fn ints_in(&self, n: &NodeProto, i: usize) -> Result<Ints, ImportError> {
        if let Some(k) = n.input.get(i).and_then(|s| self.ints.get(s)) {
            return Ok(k.clone());
        }
        let name = n.input.get(i).map_or("", String::as_str);
        if self.values.contains_key(name) {
            return Err(bad(
                n,
                format!(
                    "input `{}` is a layer's output; netc folds {} only of shapes and constants",
                    shown(name),
                    shown(&n.op_type)
                ),
            ));
        }
        let v = self
            .int64s(n, i, "input")?
            .ok_or_else(|| bad(n, format!("has no input {i}")))?;
        let scalar = self.konst(n, i)?.is_some_and(|k| k.dims.is_empty());
        Ok(Ints {
            v: v.into_iter().map(Some).collect(),
            scalar,
        })
    }

    fn ints_out(&mut self, n: &NodeProto, k: Ints) -> Result<(), ImportError> {
        let name = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
        if k.v.len() > 64 {
            return Err(bad(n, "computes more than 64 integers"));
        }
        self.ints.insert(name.clone(), k);
        Ok(())
    }

    fn dims(&self, s: Src) -> Vec<u64> {
        match s {
            Src::Image => self.image_dims.clone(),
            Src::Layer(i) => self.layers[i].dims.clone(),
            Src::TowerView(i, t) => {
                let mut d = self.layers[i].dims.clone();
                if let Some(c) = d.first_mut() {
                    *c /= t.max(1);
                }
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
        let size = layer
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&s| s <= MAX_ELEMENTS);
        if layer.dims.is_empty() || layer.dims.contains(&0) || size.is_none() {
            return Err(bad(
                n,
                format!(
                    "its output {} is empty or holds more than {MAX_ELEMENTS} values",
                    list(&layer.dims)
                ),
            ));
        }
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
            stats: None,
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

/// A kernel's window: size, stride and padding by axis, and dilation.
struct Window {
    size: Hw,
    stride: Hw,
    pad: Hw,
    dilation: u64,
}

/// Kernel, strides, the same padding before and after on each axis, and
/// one dilation for both axes: what netc's `conv` expresses.
fn window(n: &NodeProto) -> Result<Window, ImportError> {
    if let Some(a) = attr(n, "auto_pad") {
        let s = String::from_utf8_lossy(&a.s);
        if s != "NOTSET" && s != "VALID" && !s.is_empty() {
            return Err(bad(
                n,
                format!("auto_pad {} is not supported; give pads", shown(&s)),
            ));
        }
    }
    let k = ints_attr(n, "kernel_shape")?.ok_or_else(|| bad(n, "has no kernel_shape"))?;
    for (what, v) in [
        ("kernel_shape", Some(&k)),
        ("strides", ints_attr(n, "strides")?.as_ref()),
        ("pads", ints_attr(n, "pads")?.as_ref()),
        ("dilations", ints_attr(n, "dilations")?.as_ref()),
    ] {
        if let Some(v) = v
            && (v.len() > 4 || v.iter().any(|&x| !(0..=MAX_WINDOW).contains(&x)))
        {
            return Err(bad(
                n,
                format!("{what} {} are not 2-d values in 0..={MAX_WINDOW}", list(v)),
            ));
        }
    }
    if k.len() != 2 || k.iter().any(|&v| v <= 0) {
        return Err(bad(n, format!("kernel {} is not a 2-d kernel", list(&k))));
    }
    let s = ints_attr(n, "strides")?.unwrap_or(vec![1, 1]);
    if s.len() != 2 || s.iter().any(|&v| v <= 0) {
        return Err(bad(
            n,
            format!("strides {} are not two positive numbers", list(&s)),
        ));
    }
    let p = ints_attr(n, "pads")?.unwrap_or(vec![0; 4]);
    if p.len() != 4 || p[0] != p[2] || p[1] != p[3] || p.iter().any(|&x| x < 0) {
        return Err(bad(
            n,
            format!(
                "pads {} differ before and after (netc pads each side of an axis alike)",
                list(&p)
            ),
        ));
    }
    let d = ints_attr(n, "dilations")?.unwrap_or(vec![1, 1]);
    if d.len() != 2 || d[0] != d[1] || d[0] <= 0 {
        return Err(bad(
            n,
            format!(
                "dilations {} differ (netc's `dilation` is one number)",
                list(&d)
            ),
        ));
    }
    let hw = |v: &[i64]| Hw {
        h: v[0] as u64,
        w: v[1] as u64,
    };
    Ok(Window {
        size: hw(&k),
        stride: hw(&s),
        pad: hw(&p),
        dilation: d[0] as u64,
    })
}

/// A pooling window: square, equal strides and pads (netc's pooling
/// `size`, `stride` and `pad` are one number each), and its output dims.
fn pool_window(
    c: &Ctx,
    n: &NodeProto,
    x: Src,
    what: &str,
) -> Result<(u64, u64, u64, Vec<u64>), ImportError> {
    let w = window(n)?;
    if w.size.h != w.size.w {
        return Err(bad(
            n,
            format!(
                "{what} kernel {:?} is not square (netc's {what} `size` is one number)",
                [w.size.h, w.size.w]
            ),
        ));
    }
    if w.stride.h != w.stride.w || w.pad.h != w.pad.w || w.dilation != 1 {
        return Err(bad(
            n,
            format!("{what} strides, pads or dilations differ by axis (netc's are one number)"),
        ));
    }
    if n.output.len() > 1 {
        return Err(bad(n, "has an Indices output"));
    }
    let (size, stride, pad) = (w.size.h, w.stride.h, w.pad.h);
    if pad.saturating_mul(2) > size {
        return Err(bad(
            n,
            format!(
                "pads {pad} are more than half the {size}-wide window (netc's {what} pads at most half a window)"
            ),
        ));
    }
    let d = c.dims(x);
    if d.len() != 3 {
        return Err(bad(n, "needs a C×H×W input"));
    }
    // Ceil mode is floor mode where every window ends on the input's edge.
    if int_attr(n, "ceil_mode", 0)? != 0
        && d[1..].iter().any(|&s| {
            (s + 2 * pad)
                .checked_sub(size)
                .is_none_or(|r| !r.is_multiple_of(stride))
        })
    {
        return Err(bad(
            n,
            format!(
                "ceil_mode 1 gives {what} of {d:?} a larger output than netc's (which rounds down); netc reads ceil_mode 1 only where both agree"
            ),
        ));
    }
    let (Some(h), Some(wd)) = (
        out_side(d[1], size, stride, pad, 1),
        out_side(d[2], size, stride, pad, 1),
    ) else {
        return Err(bad(n, format!("a {size}×{size} window does not fit {d:?}")));
    };
    Ok((size, stride, pad, vec![d[0], h, wd]))
}

fn out_side(h: u64, k: u64, s: u64, p: u64, dilation: u64) -> Option<u64> {
    let span = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    h.checked_add(p.checked_mul(2)?)?
        .checked_sub(span)
        .map(|v| v / s + 1)
}

fn conv(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let win = window(n)?;
    let group = int_attr(n, "group", 1)?;
    if group < 1 {
        return Err(bad(n, format!("group {group} is not a positive number")));
    }
    let group = group as u64;
    let (wd, wv) = c
        .weights(n, 1, "weight")?
        .ok_or_else(|| bad(n, "has no weight"))?;
    let xd = c.dims(x);
    if xd.len() != 3 || wd.len() != 4 {
        return Err(bad(n, "needs a C×H×W input and a 4-d weight"));
    }
    let (f, cin) = (wd[0], wd[1]);
    if cin.checked_mul(group) != Some(xd[0])
        || wd[2] != win.size.h
        || wd[3] != win.size.w
        || !f.is_multiple_of(group)
    {
        return Err(bad(
            n,
            format!(
                "weight {} does not fit a {group}-group convolution of {xd:?} (group must divide the input channels and the filters)",
                list(&wd)
            ),
        ));
    }
    let bias = match c.weights(n, 2, "bias")? {
        Some((bd, bv)) if bv.len() as u64 == f && bd.len() == 1 => {
            Some(bv.iter().map(|&v| v as f32).collect())
        }
        Some((bd, _)) => {
            return Err(bad(
                n,
                format!("bias {} does not fit {f} filters", list(&bd)),
            ));
        }
        None => None,
    };
    let (Some(h), Some(w)) = (
        out_side(xd[1], win.size.h, win.stride.h, win.pad.h, win.dilation),
        out_side(xd[2], win.size.w, win.stride.w, win.pad.w, win.dilation),
    ) else {
        return Err(bad(
            n,
            format!("a {}×{} kernel does not fit {xd:?}", win.size.h, win.size.w),
        ));
    };
    let kind = Kind::Conv {
        filters: f,
        size: win.size,
        stride: win.stride,
        pad: win.pad,
        dilation: win.dilation,
        group,
        bias: bias.is_some(),
    };
    let mut l = c.layer(n, kind, vec![x], vec![f, h, w]);
    l.weight = Some((wd, wv.iter().map(|&v| v as f32).collect()));
    l.bias = bias;
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
    // netc's dense layer flattens its input itself.
    let x = match x {
        Src::Layer(i) if c.layers[i].kind == Kind::Flatten => c.layers[i].inputs[0],
        x => x,
    };
    let inp: u64 = c.dims(x).iter().product();
    if units.checked_mul(inp) != Some(w.len() as u64) {
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
    if int_attr(n, "transA", 0)? != 0 {
        return Err(bad(n, "transA is not 0"));
    }
    let (alpha, beta) = (float_attr(n, "alpha", 1.0)?, float_attr(n, "beta", 1.0)?);
    if !alpha.is_finite() || !beta.is_finite() {
        return Err(bad(
            n,
            format!("alpha {alpha} or beta {beta} is not finite"),
        ));
    }
    let (wd, wv) = c.weights(n, 1, "B")?.ok_or_else(|| bad(n, "has no B"))?;
    if wd.len() != 2 {
        return Err(bad(n, format!("B {} is not a matrix", list(&wd))));
    }
    let trans = int_attr(n, "transB", 0)? != 0;
    let (units, inp) = if trans {
        (wd[0], wd[1])
    } else {
        (wd[1], wd[0])
    };
    let (units, inp) = (units as usize, inp as usize);
    if units.checked_mul(inp) != Some(wv.len()) {
        return Err(bad(n, format!("B {} does not hold its values", list(&wd))));
    }
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
    let bias = match c.weights(n, 2, "C")? {
        Some((bd, bv)) if bv.len() == units && bd.len() <= 2 => {
            Some(bv.iter().map(|&v| (beta as f64 * v) as f32).collect())
        }
        Some((bd, _)) => {
            return Err(bad(
                n,
                format!("C {} does not fit {units} units", list(&bd)),
            ));
        }
        None => None,
    };
    let bias = Some(bias.unwrap_or_else(|| vec![0.0; units]));
    dense(c, n, x, w, units as u64, bias)
}

fn matmul(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let (wd, wv) = c
        .weights(n, 1, "weight")?
        .ok_or_else(|| bad(n, "has no weight"))?;
    if wd.len() != 2 {
        return Err(bad(n, format!("weight {} is not a matrix", list(&wd))));
    }
    let (inp, units) = (wd[0] as usize, wd[1] as usize);
    if units.checked_mul(inp) != Some(wv.len()) {
        return Err(bad(
            n,
            format!("weight {} does not hold its values", list(&wd)),
        ));
    }
    let mut w = vec![0f32; units * inp];
    for u in 0..units {
        for i in 0..inp {
            w[u * inp + i] = wv[i * units + u] as f32;
        }
    }
    dense(c, n, x, w, units as u64, None)
}

/// `Add` of a constant vector to a `MatMul`'s output: that layer's bias;
/// of two computed values: an `add` layer (as `Sum`).
fn add(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if n.input.len() != 2 {
        return Err(bad(n, format!("has {} inputs, not 2", n.input.len())));
    }
    let computed = |i: usize| c.values.contains_key(&n.input[i]);
    if computed(0) && computed(1) {
        return sum(c, n);
    }
    let other = || {
        unsupported(
            "Add (other than a MatMul's bias or of two layers' outputs)",
            n,
        )
    };
    // The computed side and the constant side.
    let (layer, k) = match (c.values.get(&n.input[0]), c.values.get(&n.input[1])) {
        (Some(&Src::Layer(i)), None) => (i, 1),
        (None, Some(&Src::Layer(i))) => (i, 0),
        _ => return Err(other()),
    };
    if !c.consts.contains_key(&n.input[k]) {
        return Err(other());
    }
    let (_, bv) = c.weights(n, k, "bias")?.ok_or_else(other)?;
    let l = &mut c.layers[layer];
    let units = l.dims.first().copied().unwrap_or(0) as usize;
    if !l.open_bias || bv.len() != units {
        return Err(other());
    }
    l.bias = Some(bv.iter().map(|&v| v as f32).collect());
    l.open_bias = false;
    c.out(n, Src::Layer(layer))
}

/// The elementwise sum of two or more layers' outputs of one shape.
fn sum(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if n.input.len() < 2 {
        return Err(bad(n, "adds fewer than two values"));
    }
    let ins: Vec<Src> = (0..n.input.len())
        .map(|i| c.src(n, i).and_then(|s| plain(n, s)))
        .collect::<Result<_, _>>()?;
    let d = c.dims(ins[0]);
    if let Some(o) = ins.iter().map(|&s| c.dims(s)).find(|o| *o != d) {
        return Err(bad(
            n,
            format!(
                "adds values of shapes {d:?} and {o:?} (netc's `add` takes one shape, no broadcasting)"
            ),
        ));
    }
    let l = c.layer(n, Kind::Sum, ins, d);
    c.push(n, l)
}

/// A layer of `kind` with its input's shape (an activation).
fn elementwise(c: &mut Ctx, n: &NodeProto, kind: Kind) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let d = c.dims(x);
    let l = c.layer(n, kind, vec![x], d);
    c.push(n, l)
}

fn relu(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    elementwise(c, n, Kind::Relu)
}

fn tanh(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    elementwise(c, n, Kind::Tanh)
}

fn sigmoid(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    elementwise(c, n, Kind::Sigmoid)
}

fn leaky_relu(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let slope = short(float_attr(n, "alpha", 0.01)?);
    if slope.is_nan() || slope < 0.0 {
        return Err(bad(
            n,
            format!("alpha {slope} is negative (netc's leaky_relu slope is ≥ 0)"),
        ));
    }
    elementwise(c, n, Kind::LeakyRelu { slope })
}

/// Batch normalisation in evaluation: the running statistics are
/// initializers, kept as the batchnorm's running mean and variance.
fn batchnorm(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    if int_attr(n, "training_mode", 0)? != 0 || n.output.len() > 1 {
        return Err(bad(
            n,
            "is in training mode (netc imports evaluation models)",
        ));
    }
    let d = c.dims(x);
    let ch = d.first().copied().unwrap_or(0) as usize;
    let mut v: Vec<Vec<f32>> = Vec::new();
    for (i, what) in ["scale", "B", "input_mean", "input_var"].iter().enumerate() {
        let (_, k) = c
            .weights(n, i + 1, what)?
            .ok_or_else(|| bad(n, format!("has no {what}")))?;
        if k.len() != ch {
            return Err(bad(
                n,
                format!("{what} has {} values for {ch} channels", k.len()),
            ));
        }
        if i == 3 && k.iter().any(|&x| x < 0.0) {
            return Err(bad(n, "input_var has a negative variance"));
        }
        v.push(k.iter().map(|&x| x as f32).collect());
    }
    let eps = short(float_attr(n, "epsilon", 1e-5)?);
    if eps.is_nan() || eps <= 0.0 {
        return Err(bad(n, format!("epsilon {eps} is not positive")));
    }
    // ONNX's momentum weighs the running value; netc's (PyTorch's) the batch's.
    let m = float_attr(n, "momentum", 0.9)?;
    if !(0.0..1.0).contains(&m) {
        return Err(bad(n, format!("momentum {m} is not in [0, 1)")));
    }
    let momentum = f32_digits(1.0 - m as f64);
    let mut l = c.layer(n, Kind::BatchNorm { momentum, eps }, vec![x], d);
    let var = v.pop().unwrap_or_default();
    let mean = v.pop().unwrap_or_default();
    l.bias = v.pop();
    l.weight = v.pop().map(|g| (vec![ch as u64], g));
    l.stats = Some((mean, var));
    c.push(n, l)
}

fn lrn(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = c.src(n, 0)?;
    let m = int_attr(n, "size", 0)?;
    if m <= 0 || m % 2 == 0 {
        return Err(bad(
            n,
            format!("size {m}: an even ONNX window is not centred on its channel, and netc's is"),
        ));
    }
    let alpha = f32_digits(float_attr(n, "alpha", 1e-4)? as f64 / m as f64);
    let (beta, k) = (
        short(float_attr(n, "beta", 0.75)?),
        short(float_attr(n, "bias", 1.0)?),
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
    let (size, stride, pad, d) = pool_window(c, n, x, "maxpool")?;
    if pad >= size {
        return Err(bad(
            n,
            format!("pads {pad} are not below the kernel {size}"),
        ));
    }
    let l = c.layer(n, Kind::MaxPool { size, stride, pad }, vec![x], d);
    c.push(n, l)
}

fn avgpool(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let (size, stride, pad, d) = pool_window(c, n, x, "avgpool")?;
    if pad != 0 && int_attr(n, "count_include_pad", 0)? == 0 {
        return Err(bad(
            n,
            "count_include_pad is 0 with pads (netc's avgpool counts padding in the divisor)",
        ));
    }
    let l = c.layer(n, Kind::AvgPool { size, stride, pad }, vec![x], d);
    c.push(n, l)
}

/// `[N, C, H, W]` to `[N, C, 1, 1]`; netc's `[C]` (a following `Flatten`
/// or `Reshape` to a vector is then nothing).
fn global_avgpool(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let d = c.dims(x);
    if d.len() != 3 {
        return Err(bad(n, "needs a C×H×W input"));
    }
    let l = c.layer(n, Kind::GlobalAvgPool, vec![x], vec![d[0]]);
    c.push(n, l)
}

fn dropout(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let rate = match c.konst(n, 1)? {
        Some(k) if k.dtype != proto::FLOAT && k.dtype != 11 => {
            return Err(bad(
                n,
                format!("ratio has data type {}, not a float", dtype_name(k.dtype)),
            ));
        }
        Some(k) if k.values.len() == 1 => k.values[0],
        Some(_) => return Err(bad(n, "ratio is not one number")),
        None => short(float_attr(n, "ratio", 0.5)?),
    };
    if !(0.0..1.0).contains(&rate) {
        return Err(bad(n, format!("ratio {rate} is not in [0, 1)")));
    }
    let d = c.dims(x);
    let l = c.layer(n, Kind::Dropout { rate }, vec![x], d);
    c.push(n, l)
}

fn identity(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if let Some(k) = n.input.first().and_then(|i| c.ints.get(i)).cloned() {
        return c.ints_out(n, k);
    }
    if let Some(k) = n.input.first().and_then(|i| c.consts.get(i)).cloned() {
        let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
        c.consts.insert(o.clone(), k);
        return Ok(());
    }
    let x = c.src(n, 0)?;
    c.out(n, x)
}

/// To a vector (`[N, C·H·W]`): a `flatten` layer (which a dense layer
/// reading it skips: it flattens its input itself).
fn flatten(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    if int_attr(n, "axis", 1)? != 1 {
        return Err(bad(n, "axis is not 1"));
    }
    to_vector(c, n, x)
}

fn to_vector(c: &mut Ctx, n: &NodeProto, x: Src) -> Result<(), ImportError> {
    let d = c.dims(x);
    if d.len() == 1 {
        return c.out(n, x);
    }
    let l = c.layer(n, Kind::Flatten, vec![x], vec![d.iter().product()]);
    c.push(n, l)
}

/// To a vector (as [`flatten`]), or a tower-local LRN's views.
fn reshape(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = c.src(n, 0)?;
    let shape = match n.input.get(1).and_then(|s| c.ints.get(s)) {
        // A computed shape: the batch copied (0) where it stands first.
        Some(k) => {
            k.v.iter()
                .enumerate()
                .map(|(i, v)| match (i, v) {
                    (_, Some(v)) => Ok(*v),
                    (0, None) => Ok(0),
                    _ => Err(bad(
                        n,
                        "computes a shape with the batch size past its first axis",
                    )),
                })
                .collect::<Result<Vec<i64>, _>>()?
        }
        None => c
            .int64s(n, 1, "shape")?
            .ok_or_else(|| bad(n, "has no shape"))?,
    };
    let base = match x {
        Src::TowerView(i, _) => Src::Layer(i),
        s => s,
    };
    let d = c.dims(base);
    let numel: u64 = d.iter().product();
    let batch = c.batch;
    let batch_dim = |v: i64| v == -1 || v == 0 || batch.is_some_and(|b| v as u64 == b && v > 0);
    // [N, C·H·W]: a flatten.
    if shape.len() == 2 && batch_dim(shape[0]) && (shape[1] == -1 || shape[1] as u64 == numel)
        || shape.len() == 2 && shape[0] > 0 && shape[1] == -1
    {
        let x = plain(n, x)?;
        return to_vector(c, n, x);
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
        format!(
            "shape {} of a {d:?} value is neither a flatten nor a tower view",
            list(&shape)
        ),
    ))
}

fn concat(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    // Of integers (shapes): folded.
    if !n.input.is_empty() && n.input.iter().all(|i| !c.values.contains_key(i)) {
        let mut v = Vec::new();
        for i in 0..n.input.len() {
            let k = c.ints_in(n, i)?;
            if k.scalar {
                return Err(bad(n, "concatenates a scalar"));
            }
            v.extend(k.v);
        }
        return c.ints_out(n, Ints { v, scalar: false });
    }
    let ins: Vec<Src> = (0..n.input.len())
        .map(|i| c.src(n, i).and_then(|s| plain(n, s)))
        .collect::<Result<_, _>>()?;
    if ins.is_empty() {
        return Err(bad(n, "has no inputs"));
    }
    let dims: Vec<Vec<u64>> = ins.iter().map(|&s| c.dims(s)).collect();
    let axis = int_attr(n, "axis", 1)?;
    if axis != 1 && axis != -(dims[0].len() as i64 + 1) {
        return Err(bad(
            n,
            format!("axis {axis}: netc concatenates along channels (axis 1)"),
        ));
    }
    if dims
        .iter()
        .any(|d| d.len() != dims[0].len() || d.len() < 2 || d[1..] != dims[0][1..])
    {
        return Err(bad(
            n,
            format!("inputs {} differ beyond the channels", list(&dims)),
        ));
    }
    let mut out = dims[0].clone();
    out[0] = dims
        .iter()
        .try_fold(0u64, |a, d| a.checked_add(d[0]))
        .ok_or_else(|| bad(n, "has too many channels"))?;
    let l = c.layer(n, Kind::Concat, ins, out);
    c.push(n, l)
}

fn softmax(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let axis = int_attr(n, "axis", -1)?;
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
    let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
    let simple = |dims: Vec<i64>, values: Vec<f64>, dtype: i32| Const {
        dims,
        values,
        dtype,
    };
    let k = if let Some(a) = typed(n, "value_ints", proto::attr_type::INTS, "integers")? {
        Some(simple(
            vec![a.ints.len() as i64],
            a.ints.iter().map(|&v| v as f64).collect(),
            proto::INT64,
        ))
    } else if let Some(a) = typed(n, "value_int", proto::attr_type::INT, "an integer")? {
        Some(simple(vec![], vec![a.i as f64], proto::INT64))
    } else if let Some(a) = typed(n, "value_floats", proto::attr_type::FLOATS, "floats")? {
        Some(simple(
            vec![a.floats.len() as i64],
            a.floats.iter().map(|&v| v as f64).collect(),
            proto::FLOAT,
        ))
    } else {
        typed(n, "value_float", proto::attr_type::FLOAT, "a float")?
            .map(|a| simple(vec![], vec![a.f as f64], proto::FLOAT))
    };
    if let Some(k) = k {
        if k.values.len() as u64 > MAX_ELEMENTS || k.values.iter().any(|v| !v.is_finite()) {
            return Err(bad(n, "holds too many or non-finite values"));
        }
        c.consts.insert(o.clone(), k);
        return Ok(());
    }
    let t = attr(n, "value")
        .and_then(|a| a.t.as_ref())
        .ok_or_else(|| bad(n, "has no tensor `value`"))?;
    let k = tensor_values(t, None).map_err(|e| bad(n, e))?;
    c.consts.insert(o.clone(), k);
    Ok(())
}

/// The mean over H and W (axes 2 and 3, as an attribute or, from opset
/// 18, an input): a global average pool, with `keepdims` or without.
fn reduce_mean(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let axes = if c.opset >= 18 {
        c.int64s(n, 1, "axes")?
    } else {
        ints_attr(n, "axes")?
    };
    let mut axes: Vec<i64> = axes
        .unwrap_or_default()
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    axes.sort_unstable();
    let d = c.dims(x);
    if d.len() != 3 || axes != [2, 3] {
        return Err(bad(
            n,
            format!(
                "axes {} of a {d:?} value: netc reads a mean over H and W (axes 2 and 3) of N×C×H×W, a global average pool",
                list(&axes)
            ),
        ));
    }
    let l = c.layer(n, Kind::GlobalAvgPool, vec![x], vec![d[0]]);
    c.push(n, l)
}

/// A computed value's shape: its batch size (unknown) and its dims.
fn shape(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let x = plain(n, c.src(n, 0)?)?;
    let mut v: Vec<Option<i64>> = vec![c.batch.map(|b| b as i64)];
    v.extend(c.dims(x).iter().map(|&d| Some(d as i64)));
    let len = v.len() as i64;
    let at = |a: i64| (if a < 0 { a + len } else { a }).clamp(0, len) as usize;
    let (s, e) = (at(int_attr(n, "start", 0)?), at(int_attr(n, "end", len)?));
    let v = if s < e { v[s..e].to_vec() } else { Vec::new() };
    c.ints_out(n, Ints { v, scalar: false })
}

/// Refused: netc has `relu` but no clipped activation (ReLU6 included).
fn clip(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let bound = |i: usize, name: &str| -> Result<Option<f64>, ImportError> {
        Ok(match c.konst(n, i)? {
            Some(k) if k.values.len() == 1 => Some(k.values[0]),
            Some(_) => None,
            None => attr(n, name).map(|a| a.f as f64),
        })
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    Err(if lo == Some(0.0) && hi == Some(6.0) {
        bad(
            n,
            "is ReLU6 (Clip to [0, 6]), which netc does not have (its activations: relu, leaky_relu, tanh, sigmoid)",
        )
    } else {
        unsupported("Clip", n)
    })
}

/// The value `name` is defined a second time.
fn twice(name: &str) -> ImportError {
    ImportError::Graph(format!(
        "defines the value `{}` more than once",
        shown(name)
    ))
}

/// The most values the folding computes in one import, all nodes together.
const MAX_FOLDED_TOTAL: usize = 1 << 23;

/// The deepest `If` inside `If` netc reads.
const MAX_NESTING: usize = 4;

/// One node: folded where its inputs are constants or shapes, a step of a
/// decomposed LRN where it reads one, an `If` whose condition folded as
/// the branch it takes, else its entry of [`OPS`].
fn run_node<'a>(
    c: &mut Ctx,
    n: &'a NodeProto,
    defined: &mut std::collections::HashSet<&'a str>,
    depth: usize,
) -> Result<(), ImportError> {
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return Err(unsupported(&format!("{}.{}", n.domain, n.op_type), n));
    }
    let handler = OPS.iter().find(|(op, _)| *op == n.op_type).map(|o| o.1);
    if handler.is_none() && n.op_type != "If" {
        return Err(unsupported(&n.op_type, n));
    }
    for o in n.output.iter().filter(|o| !o.is_empty()) {
        if !defined.insert(o) {
            return Err(twice(o));
        }
    }
    for (k, a) in n.attribute.iter().enumerate() {
        if n.attribute[..k].iter().any(|b| b.name == a.name) {
            return Err(bad(
                n,
                format!("has the attribute `{}` twice", shown(&a.name)),
            ));
        }
    }
    if n.op_type == "If" {
        return if_node(c, n, defined, depth);
    }
    if n.input.iter().any(|i| c.lrn.contains_key(i)) {
        return lrn_step(c, n);
    }
    let folds = n.op_type != "Constant"
        && fold::FOLDABLE.contains(&n.op_type.as_str())
        && n.input.iter().any(|i| !i.is_empty())
        && n.input
            .iter()
            .all(|i| i.is_empty() || c.consts.contains_key(i) || c.ints.contains_key(i));
    if folds {
        return fold_node(c, n);
    }
    match handler {
        Some(h) => h(c, n),
        None => Err(unsupported(&n.op_type, n)),
    }
}

/// A constant or shape-derived value as a folded tensor.
fn folded(c: &Ctx, name: &str) -> Option<fold::Tensor> {
    if let Some(k) = c.consts.get(name) {
        return Some(fold::Tensor {
            dims: k.dims.iter().map(|&d| d as usize).collect(),
            v: k.values.iter().map(|&x| fold::Sym::N(x)).collect(),
            dtype: k.dtype,
        });
    }
    c.ints.get(name).map(|k| fold::Tensor {
        dims: if k.scalar { vec![] } else { vec![k.v.len()] },
        v: k.v
            .iter()
            .map(|x| x.map_or(fold::Sym::Batch, |x| fold::Sym::N(x as f64)))
            .collect(),
        dtype: proto::INT64,
    })
}

/// Stores a folded value as node `n`'s output: a constant, or (holding
/// the batch size) shape-derived integers.
fn store(c: &mut Ctx, n: &NodeProto, t: fold::Tensor) -> Result<(), ImportError> {
    let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
    if t.has_batch() {
        if t.dims.len() > 1 {
            return Err(bad(
                n,
                "computes a tensor of more than one axis from the batch size",
            ));
        }
        let v =
            t.v.iter()
                .map(|s| match s {
                    fold::Sym::N(x) => Some(*x as i64),
                    fold::Sym::Batch => None,
                })
                .collect();
        return c.ints_out(
            n,
            Ints {
                v,
                scalar: t.dims.is_empty(),
            },
        );
    }
    c.consts.insert(
        o.clone(),
        Const {
            dims: t.dims.iter().map(|&d| d as i64).collect(),
            values: t
                .v
                .iter()
                .map(|s| match s {
                    fold::Sym::N(x) => *x,
                    fold::Sym::Batch => 0.0,
                })
                .collect(),
            dtype: t.dtype,
        },
    );
    Ok(())
}

/// Evaluates node `n`, whose inputs are all constants or shapes.
fn fold_node(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let ins: Vec<Option<fold::Tensor>> = n
        .input
        .iter()
        .map(|i| if i.is_empty() { None } else { folded(c, i) })
        .collect();
    let ints = |name: &str| ints_attr(n, name).map_err(|e| e.to_string());
    let int = |name: &str, d: i64| int_attr(n, name, d).map_err(|e| e.to_string());
    let tensor = |name: &str| -> Result<Option<fold::Tensor>, String> {
        let Some(a) = attr(n, name) else {
            return Ok(None);
        };
        let t =
            a.t.as_ref()
                .ok_or_else(|| format!("attribute `{}` is not a tensor", shown(name)))?;
        let k = tensor_values(t, None)?;
        Ok(Some(fold::Tensor {
            dims: k.dims.iter().map(|&d| d as usize).collect(),
            v: k.values.into_iter().map(fold::Sym::N).collect(),
            dtype: k.dtype,
        }))
    };
    let t = fold::eval(n, &ins, c.opset, &ints, &int, &tensor).map_err(|e| bad(n, e))?;
    c.folded = c.folded.saturating_add(t.v.len());
    if c.folded > MAX_FOLDED_TOTAL {
        return Err(bad(
            n,
            format!(
                "folds more than {MAX_FOLDED_TOTAL} values in all (netc folds shapes and small constants)"
            ),
        ));
    }
    store(c, n, t)
}

/// Refused where an input is a layer's output: netc folds the operator
/// only of constants and shapes.
fn fold_only(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let layer = n
        .input
        .iter()
        .find(|i| c.values.contains_key(*i))
        .map_or(String::new(), |i| shown(i));
    Err(bad(
        n,
        format!(
            "reads `{layer}`, a layer's output: netc computes {} only of constants and shapes, at import (it has no such layer)",
            shown(&n.op_type)
        ),
    ))
}

/// `value` gets the meaning of `from` (a branch's output as the `If`'s).
fn alias(c: &mut Ctx, n: &NodeProto, from: &str, to: &str) -> Result<(), ImportError> {
    if let Some(&s) = c.values.get(from) {
        c.values.insert(to.into(), s);
    } else if let Some(k) = c.consts.get(from).cloned() {
        c.consts.insert(to.into(), k);
    } else if let Some(k) = c.ints.get(from).cloned() {
        c.ints.insert(to.into(), k);
    } else if let Some(p) = c.lrn.get(from).cloned() {
        c.lrn.insert(to.into(), p);
    } else {
        return Err(bad(
            n,
            format!("its branch output `{}` is computed by no node", shown(from)),
        ));
    }
    Ok(())
}

/// An `If` whose condition folds to a constant: the branch it takes, read
/// as if its nodes stood in the graph (PyTorch's exporter tests shapes
/// that are known at export).
fn if_node<'a>(
    c: &mut Ctx,
    n: &'a NodeProto,
    defined: &mut std::collections::HashSet<&'a str>,
    depth: usize,
) -> Result<(), ImportError> {
    if depth >= MAX_NESTING {
        return Err(bad(n, format!("nests If more than {MAX_NESTING} deep")));
    }
    let cond = n
        .input
        .first()
        .and_then(|i| folded(c, i))
        .ok_or_else(|| {
            bad(
                n,
                "its condition is computed from layers' values; netc reads an If only where the condition is known at import",
            )
        })?;
    let cond = match cond.v.as_slice() {
        [fold::Sym::N(x)] => *x != 0.0,
        _ => return Err(bad(n, "its condition is not one known value")),
    };
    let which = if cond { "then_branch" } else { "else_branch" };
    let g = typed(n, which, 5, "a graph")?
        .and_then(|a| a.g.as_deref())
        .ok_or_else(|| bad(n, format!("has no {which}")))?;
    for t in &g.initializer {
        if t.name.is_empty() || !defined.insert(&t.name) {
            return Err(twice(&t.name));
        }
        let v = tensor_values(t, c.dir.as_deref()).map_err(ImportError::Graph)?;
        c.consts.insert(t.name.clone(), v);
    }
    for m in &g.node {
        run_node(c, m, defined, depth + 1)?;
    }
    if g.output.len() != n.output.len() {
        return Err(bad(
            n,
            format!(
                "its {which} has {} outputs for {}",
                g.output.len(),
                n.output.len()
            ),
        ));
    }
    for (o, to) in g.output.iter().zip(&n.output) {
        alias(c, n, &o.name, to)?;
    }
    Ok(())
}

/// A value on the way through PyTorch's `local_response_norm(x)`:
/// `x·x` (or `x^2`), unsqueezed to `[N, 1, C, H, W]`, padded along C,
/// averaged over `size` channels (`AveragePool` of `[size, 1, 1]`),
/// squeezed back, `·alpha`, `+k`, `^beta`, and `x` divided by that.
#[derive(Clone, Debug)]
struct LrnPart {
    /// The normalised value `x`.
    x: Src,
    /// How far the chain has come.
    stage: LrnStage,
    /// `x`'s dims `[C, H, W]`.
    dims: Vec<u64>,
    /// Channels padded before and after.
    pad: (u64, u64),
    size: u64,
    alpha: f64,
    k: f64,
    beta: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum LrnStage {
    Square,
    Unsqueezed,
    Padded,
    Pooled,
    Mean,
    Scaled,
    Shifted,
    Powered,
}

impl LrnPart {
    /// Its dims without the batch (5-D stages with their axis of 1).
    fn dims(&self) -> Vec<u64> {
        let mut d = self.dims.clone();
        if (LrnStage::Unsqueezed..=LrnStage::Pooled).contains(&self.stage) {
            if self.stage == LrnStage::Padded {
                d[0] += self.pad.0 + self.pad.1;
            }
            d.insert(0, 1);
        }
        d
    }
}

/// What the chain is, for refusals.
const LRN_CHAIN: &str = "PyTorch's decomposed LocalResponseNorm (x·x, unsqueeze, pad along channels, AveragePool over [size, 1, 1], squeeze, ·alpha, +k, ^beta, x / that), which netc reads as `lrn` only whole";

/// A scalar constant input `i` of `n`, if it is one.
fn scalar_in(c: &Ctx, n: &NodeProto, i: usize) -> Option<f64> {
    let k = c.consts.get(n.input.get(i)?)?;
    (k.values.len() == 1 && (k.dtype == proto::FLOAT || k.dtype == 11 || k.dtype == 7))
        .then(|| k.values[0])
}

/// `x·x` (or `x^2`) of a layer's C×H×W output: the start of an LRN.
fn lrn_start(c: &mut Ctx, n: &NodeProto, x: Src) -> Result<(), ImportError> {
    let dims = c.dims(x);
    if dims.len() != 3 {
        return Err(bad(
            n,
            format!(
                "squares a {dims:?} value; netc reads a square only as the start of {LRN_CHAIN}, of C×H×W"
            ),
        ));
    }
    let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
    c.lrn.insert(
        o.clone(),
        LrnPart {
            x,
            stage: LrnStage::Square,
            dims,
            pad: (0, 0),
            size: 0,
            alpha: 1.0,
            k: 0.0,
            beta: 1.0,
        },
    );
    Ok(())
}

fn mul(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if n.input.len() == 2 && n.input[0] == n.input[1] {
        let x = plain(n, c.src(n, 0)?)?;
        return lrn_start(c, n, x);
    }
    Err(bad(
        n,
        format!("multiplies a layer's output; netc reads Mul only as a step of {LRN_CHAIN}"),
    ))
}

fn pow(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    if scalar_in(c, n, 1) == Some(2.0) {
        let x = plain(n, c.src(n, 0)?)?;
        return lrn_start(c, n, x);
    }
    Err(bad(
        n,
        format!("raises a layer's output to a power; netc reads Pow only as a step of {LRN_CHAIN}"),
    ))
}

fn div(_: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    Err(bad(
        n,
        format!("divides a layer's output; netc reads Div only as the last step of {LRN_CHAIN}"),
    ))
}

/// A shape (as `Reshape` reads it) with the batch as `None` where it
/// stands first: `-1`, `0` or the fixed batch size there are the batch.
fn shape_in(c: &Ctx, n: &NodeProto) -> Result<Vec<Option<i64>>, ImportError> {
    let mut v: Vec<Option<i64>> = match n.input.get(1).and_then(|s| c.ints.get(s)) {
        Some(k) => k.v.clone(),
        None => c
            .int64s(n, 1, "shape")?
            .ok_or_else(|| bad(n, "has no shape"))?
            .into_iter()
            .map(Some)
            .collect(),
    };
    if let Some(f) = v.first_mut()
        && f.is_none_or(|b| b == -1 || b == 0 || c.batch.is_some_and(|n| b as u64 == n))
    {
        *f = None;
    }
    if v.iter().skip(1).any(|x| x.is_none()) {
        return Err(bad(
            n,
            "computes a shape with the batch size past its first axis",
        ));
    }
    Ok(v)
}

/// Whether `shape` (batch first) reshapes a value of `dims` (without
/// the batch) to `want` (without the batch).
fn reshapes_to(shape: &[Option<i64>], dims: &[u64], want: &[u64]) -> bool {
    if shape.len() != want.len() + 1 || shape[0].is_some() {
        return false;
    }
    let rest: Vec<i64> = shape[1..].iter().map(|x| x.unwrap_or(0)).collect();
    let total: u64 = dims.iter().product();
    let as_usize: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    fold::reshaped(&[total as usize], &rest, true)
        .or_else(|_| fold::reshaped(&as_usize, &rest, false))
        .is_ok_and(|d| d.iter().map(|&x| x as u64).eq(want.iter().copied()))
}

/// Node `n` reads a value of the LRN chain: its next step, or a refusal
/// that says where the chain broke.
fn lrn_step(c: &mut Ctx, n: &NodeProto) -> Result<(), ImportError> {
    let at = n
        .input
        .iter()
        .position(|i| c.lrn.contains_key(i))
        .unwrap_or(0);
    let mut p = c.lrn[&n.input[at]].clone();
    let broken = |why: String| {
        bad(
            n,
            format!(
                "reads `{}`, a step of {LRN_CHAIN}; here {why}",
                shown(&n.input[at])
            ),
        )
    };
    let op = n.op_type.as_str();
    let (c_, h, w) = (p.dims[0], p.dims[1], p.dims[2]);
    use LrnStage::*;
    match (op, p.stage) {
        ("Shape", _) => {
            let mut v: Vec<Option<i64>> = vec![c.batch.map(|b| b as i64)];
            v.extend(p.dims().iter().map(|&d| Some(d as i64)));
            let len = v.len() as i64;
            let at = |a: i64| (if a < 0 { a + len } else { a }).clamp(0, len) as usize;
            let (s, e) = (at(int_attr(n, "start", 0)?), at(int_attr(n, "end", len)?));
            let v = if s < e { v[s..e].to_vec() } else { Vec::new() };
            return c.ints_out(n, Ints { v, scalar: false });
        }
        ("Identity", _) => {}
        ("Reshape", Square) => {
            if !reshapes_to(&shape_in(c, n)?, &p.dims, &[1, c_, h, w]) {
                return Err(broken("the reshape is not to [N, 1, C, H, W]".into()));
            }
            p.stage = Unsqueezed;
        }
        ("Unsqueeze", Square) => {
            let axes = if c.opset >= 13 {
                c.int64s(n, 1, "axes")?
            } else {
                ints_attr(n, "axes")?
            };
            if axes.as_deref() != Some(&[1]) && axes.as_deref() != Some(&[-4]) {
                return Err(broken("the unsqueeze is not at axis 1".into()));
            }
            p.stage = Unsqueezed;
        }
        ("Pad", Unsqueezed) => {
            let pads = if c.opset >= 11 {
                c.int64s(n, 1, "pads")?
            } else {
                ints_attr(n, "pads")?
            }
            .unwrap_or_default();
            let mode = attr(n, "mode").map_or(b"constant".to_vec(), |a| a.s.clone());
            let value = if c.opset >= 11 {
                match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(_) => scalar_in(c, n, 2),
                    None => Some(0.0),
                }
            } else {
                Some(float_attr(n, "value", 0.0)? as f64)
            };
            if n.input.get(3).is_some_and(|s| !s.is_empty()) {
                return Err(broken("the pad names its axes".into()));
            }
            let only_c = pads.len() == 10
                && pads
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v >= 0 && (i % 5 == 2 || v == 0));
            if mode != b"constant" || value != Some(0.0) || !only_c {
                return Err(broken(format!(
                    "the pad is not with zeros along the channels only (pads {})",
                    list(&pads)
                )));
            }
            p.pad = (pads[2] as u64, pads[7] as u64);
            p.stage = Padded;
        }
        ("AveragePool", Unsqueezed | Padded) => {
            let k = ints_attr(n, "kernel_shape")?.unwrap_or_default();
            let s = ints_attr(n, "strides")?.unwrap_or(vec![1, 1, 1]);
            let pads = ints_attr(n, "pads")?.unwrap_or(vec![0; 6]);
            let d = ints_attr(n, "dilations")?.unwrap_or(vec![1, 1, 1]);
            if k.len() != 3 || k[1..] != [1, 1] || k[0] < 1 || k[0] > MAX_WINDOW {
                return Err(broken(format!(
                    "the average pool's kernel {} is not [size, 1, 1]",
                    list(&k)
                )));
            }
            if s != [1, 1, 1] || d != [1, 1, 1] || pads.len() != 6 {
                return Err(broken("the average pool has strides or dilations".into()));
            }
            if pads
                .iter()
                .enumerate()
                .any(|(i, &v)| v < 0 || (i % 3 != 0 && v != 0))
            {
                return Err(broken(format!("the average pool pads {}", list(&pads))));
            }
            if (pads[0] != 0 || pads[3] != 0) && int_attr(n, "count_include_pad", 0)? == 0 {
                return Err(broken(
                    "the average pool pads without counting the padding (count_include_pad 0), so it is not a sum over size channels divided by size".into(),
                ));
            }
            if attr(n, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
                return Err(broken("the average pool has auto_pad".into()));
            }
            p.pad.0 += pads[0] as u64;
            p.pad.1 += pads[3] as u64;
            let size = k[0] as u64;
            if p.pad.0 + p.pad.1 + 1 != size {
                return Err(broken(format!(
                    "{size} channels are averaged with {} padded before and {} after, so the output does not keep C",
                    p.pad.0, p.pad.1
                )));
            }
            if p.pad.0 != p.pad.1 {
                return Err(broken(format!(
                    "the window of {size} channels is {} before a channel and {} after: not centred (an even size), and netc's lrn sums i ± ⌊n/2⌋",
                    p.pad.0, p.pad.1
                )));
            }
            if n.output.len() > 1 {
                return Err(broken("the average pool has a second output".into()));
            }
            p.size = size;
            p.stage = Pooled;
        }
        ("Squeeze", Pooled) => {
            let axes = if c.opset >= 13 {
                c.int64s(n, 1, "axes")?
            } else {
                ints_attr(n, "axes")?
            };
            if axes.as_deref() != Some(&[1]) && axes.as_deref() != Some(&[-4]) {
                return Err(broken("the squeeze is not of axis 1".into()));
            }
            p.stage = Mean;
        }
        ("Reshape", Pooled | Mean) => {
            if !reshapes_to(&shape_in(c, n)?, &p.dims(), &p.dims) {
                return Err(broken("the reshape is not back to [N, C, H, W]".into()));
            }
            p.stage = Mean;
        }
        ("Mul", Mean) => match scalar_in(c, n, 1 - at) {
            Some(a) if a > 0.0 => {
                p.alpha = a;
                p.stage = Scaled;
            }
            _ => {
                return Err(broken(
                    "the mean is multiplied by other than a positive scalar alpha".into(),
                ));
            }
        },
        ("Add", Mean | Scaled) => match scalar_in(c, n, 1 - at) {
            Some(k) if k > 0.0 => {
                p.k = k;
                p.stage = Shifted;
            }
            _ => {
                return Err(broken(
                    "the scaled mean is added to other than a positive scalar k".into(),
                ));
            }
        },
        ("Pow", Shifted) if at == 0 => match scalar_in(c, n, 1) {
            Some(b) if b > 0.0 => {
                p.beta = b;
                p.stage = Powered;
            }
            _ => {
                return Err(broken(
                    "the power is other than a positive scalar beta".into(),
                ));
            }
        },
        ("Div", Powered) if at == 1 => {
            let x = c.src(n, 0)?;
            if x != p.x {
                return Err(broken(
                    "a value other than the one squared is divided by the denominator".into(),
                ));
            }
            let kind = Kind::Lrn {
                size: p.size,
                alpha: f32_digits(short(p.alpha as f32) / p.size as f64),
                beta: short(p.beta as f32),
                k: short(p.k as f32),
                towers: 1,
            };
            let l = c.layer(n, kind, vec![x], p.dims.clone());
            return c.push(n, l);
        }
        _ => {
            return Err(broken(format!(
                "{op} does not continue it after {:?}",
                p.stage
            )));
        }
    }
    let o = n.output.first().ok_or_else(|| bad(n, "has no output"))?;
    c.lrn.insert(o.clone(), p);
    Ok(())
}

/// A netc identifier from an ONNX name (`conv1/conv` -> `conv1`), if it is one.
fn ident_of(name: &str) -> Option<String> {
    let head = name.split('/').next()?;
    let ok = !head.is_empty()
        && head.len() <= 64
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

/// A netc identifier from a whole ONNX node path, its parts joined by `_`
/// without a last part that names the operator: `block1/conv2` (a second
/// layer netc exported from one binding) is `block1_conv2`, PyTorch's
/// `/layer1/conv1/Conv` is `layer1_conv1` and `/features/features.0/Conv`
/// is `features_0`.
fn path_ident(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        parts.pop();
    }
    // PyTorch repeats a module's parent: `features/features.0` is `features_0`.
    let mut kept: Vec<&str> = Vec::new();
    for p in parts {
        if kept
            .last()
            .is_some_and(|q| p.strip_prefix(q).is_some_and(|r| r.starts_with('.')))
        {
            kept.pop();
        }
        kept.push(p);
    }
    let joined: String = kept
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    ident_of(&joined)
}

/// Reads `bytes` (an ONNX model) as a `.net` file and weights; a model
/// whose weights are in external files is refused (see [`import_from`]).
pub fn import(bytes: &[u8], origin: &str) -> Result<Imported, ImportError> {
    import_from(bytes, origin, None)
}

/// [`import`] of a model in the folder `dir`, whose tensors may lie in
/// files there (ONNX external data: `location`, `offset`, `length`). A
/// location that leaves the folder (absolute, `..`, a link out of it) is
/// refused, and so is a range past the file's end.
pub fn import_from(
    bytes: &[u8],
    origin: &str,
    dir: Option<&std::path::Path>,
) -> Result<Imported, ImportError> {
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
            shown(&o.domain)
        )));
    }
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| {
            ImportError::Malformed("it has no opset_import for the ONNX operators".into())
        })?;
    if opset < 1 {
        return Err(ImportError::Malformed(format!(
            "its opset_import names ONNX operator set {opset}"
        )));
    }
    let mut c = Ctx {
        consts: HashMap::new(),
        values: HashMap::new(),
        layers: Vec::new(),
        image_dims: Vec::new(),
        softmax_of: HashMap::new(),
        ints: HashMap::new(),
        batch: None,
        opset,
        dir: dir.map(|d| d.to_path_buf()),
        lrn: HashMap::new(),
        folded: 0,
    };
    // Every value is defined once: by an initializer (which the graph's
    // inputs may list again), a graph input or one node's output.
    let mut defined: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(ImportError::Graph(
                "has an initializer without a name".into(),
            ));
        }
        if !defined.insert(&t.name) {
            return Err(twice(&t.name));
        }
        let v = tensor_values(t, c.dir.as_deref()).map_err(ImportError::Graph)?;
        c.consts.insert(t.name.clone(), v);
    }
    let mut listed: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for i in &graph.input {
        if !listed.insert(&i.name) {
            return Err(twice(&i.name));
        }
        defined.insert(&i.name);
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
    let tensor_type = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    if let Some(t) = tensor_type
        && t.elem_type != proto::FLOAT
    {
        return Err(ImportError::Graph(format!(
            "input `{}` has element type {}; netc takes FLOAT images",
            shown(&input.name),
            dtype_name(t.elem_type)
        )));
    }
    let dims: Vec<i64> = tensor_type
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
    let per_image = dims
        .iter()
        .skip(1)
        .try_fold(1i64, |a, &d| a.checked_mul(d))
        .filter(|&s| s <= MAX_ELEMENTS as i64);
    if dims.len() != 4 || dims[1..].iter().any(|&d| d <= 0) || per_image.is_none() {
        return Err(ImportError::Graph(format!(
            "input `{}` has shape {}; netc takes N×C×H×W images with C, H and W fixed",
            shown(&input.name),
            list(&dims)
        )));
    }
    c.image_dims = dims[1..].iter().map(|&d| d as u64).collect();
    c.batch = (dims[0] > 0).then_some(dims[0] as u64);
    c.values.insert(input.name.clone(), Src::Image);
    for n in &graph.node {
        run_node(&mut c, n, &mut defined, 0)?;
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
        // A feature map (C×H×W): its C·H·W values, in ONNX's order, are
        // the network's scores (a `flatten` layer; `netc run` gives them).
        Some(&Src::Layer(i)) if c.layers[i].dims.len() == 3 => {
            let d = c.layers[i].dims.clone();
            let node = NodeProto {
                name: "output_flatten".into(),
                ..Default::default()
            };
            let l = c.layer(
                &node,
                Kind::Flatten,
                vec![Src::Layer(i)],
                vec![d.iter().product()],
            );
            c.layers.push(l);
            c.layers.len() - 1
        }
        _ => {
            return Err(ImportError::Graph(format!(
                "output `{}` is not a vector of class scores computed by a layer",
                shown(&out.name)
            )));
        }
    };
    let meta: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    // A model netc wrote says whether its groups are towers; another's
    // grouped convolutions are towers where they can be.
    let towers_hint = (model.producer_name == "netc").then(|| {
        meta.get("netc.towers")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1)
    });
    write_net(
        &c,
        logits,
        &graph.name,
        &input.name,
        &meta,
        origin,
        towers_hint,
    )
}

/// The most towers a grouped convolution is read as; more groups than
/// this are the convolution's own `groups` (a depthwise layer is not a
/// network drawn in 32 columns).
const MAX_TOWERS: u64 = 8;

/// Which layers are split into towers, and into how many: `(1, none)`
/// when no layer is grouped. Grouped convolutions (and LRNs on channels
/// viewed as towers) are read as towers where the layers around them can
/// be split consistently; where they cannot, and no LRN needs towers, the
/// convolutions keep their groups as `groups` and nothing is split.
fn towers(
    c: &Ctx,
    logits: usize,
    live: &[bool],
    hint: Option<u64>,
) -> Result<(u64, Vec<bool>), ImportError> {
    let n = c.layers.len();
    let lrn_towers = c
        .layers
        .iter()
        .any(|l| matches!(l.kind, Kind::Lrn { towers, .. } if towers > 1));
    if hint == Some(1) && !lrn_towers {
        return Ok((1, vec![false; n]));
    }
    match split_towers(c, logits, live, hint.filter(|&t| t > 1)) {
        Ok(r) => Ok(r),
        Err(_) if !lrn_towers => Ok((1, vec![false; n])),
        Err(e) => Err(e),
    }
}

/// [`towers`] for `forced` towers (those a model netc wrote records), or
/// as many as the grouped layers say.
fn split_towers(
    c: &Ctx,
    logits: usize,
    live: &[bool],
    forced: Option<u64>,
) -> Result<(u64, Vec<bool>), ImportError> {
    let mut t = forced.unwrap_or(1);
    for (l, _) in c.layers.iter().zip(live).filter(|(_, live)| **live) {
        if let Some(t) = forced {
            // A tower's own groups are a multiple of the towers'.
            if matches!(l.kind, Kind::Conv { group, .. } if group > 1 && !group.is_multiple_of(t)) {
                return Err(ImportError::Graph(format!(
                    "groups a convolution in a number that is not a multiple of its {t} towers"
                )));
            }
            continue;
        }
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
    if t > MAX_TOWERS {
        return Err(ImportError::Graph(format!(
            "groups a layer in {t}, more than {MAX_TOWERS} towers"
        )));
    }
    for (i, l) in c.layers.iter().enumerate() {
        if matches!(l.kind, Kind::Conv { group, .. } if group > 1)
            || matches!(l.kind, Kind::Lrn { towers, .. } if towers > 1)
        {
            need[i] = live[i];
        }
    }
    let what = |i: usize| {
        format!(
            "`{}` ({})",
            shown(&c.layers[i].onnx_name),
            c.layers[i].kind.op()
        )
    };
    for i in (0..n).rev() {
        if !need[i] {
            continue;
        }
        let l = &c.layers[i];
        // Which inputs must be split too.
        let needs_inputs = match l.kind {
            Kind::Conv { group, filters, .. } => {
                if group == 1 && !filters.is_multiple_of(t) {
                    return Err(ImportError::Graph(format!(
                        "needs {} in {t} towers, but its {filters} filters do not divide",
                        what(i)
                    )));
                }
                if group > 1 { 1 } else { 0 }
            }
            Kind::Dense { units } => {
                if !units.is_multiple_of(t) {
                    return Err(ImportError::Graph(format!(
                        "needs {} in {t} towers, but its {units} units do not divide",
                        what(i)
                    )));
                }
                0
            }
            Kind::Lrn { towers, .. } => usize::from(towers > 1),
            Kind::Sum => l.inputs.len(),
            ref k if k.per_channel() => 1,
            _ => {
                return Err(ImportError::Graph(format!(
                    "needs {} split into {t} towers, which netc cannot express",
                    what(i)
                )));
            }
        };
        for s in &l.inputs[..needs_inputs] {
            match s {
                Src::Layer(j) => need[*j] = true,
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
        let is_split = |s: &Src| matches!(s, Src::Layer(j) if split[*j]);
        let from_split = l.inputs.first().is_some_and(is_split);
        let all_split = l.inputs.iter().all(is_split);
        split[i] = live[i]
            && (need[i]
                || (l.kind.per_channel() && from_split)
                || (l.kind == Kind::Sum && all_split));
        if l.kind == Kind::Sum && split[i] && !all_split {
            return Err(ImportError::Graph(format!(
                "adds a value in towers to one that is not at {}",
                what(i)
            )));
        }
    }
    if split[logits] {
        return Err(ImportError::Graph("computes its logits in towers".into()));
    }
    Ok((t, split))
}

/// The layers the logits depend on (a `flatten` a dense layer skipped,
/// or a branch to an output other than the logits, is not).
fn live_layers(c: &Ctx, logits: usize) -> Vec<bool> {
    let mut live = vec![false; c.layers.len()];
    let mut stack = vec![logits];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut live[i], true) {
            continue;
        }
        for s in &c.layers[i].inputs {
            if let Src::Layer(j) | Src::TowerView(j, _) = s {
                stack.push(*j);
            }
        }
    }
    live
}

/// The `.net` text and weights of the layers `c` read.
fn write_net(
    c: &Ctx,
    logits: usize,
    graph_name: &str,
    input_name: &str,
    meta: &HashMap<&str, &str>,
    origin: &str,
    towers_hint: Option<u64>,
) -> Result<Imported, ImportError> {
    let live = live_layers(c, logits);
    let (t, split) = towers(c, logits, &live, towers_hint)?;
    let n = c.layers.len();
    // Consumers of each layer, to chain single-use layers into one binding.
    let mut users = vec![Vec::new(); n];
    for (i, l) in c.layers.iter().enumerate().filter(|(i, _)| live[*i]) {
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
    for i in (0..n).filter(|&i| live[i]) {
        let l = &c.layers[i];
        let cont = match l.inputs.as_slice() {
            [Src::Layer(j)] => {
                users[*j].len() == 1
                    && split[*j] == split[i]
                    && !matches!(
                        l.kind,
                        Kind::Conv { .. } | Kind::Dense { .. } | Kind::Concat | Kind::Sum
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
        let mut name = ident_of(&l.onnx_name)
            .filter(|s| !used.contains(s))
            .or_else(|| path_ident(&l.onnx_name).filter(|s| !used.contains(s)));
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
                || l.kind == Kind::Sum
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
                dilation,
                group,
                bias,
            } => {
                args.push(format!("filters: {filters}"));
                args.push(format!("size: {}", size.arg()));
                if *stride != (Hw { h: 1, w: 1 }) {
                    args.push(format!("stride: {}", stride.arg()));
                }
                if *pad != (Hw { h: 0, w: 0 }) {
                    args.push(format!("pad: {}", pad.arg()));
                }
                if *dilation != 1 {
                    args.push(format!("dilation: {dilation}"));
                }
                // Groups the towers do not take.
                let own = if split[i] { group / t } else { *group };
                if own > 1 {
                    args.push(format!("groups: {own}"));
                }
                if !*bias {
                    args.push("bias: false".into());
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
            Kind::MaxPool { size, stride, pad } | Kind::AvgPool { size, stride, pad } => {
                args.push(format!("size: {size}"));
                args.push(format!("stride: {stride}"));
                if *pad != 0 {
                    args.push(format!("pad: {pad}"));
                }
            }
            Kind::LeakyRelu { slope } => args.push(format!("slope: {}", num(*slope))),
            Kind::BatchNorm { momentum, eps } => {
                args.push(format!("momentum: {}", num(*momentum)));
                args.push(format!("eps: {}", num(*eps)));
            }
            Kind::Dropout { rate } => args.push(format!("rate: {}", num(*rate))),
            Kind::Relu
            | Kind::Tanh
            | Kind::Sigmoid
            | Kind::GlobalAvgPool
            | Kind::Flatten
            | Kind::Concat
            | Kind::Sum => {}
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
    text.push_str(&format!(
        "// Imported from the ONNX model `{}`.\n",
        shown(origin)
    ));
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
    // Parameters: `binding/opK.role@tN` (`K` from the second layer of one
    // op in a binding, as netc names them), a split layer's filters,
    // units or channels divided among the towers in order.
    let mut weights = HashMap::new();
    for (b, chain) in chains.iter().enumerate() {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for &i in chain {
            let l = &c.layers[i];
            let op = l.kind.op();
            let k = seen.entry(op).or_insert(0);
            *k += 1;
            let inst = if *k == 1 {
                op.to_string()
            } else {
                format!("{op}{k}")
            };
            let Some((wd, wv)) = &l.weight else {
                continue;
            };
            let mut tensors: Vec<(&str, &[f32])> = vec![("weight", wv)];
            if let Some(bv) = &l.bias {
                tensors.push(("bias", bv));
            }
            if let Some((mean, var)) = &l.stats {
                tensors.push(("running_mean", mean));
                tensors.push(("running_var", var));
            }
            let parts = if split[i] { t } else { 1 };
            let rows = wd[0] / parts;
            for (role, v) in tensors {
                let per_row = v.len() / wd[0] as usize;
                for p in 0..parts {
                    let (r0, r1) = ((p * rows) as usize, ((p + 1) * rows) as usize);
                    weights.insert(
                        format!("{}/{inst}.{role}@t{p}", names[b]),
                        v[r0 * per_row..r1 * per_row].to_vec(),
                    );
                }
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
            v.len() <= 32
                && v.chars()
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
