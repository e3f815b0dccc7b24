//! The table from kernel to C snippet. Each [`Kernel`] carries the sizes
//! and hyperparameters it bakes in; [`spec`] is the one place that says
//! what it computes, mirroring `backend::cpu::kernels` operation for
//! operation (same accumulation order where the CPU has one, so results
//! agree to rounding). The snippets of the fused ops' kernels, the GEMM
//! epilogue and the channel-major transpose live in [`crate::backend::cuda::generate::fused_kernels`].
//! The kernels of the ops the memory plan may run in place (`relu`,
//! `relu_grad`, `dropout` and `dropout_grad`, `add`; `grad_chain` there)
//! are built by [`ew_in_place`](super::snippets::ew_in_place): thread `i` reads element `i` of each
//! input only to write element `i`, and no pointer is `__restrict__`.
//! A convolution's kernels (im2col, col2im, epilogue, transpose, bias
//! gradient) take `n` images: the whole batch or one chunk of it, their
//! pointers offset to the chunk's first image by the caller.

use crate::backend::cuda::generate::fused_kernels as fk;
pub use crate::backend::cuda::generate::fused_kernels::{ActFn, Epilogue, LrnPool, Mask};
use crate::backend::cuda::generate::render::{BLOCK, Shape, Spec, f32_lit, f64_lit, ll, u64_lit};
use crate::backend::cuda::generate::snippets::{SEED, ew, ew_in_place, inv_pow, lrn_window};
use crate::backend::cuda::program::ParamTy::{self, *};

/// A kernel with everything it bakes in. Sizes count elements of the whole
/// batch unless noted; `p` is positions per channel (`h·w`).
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    Relu {
        total: usize,
    },
    ReluGrad {
        total: usize,
    },
    /// Paper LRN over the `c` channels of one tower.
    LrnFwd {
        n: usize,
        c: usize,
        p: usize,
        size: usize,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    LrnBwd {
        n: usize,
        c: usize,
        p: usize,
        size: usize,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    MaxPoolFwd {
        planes: usize,
        h: usize,
        w: usize,
        size: usize,
        stride: usize,
    },
    /// Gathers, for each input, the `dy` of the windows whose argmax it is.
    MaxPoolBwd {
        planes: usize,
        h: usize,
        w: usize,
        size: usize,
        stride: usize,
    },
    /// Inverted dropout; `stream` is `rng::dropout_stream(forward node name, tower)`.
    Dropout {
        total: usize,
        rate: f64,
        stream: u64,
    },
    /// Channel concatenation of parts with `parts[i]` channels each.
    Concat {
        n: usize,
        p: usize,
        parts: Vec<usize>,
    },
    Slice {
        n: usize,
        p: usize,
        c: usize,
        start: usize,
        len: usize,
    },
    Add {
        total: usize,
        inputs: usize,
    },
    SoftmaxXentFwd {
        n: usize,
        classes: usize,
    },
    /// `(probs − target)/n`; the target smoothed by `smoothing` (ε):
    /// `(1 − ε)·onehot + ε/classes`.
    SoftmaxXentBwd {
        n: usize,
        classes: usize,
        smoothing: f64,
    },
    /// `y[n][f][p] = act(tmp[f][n][p] + bias[f])`: the GEMM epilogue.
    BiasEpilogue {
        n: usize,
        f: usize,
        p: usize,
        act: Epilogue,
    },
    /// `t[f][n][p] = dy[n][f][p]`, times `[y > 0]` under `Mask::Relu` (the
    /// masked output gradient of a `conv_relu`), or the derivative of the
    /// activation from `y` under `Mask::Act` (a `conv_tanh`'s, ...).
    ToChannelMajor {
        n: usize,
        f: usize,
        p: usize,
        mask: Mask,
    },
    /// `dx = y > 0 ? dy·scale : 0`: the masked output gradient of a
    /// `dense_relu_dropout` (`scale = 1/(1 − rate)`).
    ReluGradScale {
        total: usize,
        scale: f64,
    },
    /// `maxpool(lrn(x))`, one block per channel plane; keeps the LRN output
    /// and scale (input-sized) and the argmax (output-sized).
    LrnMaxPoolFwd(LrnPool),
    /// The gradient of `LrnMaxPoolFwd`, one thread per input element.
    LrnMaxPoolBwd(LrnPool),
    /// `dx = (Σ parts) · dropout mask · [y > 0]`, one pass (`grad_chain`).
    GradChain {
        total: usize,
        parts: usize,
        /// `(rate, rng::dropout_stream(forward dropout name, tower))`.
        dropout: Option<(f64, u64)>,
        relu: bool,
    },
    /// `db[f] = Σ_{n,p} dy[n][f][p]` (`+=` if `acc`: one chunk of images
    /// after the first), one block per `f`.
    BiasGrad {
        n: usize,
        f: usize,
        p: usize,
        acc: bool,
    },
    /// `col[(c·k+ki)·k+kj][n·oh·ow + oy·ow + ox]`.
    Im2col {
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
    },
    /// Adjoint of `Im2col` (a gather, so no atomics).
    Col2im {
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
    },
    /// `Im2col` of any taps (rectangular, per-axis stride and padding,
    /// dilated): `col[(c·kh+ki)·kw+kj][n·oh·ow + oy·ow + ox]`.
    Im2colGeneral(ConvTaps),
    /// Adjoint of `Im2colGeneral` (a gather, so no atomics).
    Col2imGeneral(ConvTaps),
    /// `BiasEpilogue` of a layer without a bias: `y[n][f][p] = act(tmp[f][n][p])`.
    NoBiasEpilogue {
        n: usize,
        f: usize,
        p: usize,
        act: Epilogue,
    },
    /// The batch mean and biased variance of each of `c` channels over
    /// `n` images of `p` positions, one block per channel.
    BnStats {
        n: usize,
        c: usize,
        p: usize,
    },
    /// `y = γ·(x − mean)/sqrt(var + eps) + β` with the statistics given
    /// (the batch's in training, the running ones in evaluation).
    BnNormalise {
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    },
    /// ∂L/∂x of a training batchnorm, one block per channel: `Σ dy` and
    /// `Σ dy·x̂` reduced, then `dx = γ/(m·σ)·(m·dy − Σdy − x̂·Σ dy·x̂)`.
    BnGradInput {
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    },
    /// `∂L/∂γ = Σ dy·x̂` per channel, one block per channel.
    BnGradGamma {
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    },
    /// `r ← (1 − momentum)·r + momentum·s` for the `c` running means and
    /// variances, in place; the batch variance over `m` values unbiased.
    RunningUpdate {
        c: usize,
        momentum: f64,
        m: usize,
    },
    /// `tanh`, `sigmoid` or `leaky_relu`, elementwise (in place allowed).
    Act {
        total: usize,
        f: ActFn,
    },
    /// Its gradient from the output: `dx = dy·f'(x)` written with `y`.
    ActGrad {
        total: usize,
        f: ActFn,
    },
    /// `y = x` (`flatten` and its gradient; in place allowed).
    Copy {
        total: usize,
    },
    /// Max pooling with `pad` (padded positions never win), as the CPU's
    /// `avgpool::maxpool_pad_forward`; `MaxPoolFwd` stays the `pad = 0` one.
    MaxPoolPadFwd(Pool),
    /// Gathers, for each input, the `dy` of the windows whose argmax it is.
    MaxPoolPadBwd(Pool),
    /// Average pooling, padded positions counting in the `size²` divisor.
    AvgPoolFwd(Pool),
    /// Gathers, for each input, `dy/size²` of the windows covering it.
    AvgPoolBwd(Pool),
    /// The mean of each plane of `hw` values, summed in the CPU's 8 lanes.
    GlobalAvgPoolFwd {
        planes: usize,
        hw: usize,
    },
    GlobalAvgPoolBwd {
        planes: usize,
        hw: usize,
    },
    /// Softmax over the `classes` scores of each of `n` rows.
    Softmax {
        n: usize,
        classes: usize,
    },
    /// The paper's SGD step, in place (Nesterov's with `nesterov`), the
    /// learning rate scaled by `lr_mult` and the weight decay by `decay_mult`.
    Sgd {
        total: usize,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
        lr_mult: f64,
        decay_mult: f64,
    },
}

/// The taps of a general convolution's `im2col`/`col2im`: `n` images of
/// `c` channels of `h × w`, a `kh × kw` kernel dilated by `dil`, strides
/// `sh`, `sw`, padding `ph`, `pw`, output `oh × ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTaps {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dil: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Lines that sum `acc` over the block into `part[0]` (a `__shared__`
/// array of `BLOCK` floats); every thread may read `part[0]` after them.
fn block_sum(part: &str, acc: &str) -> Vec<String> {
    vec![
        format!("{part}[threadIdx.x] = {acc};"),
        "__syncthreads();".into(),
        format!("for (int s = {}; s > 0; s >>= 1) {{", BLOCK / 2),
        format!("  if (threadIdx.x < s) {part}[threadIdx.x] += {part}[threadIdx.x + s];"),
        "  __syncthreads();".into(),
        "}".into(),
    ]
}

/// The loop head over the `n·p` values of channel `ch` (block-strided),
/// setting `at` to the value's index in the NCHW tensor.
fn channel_loop(n: usize, c: usize, p: usize) -> [String; 2] {
    [
        format!(
            "for (long long q = threadIdx.x; q < {}; q += {BLOCK}) {{",
            ll(n * p)
        ),
        format!(
            "  const long long at = ((q / {}) * {c} + ch) * {} + q % {};",
            ll(p),
            ll(p),
            ll(p)
        ),
    ]
}

/// The per-channel sums of the batchnorm gradients: `sd = Σ dy`, `sdx =
/// Σ dy·x̂` in `part[0]`, `part2[0]`, with `mu` and `inv = 1/sqrt(var + eps)`.
fn bn_sums(n: usize, c: usize, p: usize, eps: f64) -> Vec<String> {
    let [head, at] = channel_loop(n, c, p);
    let mut b = vec![
        format!("__shared__ float part[{BLOCK}];"),
        format!("__shared__ float part2[{BLOCK}];"),
        "const long long ch = blockIdx.x;".into(),
        "const float mu = mean[ch];".into(),
        format!(
            "const float inv = 1.0f / sqrtf(var[ch] + {});",
            f32_lit(eps)
        ),
        "float sd = 0.0f, sdx = 0.0f;".into(),
        head,
        at,
        "  const float g = dy[at];".into(),
        "  sd += g;".into(),
        "  sdx += g * (x[at] - mu) * inv;".into(),
        "}".into(),
    ];
    b.extend(block_sum("part", "sd"));
    b.extend(block_sum("part2", "sdx"));
    b
}

/// A padded pooling: `planes` planes of `h×w`, window `size` every `stride`, `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Pool {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.size) / self.stride + 1,
            (self.w + 2 * self.pad - self.size) / self.stride + 1,
        )
    }

    /// Lines that set `o` (the output position in its plane), `xp` the
    /// plane's input, and the window's real rows `y0..y1`, columns `x0..x1`.
    fn window(&self) -> Vec<String> {
        let (oh, ow) = self.out();
        let Pool {
            h,
            w,
            size,
            stride,
            pad,
            ..
        } = *self;
        vec![
            format!("const long long o = i % {};", ll(oh * ow)),
            format!(
                "const float* xp = x + (i / {}) * {};",
                ll(oh * ow),
                ll(h * w)
            ),
            format!(
                "const long long sy = (o / {ow}) * {stride} - {pad}, sx = (o % {ow}) * {stride} - {pad};"
            ),
            "const long long y0 = sy < 0 ? 0 : sy, x0 = sx < 0 ? 0 : sx;".into(),
            format!("const long long y1 = sy + {size} < {h} ? sy + {size} : {h};"),
            format!("const long long x1 = sx + {size} < {w} ? sx + {size} : {w};"),
        ]
    }

    /// Lines that set `pos` (the input position in its plane), `off` (the
    /// plane's first output), and the outputs `oy0..=oy1`, `ox0..=ox1` whose
    /// windows cover it (empty when `oy0 > oy1`).
    fn covering(&self) -> Vec<String> {
        let (oh, ow) = self.out();
        let Pool {
            h,
            w,
            size,
            stride,
            pad,
            ..
        } = *self;
        vec![
            format!("const long long pos = i % {};", ll(h * w)),
            format!(
                "const long long off = (i / {}) * {};",
                ll(h * w),
                ll(oh * ow)
            ),
            format!("const long long py = pos / {w} + {pad}, px = pos % {w} + {pad};"),
            format!("const long long oy0 = py < {size} ? 0 : (py - {size} + {stride}) / {stride};"),
            format!("const long long ox0 = px < {size} ? 0 : (px - {size} + {stride}) / {stride};"),
            format!(
                "const long long oy1 = py / {stride} < {} ? py / {stride} : {};",
                oh - 1,
                oh - 1
            ),
            format!(
                "const long long ox1 = px / {stride} < {} ? px / {stride} : {};",
                ow - 1,
                ow - 1
            ),
        ]
    }
}

/// The table: what each kernel computes, as CUDA C.
pub fn spec(k: &Kernel) -> Spec {
    match k {
        Kernel::Relu { total } => ew_in_place(
            "relu",
            *total,
            vec![(InF32, "x"), (OutF32, "y")],
            vec!["const float v = x[i];".into(), "y[i] = (v > 0.0f || v != v) ? v : 0.0f;".into()],
        ),
        Kernel::ReluGrad { total } => ew_in_place(
            "relu_grad",
            *total,
            vec![(InF32, "y"), (InF32, "dy"), (OutF32, "dx")],
            vec!["dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;".into()],
        ),
        Kernel::LrnFwd { n, c, p, size, alpha, beta, k } => {
            let mut b = lrn_window(*c, *p, *size);
            b.extend([
                "float s = 0.0f;".into(),
                format!("for (long long j = lo; j <= hi; ++j) {{ const float a = x[base + j * {}]; s += a * a; }}", ll(*p)),
                format!("s = {} + {} * s;", f32_lit(*k), f32_lit(*alpha)),
                inv_pow("inv", "s", *beta),
                "scale[i] = s;".into(),
                "y[i] = x[i] * inv;".into(),
            ]);
            ew("lrn_fwd", n * c * p, vec![(InF32, "x"), (OutF32, "y"), (OutF32, "scale")], b)
        }
        Kernel::LrnBwd { n, c, p, size, alpha, beta, k: _ } => {
            let mut b = lrn_window(*c, *p, *size);
            b.extend([
                "float acc = 0.0f;".into(),
                format!(
                    "for (long long j = lo; j <= hi; ++j) {{ const long long q = base + j * {}; acc += dy[q] * y[q] / scale[q]; }}",
                    ll(*p)
                ),
                inv_pow("inv", "scale[i]", *beta),
                format!("dx[i] = dy[i] * inv + {} * x[i] * acc;", f32_lit(-2.0 * alpha * beta)),
            ]);
            ew(
                "lrn_bwd",
                n * c * p,
                vec![(InF32, "x"), (InF32, "y"), (InF32, "scale"), (InF32, "dy"), (OutF32, "dx")],
                b,
            )
        }
        Kernel::MaxPoolFwd { planes, h, w, size, stride } => {
            let (oh, ow) = ((h - size) / stride + 1, (w - size) / stride + 1);
            ew(
                "maxpool_fwd",
                planes * oh * ow,
                vec![(InF32, "x"), (OutF32, "y"), (OutU32, "argmax")],
                vec![
                    format!("const long long o = i % {};", ll(oh * ow)),
                    format!("const float* xp = x + (i / {}) * {};", ll(oh * ow), ll(h * w)),
                    format!("const long long iy0 = (o / {ow}) * {stride}, ix0 = (o % {ow}) * {stride};"),
                    format!("long long bi = iy0 * {w} + ix0;"),
                    "float best = xp[bi];".into(),
                    format!("for (long long dy = 0; dy < {size}; ++dy) {{"),
                    format!("  for (long long dx = 0; dx < {size}; ++dx) {{"),
                    format!("    const long long q = (iy0 + dy) * {w} + ix0 + dx;"),
                    "    if (xp[q] > best || (xp[q] != xp[q] && best == best)) { best = xp[q]; bi = q; }".into(),
                    "  }".into(),
                    "}".into(),
                    "y[i] = best;".into(),
                    "argmax[i] = (unsigned int)bi;".into(),
                ],
            )
        }
        Kernel::MaxPoolBwd { planes, h, w, size, stride } => {
            let (oh, ow) = ((h - size) / stride + 1, (w - size) / stride + 1);
            ew(
                "maxpool_bwd",
                planes * h * w,
                vec![(InF32, "dy"), (InU32, "argmax"), (OutF32, "dx")],
                vec![
                    format!("const long long pos = i % {};", ll(h * w)),
                    format!("const long long off = (i / {}) * {};", ll(h * w), ll(oh * ow)),
                    format!("const long long iy = pos / {w}, ix = pos % {w};"),
                    format!("const long long oy0 = iy < {size} ? 0 : (iy - {size} + {stride}) / {stride};"),
                    format!("const long long ox0 = ix < {size} ? 0 : (ix - {size} + {stride}) / {stride};"),
                    format!("const long long oy1 = iy / {stride} < {} ? iy / {stride} : {};", oh - 1, oh - 1),
                    format!("const long long ox1 = ix / {stride} < {} ? ix / {stride} : {};", ow - 1, ow - 1),
                    "float acc = 0.0f;".into(),
                    "for (long long oy = oy0; oy <= oy1; ++oy) {".into(),
                    "  for (long long ox = ox0; ox <= ox1; ++ox) {".into(),
                    format!("    const long long q = off + oy * {ow} + ox;"),
                    "    if ((long long)argmax[q] == pos) acc += dy[q];".into(),
                    "  }".into(),
                    "}".into(),
                    "dx[i] = acc;".into(),
                ],
            )
        }
        Kernel::Dropout { total, rate, stream } => {
            let body = if *rate == 0.0 {
                vec!["y[i] = x[i];".to_string()]
            } else {
                vec![
                    SEED.to_string(),
                    format!(
                        "const bool keep = netc_uniform(seed, {}, (unsigned long long)i) >= {};",
                        u64_lit(*stream),
                        f64_lit(*rate)
                    ),
                    format!("y[i] = x[i] * (keep ? {} : 0.0f);", f32_lit(1.0 / (1.0 - rate))),
                ]
            };
            ew_in_place("dropout", *total, vec![(InF32, "x"), (OutF32, "y"), (ParamTy::InU64, "seedp")], body)
        }
        Kernel::Concat { n, p, parts } => {
            let ct: usize = parts.iter().sum();
            let names = ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"];
            let mut params: Vec<(ParamTy, &'static str)> =
                parts.iter().enumerate().map(|(j, _)| (InF32, names[j])).collect();
            params.push((OutF32, "y"));
            let mut body = vec![
                format!("const long long img = i / {}, r = i % {};", ll(ct * p), ll(ct * p)),
                format!("const long long c = r / {}, q = r % {};", ll(*p), ll(*p)),
            ];
            let mut start = 0;
            for (j, c) in parts.iter().enumerate() {
                let cond = if j + 1 == parts.len() {
                    "else".to_string()
                } else if j == 0 {
                    format!("if (c < {})", start + c)
                } else {
                    format!("else if (c < {})", start + c)
                };
                body.push(format!(
                    "{cond} y[i] = {}[(img * {c} + c - {start}) * {} + q];",
                    names[j],
                    ll(*p)
                ));
                start += c;
            }
            if parts.len() == 1 {
                body[2] = "y[i] = x0[i];".to_string();
            }
            ew("concat", n * ct * p, params, body)
        }
        Kernel::Slice { n, p, c, start, len } => ew(
            "slice",
            n * len * p,
            vec![(InF32, "x"), (OutF32, "y")],
            vec![format!(
                "y[i] = x[(i / {}) * {} + {} + i % {}];",
                ll(len * p),
                ll(c * p),
                ll(start * p),
                ll(len * p)
            )],
        ),
        Kernel::Add { total, inputs } => {
            let names = ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"];
            let mut params: Vec<(ParamTy, &'static str)> = (0..*inputs).map(|j| (InF32, names[j])).collect();
            params.push((OutF32, "y"));
            let mut body = vec!["float s = x0[i];".to_string()];
            for name in names.iter().take(*inputs).skip(1) {
                body.push(format!("s += {name}[i];"));
            }
            body.push("y[i] = s;".into());
            ew_in_place("add", *total, params, body)
        }
        Kernel::SoftmaxXentFwd { n, classes } => Spec {
            stem: "softmax_xent_fwd",
            params: vec![(InF32, "logits"), (InU32, "labels"), (OutF32, "probs"), (OutF32, "loss")],
            body: vec![
                format!("__shared__ double part[{BLOCK}];"),
                "double mine = 0.0;".into(),
                format!("for (long long r = threadIdx.x; r < {n}; r += {BLOCK}) {{"),
                format!("  const float* z = logits + r * {classes};"),
                format!("  float* pr = probs + r * {classes};"),
                "  float m = z[0];".into(),
                format!("  for (long long j = 0; j < {classes}; ++j) m = fmaxf(m, z[j]);"),
                "  float sum = 0.0f;".into(),
                format!("  for (long long j = 0; j < {classes}; ++j) {{ const float e = expf(z[j] - m); pr[j] = e; sum += e; }}"),
                "  const float inv = 1.0f / sum;".into(),
                format!("  for (long long j = 0; j < {classes}; ++j) pr[j] *= inv;"),
                "  mine += log((double)sum) - (double)(z[labels[r]] - m);".into(),
                "}".into(),
                "part[threadIdx.x] = mine;".into(),
                "__syncthreads();".into(),
                "if (threadIdx.x == 0) {".into(),
                "  double total = 0.0;".into(),
                format!("  for (int t = 0; t < {}; ++t) total += part[t];", (*n).min(BLOCK as usize)),
                format!("  loss[0] = (float)(total / {});", f64_lit(*n as f64)),
                "}".into(),
            ],
            shape: Shape::Blocks { grid: 1, block: BLOCK },
            sync: true,
            in_place: false,
        },
        Kernel::SoftmaxXentBwd { n, classes, smoothing } if *smoothing == 0.0 => ew(
            "softmax_xent_bwd",
            n * classes,
            vec![(InF32, "probs"), (InU32, "labels"), (OutF32, "dlogits")],
            vec![
                format!("const float inv_n = {};", f32_lit(1.0 / *n as f64)),
                format!("const long long r = i / {classes}, j = i % {classes};"),
                "dlogits[i] = j == (long long)labels[r] ? (probs[i] - 1.0f) * inv_n : probs[i] * inv_n;".into(),
            ],
        ),
        Kernel::SoftmaxXentBwd { n, classes, smoothing } => {
            let (on, off) = crate::backend::cpu::kernels::softmax_xent::smoothed_targets(*classes, *smoothing);
            ew(
                "softmax_xent_bwd",
                n * classes,
                vec![(InF32, "probs"), (InU32, "labels"), (OutF32, "dlogits")],
                vec![
                    format!("const float inv_n = {};", f32_lit(1.0 / *n as f64)),
                    format!("const long long r = i / {classes}, j = i % {classes};"),
                    format!(
                        "dlogits[i] = (probs[i] - (j == (long long)labels[r] ? {} : {})) * inv_n;",
                        f32_lit(on),
                        f32_lit(off)
                    ),
                ],
            )
        }
        Kernel::Act { total, f } => ew_in_place(
            match f {
                ActFn::Tanh => "tanh",
                ActFn::Sigmoid => "sigmoid",
                ActFn::LeakyRelu(_) => "leaky_relu",
            },
            *total,
            vec![(InF32, "x"), (OutF32, "y")],
            vec!["const float v = x[i];".into(), format!("y[i] = {};", f.apply("v"))],
        ),
        Kernel::ActGrad { total, f } => ew_in_place(
            match f {
                ActFn::Tanh => "tanh_grad",
                ActFn::Sigmoid => "sigmoid_grad",
                ActFn::LeakyRelu(_) => "leaky_relu_grad",
            },
            *total,
            vec![(InF32, "y"), (InF32, "dy"), (OutF32, "dx")],
            vec![
                "const float yv = y[i], g = dy[i];".into(),
                format!("dx[i] = {};", f.grad("yv", "g")),
            ],
        ),
        Kernel::Copy { total } => {
            ew_in_place("copy", *total, vec![(InF32, "x"), (OutF32, "y")], vec!["y[i] = x[i];".into()])
        }
        Kernel::MaxPoolPadFwd(p) => {
            let (oh, ow) = p.out();
            let w = p.w;
            let mut b = p.window();
            b.extend([
                format!("long long bi = y0 * {w} + x0;"),
                "float best = xp[bi];".into(),
                "for (long long iy = y0; iy < y1; ++iy) {".into(),
                "  for (long long ix = x0; ix < x1; ++ix) {".into(),
                format!("    const long long q = iy * {w} + ix;"),
                "    if (xp[q] > best || (xp[q] != xp[q] && best == best)) { best = xp[q]; bi = q; }".into(),
                "  }".into(),
                "}".into(),
                "y[i] = best;".into(),
                "argmax[i] = (unsigned int)bi;".into(),
            ]);
            ew("maxpool_pad_fwd", p.planes * oh * ow, vec![(InF32, "x"), (OutF32, "y"), (OutU32, "argmax")], b)
        }
        Kernel::MaxPoolPadBwd(p) => {
            let ow = p.out().1;
            let mut b = p.covering();
            b.extend([
                "float acc = 0.0f;".into(),
                "for (long long oy = oy0; oy <= oy1; ++oy) {".into(),
                "  for (long long ox = ox0; ox <= ox1; ++ox) {".into(),
                format!("    const long long q = off + oy * {ow} + ox;"),
                "    if ((long long)argmax[q] == pos) acc += dy[q];".into(),
                "  }".into(),
                "}".into(),
                "dx[i] = acc;".into(),
            ]);
            ew("maxpool_pad_bwd", p.planes * p.h * p.w, vec![(InF32, "dy"), (InU32, "argmax"), (OutF32, "dx")], b)
        }
        Kernel::AvgPoolFwd(p) => {
            let (oh, ow) = p.out();
            let w = p.w;
            let mut b = p.window();
            b.extend([
                "float sum = 0.0f;".into(),
                format!("for (long long iy = y0; iy < y1; ++iy) for (long long ix = x0; ix < x1; ++ix) sum += xp[iy * {w} + ix];"),
                format!("y[i] = sum * {};", f32_lit(1.0 / (p.size * p.size) as f64)),
            ]);
            ew("avgpool_fwd", p.planes * oh * ow, vec![(InF32, "x"), (OutF32, "y")], b)
        }
        Kernel::AvgPoolBwd(p) => {
            let ow = p.out().1;
            let mut b = p.covering();
            b.extend([
                format!("const float inv = {};", f32_lit(1.0 / (p.size * p.size) as f64)),
                "float acc = 0.0f;".into(),
                "for (long long oy = oy0; oy <= oy1; ++oy) {".into(),
                format!("  for (long long ox = ox0; ox <= ox1; ++ox) acc += dy[off + oy * {ow} + ox] * inv;"),
                "}".into(),
                "dx[i] = acc;".into(),
            ]);
            ew("avgpool_bwd", p.planes * p.h * p.w, vec![(InF32, "dy"), (OutF32, "dx")], b)
        }
        Kernel::GlobalAvgPoolFwd { planes, hw } => ew(
            "global_avgpool_fwd",
            *planes,
            vec![(InF32, "x"), (OutF32, "y")],
            vec![
                format!("const float* xp = x + i * {};", ll(*hw)),
                "float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};".into(),
                format!("const long long full = {} / 8 * 8;", ll(*hw)),
                "for (long long j = 0; j < full; j += 8) for (int l = 0; l < 8; ++l) acc[l] += xp[j + l];".into(),
                "float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));".into(),
                format!("for (long long j = full; j < {}; ++j) s += xp[j];", ll(*hw)),
                format!("y[i] = s * {};", f32_lit(1.0 / (*hw).max(1) as f64)),
            ],
        ),
        Kernel::GlobalAvgPoolBwd { planes, hw } => ew(
            "global_avgpool_bwd",
            planes * hw,
            vec![(InF32, "dy"), (OutF32, "dx")],
            vec![format!("dx[i] = dy[i / {}] * {};", ll((*hw).max(1)), f32_lit(1.0 / (*hw).max(1) as f64))],
        ),
        Kernel::Softmax { n, classes } => ew(
            "softmax",
            *n,
            vec![(InF32, "x"), (OutF32, "y")],
            vec![
                format!("const float* z = x + i * {};", ll(*classes)),
                format!("float* pr = y + i * {};", ll(*classes)),
                "float m = z[0];".into(),
                format!("for (long long j = 0; j < {classes}; ++j) m = fmaxf(m, z[j]);"),
                "float sum = 0.0f;".into(),
                format!("for (long long j = 0; j < {classes}; ++j) {{ const float e = expf(z[j] - m); pr[j] = e; sum += e; }}"),
                "const float inv = 1.0f / sum;".into(),
                format!("for (long long j = 0; j < {classes}; ++j) pr[j] *= inv;"),
            ],
        ),
        Kernel::BiasEpilogue { n, f, p, act } => fk::bias_epilogue(*n, *f, *p, *act),
        Kernel::ToChannelMajor { n, f, p, mask } => fk::to_channel_major(*n, *f, *p, *mask),
        Kernel::ReluGradScale { total, scale } => ew(
            "relu_grad_scale",
            *total,
            vec![(InF32, "y"), (InF32, "dy"), (OutF32, "dx")],
            vec![format!("dx[i] = y[i] > 0.0f ? dy[i] * {} : 0.0f;", f32_lit(*scale))],
        ),
        Kernel::LrnMaxPoolFwd(s) => fk::lrn_maxpool_fwd(s),
        Kernel::LrnMaxPoolBwd(s) => fk::lrn_maxpool_bwd(s),
        Kernel::GradChain { total, parts, dropout, relu } => fk::grad_chain(*total, *parts, *dropout, *relu),
        Kernel::BiasGrad { n, f, p, acc } => Spec {
            stem: "bias_grad",
            params: vec![(InF32, "dy"), (OutF32, "db")],
            body: vec![
                format!("__shared__ float part[{BLOCK}];"),
                "const long long f = blockIdx.x;".into(),
                "float acc = 0.0f;".into(),
                format!("for (long long q = threadIdx.x; q < {}; q += {BLOCK}) {{", ll(n * p)),
                format!("  acc += dy[((q / {}) * {f} + f) * {} + q % {}];", ll(*p), ll(*p), ll(*p)),
                "}".into(),
                "part[threadIdx.x] = acc;".into(),
                "__syncthreads();".into(),
                format!("for (int s = {}; s > 0; s >>= 1) {{", BLOCK / 2),
                "  if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];".into(),
                "  __syncthreads();".into(),
                "}".into(),
                format!("if (threadIdx.x == 0) db[f] {}= part[0];", if *acc { "+" } else { "" }),
            ],
            shape: Shape::Blocks { grid: *f as u32, block: BLOCK },
            sync: true,
            in_place: false,
        },
        Kernel::Im2col { n, c, h, w, k, stride, pad, oh, ow } => {
            let np = n * oh * ow;
            ew(
                "im2col",
                c * k * k * np,
                vec![(InF32, "x"), (OutF32, "col")],
                vec![
                    format!("const long long row = i / {}, q = i % {};", ll(np), ll(np)),
                    format!("const long long img = q / {}, o = q % {};", ll(oh * ow), ll(oh * ow)),
                    format!("const long long c = row / {}, ki = (row / {k}) % {k}, kj = row % {k};", k * k),
                    format!("const long long iy = (o / {ow}) * {stride} + ki - {pad}, ix = (o % {ow}) * {stride} + kj - {pad};"),
                    format!("col[i] = (iy >= 0 && iy < {h} && ix >= 0 && ix < {w}) ? x[((img * {c} + c) * {h} + iy) * {w} + ix] : 0.0f;"),
                ],
            )
        }
        Kernel::Col2im { n, c, h, w, k, stride, pad, oh, ow } => {
            let np = n * oh * ow;
            ew(
                "col2im",
                n * c * h * w,
                vec![(InF32, "col"), (OutF32, "dx")],
                vec![
                    format!("const long long ix = i % {w}, iy = (i / {w}) % {h}, c = (i / {}) % {c}, img = i / {};", ll(h * w), ll(c * h * w)),
                    "float acc = 0.0f;".into(),
                    format!("for (long long ki = 0; ki < {k}; ++ki) {{"),
                    format!("  const long long ty = iy + {pad} - ki;"),
                    format!("  if (ty < 0 || ty % {stride} != 0 || ty / {stride} >= {oh}) continue;"),
                    format!("  for (long long kj = 0; kj < {k}; ++kj) {{"),
                    format!("    const long long tx = ix + {pad} - kj;"),
                    format!("    if (tx < 0 || tx % {stride} != 0 || tx / {stride} >= {ow}) continue;"),
                    format!("    acc += col[((c * {k} + ki) * {k} + kj) * {} + img * {} + (ty / {stride}) * {ow} + tx / {stride}];", ll(np), ll(oh * ow)),
                    "  }".into(),
                    "}".into(),
                    "dx[i] = acc;".into(),
                ],
            )
        }
        Kernel::Im2colGeneral(t) => {
            let ConvTaps { n, c, h, w, kh, kw, sh, sw, ph, pw, dil, oh, ow } = *t;
            let np = n * oh * ow;
            ew(
                "im2col_general",
                c * kh * kw * np,
                vec![(InF32, "x"), (OutF32, "col")],
                vec![
                    format!("const long long row = i / {}, q = i % {};", ll(np), ll(np)),
                    format!("const long long img = q / {}, o = q % {};", ll(oh * ow), ll(oh * ow)),
                    format!("const long long c = row / {}, ki = (row / {kw}) % {kh}, kj = row % {kw};", kh * kw),
                    format!("const long long iy = (o / {ow}) * {sh} + ki * {dil} - {ph}, ix = (o % {ow}) * {sw} + kj * {dil} - {pw};"),
                    format!("col[i] = (iy >= 0 && iy < {h} && ix >= 0 && ix < {w}) ? x[((img * {c} + c) * {h} + iy) * {w} + ix] : 0.0f;"),
                ],
            )
        }
        Kernel::Col2imGeneral(t) => {
            let ConvTaps { n, c, h, w, kh, kw, sh, sw, ph, pw, dil, oh, ow } = *t;
            let np = n * oh * ow;
            ew(
                "col2im_general",
                n * c * h * w,
                vec![(InF32, "col"), (OutF32, "dx")],
                vec![
                    format!("const long long ix = i % {w}, iy = (i / {w}) % {h}, c = (i / {}) % {c}, img = i / {};", ll(h * w), ll(c * h * w)),
                    "float acc = 0.0f;".into(),
                    format!("for (long long ki = 0; ki < {kh}; ++ki) {{"),
                    format!("  const long long ty = iy + {ph} - ki * {dil};"),
                    format!("  if (ty < 0 || ty % {sh} != 0 || ty / {sh} >= {oh}) continue;"),
                    format!("  for (long long kj = 0; kj < {kw}; ++kj) {{"),
                    format!("    const long long tx = ix + {pw} - kj * {dil};"),
                    format!("    if (tx < 0 || tx % {sw} != 0 || tx / {sw} >= {ow}) continue;"),
                    format!("    acc += col[((c * {kh} + ki) * {kw} + kj) * {} + img * {} + (ty / {sh}) * {ow} + tx / {sw}];", ll(np), ll(oh * ow)),
                    "  }".into(),
                    "}".into(),
                    "dx[i] = acc;".into(),
                ],
            )
        }
        Kernel::NoBiasEpilogue { n, f, p, act } => fk::no_bias_epilogue(*n, *f, *p, *act),
        Kernel::BnStats { n, c, p } => {
            let m = f32_lit((n * p).max(1) as f64);
            let [head, at] = channel_loop(*n, *c, *p);
            let mut body = vec![
                format!("__shared__ float part[{BLOCK}];"),
                "const long long ch = blockIdx.x;".into(),
                "float acc = 0.0f;".into(),
                head.clone(),
                at.clone(),
                "  acc += x[at];".into(),
                "}".into(),
            ];
            body.extend(block_sum("part", "acc"));
            body.extend([
                format!("const float mu = part[0] / {m};"),
                "__syncthreads();".into(),
                "acc = 0.0f;".into(),
                head,
                at,
                "  const float d = x[at] - mu;".into(),
                "  acc += d * d;".into(),
                "}".into(),
            ]);
            body.extend(block_sum("part", "acc"));
            body.extend([
                "if (threadIdx.x == 0) {".into(),
                "  mean[ch] = mu;".into(),
                format!("  var[ch] = part[0] / {m};"),
                "}".into(),
            ]);
            Spec {
                stem: "bn_stats",
                params: vec![(InF32, "x"), (OutF32, "mean"), (OutF32, "var")],
                body,
                shape: Shape::Blocks { grid: *c as u32, block: BLOCK },
                sync: true,
                in_place: false,
            }
        }
        Kernel::BnNormalise { n, c, p, eps } => ew(
            "bn_normalise",
            n * c * p,
            vec![(InF32, "x"), (InF32, "gamma"), (InF32, "beta"), (InF32, "mean"), (InF32, "var"), (OutF32, "y")],
            vec![
                format!("const long long ch = (i / {}) % {c};", ll(*p)),
                format!("const float a = gamma[ch] / sqrtf(var[ch] + {});", f32_lit(*eps)),
                "y[i] = a * (x[i] - mean[ch]) + beta[ch];".into(),
            ],
        ),
        Kernel::BnGradInput { n, c, p, eps } => {
            let m = f32_lit((n * p) as f64);
            let [head, at] = channel_loop(*n, *c, *p);
            let mut body = bn_sums(*n, *c, *p, *eps);
            body.extend([
                "const float tsd = part[0], tsdx = part2[0];".into(),
                format!("const float k = gamma[ch] * inv / {m};"),
                head,
                at,
                "  const float xh = (x[at] - mu) * inv;".into(),
                format!("  dx[at] = k * ({m} * dy[at] - tsd - xh * tsdx);"),
                "}".into(),
            ]);
            Spec {
                stem: "bn_grad_input",
                params: vec![(InF32, "x"), (InF32, "gamma"), (InF32, "mean"), (InF32, "var"), (InF32, "dy"), (OutF32, "dx")],
                body,
                shape: Shape::Blocks { grid: *c as u32, block: BLOCK },
                sync: true,
                in_place: false,
            }
        }
        Kernel::BnGradGamma { n, c, p, eps } => {
            let mut body = bn_sums(*n, *c, *p, *eps);
            body.push("if (threadIdx.x == 0) dgamma[ch] = part2[0];".into());
            Spec {
                stem: "bn_grad_gamma",
                params: vec![(InF32, "x"), (InF32, "mean"), (InF32, "var"), (InF32, "dy"), (OutF32, "dgamma")],
                body,
                shape: Shape::Blocks { grid: *c as u32, block: BLOCK },
                sync: true,
                in_place: false,
            }
        }
        Kernel::RunningUpdate { c, momentum, m } => {
            let unbias = if *m > 1 { *m as f64 / (*m - 1) as f64 } else { 1.0 };
            let (keep, mo) = (f32_lit(1.0 - momentum), f32_lit(*momentum));
            ew(
                "running_update",
                *c,
                vec![(OutF32, "rmean"), (OutF32, "rvar"), (InF32, "mean"), (InF32, "var")],
                vec![
                    format!("rmean[i] = {keep} * rmean[i] + {mo} * mean[i];"),
                    format!("rvar[i] = {keep} * rvar[i] + {mo} * (var[i] * {});", f32_lit(unbias)),
                ],
            )
        }
        Kernel::Sgd { total, momentum, weight_decay, nesterov, lr_mult, decay_mult } => {
            // The paper's settings generate the paper's kernel, text for text.
            let lr = if *lr_mult == 1.0 {
                "const double lr = *lrp;".to_string()
            } else {
                format!("const double lr = *lrp * {};", f64_lit(*lr_mult))
            };
            let wd = weight_decay * decay_mult;
            let mut body = vec![
                lr,
                "const float lrf = (float)lr;".into(),
                format!("const float wdlr = (float)({} * lr);", f64_lit(wd)),
            ];
            if *nesterov {
                body.extend([
                    "const float d = wdlr * w[i] + lrf * g[i];".to_string(),
                    format!("const float nv = {} * v[i] - d;", f32_lit(*momentum)),
                    "v[i] = nv;".into(),
                    format!("w[i] += {} * nv - d;", f32_lit(*momentum)),
                ]);
            } else {
                body.extend([
                    format!("const float nv = {} * v[i] - wdlr * w[i] - lrf * g[i];", f32_lit(*momentum)),
                    "v[i] = nv;".into(),
                    "w[i] += nv;".into(),
                ]);
            }
            ew(
                "sgd_update",
                *total,
                vec![(OutF32, "w"), (OutF32, "v"), (InF32, "g"), (ParamTy::InF64, "lrp")],
                body,
            )
        }
    }
}
