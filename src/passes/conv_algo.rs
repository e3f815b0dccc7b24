//! Per-layer algorithm choice for convolutions: an analysis (like
//! `memplan`, it reads the graph and changes nothing) that chooses, for
//! every `conv` and `conv_relu` node and separately for its forward pass,
//! its input gradient and its weight gradient, one of the algorithms a
//! backend offers ([`Algo`]), by a cost model of the CPU kernels
//! ([`predict`]): the time of an algorithm is its multiply-adds at a rate
//! that grows with the GEMM's inner dimension, plus the elements its
//! lowering (im2col, the Winograd transforms) writes and reads. The model's
//! constants were fitted to single-thread timings of the kernels on the
//! machine `BENCHMARKS.md` names (its issue-24 section lists them with the
//! predictions); they need only order the candidates, not time them.
//!
//! Assumes a verified graph with inferred types (each conv's input is
//! `[c, h, w]`). Guarantees: an algorithm is chosen only where it applies
//! ([`Algo::Winograd`]: one group, no dilation, a square 3×3 window,
//! stride 1, padding at most 2 on each side; [`Algo::Gemm`]: one group, no
//! dilation, square window, equal strides and padding; [`Algo::General`]:
//! any geometry); the choice depends only on the layer's geometry and the
//! [`Policy`], never on the batch or a timing, so every run and every
//! batch size chooses alike. The weight gradient is Winograd only where
//! the input gradient is Winograd too or not needed (the im2col backward
//! computes both from one lowering). Cost: one look at each node.

use std::collections::HashMap;

use crate::ir::{Graph, NodeId, Op};

/// A convolution algorithm of the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algo {
    /// im2col (or im2row) and single-threaded GEMMs over a few images per
    /// task (`kernels::conv`).
    Gemm,
    /// Winograd F(2×2, 3×3) (`kernels::winograd`).
    Winograd,
    /// Dilated, grouped or rectangular im2col per image and group
    /// (`kernels::conv_general`).
    General,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Gemm => "gemm",
            Algo::Winograd => "winograd",
            Algo::General => "general",
        }
    }
}

/// The algorithms of one convolution, per direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvAlgos {
    pub forward: Algo,
    pub input_grad: Algo,
    pub weight_grad: Algo,
}

/// Which algorithms the choice may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// The cheapest by the cost model.
    #[default]
    Auto,
    /// im2col and GEMM wherever it applies (what netc ran before it chose).
    Gemm,
    /// Winograd wherever it applies.
    Winograd,
}

impl Policy {
    /// `NETC_CONV_ALGO` (`auto`, `gemm` or `winograd`; unset or anything
    /// else: `auto`).
    pub fn from_env() -> Policy {
        match std::env::var("NETC_CONV_ALGO").as_deref() {
            Ok("gemm") => Policy::Gemm,
            Ok("winograd") => Policy::Winograd,
            _ => Policy::Auto,
        }
    }
}

/// The geometry of one convolution, per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    pub c: u64,
    pub h: u64,
    pub w: u64,
    pub f: u64,
    pub kh: u64,
    pub kw: u64,
    pub sh: u64,
    pub sw: u64,
    pub ph: u64,
    pub pw: u64,
    pub dil: u64,
    pub groups: u64,
}

impl ConvDims {
    fn oh(&self) -> u64 {
        (self.h + 2 * self.ph - (self.dil * (self.kh - 1) + 1)) / self.sh + 1
    }
    fn ow(&self) -> u64 {
        (self.w + 2 * self.pw - (self.dil * (self.kw - 1) + 1)) / self.sw + 1
    }
    /// Multiply-adds of one direction for one image.
    pub fn macs(&self) -> f64 {
        (self.f * self.oh() * self.ow() * (self.c / self.groups) * self.kh * self.kw) as f64
    }
    fn plain(&self) -> bool {
        self.groups == 1
            && self.dil == 1
            && self.kh == self.kw
            && self.sh == self.sw
            && self.ph == self.pw
    }
    /// Whether `algo` computes this geometry.
    pub fn applies(&self, algo: Algo) -> bool {
        match algo {
            Algo::General => true,
            Algo::Gemm => self.plain(),
            Algo::Winograd => {
                self.plain() && self.kh == 3 && self.sh == 1 && self.ph <= 2 && {
                    self.h + 2 * self.ph >= 3 && self.w + 2 * self.pw >= 3
                }
            }
        }
    }
}

/// The direction of a convolution's computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Forward,
    InputGrad,
    WeightGrad,
}

/// Multiply-adds per second of one core at a GEMM inner dimension of `k`
/// (the rate falls as the inner dimension shrinks: the output is written
/// once per `k` multiply-adds).
fn rate(k: f64) -> f64 {
    const PEAK: f64 = 40e9;
    const HALF_K: f64 = 4.0;
    PEAK * k / (k + HALF_K)
}

/// Seconds per element the lowering writes and later reads back.
const SEC_PER_ELEM: f64 = 0.2e-9;

/// The im2col weight gradient's overhead over its GEMM (the im2row
/// lowering and the per-task partial sums), measured.
const GEMM_WEIGHT_GRAD: f64 = 1.6;

/// The model's time of `algo` for one image in direction `dir` (seconds,
/// one core); `None` where it does not apply.
pub fn predict(d: &ConvDims, algo: Algo, dir: Dir) -> Option<f64> {
    if !d.applies(algo) {
        return None;
    }
    let (c, f) = ((d.c / d.groups) as f64, (d.f / d.groups) as f64);
    let kk = (d.kh * d.kw) as f64;
    let (ohw, hw) = ((d.oh() * d.ow()) as f64, (d.h * d.w) as f64);
    let macs = d.macs();
    Some(match algo {
        Algo::Gemm | Algo::General => {
            // The lowered matrix: c·k·k × oh·ow, written then read.
            let lowered = c * kk * ohw * d.groups as f64;
            // The inner dimension: c·k·k forward and for the weight
            // gradient's rows, f for the input gradient.
            let k = match dir {
                Dir::Forward => c * kk,
                Dir::InputGrad => f,
                Dir::WeightGrad => 2048.0,
            };
            // conv_general runs one GEMM per image and group.
            let slow = if algo == Algo::General { 1.5 } else { 1.0 };
            let dw = if dir == Dir::WeightGrad {
                GEMM_WEIGHT_GRAD
            } else {
                1.0
            };
            slow * dw * (macs / rate(k) + 2.0 * lowered * SEC_PER_ELEM)
        }
        Algo::Winograd => {
            let tiles = (d.oh().div_ceil(2) * d.ow().div_ceil(2)) as f64;
            // 16 products per tile instead of 36 multiply-adds per 2×2 outputs.
            let wmacs = 16.0 * tiles * c * f;
            let (k, inp, out) = match dir {
                Dir::Forward => (c, c, f),
                Dir::InputGrad => (f, f, c),
                Dir::WeightGrad => (1024.0, c, f),
            };
            // Transformed inputs and products (16 per tile and channel),
            // plus the padded planes.
            let moved = 16.0 * tiles * (inp + out) + 2.0 * (hw + ohw) * c.max(f);
            wmacs / rate(k) + 2.0 * moved * SEC_PER_ELEM
        }
    })
}

/// The cheapest applicable algorithm of `dir` under `policy`.
fn cheapest(d: &ConvDims, dir: Dir, policy: Policy) -> Algo {
    let base = if d.applies(Algo::Gemm) {
        Algo::Gemm
    } else {
        Algo::General
    };
    let wino = d.applies(Algo::Winograd);
    match policy {
        Policy::Gemm => base,
        Policy::Winograd if wino => Algo::Winograd,
        Policy::Winograd => base,
        Policy::Auto => {
            let b = predict(d, base, dir).unwrap_or(f64::INFINITY);
            match predict(d, Algo::Winograd, dir) {
                Some(t) if t < b => Algo::Winograd,
                _ => base,
            }
        }
    }
}

/// The algorithms of one convolution; `needs_input_grad` is false for a
/// layer whose input gradient nothing reads (the first layer).
pub fn choose_one(d: &ConvDims, needs_input_grad: bool, policy: Policy) -> ConvAlgos {
    let forward = cheapest(d, Dir::Forward, policy);
    let input_grad = cheapest(d, Dir::InputGrad, policy);
    let mut weight_grad = cheapest(d, Dir::WeightGrad, policy);
    if weight_grad == Algo::Winograd && needs_input_grad && input_grad != Algo::Winograd {
        weight_grad = input_grad;
    }
    ConvAlgos {
        forward,
        input_grad,
        weight_grad,
    }
}

/// The geometry of conv node `n` (`None` for any other op).
pub fn dims(g: &Graph, n: NodeId) -> Option<ConvDims> {
    let (Op::Conv {
        filters,
        size,
        stride,
        pad,
        dilation,
        groups,
        ..
    }
    | Op::ConvRelu {
        filters,
        size,
        stride,
        pad,
        dilation,
        groups,
        ..
    }) = &g.node(n).op
    else {
        return None;
    };
    let x = *g.inputs(n).first()?;
    let (c, h, w) = match g.node(x).ty.dims() {
        [c, h, w] => (*c, *h, *w),
        _ => return None,
    };
    Some(ConvDims {
        c,
        h,
        w,
        f: *filters,
        kh: size.h,
        kw: size.w,
        sh: stride.h,
        sw: stride.w,
        ph: pad.h,
        pw: pad.w,
        dil: *dilation,
        groups: *groups,
    })
}

/// The choice for every convolution of `g` (a forward graph or a training
/// step).
pub fn choose(g: &Graph, policy: Policy) -> HashMap<NodeId, ConvAlgos> {
    g.node_ids()
        .filter_map(|n| {
            let d = dims(g, n)?;
            let needs_dx = g.layer_grads(n).dx.is_some();
            Some((n, choose_one(&d, needs_dx, policy)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: u64, h: u64, f: u64, k: u64, stride: u64, pad: u64, groups: u64) -> ConvDims {
        ConvDims {
            c,
            h,
            w: h,
            f,
            kh: k,
            kw: k,
            sh: stride,
            sw: stride,
            ph: pad,
            pw: pad,
            dil: 1,
            groups,
        }
    }

    #[test]
    fn winograd_only_where_it_applies() {
        for (g, ok) in [
            (d(16, 28, 16, 3, 1, 1, 1), true),
            (d(16, 28, 16, 3, 2, 1, 1), false),
            (d(16, 28, 16, 5, 1, 2, 1), false),
            (d(16, 28, 16, 3, 1, 3, 1), false),
            (d(16, 28, 16, 3, 1, 1, 2), false),
            (d(16, 28, 16, 1, 1, 0, 1), false),
        ] {
            assert_eq!(g.applies(Algo::Winograd), ok, "{g:?}");
            let a = choose_one(&g, true, Policy::Winograd);
            assert_eq!(a.forward == Algo::Winograd, ok, "{g:?}");
            let a = choose_one(&g, true, Policy::Gemm);
            assert_ne!(a.forward, Algo::Winograd);
        }
        assert_eq!(
            choose_one(&d(16, 28, 16, 3, 1, 1, 2), true, Policy::Auto).forward,
            Algo::General
        );
    }

    #[test]
    fn weight_grad_follows_a_gemm_input_grad() {
        for g in [
            d(1, 28, 16, 3, 1, 1, 1),
            d(16, 28, 16, 3, 1, 1, 1),
            d(64, 7, 64, 3, 1, 1, 1),
        ] {
            for policy in [Policy::Auto, Policy::Winograd, Policy::Gemm] {
                let a = choose_one(&g, true, policy);
                assert!(a.weight_grad != Algo::Winograd || a.input_grad == Algo::Winograd);
            }
        }
    }

    #[test]
    fn model_follows_the_measurements() {
        // One input channel: Winograd's GEMMs would have an inner
        // dimension of 1 (measured 4 to 20 times slower).
        let a = choose_one(&d(1, 28, 16, 3, 1, 1, 1), false, Policy::Auto);
        assert_eq!((a.forward, a.weight_grad), (Algo::Gemm, Algo::Gemm));
        // The ResNet's and VGG's 3×3 layers: Winograd measured faster in
        // every direction (weight gradient 1.5 to 2.5 times).
        for g in [
            d(16, 28, 16, 3, 1, 1, 1),
            d(32, 14, 32, 3, 1, 1, 1),
            d(64, 14, 64, 3, 1, 1, 1),
        ] {
            let a = choose_one(&g, true, Policy::Auto);
            assert_eq!(a.forward, Algo::Winograd, "{g:?}");
            assert_eq!(a.weight_grad, Algo::Winograd, "{g:?}");
        }
    }
}
