//! The layer vocabulary: for each layer type of the language, its
//! hyperparameters, their defaults and valid ranges, and the [`Op`] it
//! becomes. Inside `towers N`, `filters` and `units` are totals over the
//! towers (the paper's numbers) and each tower gets `total / N`.

use std::collections::HashMap;

use super::error::{LowerError, suggest};
use crate::ir::Op;
use crate::ir::op::Hw;
use crate::span::Span;
use crate::syntax::ast::{Ident, Number, Value, ValueKind};

/// Every layer type a stage may name.
pub const LAYERS: &[&str] = &[
    "conv",
    "relu",
    "lrn",
    "maxpool",
    "tanh",
    "sigmoid",
    "leaky_relu",
    "softmax",
    "flatten",
    "avgpool",
    "global_avgpool",
    "dense",
    "dropout",
    "concat",
    "add",
    "batchnorm",
    "softmax_xent",
];

/// `let` constants: name -> number.
pub type Consts = HashMap<String, Number>;

/// The hyperparameters each layer type accepts.
pub fn schema(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "conv" => &[
            "filters",
            "size",
            "stride",
            "pad",
            "dilation",
            "groups",
            "bias",
            "lr_mult",
            "decay_mult",
        ],
        "lrn" => &["size", "alpha", "beta", "k"],
        "maxpool" | "avgpool" => &["size", "stride", "pad"],
        "leaky_relu" => &["slope"],
        "dense" => &["units", "lr_mult", "decay_mult"],
        "dropout" => &["rate"],
        "batchnorm" => &["momentum", "eps", "lr_mult", "decay_mult"],
        "relu" | "concat" | "add" | "softmax_xent" | "tanh" | "sigmoid" | "softmax" | "flatten"
        | "global_avgpool" => &[],
        _ => return None,
    })
}

/// The layer arguments that scale a layer's learning rate and weight
/// decay, as Caffe's `param { lr_mult decay_mult }`.
pub const MULTS: [&str; 2] = ["lr_mult", "decay_mult"];

/// The layer types with trained parameters (the ones [`MULTS`] apply to).
fn has_params(op: &str) -> bool {
    matches!(op, "conv" | "dense" | "batchnorm")
}

/// `(lr_mult, decay_mult)` for each of the `params` trained parameters of
/// layer `op` (weight, then bias), from its `lr_mult` and `decay_mult`
/// arguments: a number for all of them, or a list with one number ≥ 0 per
/// parameter; 1 where left out.
pub fn multipliers(
    op: &Ident,
    items: &[(Ident, Value)],
    consts: &Consts,
    params: usize,
) -> Result<Vec<(f64, f64)>, LowerError> {
    let mut out = vec![(1.0, 1.0); params];
    for (slot, name) in MULTS.iter().enumerate() {
        let Some((_, v)) = items.iter().rev().find(|(k, _)| k.name == *name) else {
            continue;
        };
        let bad = |span: Span, reason: String| LowerError::LayerMult { name, span, reason };
        let number = |v: &Value| -> Result<f64, LowerError> {
            let x = match &v.kind {
                ValueKind::Number(n) => n.value,
                ValueKind::Ident(id) => match consts.get(id) {
                    Some(n) => n.value,
                    None => {
                        return Err(LowerError::UnknownName {
                            name: id.clone(),
                            span: v.span,
                            suggestion: suggest(id, consts.keys().map(String::as_str)),
                        });
                    }
                },
                _ => return Err(bad(v.span, "expected a number".into())),
            };
            if !x.is_finite() || x < 0.0 {
                return Err(bad(v.span, format!("must not be negative, got {x}")));
            }
            Ok(x)
        };
        let values = match &v.kind {
            ValueKind::List(vs) => {
                if vs.len() != params {
                    return Err(LowerError::LayerMultLength {
                        name,
                        op: op.name.clone(),
                        got: vs.len(),
                        want: params,
                        span: v.span,
                    });
                }
                vs.iter().map(number).collect::<Result<Vec<_>, _>>()?
            }
            _ => vec![number(v)?; params],
        };
        for (o, x) in out.iter_mut().zip(values) {
            if slot == 0 {
                o.0 = x;
            } else {
                o.1 = x;
            }
        }
    }
    Ok(out)
}

/// How many data inputs a layer takes: (min, max).
pub fn arity(op: &str) -> (usize, usize) {
    match op {
        "concat" => (1, usize::MAX),
        "add" => (2, usize::MAX),
        "softmax_xent" => (2, 2),
        _ => (1, 1),
    }
}

struct Args<'a> {
    op: &'a Ident,
    items: &'a [(Ident, Value)],
    consts: &'a Consts,
    known: Vec<&'static str>,
}

impl<'a> Args<'a> {
    fn find(&mut self, name: &'static str) -> Option<&'a (Ident, Value)> {
        self.known.push(name);
        // The last one wins, so `norm(size: 3)` overrides a `let` default.
        self.items.iter().rev().find(|(k, _)| k.name == name)
    }

    fn number(&mut self, name: &'static str) -> Result<Option<(f64, Span)>, LowerError> {
        let Some((_, v)) = self.find(name) else {
            return Ok(None);
        };
        match &v.kind {
            ValueKind::Number(n) => Ok(Some((n.value, v.span))),
            ValueKind::Ident(id) => match self.consts.get(id) {
                Some(n) => Ok(Some((n.value, v.span))),
                None => Err(LowerError::UnknownName {
                    name: id.clone(),
                    span: v.span,
                    suggestion: suggest(id, self.consts.keys().map(String::as_str)),
                }),
            },
            _ => Err(LowerError::InvalidValue {
                name: name.into(),
                span: v.span,
                reason: "expected a number".into(),
            }),
        }
    }

    fn int(
        &mut self,
        name: &'static str,
        default: Option<u64>,
        min: u64,
    ) -> Result<u64, LowerError> {
        let Some((v, span)) = self.number(name)? else {
            return default.ok_or(LowerError::MissingParam {
                op: self.op.name.clone(),
                name,
                span: self.op.span,
            });
        };
        let bad = |reason: String| LowerError::InvalidValue {
            name: name.into(),
            span,
            reason,
        };
        if v.fract() != 0.0 {
            return Err(bad(format!("expected a whole number, got {v}")));
        }
        if v < min as f64 {
            return Err(bad(if v < 0.0 {
                format!("must not be negative, got {v}")
            } else {
                format!("must be at least {min}, got {v}")
            }));
        }
        if v >= 2f64.powi(53) {
            return Err(LowerError::Overflow { span });
        }
        Ok(v as u64)
    }

    fn float(
        &mut self,
        name: &'static str,
        default: f64,
        check: impl Fn(f64) -> Option<&'static str>,
    ) -> Result<f64, LowerError> {
        let Some((v, span)) = self.number(name)? else {
            return Ok(default);
        };
        match check(v) {
            Some(reason) => Err(LowerError::InvalidValue {
                name: name.into(),
                span,
                reason: format!("{reason}, got {v}"),
            }),
            None => Ok(v),
        }
    }

    /// A per-axis size: one number (square) or `[h, w]`, each a whole
    /// number (or `let` constant) of at least `min`.
    fn pair(
        &mut self,
        name: &'static str,
        default: Option<u64>,
        min: u64,
    ) -> Result<Hw, LowerError> {
        let Some((_, v)) = self.find(name) else {
            return self.int(name, default, min).map(Hw::square);
        };
        let ValueKind::List(items) = &v.kind else {
            return self.int(name, default, min).map(Hw::square);
        };
        let (span, items) = (v.span, items.clone());
        if items.len() != 2 {
            return Err(LowerError::BadPair {
                name,
                span,
                got: items.len(),
            });
        }
        let mut out = [0u64; 2];
        for (o, item) in out.iter_mut().zip(&items) {
            let key = Ident {
                name: name.to_string(),
                span: item.span,
            };
            let one = [(key, item.clone())];
            let mut a = Args {
                op: self.op,
                items: &one,
                consts: self.consts,
                known: Vec::new(),
            };
            *o = match &item.kind {
                ValueKind::Number(_) | ValueKind::Ident(_) => a.int(name, None, min)?,
                _ => {
                    return Err(LowerError::BadPair {
                        name,
                        span: item.span,
                        got: 0,
                    });
                }
            };
        }
        Ok(Hw {
            h: out[0],
            w: out[1],
        })
    }

    fn boolean(&mut self, name: &'static str, default: bool) -> Result<bool, LowerError> {
        let Some((_, v)) = self.find(name) else {
            return Ok(default);
        };
        match &v.kind {
            ValueKind::Bool(b) => Ok(*b),
            _ => Err(LowerError::NotABool { name, span: v.span }),
        }
    }

    fn split(&mut self, name: &'static str, towers: u64) -> Result<u64, LowerError> {
        let total = self.int(name, None, 1)?;
        if total % towers != 0 {
            let span = self.find(name).map_or(self.op.span, |(_, v)| v.span);
            return Err(LowerError::NotDivisible {
                name,
                total,
                towers,
                span,
            });
        }
        Ok(total / towers)
    }

    fn finish(self) -> Result<(), LowerError> {
        for (k, _) in self.items {
            if !self.known.contains(&k.name.as_str()) {
                let mut expected = self.known.clone();
                expected.sort_unstable();
                expected.dedup();
                return Err(LowerError::UnknownParam {
                    op: self.op.name.clone(),
                    name: k.name.clone(),
                    span: k.span,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// Builds the op for layer type `op` with named arguments `items`, for a
/// stage instantiated in `towers` towers (1 outside a `towers` block).
pub fn build_op(
    op: &Ident,
    items: &[(Ident, Value)],
    consts: &Consts,
    towers: u64,
) -> Result<Op, LowerError> {
    if schema(&op.name).is_some()
        && !has_params(&op.name)
        && let Some((k, _)) = items.iter().find(|(k, _)| MULTS.contains(&k.name.as_str()))
    {
        return Err(LowerError::LayerMultNoParams {
            name: k.name.clone(),
            op: op.name.clone(),
            span: k.span,
        });
    }
    if let Some(names) = schema(&op.name)
        && let Some((k, _)) = items
            .iter()
            .find(|(k, _)| !names.contains(&k.name.as_str()))
    {
        return Err(LowerError::UnknownParam {
            op: op.name.clone(),
            name: k.name.clone(),
            span: k.span,
            expected: names.to_vec(),
        });
    }
    let mut a = Args {
        op,
        items,
        consts,
        known: Vec::new(),
    };
    let positive = |v: f64| (v <= 0.0).then_some("must be positive");
    if has_params(&op.name) {
        // Read by `multipliers`, once the layer's parameters are known.
        a.known.extend(MULTS);
    }
    let result = match op.name.as_str() {
        "conv" => {
            let filters = a.split("filters", towers)?;
            let size = a.pair("size", None, 1)?;
            let stride = a.pair("stride", Some(1), 1)?;
            let pad = a.pair("pad", Some(0), 0)?;
            let dilation = a.int("dilation", Some(1), 1)?;
            let groups = a.int("groups", Some(1), 1)?;
            if filters % groups != 0 {
                let span = a.find("groups").map_or(op.span, |(_, v)| v.span);
                return Err(LowerError::GroupsFilters {
                    groups,
                    filters,
                    span,
                });
            }
            let bias = a.boolean("bias", true)?;
            Op::Conv {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
            }
        }
        "relu" => Op::Relu,
        "lrn" => {
            let size = a.int("size", Some(5), 1)?;
            let alpha = a.float("alpha", 1e-4, |v| {
                (v < 0.0).then_some("must not be negative")
            })?;
            let beta = a.float("beta", 0.75, |v| {
                (v < 0.0).then_some("must not be negative")
            })?;
            let k = a.float("k", 2.0, positive)?;
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            }
        }
        "maxpool" | "avgpool" => {
            let size = a.int("size", None, 1)?;
            let stride = a.int("stride", Some(size), 1)?;
            let pad = a.int("pad", Some(0), 0)?;
            // As in PyTorch: a window is never all padding.
            if pad > size / 2 {
                let span = a.find("pad").map_or(op.span, |(_, v)| v.span);
                return Err(LowerError::PoolPad { pad, size, span });
            }
            if op.name == "maxpool" {
                Op::MaxPool { size, stride, pad }
            } else {
                Op::AvgPool { size, stride, pad }
            }
        }
        "tanh" => Op::Tanh,
        "sigmoid" => Op::Sigmoid,
        "leaky_relu" => {
            let slope = a.number("slope")?;
            match slope {
                None => Op::LeakyRelu { slope: 0.01 },
                Some((v, span)) if !v.is_finite() || v < 0.0 => {
                    return Err(LowerError::Slope { value: v, span });
                }
                Some((slope, _)) => Op::LeakyRelu { slope },
            }
        }
        "softmax" => Op::Softmax,
        "flatten" => Op::Flatten,
        "global_avgpool" => Op::GlobalAvgPool,
        "dense" => Op::Dense {
            units: a.split("units", towers)?,
        },
        "dropout" => {
            let rate = a.float("rate", 0.5, |v| {
                (!(0.0..1.0).contains(&v)).then_some("must lie in [0, 1)")
            })?;
            Op::Dropout { rate }
        }
        "concat" => Op::Concat,
        "add" => Op::Sum,
        "batchnorm" => {
            let momentum = a.float("momentum", 0.1, |v| {
                (!(0.0..=1.0).contains(&v)).then_some("must lie in [0, 1]")
            })?;
            let eps = a.float("eps", 1e-5, positive)?;
            Op::BatchNorm { momentum, eps }
        }
        "softmax_xent" => Op::SoftmaxXent,
        other => {
            return Err(LowerError::UnknownOp {
                name: other.into(),
                span: op.span,
                suggestion: suggest(other, LAYERS.iter().copied()),
            });
        }
    };
    a.finish()?;
    Ok(result)
}
