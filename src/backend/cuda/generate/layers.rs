//! Convolution and dense layers, plain or fused with their activation
//! (ReLU, and dropout after a dense ReLU; or tanh, sigmoid, leaky ReLU):
//! cuBLAS GEMMs around generated kernels.
//!
//! A convolution runs over its batch in chunks of `c` images
//! (`Buffers::chunk`, from `crate::backend::cuda::generate::chunk`: the whole batch when it fits
//! the workspace budget), each chunk's slice of an NCHW input, output or
//! gradient passed as a pointer offset ([`Arg::At`]).
//!
//! Every conv form is covered (`conv_geo`): the plain im2col/col2im for
//! square, undilated taps (so a plain convolution generates what it always
//! did), the general pair for rectangular or dilated ones. A convolution
//! of `g` groups im2cols all its channels (group `j`'s rows are the `j`-th
//! block of `C/g·kh·kw`) and runs one GEMM per group over its block of
//! weights, rows and outputs (operands at element offsets); without a bias
//! its epilogue adds none and it has no bias gradient.
//!
//! Forward, per chunk: im2col of its images into `scratch.col`, one GEMM
//! (per group) into `scratch.tmp` (`F × c·OH·OW`) and the bias epilogue, which writes
//! the chunk's slice of the output in NCHW and applies the fused ReLU; a
//! dense layer is one GEMM over the batch and the same epilogue (with its
//! dropout mask, keyed by the element's index in the batch, so never
//! chunked).
//!
//! Backward, all gradients of one layer are generated together when the
//! first is reached (as the CPU executor's one call). A fused layer's
//! output gradient is masked first, once, into `scratch.tmp`: a
//! `conv_relu`'s by `[y > 0]` in the transpose to channel-major that the
//! convolution needs anyway, a `dense_relu`'s by `[y > 0]`, a
//! `dense_relu_dropout`'s by `[y > 0]·1/(1 − rate)` (its output is positive
//! iff the ReLU passed it and the mask kept it, as the CPU's backward
//! reads it); under another activation, times its derivative from `y`
//! (`1 − y²`, ...), in the transpose for a convolution, by the unfused
//! gradient kernel for a dense layer. Bias, weight and input gradients
//! then read the masked copy.
//!
//! A convolution's gradients, per chunk: its output gradient to
//! channel-major (masked) in `scratch.tmp`, im2col of its images, the
//! weight gradient GEMM (`beta = 0` for the first chunk, `1` after, so the
//! chunks' sums accumulate in `dW`), `dcol = Wᵀ·dYᵀ` into `scratch.col`
//! and col2im into the chunk's slice of `dX`. The bias gradient is one
//! kernel over the whole `dY`, or for a `conv_relu` a sum over each
//! chunk's masked copy, accumulated likewise.

use crate::backend::cuda::generate::CodegenError;
use crate::backend::cuda::generate::chunk;
use crate::backend::cuda::generate::codegen::{Gen, chw};
use crate::backend::cuda::generate::conv_geo::ConvGeo;
use crate::backend::cuda::generate::kernels::{ActFn, ConvTaps, Epilogue, Kernel, Mask};
use crate::backend::cuda::program::Arg;
use crate::ir::{Activation, NodeId, Op};

/// Buffer `b` from element `at` on (the plain buffer at 0).
fn at(b: usize, at: usize) -> Arg {
    if at == 0 { Arg::Buf(b) } else { Arg::At(b, at) }
}

/// The im2col kernel of `m` images of `(c, h, w)` into `(oh, ow)`, or with
/// `back` its adjoint col2im: the plain kernels for square, undilated
/// taps, the general ones otherwise.
fn cols(
    geo: &ConvGeo,
    m: usize,
    (c, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    back: bool,
) -> Kernel {
    if !geo.square() {
        let t = taps(geo, m, (c, h, w), (oh, ow));
        return if back {
            Kernel::Col2imGeneral(t)
        } else {
            Kernel::Im2colGeneral(t)
        };
    }
    let (n, k, stride, pad) = (m, geo.kh, geo.sh, geo.ph);
    if back {
        Kernel::Col2im {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            oh,
            ow,
        }
    } else {
        Kernel::Im2col {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            oh,
            ow,
        }
    }
}

/// The im2col kernel (see [`cols`]).
fn im2col(geo: &ConvGeo, m: usize, chw: (usize, usize, usize), ohw: (usize, usize)) -> Kernel {
    cols(geo, m, chw, ohw, false)
}

/// The col2im kernel (see [`cols`]).
fn col2im(geo: &ConvGeo, m: usize, chw: (usize, usize, usize), ohw: (usize, usize)) -> Kernel {
    cols(geo, m, chw, ohw, true)
}

fn taps(
    geo: &ConvGeo,
    n: usize,
    (c, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
) -> ConvTaps {
    ConvTaps {
        n,
        c,
        h,
        w,
        kh: geo.kh,
        kw: geo.kw,
        sh: geo.sh,
        sw: geo.sw,
        ph: geo.ph,
        pw: geo.pw,
        dil: geo.dil,
        oh,
        ow,
    }
}

impl Gen<'_> {
    pub(super) fn conv_forward(
        &mut self,
        n: NodeId,
        geo: ConvGeo,
        act: Epilogue,
    ) -> Result<(), CodegenError> {
        let g = self.g;
        let ins = g.inputs(n);
        let b = self.batch;
        let (c, h, w) = chw(g, ins[0]);
        let (_, oh, ow) = chw(g, n);
        let (f, fg, groups) = (geo.filters, geo.fg(), geo.groups);
        let ckk = c / groups * geo.kh * geo.kw;
        let (col, tmp) = (self.bufs.col.unwrap_or(0), self.bufs.tmp.unwrap_or(0));
        let (x, wb) = (self.buf(ins[0]), self.buf(ins[1]));
        let images = self.bufs.chunk.get(&n).copied().unwrap_or(b);
        for (first, m) in chunk::spans(b, images) {
            let im = im2col(&geo, m, (c, h, w), (oh, ow));
            self.launch(n, im, vec![at(x, first * c * h * w), Arg::Buf(col)])?;
            let np = m * oh * ow;
            // One GEMM per group: its filters' weights times its channels' rows of col.
            for gi in 0..groups {
                self.gemm_rm_at(
                    n,
                    (tmp, gi * fg * np),
                    (wb, gi * fg * ckk),
                    false,
                    (col, gi * ckk * np),
                    false,
                    (fg, np, ckk),
                    0.0,
                );
            }
            self.epilogue(n, (f, oh * ow), act, (first, m), geo.bias)?;
        }
        Ok(())
    }

    pub(super) fn dense_forward(
        &mut self,
        n: NodeId,
        units: u64,
        act: Epilogue,
    ) -> Result<(), CodegenError> {
        let g = self.g;
        let ins = g.inputs(n);
        let inp = g.node(ins[0]).ty.numel() as usize;
        let u = units as usize;
        let tmp = self.bufs.tmp.unwrap_or(0);
        let x = self.buf(ins[0]);
        self.gemm_rm(
            n,
            tmp,
            self.buf(ins[1]),
            false,
            x,
            true,
            (u, self.batch, inp),
            0.0,
        );
        self.epilogue(n, (u, 1), act, (0, self.batch), true)
    }

    /// `y = act(scratch.tmp + bias)` for `f` channels of `p` positions, of
    /// `count` images from image `first` (a dropout epilogue only over the
    /// whole batch: its mask is keyed by the index in `y`); without the
    /// bias unless `bias`.
    fn epilogue(
        &mut self,
        n: NodeId,
        (f, p): (usize, usize),
        act: Epilogue,
        (first, count): (usize, usize),
        bias: bool,
    ) -> Result<(), CodegenError> {
        let ins = self.g.inputs(n);
        let tmp = self.bufs.tmp.unwrap_or(0);
        let mut args = vec![Arg::Buf(tmp)];
        if bias {
            args.push(Arg::Buf(self.buf(ins[2])));
        }
        args.push(at(self.buf(n), first * f * p));
        if matches!(act, Epilogue::ReluDropout { .. }) {
            args.push(Arg::seed(self.bufs.scalars));
        }
        let ep = if bias {
            Kernel::BiasEpilogue {
                n: count,
                f,
                p,
                act,
            }
        } else {
            Kernel::NoBiasEpilogue {
                n: count,
                f,
                p,
                act,
            }
        };
        self.launch(n, ep, args)
    }

    /// All gradients of conv or dense layer `f` (plain or fused), as the
    /// CPU's one call.
    pub(super) fn layer_grads(&mut self, f: NodeId) -> Result<(), CodegenError> {
        let g = self.g;
        let fnode = g.node(f);
        let grads = g.layer_grads(f);
        let (dx, dw, db) = (grads.dx, grads.dw, grads.db);
        let Some(dw) = dw else { return Ok(()) };
        let dy = g.inputs(dw)[1];
        match &fnode.op {
            Op::Conv { .. } | Op::ConvRelu { .. } => match ConvGeo::of(&fnode.op) {
                Some(geo) => {
                    let mask = match &fnode.op {
                        Op::ConvRelu { act, .. } => Mask::of(Some(*act)),
                        _ => Mask::None,
                    };
                    self.conv_grads(f, geo, mask, (dx, dw, db), dy)
                }
                None => Ok(()),
            },
            Op::Dense { units } => self.dense_grads(f, *units, None, (dx, dw, db), dy),
            Op::DenseRelu { units, act } => {
                self.dense_grads(f, *units, Some((*act, 0.0)), (dx, dw, db), dy)
            }
            Op::DenseReluDropout { units, rate, .. } => {
                self.dense_grads(f, *units, Some((Activation::Relu, *rate)), (dx, dw, db), dy)
            }
            _ => Ok(()),
        }
    }

    /// `mask`: for a `conv_relu`, `dy` is masked by `[y > 0]`; for a
    /// `conv_tanh` (etc.) multiplied by the derivative from `y`.
    fn conv_grads(
        &mut self,
        f: NodeId,
        geo: ConvGeo,
        mask: Mask,
        (dx, dw, db): (Option<NodeId>, NodeId, Option<NodeId>),
        dy: NodeId,
    ) -> Result<(), CodegenError> {
        let g = self.g;
        let fins = g.inputs(f);
        let b = self.batch;
        let (x, w) = (self.buf(fins[0]), self.buf(fins[1]));
        let dyb = self.buf(dy);
        let (c, h, wd) = chw(g, fins[0]);
        let (_, oh, ow) = chw(g, f);
        let (nf, fg, groups, p) = (geo.filters, geo.fg(), geo.groups, oh * ow);
        let (col, tmp) = (self.bufs.col.unwrap_or(0), self.bufs.tmp.unwrap_or(0));
        let ckk = c / groups * geo.kh * geo.kw;
        let y = self.buf(f);
        let masked = mask != Mask::None;
        if !masked && let Some(db) = db {
            let kern = Kernel::BiasGrad {
                n: b,
                f: nf,
                p,
                acc: false,
            };
            self.launch(db, kern, vec![Arg::Buf(dyb), Arg::Buf(self.buf(db))])?;
        }
        let images = self.bufs.chunk.get(&f).copied().unwrap_or(b);
        for (i, (first, m)) in chunk::spans(b, images).enumerate() {
            let (ys, xs) = (first * nf * p, first * c * h * wd);
            let beta = if i == 0 { 0.0 } else { 1.0 };
            let tc = Kernel::ToChannelMajor {
                n: m,
                f: nf,
                p,
                mask,
            };
            if masked {
                // The masked dy, channel-major: what the bias gradient sums too.
                let args = vec![at(dyb, ys), at(y, ys), Arg::Buf(tmp)];
                self.launch(dw, tc, args)?;
                if let Some(db) = db {
                    let kern = Kernel::BiasGrad {
                        n: 1,
                        f: nf,
                        p: m * p,
                        acc: i > 0,
                    };
                    self.launch(db, kern, vec![Arg::Buf(tmp), Arg::Buf(self.buf(db))])?;
                }
            } else {
                self.launch(dw, tc, vec![at(dyb, ys), Arg::Buf(tmp)])?;
            }
            let im = im2col(&geo, m, (c, h, wd), (oh, ow));
            self.launch(dw, im, vec![at(x, xs), Arg::Buf(col)])?;
            let mp = m * p;
            // dW_g[F/g×CKK] (+)= dYᵀ_g[F/g×cP] · col_gᵀ, group by group.
            let dwb = self.buf(dw);
            for gi in 0..groups {
                self.gemm_rm_at(
                    dw,
                    (dwb, gi * fg * ckk),
                    (tmp, gi * fg * mp),
                    false,
                    (col, gi * ckk * mp),
                    true,
                    (fg, ckk, mp),
                    beta,
                );
            }
            if let Some(dx) = dx {
                // dcol_g[CKK×cP] = W_gᵀ · dYᵀ_g, then scattered back (as a gather).
                for gi in 0..groups {
                    self.gemm_rm_at(
                        dx,
                        (col, gi * ckk * mp),
                        (w, gi * fg * ckk),
                        true,
                        (tmp, gi * fg * mp),
                        false,
                        (ckk, mp, fg),
                        0.0,
                    );
                }
                let c2 = col2im(&geo, m, (c, h, wd), (oh, ow));
                self.launch(dx, c2, vec![Arg::Buf(col), at(self.buf(dx), xs)])?;
            }
        }
        Ok(())
    }

    /// `fused`: `Some((Relu, rate))` for a `dense_relu` (0) or
    /// `dense_relu_dropout`, whose `dy` is masked by `[y > 0]` and scaled by
    /// `1/(1 − rate)`; `Some((act, 0))` for a `dense_tanh` (etc.), whose `dy`
    /// is multiplied by the derivative from `y`.
    fn dense_grads(
        &mut self,
        f: NodeId,
        units: u64,
        fused: Option<(Activation, f64)>,
        (dx, dw, db): (Option<NodeId>, NodeId, Option<NodeId>),
        dy: NodeId,
    ) -> Result<(), CodegenError> {
        let g = self.g;
        let fins = g.inputs(f);
        let b = self.batch;
        let (x, w) = (self.buf(fins[0]), self.buf(fins[1]));
        let inp = g.node(fins[0]).ty.numel() as usize;
        let u = units as usize;
        let mut dyb = self.buf(dy);
        if let Some((act, rate)) = fused {
            let tmp = self.bufs.tmp.unwrap_or(0);
            let total = b * u;
            let kern = if let Some(f) = ActFn::of_fused(act) {
                Kernel::ActGrad { total, f }
            } else if rate == 0.0 {
                Kernel::ReluGrad { total }
            } else {
                Kernel::ReluGradScale {
                    total,
                    scale: 1.0 / (1.0 - rate),
                }
            };
            let args = vec![Arg::Buf(self.buf(f)), Arg::Buf(dyb), Arg::Buf(tmp)];
            self.launch(dw, kern, args)?;
            dyb = tmp;
        }
        if let Some(db) = db {
            let kern = Kernel::BiasGrad {
                n: b,
                f: u,
                p: 1,
                acc: false,
            };
            self.launch(db, kern, vec![Arg::Buf(dyb), Arg::Buf(self.buf(db))])?;
        }
        // dW[U×In] = dYᵀ · x
        self.gemm_rm(dw, self.buf(dw), dyb, true, x, false, (u, inp, b), 0.0);
        if let Some(dx) = dx {
            // dx[N×In] = dY · W
            self.gemm_rm(dx, self.buf(dx), dyb, false, w, false, (b, inp, u), 0.0);
        }
        Ok(())
    }
}
