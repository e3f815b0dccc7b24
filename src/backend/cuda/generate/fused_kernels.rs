//! The kernels of the fused ops (`passes::fuse`), and the GEMM epilogue
//! and transpose they share with the unfused layers. Each mirrors the CPU
//! executor's fused op (`backend::cpu::exec`) operation for operation:
//! the epilogue applies bias, ReLU and the dropout mask in the CPU's order
//! (`r = max(v + b, 0)` with NaN kept, then `r·(keep ? scale : 0)`, the mask keyed by flat
//! output index as the `dropout` kernel), or bias then `tanh`, `sigmoid`
//! or `leaky_relu` written as the unfused activation kernel writes it
//! ([`ActFn`]); a fused layer's backward masks `dy` by `[y > 0]`, or
//! multiplies it by the activation's derivative from `y` as the unfused
//! gradient kernel does, in the transpose to channel-major; `lrn_maxpool` computes each
//! element's LRN as the `lrn_fwd` kernel and pools it as `maxpool_fwd`
//! (first maximum in window order wins); its gradient routes `dy` to the
//! window maxima in window order (as the CPU's scatter) and applies the
//! LRN backward of `lrn_bwd` in the same accumulation order. `grad_chain`
//! is elementwise at index `i` and may run in place over its first part
//! (the memory plan's choice), so its pointers are not `__restrict__`.

use crate::backend::cuda::generate::render::{BLOCK, Shape, Spec, f32_lit, f64_lit, ll, u64_lit};
use crate::backend::cuda::generate::snippets::{SEED, ew, ew_in_place, inv_pow, lrn_window};
use crate::backend::cuda::program::ParamTy::{self, *};
use crate::ir::Activation;

/// An activation with a gradient from its output, as the CPU's
/// `kernels::act::Pointwise`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActFn {
    Tanh,
    Sigmoid,
    LeakyRelu(f64),
}

impl ActFn {
    /// C for `f(v)`, `v` a float expression without side effects.
    pub fn apply(self, v: &str) -> String {
        match self {
            ActFn::Tanh => format!("tanhf({v})"),
            ActFn::Sigmoid => format!("1.0f / (1.0f + expf(-({v})))"),
            ActFn::LeakyRelu(s) => format!("(({v}) > 0.0f ? ({v}) : ({v}) * {})", f32_lit(s)),
        }
    }
    /// C for `g·f'(x)` from the output `y`.
    pub fn grad(self, y: &str, g: &str) -> String {
        match self {
            ActFn::Tanh => format!("{g} * (1.0f - {y} * {y})"),
            ActFn::Sigmoid => format!("{g} * ({y} * (1.0f - {y}))"),
            ActFn::LeakyRelu(s) => format!("({y} > 0.0f ? {g} : {g} * {})", f32_lit(s)),
        }
    }
}

impl ActFn {
    /// The kernel activation of a fused layer's activation (`None` for
    /// ReLU, which has kernels of its own).
    pub fn of_fused(a: Activation) -> Option<ActFn> {
        match a {
            Activation::Relu => None,
            Activation::Tanh => Some(ActFn::Tanh),
            Activation::Sigmoid => Some(ActFn::Sigmoid),
            Activation::LeakyRelu { slope } => Some(ActFn::LeakyRelu(slope)),
        }
    }
}

/// What multiplies a layer's output gradient before its GEMMs: nothing
/// (a plain layer), ReLU's `[y > 0]`, or another activation's derivative
/// from its output `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mask {
    None,
    Relu,
    Act(ActFn),
}

impl Mask {
    /// The mask of a layer fused with `act` (`None`: a plain layer).
    pub fn of(act: Option<Activation>) -> Mask {
        match act {
            None => Mask::None,
            Some(a) => ActFn::of_fused(a).map_or(Mask::Relu, Mask::Act),
        }
    }
}

/// What the GEMM epilogue applies after the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    None,
    Relu,
    /// ReLU, then inverted dropout; `stream` is
    /// `rng::dropout_stream(dropout node name, tower)`.
    ReluDropout {
        rate: f64,
        stream: u64,
    },
    /// `tanh`, `sigmoid` or `leaky_relu`.
    Act(ActFn),
}

impl Epilogue {
    /// The epilogue of a layer fused with `act`, without dropout.
    pub fn of(act: Activation) -> Epilogue {
        ActFn::of_fused(act).map_or(Epilogue::Relu, Epilogue::Act)
    }
}

/// The shape and hyperparameters of an `lrn_maxpool`: `n` images of `c`
/// channels of `h × w`, LRN over `size` channels, `pool × pool` windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnPool {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
    pub pool: usize,
    pub stride: usize,
}

/// Floats of `__shared__` memory the one-block-per-plane `lrn_maxpool`
/// may use (48 KiB, the static limit); larger planes run as `lrn_fwd`
/// then `maxpool_fwd`.
pub const SHARED_FLOATS: usize = 12 * 1024;

impl LrnPool {
    /// Output rows and columns of the pooling (the shape is verified, so
    /// `pool ≤ h, w`; a bad one gives 0 rather than a panic).
    pub fn out(&self) -> (usize, usize) {
        let o = |d: usize| match (d.checked_sub(self.pool), self.stride) {
            (Some(r), s) if s > 0 => r / s + 1,
            _ => 0,
        };
        (o(self.h), o(self.w))
    }
    /// Whether one channel plane fits the fused kernel's shared memory.
    pub fn fits_shared(&self) -> bool {
        self.h * self.w <= SHARED_FLOATS
    }
}

pub fn bias_epilogue(n: usize, f: usize, p: usize, act: Epilogue) -> Spec {
    let mut params = vec![(InF32, "tmp"), (InF32, "bias"), (OutF32, "y")];
    let mut body = vec![format!(
        "const long long img = i / {}, f = (i / {}) % {f}, q = i % {};",
        ll(f * p),
        ll(p),
        ll(p)
    )];
    let v = format!("tmp[(f * {n} + img) * {} + q] + bias[f]", ll(p));
    let stem = match act {
        Epilogue::None => {
            body.push(format!("y[i] = {v};"));
            "bias_epilogue"
        }
        Epilogue::Relu => {
            body.push(format!("const float v = {v};"));
            body.push("y[i] = (v > 0.0f || v != v) ? v : 0.0f;".into());
            "bias_relu_epilogue"
        }
        Epilogue::ReluDropout { rate, stream } => {
            params.push((ParamTy::InU64, "seedp"));
            body.push(format!("const float v = {v};"));
            body.push("const float r = (v > 0.0f || v != v) ? v : 0.0f;".into());
            if rate == 0.0 {
                body.push("y[i] = r;".into());
            } else {
                body.push(SEED.into());
                body.push(format!(
                    "const bool keep = netc_uniform(seed, {}, (unsigned long long)i) >= {};",
                    u64_lit(stream),
                    f64_lit(rate)
                ));
                body.push(format!(
                    "y[i] = r * (keep ? {} : 0.0f);",
                    f32_lit(1.0 / (1.0 - rate))
                ));
            }
            "bias_relu_dropout_epilogue"
        }
        Epilogue::Act(a) => {
            body.push(format!("const float v = {v};"));
            body.push(format!("y[i] = {};", a.apply("v")));
            match a {
                ActFn::Tanh => "bias_tanh_epilogue",
                ActFn::Sigmoid => "bias_sigmoid_epilogue",
                ActFn::LeakyRelu(_) => "bias_leaky_relu_epilogue",
            }
        }
    };
    ew(stem, n * f * p, params, body)
}

/// [`bias_epilogue`] of a layer without a bias (a `conv` with `bias:
/// false`): the same kernel with the bias term and parameter left out,
/// named without `bias_`.
pub fn no_bias_epilogue(n: usize, f: usize, p: usize, act: Epilogue) -> Spec {
    let mut s = bias_epilogue(n, f, p, act);
    s.stem = s.stem.strip_prefix("bias_").unwrap_or(s.stem);
    s.params.retain(|(_, name)| *name != "bias");
    for line in &mut s.body {
        *line = line.replace(" + bias[f]", "");
    }
    s
}

pub fn to_channel_major(n: usize, f: usize, p: usize, mask: Mask) -> Spec {
    let head = format!(
        "const long long img = i / {}, f = (i / {}) % {f}, q = i % {};",
        ll(f * p),
        ll(p),
        ll(p)
    );
    let dst = format!("t[(f * {n} + img) * {} + q]", ll(p));
    let masked = vec![(InF32, "dy"), (InF32, "y"), (OutF32, "t")];
    match mask {
        Mask::Relu => ew(
            "to_channel_major_relu",
            n * f * p,
            masked,
            vec![head, format!("{dst} = y[i] > 0.0f ? dy[i] : 0.0f;")],
        ),
        Mask::Act(a) => ew(
            match a {
                ActFn::Tanh => "to_channel_major_tanh",
                ActFn::Sigmoid => "to_channel_major_sigmoid",
                ActFn::LeakyRelu(_) => "to_channel_major_leaky_relu",
            },
            n * f * p,
            masked,
            vec![
                head,
                "const float yv = y[i], g = dy[i];".into(),
                format!("{dst} = {};", a.grad("yv", "g")),
            ],
        ),
        Mask::None => ew(
            "to_channel_major",
            n * f * p,
            vec![(InF32, "dy"), (OutF32, "t")],
            vec![head, format!("{dst} = dy[i];")],
        ),
    }
}

/// One block per channel plane: the plane's LRN into shared memory (and
/// to `lrn` and `scale`), then its pooling from there.
pub fn lrn_maxpool_fwd(s: &LrnPool) -> Spec {
    let (hw, (oh, ow)) = (s.h * s.w, s.out());
    let (w, size, stride) = (s.w, s.pool, s.stride);
    let mut body = vec![
        format!("__shared__ float t[{}];", hw.max(1)),
        "const long long plane = blockIdx.x;".into(),
    ];
    // `lrn_window` reads `i` (an element) to find the channel; give it the plane's first.
    body.push(format!("const long long i = plane * {};", ll(hw)));
    body.extend(lrn_window(s.c, hw, s.size));
    body.extend([
        format!("for (long long q = threadIdx.x; q < {}; q += {BLOCK}) {{", ll(hw)),
        "  float s = 0.0f;".into(),
        format!(
            "  for (long long j = lo; j <= hi; ++j) {{ const float a = x[base + j * {} + q]; s += a * a; }}",
            ll(hw)
        ),
        format!("  s = {} + {} * s;", f32_lit(s.k), f32_lit(s.alpha)),
        format!("  {}", inv_pow("inv", "s", s.beta)),
        "  scale[i + q] = s;".into(),
        "  const float v = x[i + q] * inv;".into(),
        "  lrn[i + q] = v;".into(),
        "  t[q] = v;".into(),
        "}".into(),
        "__syncthreads();".into(),
        format!("for (long long o = threadIdx.x; o < {}; o += {BLOCK}) {{", ll(oh * ow)),
        format!("  const long long iy0 = (o / {ow}) * {stride}, ix0 = (o % {ow}) * {stride};"),
        format!("  long long bi = iy0 * {w} + ix0;"),
        "  float best = t[bi];".into(),
        format!("  for (long long wy = 0; wy < {size}; ++wy) {{"),
        format!("    for (long long wx = 0; wx < {size}; ++wx) {{"),
        format!("      const long long q = (iy0 + wy) * {w} + ix0 + wx;"),
        "      if (t[q] > best || (t[q] != t[q] && best == best)) { best = t[q]; bi = q; }".into(),
        "    }".into(),
        "  }".into(),
        format!("  y[plane * {} + o] = best;", ll(oh * ow)),
        format!("  argmax[plane * {} + o] = (unsigned int)bi;", ll(oh * ow)),
        "}".into(),
    ]);
    Spec {
        stem: "lrn_maxpool_fwd",
        params: vec![
            (InF32, "x"),
            (OutF32, "lrn"),
            (OutF32, "scale"),
            (OutF32, "y"),
            (OutU32, "argmax"),
        ],
        body,
        shape: Shape::Blocks {
            grid: (s.n * s.c).max(1) as u32,
            block: BLOCK,
        },
        sync: true,
        in_place: false,
    }
}

/// One thread per input element: the pooled gradient of each channel in
/// its LRN window is gathered from the windows whose maximum it is, then
/// the LRN backward, so the pooled gradient is never stored.
pub fn lrn_maxpool_bwd(s: &LrnPool) -> Spec {
    let (hw, (oh, ow)) = (s.h * s.w, s.out());
    let (w, size, stride) = (s.w, s.pool, s.stride);
    let mut body = lrn_window(s.c, hw, s.size);
    body.extend([
        format!("const long long pos = i % {};", ll(hw)),
        format!("const long long plane = i / {};", ll(hw)),
        format!("const long long iy = pos / {w}, ix = pos % {w};"),
        format!("const long long oy0 = iy < {size} ? 0 : (iy - {size} + {stride}) / {stride};"),
        format!("const long long ox0 = ix < {size} ? 0 : (ix - {size} + {stride}) / {stride};"),
        format!(
            "const long long oy1 = iy / {stride} < {} ? iy / {stride} : {};",
            oh as i64 - 1,
            oh as i64 - 1
        ),
        format!(
            "const long long ox1 = ix / {stride} < {} ? ix / {stride} : {};",
            ow as i64 - 1,
            ow as i64 - 1
        ),
        "float acc = 0.0f, dp = 0.0f;".into(),
        "for (long long j = lo; j <= hi; ++j) {".into(),
        format!("  const long long q = base + j * {};", ll(hw)),
        format!("  const long long off = (plane - c + j) * {};", ll(oh * ow)),
        "  float d = 0.0f;".into(),
        "  for (long long oy = oy0; oy <= oy1; ++oy) {".into(),
        "    for (long long ox = ox0; ox <= ox1; ++ox) {".into(),
        format!("      const long long o = off + oy * {ow} + ox;"),
        "      if ((long long)argmax[o] == pos) d += dy[o];".into(),
        "    }".into(),
        "  }".into(),
        "  acc += d * lrn[q] / scale[q];".into(),
        "  if (j == c) dp = d;".into(),
        "}".into(),
        inv_pow("inv", "scale[i]", s.beta),
        format!(
            "dx[i] = dp * inv + {} * x[i] * acc;",
            f32_lit(-2.0 * s.alpha * s.beta)
        ),
    ]);
    ew(
        "lrn_maxpool_bwd",
        s.n * s.c * hw,
        vec![
            (InF32, "x"),
            (InF32, "lrn"),
            (InF32, "scale"),
            (InU32, "argmax"),
            (InF32, "dy"),
            (OutF32, "dx"),
        ],
        body,
    )
}

/// Parameters: the parts `x0..`, then `y` if `relu`, `dx`, then `seed`
/// if there is a dropout mask (a rate of 0 has none).
pub fn grad_chain(total: usize, parts: usize, dropout: Option<(f64, u64)>, relu: bool) -> Spec {
    const NAMES: [&str; 8] = ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"];
    let parts = parts.clamp(1, NAMES.len());
    let mut params: Vec<(ParamTy, &'static str)> =
        NAMES.iter().take(parts).map(|n| (InF32, *n)).collect();
    let mut body = vec!["float s = x0[i];".to_string()];
    for name in NAMES.iter().take(parts).skip(1) {
        body.push(format!("s += {name}[i];"));
    }
    if relu {
        params.push((InF32, "y"));
    }
    params.push((OutF32, "dx"));
    if let Some((rate, stream)) = dropout.filter(|(r, _)| *r > 0.0) {
        params.push((ParamTy::InU64, "seedp"));
        body.push(SEED.into());
        body.push(format!(
            "s = netc_uniform(seed, {}, (unsigned long long)i) >= {} ? s * {} : 0.0f;",
            u64_lit(stream),
            f64_lit(rate),
            f32_lit(1.0 / (1.0 - rate))
        ));
    }
    if relu {
        body.push("s = y[i] > 0.0f ? s : 0.0f;".into());
    }
    body.push("dx[i] = s;".into());
    ew_in_place("grad_chain", total, params, body)
}
