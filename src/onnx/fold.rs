//! Constant folding over an ONNX graph: the nodes whose inputs are all
//! constants or shapes are evaluated at import, so that only the layers
//! remain (what PyTorch's exporters write around a layer: the shape of a
//! flatten computed from the input's, the pads of a decomposed LRN built
//! by `ConstantOfShape`, `Concat`, `Reshape`, `Slice`, `Transpose` and
//! `Cast`, scalars made by `Constant`).
//!
//! A value is a [`Tensor`] of [`Sym`]: numbers, or the batch size where
//! the model leaves it open (a dynamic batch axis is a symbol, not a
//! refusal). Arithmetic keeps the batch only where the result is the batch
//! itself (`N·1`, `N + 0`, `N / 1`); anything else computed from it is
//! refused, since netc's networks do not depend on it.
//!
//! Bounds: every operand and result holds at most [`MAX_FOLDED`] values;
//! indices, axes and dims are checked; errors are strings that the
//! importer attaches to the node. Cost: linear in the values folded.

use super::proto::{self, NodeProto};

/// The most values a folded tensor holds (shapes, pads, scalars: small).
pub const MAX_FOLDED: usize = 1 << 20;

/// A folded entry: a number or the batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sym {
    N(f64),
    Batch,
}

/// A folded tensor: dims, values in row-major order, ONNX element type.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub v: Vec<Sym>,
    pub dtype: i32,
}

/// A node's integer-list attribute by name (`None`: absent).
pub type IntsAttr<'a> = &'a dyn Fn(&str) -> Result<Option<Vec<i64>>, String>;

/// ONNX element types netc folds.
const INT32: i32 = 6;
const DOUBLE: i32 = 11;
const BOOL: i32 = 9;

fn is_int(d: i32) -> bool {
    matches!(d, INT32 | proto::INT64 | BOOL | 2 | 3 | 4 | 5 | 12 | 13)
}

/// The operators [`eval`] folds.
pub const FOLDABLE: &[&str] = &[
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Cast",
    "Slice",
    "Unsqueeze",
    "Squeeze",
    "Gather",
    "Concat",
    "Reshape",
    "Transpose",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Pow",
    "Sqrt",
    "Equal",
];

impl Tensor {
    pub fn scalar(v: Sym, dtype: i32) -> Tensor {
        Tensor {
            dims: vec![],
            v: vec![v],
            dtype,
        }
    }

    /// Its entries as integers (no batch symbol), or why not.
    pub fn ints(&self, what: &str) -> Result<Vec<i64>, String> {
        self.v
            .iter()
            .map(|s| match s {
                Sym::N(x) if x.fract() == 0.0 && x.abs() < 9.3e18 => Ok(*x as i64),
                Sym::N(x) => Err(format!("{what} holds {x}, not an integer")),
                Sym::Batch => Err(format!("{what} depends on the batch size")),
            })
            .collect()
    }

    pub fn has_batch(&self) -> bool {
        self.v.contains(&Sym::Batch)
    }

    fn rounded(mut self) -> Tensor {
        if self.dtype == proto::FLOAT {
            for s in &mut self.v {
                if let Sym::N(x) = s {
                    *x = *x as f32 as f64;
                }
            }
        }
        self
    }
}

fn count(dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_FOLDED)
        .ok_or_else(|| format!("would hold more than {MAX_FOLDED} values (dims {dims:?})"))
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// An axis in `-rank..rank` as an index.
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let b = if a < 0 { a + r } else { a };
    if (0..r).contains(&b) {
        Ok(b as usize)
    } else {
        Err(format!("axis {a} is outside a rank-{rank} value"))
    }
}

/// Folds node `n` of operator set `opset`, its inputs `ins` (`None`:
/// left out). `attr_tensor` is the node's tensor attribute `name`, read.
pub fn eval(
    n: &NodeProto,
    ins: &[Option<Tensor>],
    opset: i64,
    ints_attr: IntsAttr,
    int_attr: &dyn Fn(&str, i64) -> Result<i64, String>,
    attr_tensor: &dyn Fn(&str) -> Result<Option<Tensor>, String>,
) -> Result<Tensor, String> {
    let input = |i: usize| -> Result<&Tensor, String> {
        ins.get(i)
            .and_then(|t| t.as_ref())
            .ok_or_else(|| format!("has no input {i}"))
    };
    let opt = |i: usize| ins.get(i).and_then(|t| t.as_ref());
    let op = n.op_type.as_str();
    let out = match op {
        "Identity" => input(0)?.clone(),
        "Constant" => attr_tensor("value")?.ok_or("has no tensor value")?,
        "ConstantOfShape" => {
            let shape = input(0)?.ints("its shape")?;
            let dims = shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("shape {shape:?} is negative")))
                .collect::<Result<Vec<_>, _>>()?;
            let len = count(&dims)?;
            let fill =
                attr_tensor("value")?.unwrap_or_else(|| Tensor::scalar(Sym::N(0.0), proto::FLOAT));
            if fill.v.len() != 1 {
                return Err("value is not one number".into());
            }
            Tensor {
                dims,
                v: vec![fill.v[0]; len],
                dtype: fill.dtype,
            }
        }
        "Cast" => {
            let to = int_attr("to", 0)?;
            let to = i32::try_from(to).map_err(|_| format!("to {to} is no type"))?;
            let mut t = input(0)?.clone();
            if !(is_int(to) || to == proto::FLOAT || to == DOUBLE) {
                return Err(format!("casts to type {to}, which netc does not fold"));
            }
            if is_int(to) {
                for s in &mut t.v {
                    if let Sym::N(x) = s {
                        *x = if to == BOOL {
                            (*x != 0.0) as i64 as f64
                        } else {
                            x.trunc()
                        };
                    }
                }
            }
            t.dtype = to;
            t
        }
        "Unsqueeze" => {
            let x = input(0)?;
            let axes = axes(opset, 13, ins, ints_attr)?.ok_or("has no axes")?;
            let rank = x.dims.len() + axes.len();
            let mut at: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, rank))
                .collect::<Result<_, _>>()?;
            at.sort_unstable();
            if at.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("axes {axes:?} repeat"));
            }
            let mut dims = x.dims.clone();
            for a in at {
                dims.insert(a, 1);
            }
            Tensor { dims, ..x.clone() }
        }
        "Squeeze" => {
            let x = input(0)?;
            let axes = axes(opset, 13, ins, ints_attr)?;
            let at: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| axis(a, x.dims.len()))
                    .collect::<Result<_, _>>()?,
                None => (0..x.dims.len()).filter(|&i| x.dims[i] == 1).collect(),
            };
            if let Some(&a) = at.iter().find(|&&a| x.dims[a] != 1) {
                return Err(format!("squeezes axis {a} of dims {:?}, not 1", x.dims));
            }
            let dims = (0..x.dims.len())
                .filter(|i| !at.contains(i))
                .map(|i| x.dims[i])
                .collect();
            Tensor { dims, ..x.clone() }
        }
        "Reshape" => {
            let x = input(0)?;
            let shape = input(1)?.ints("its shape")?;
            let allowzero = int_attr("allowzero", 0)? != 0;
            Tensor {
                dims: reshaped(&x.dims, &shape, allowzero)?,
                ..x.clone()
            }
        }
        "Transpose" => {
            let x = input(0)?;
            let r = x.dims.len();
            let perm = ints_attr("perm")?.unwrap_or_else(|| (0..r as i64).rev().collect());
            let perm: Vec<usize> = perm.iter().map(|&p| axis(p, r)).collect::<Result<_, _>>()?;
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..r).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let (si, so) = (strides(&x.dims), strides(&dims));
            let mut v = vec![Sym::N(0.0); x.v.len()];
            for (o, slot) in v.iter_mut().enumerate() {
                let src: usize = (0..r).map(|k| (o / so[k] % dims[k]) * si[perm[k]]).sum();
                *slot = x.v[src];
            }
            Tensor {
                dims,
                v,
                dtype: x.dtype,
            }
        }
        "Gather" => {
            let (x, idx) = (input(0)?, input(1)?);
            let ax = axis(int_attr("axis", 0)?, x.dims.len())?;
            let ids = idx.ints("its indices")?;
            let len = x.dims[ax] as i64;
            let ids: Vec<usize> = ids
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + len } else { i };
                    if (0..len).contains(&j) {
                        Ok(j as usize)
                    } else {
                        Err(format!("index {i} is outside {len} values"))
                    }
                })
                .collect::<Result<_, _>>()?;
            let outer: usize = x.dims[..ax].iter().product();
            let inner: usize = x.dims[ax + 1..].iter().product();
            let mut dims = x.dims[..ax].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&x.dims[ax + 1..]);
            count(&dims)?;
            let mut v = Vec::new();
            for o in 0..outer {
                for &j in &ids {
                    let base = (o * x.dims[ax] + j) * inner;
                    v.extend_from_slice(&x.v[base..base + inner]);
                }
            }
            Tensor {
                dims,
                v,
                dtype: x.dtype,
            }
        }
        "Concat" => {
            let parts: Vec<&Tensor> = (0..ins.len()).filter_map(opt).collect();
            let first = parts.first().ok_or("has no inputs")?;
            let r = first.dims.len();
            if r == 0 {
                return Err("concatenates scalars".into());
            }
            let ax = axis(int_attr("axis", 0)?, r)?;
            if parts.iter().any(|p| {
                p.dims.len() != r
                    || p.dims[..ax] != first.dims[..ax]
                    || p.dims[ax + 1..] != first.dims[ax + 1..]
            }) {
                return Err("concatenates values whose shapes differ off the axis".into());
            }
            let mut dims = first.dims.clone();
            dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
            count(&dims)?;
            let outer: usize = first.dims[..ax].iter().product();
            let mut v = Vec::new();
            for o in 0..outer {
                for p in &parts {
                    let chunk = p.dims[ax..].iter().product::<usize>();
                    v.extend_from_slice(&p.v[o * chunk..(o + 1) * chunk]);
                }
            }
            Tensor {
                dims,
                v,
                dtype: first.dtype,
            }
        }
        "Slice" => slice(input(0)?, ins, opset, ints_attr)?,
        "Neg" | "Sqrt" => {
            let x = input(0)?;
            let v =
                x.v.iter()
                    .map(|s| match s {
                        Sym::N(a) if op == "Neg" => Ok(Sym::N(-a)),
                        Sym::N(a) if *a >= 0.0 => Ok(Sym::N(a.sqrt())),
                        Sym::N(a) => Err(format!("takes the square root of {a}")),
                        Sym::Batch => Err(format!("computes {op} of the batch size")),
                    })
                    .collect::<Result<_, _>>()?;
            Tensor { v, ..x.clone() }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" => {
            let (a, b) = (input(0)?, input(1)?);
            binary(op, a, b)?
        }
        _ => return Err(format!("netc does not fold {op}")),
    };
    count(&out.dims)?;
    if out.v.len() != out.dims.iter().product::<usize>() {
        return Err("computes a value whose size does not match its dims".into());
    }
    Ok(out.rounded())
}

/// Axes as an input (from opset `from`) or an attribute (before).
fn axes(
    opset: i64,
    from: i64,
    ins: &[Option<Tensor>],
    ints_attr: IntsAttr,
) -> Result<Option<Vec<i64>>, String> {
    if opset >= from {
        ins.get(1)
            .and_then(|t| t.as_ref())
            .map(|t| t.ints("its axes"))
            .transpose()
    } else {
        ints_attr("axes")
    }
}

/// ONNX `Reshape`'s target dims (`0` copies, `-1` is inferred).
pub fn reshaped(dims: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *dims
                    .get(i)
                    .ok_or_else(|| format!("shape {shape:?} copies a dim the input lacks"))?,
            ),
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("shape {shape:?} is not a shape")),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("shape {shape:?} does not fit dims {dims:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("shape {shape:?} does not fit dims {dims:?}"));
    }
    Ok(out)
}

/// `Slice`: starts, ends, axes and steps as inputs (opset 10 on) or
/// attributes (before, without steps), clamped as ONNX clamps them.
fn slice(
    x: &Tensor,
    ins: &[Option<Tensor>],
    opset: i64,
    ints_attr: IntsAttr,
) -> Result<Tensor, String> {
    let arg = |i: usize, name: &str| -> Result<Option<Vec<i64>>, String> {
        if opset >= 10 {
            ins.get(i)
                .and_then(|t| t.as_ref())
                .map(|t| t.ints(name))
                .transpose()
        } else {
            ints_attr(name)
        }
    };
    let starts = arg(1, "starts")?.ok_or("has no starts")?;
    let ends = arg(2, "ends")?.ok_or("has no ends")?;
    let r = x.dims.len();
    let axes = arg(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps =
        if opset >= 10 { arg(4, "steps")? } else { None }.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    // Per axis: first index, step, count.
    let mut plan: Vec<(i64, i64, usize)> = x.dims.iter().map(|&d| (0, 1, d)).collect();
    let mut seen = vec![false; r];
    for k in 0..starts.len() {
        let a = axis(axes[k], r)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("slices axis {a} twice"));
        }
        let d = x.dims[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err("has a step of 0".into());
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(starts[k]), norm(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        };
        let n = if step > 0 {
            if e > s { (e - s + step - 1) / step } else { 0 }
        } else if s > e {
            (s - e + (-step) - 1) / (-step)
        } else {
            0
        };
        plan[a] = (s, step, n as usize);
    }
    let dims: Vec<usize> = plan.iter().map(|p| p.2).collect();
    let len = count(&dims)?;
    let (si, so) = (strides(&x.dims), strides(&dims));
    let v = (0..len)
        .map(|o| {
            let src: i64 = (0..r)
                .map(|k| {
                    let i = (o / so[k] % dims[k]) as i64;
                    (plan[k].0 + i * plan[k].1) * si[k] as i64
                })
                .sum();
            x.v[src as usize]
        })
        .collect();
    Ok(Tensor {
        dims,
        v,
        dtype: x.dtype,
    })
}

/// Broadcast dims of two operands (numpy's rule).
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (x, y) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("dims {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// The flat index in `dims` (broadcast to `out`) of output index `o`.
fn source(o: usize, out: &[usize], so: &[usize], dims: &[usize]) -> usize {
    let off = out.len() - dims.len();
    let s = strides(dims);
    (0..dims.len())
        .map(|k| {
            let i = o / so[k + off] % out[k + off];
            if dims[k] == 1 { 0 } else { i * s[k] }
        })
        .sum()
}

fn binary(op: &str, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let dims = broadcast(&a.dims, &b.dims)?;
    let len = count(&dims)?;
    let so = strides(&dims);
    let int = is_int(a.dtype);
    let mut v = Vec::with_capacity(len);
    for o in 0..len {
        let (x, y) = (
            a.v[source(o, &dims, &so, &a.dims)],
            b.v[source(o, &dims, &so, &b.dims)],
        );
        v.push(match (x, y) {
            (Sym::N(x), Sym::N(y)) => Sym::N(match op {
                "Add" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                "Div" if int && y == 0.0 => return Err("divides an integer by 0".into()),
                "Div" if int => (x / y).trunc(),
                "Div" => x / y,
                "Pow" => x.powf(y),
                _ => (x == y) as i64 as f64,
            }),
            (Sym::Batch, Sym::Batch) if op == "Equal" => Sym::N(1.0),
            (Sym::Batch, Sym::N(y))
                if matches!((op, y), ("Mul" | "Div", 1.0) | ("Add" | "Sub", 0.0)) =>
            {
                Sym::Batch
            }
            (Sym::N(x), Sym::Batch) if matches!((op, x), ("Mul", 1.0) | ("Add", 0.0)) => Sym::Batch,
            _ => {
                return Err(format!(
                    "computes {op} of the batch size, which netc's networks do not depend on"
                ));
            }
        });
    }
    if let Some(Sym::N(x)) = v.iter().find(|s| matches!(s, Sym::N(x) if !x.is_finite())) {
        return Err(format!("computes {x}"));
    }
    Ok(Tensor {
        dims,
        v,
        dtype: if op == "Equal" { BOOL } else { a.dtype },
    })
}
