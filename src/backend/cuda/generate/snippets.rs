//! The pieces every kernel table entry is built from: elementwise kernel
//! specs ([`ew`], [`ew_in_place`]), the dropout seed line, LRN's channel
//! window and its `s^(-beta)`. Shared by `kernels` and `fused_kernels`,
//! which import this file and never each other's helpers.

use crate::backend::cuda::generate::render::{Shape, Spec, f32_lit, ll};
use crate::backend::cuda::program::ParamTy;

/// The first line of a kernel that draws dropout masks: the step's seed
/// from its `seedp` parameter (the program's scalars).
pub(crate) const SEED: &str = "const unsigned long long seed = *seedp;";

pub(crate) fn ew(
    stem: &'static str,
    total: usize,
    params: Vec<(ParamTy, &'static str)>,
    body: Vec<String>,
) -> Spec {
    Spec {
        stem,
        params,
        body,
        shape: Shape::Elementwise { total },
        sync: false,
        in_place: false,
    }
}

/// [`ew`] for a kernel whose thread `i` reads element `i` of its inputs
/// only to write element `i` of its output: the memory plan may run it in
/// place (`relu`, `relu_grad`, `dropout`, `dropout_grad`, `add`,
/// `grad_chain`).
pub(crate) fn ew_in_place(
    stem: &'static str,
    total: usize,
    params: Vec<(ParamTy, &'static str)>,
    body: Vec<String>,
) -> Spec {
    Spec {
        in_place: true,
        ..ew(stem, total, params, body)
    }
}

/// `s^(-beta)` into `dst`, with the CPU's sqrt-only path for `beta = 0.75`.
pub(crate) fn inv_pow(dst: &str, s: &str, beta: f64) -> String {
    if beta == 0.75 {
        format!("float {dst}; {{ const float r = sqrtf({s}); {dst} = 1.0f / (r * sqrtf(r)); }}")
    } else {
        format!("const float {dst} = powf({s}, {});", f32_lit(-beta))
    }
}

pub(crate) fn lrn_window(c: usize, p: usize, size: usize) -> Vec<String> {
    let half = size / 2;
    vec![
        format!("const long long c = (i / {}) % {};", ll(p), ll(c)),
        format!("const long long base = i - c * {};", ll(p)),
        format!("const long long lo = c < {half} ? 0 : c - {half};"),
        format!(
            "const long long hi = c + {half} > {} ? {} : c + {half};",
            c - 1,
            c - 1
        ),
    ]
}
