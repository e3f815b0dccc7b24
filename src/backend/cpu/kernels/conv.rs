//! 2-D convolution (cross-correlation, as in every DL framework), NCHW, square
//! kernels, symmetric zero padding of any width (it may exceed the kernel, so
//! whole windows can lie in the padding), no groups (the caller runs one conv per
//! tower on that tower's channel slice, see the `groups` test).
//!
//! Implementation: the batch is split into tasks of [`images_per_task`] images
//! (a function of the shape only). In the forward pass each task lowers its
//! images with im2col into one `[C·K·K × B·OH·OW]` matrix; the backward pass
//! uses the transposed "im2row" layout `[B·OH·OW × C·K·K]` so both of its
//! GEMMs read row-major operands. Each task runs single-threaded GEMMs; tasks
//! run in parallel on the current rayon pool, dealt out in contiguous runs
//! whose tasks reuse one scratch area (so the lowered matrix of a task is
//! written and read while it is still in cache); the weight and bias
//! partials of each task are kept apart.
//!
//! Guarantees: all outputs (`y`, `dx`, `dw`, `db`) are OVERWRITTEN. The weight
//! and bias gradients are reduced per task and the per-task partials are
//! summed in task order, so every result is bit-identical for any rayon thread
//! count. Weight layout `[F, C, K, K]`, bias `[F]`.

use rayon::prelude::*;

use super::gemm::{Par, gemm};
use super::{Act, Float, Nchw, bias_act, relu_mask, scratch, slots, sum_lanes, tasks_per_slot};

/// Shape of one convolution: input `[n, c, h, w]`, `f` filters of `k×k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub f: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    /// Output height `(h + 2·pad − k) / stride + 1`; assumes `h + 2·pad ≥ k`.
    #[inline]
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width `(w + 2·pad − k) / stride + 1`; assumes `w + 2·pad ≥ k`.
    #[inline]
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn input(&self) -> Nchw {
        Nchw::new(self.n, self.c, self.h, self.w)
    }
    pub fn output(&self) -> Nchw {
        Nchw::new(self.n, self.f, self.oh(), self.ow())
    }
    /// Elements of the weight tensor `[f, c, k, k]`.
    #[inline]
    pub fn w_len(&self) -> usize {
        self.f * self.c * self.k * self.k
    }
    #[inline]
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    #[inline]
    fn ohw(&self) -> usize {
        self.oh() * self.ow()
    }
    fn valid(&self) -> bool {
        self.stride > 0
            && self.k > 0
            && self.h + 2 * self.pad >= self.k
            && self.w + 2 * self.pad >= self.k
    }
}

/// Images per parallel task: enough that one task's GEMM has about 2048
/// columns, at most 16. Depends on the shape only (never on thread count).
pub fn images_per_task(s: &ConvShape) -> usize {
    2048usize.div_ceil(s.ohw().max(1)).clamp(1, 16)
}

/// Elements of scratch [`conv2d_forward`] uses (it grows the caller's buffer
/// to this once): per slot of tasks (see `tasks_per_slot`), an im2col
/// matrix and a GEMM output.
pub fn forward_scratch_len(s: &ConvShape) -> usize {
    let ipt = images_per_task(s);
    slots(s.n.div_ceil(ipt)) * (s.ckk() + s.f) * ipt * s.ohw()
}

/// Elements of scratch [`conv2d_backward`] uses: per slot of tasks, an
/// im2row matrix and the masked output gradient; per task, partial weight
/// and bias gradients.
pub fn backward_scratch_len(s: &ConvShape) -> usize {
    let ipt = images_per_task(s);
    let tasks = s.n.div_ceil(ipt);
    slots(tasks) * (s.ckk() + s.f) * ipt * s.ohw() + tasks * (s.f * s.ckk() + s.f)
}

/// Range of output columns `ox` whose input column `ox·stride + kj − pad` is
/// inside `[0, w)` (the same formula serves rows).
#[inline]
fn valid_range(out: usize, inp: usize, stride: usize, kj: usize, pad: usize) -> (usize, usize) {
    let lo = if pad > kj {
        (pad - kj).div_ceil(stride)
    } else {
        0
    }
    .min(out);
    let hi = if inp + pad > kj {
        ((inp - 1 + pad - kj) / stride + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Writes image `x` (`[c, h, w]`) as columns `off .. off + oh·ow` of the
/// `[c·k·k × ld]` matrix `col`.
fn im2col<T: Float>(s: &ConvShape, x: &[T], col: &mut [T], ld: usize, off: usize) {
    let (h, w, k, st, pad) = (s.h, s.w, s.k, s.stride, s.pad);
    let (oh, ow) = (s.oh(), s.ow());
    for (c, plane) in x.chunks_exact(h * w).enumerate().take(s.c) {
        for ki in 0..k {
            let (oy_lo, oy_hi) = valid_range(oh, h, st, ki, pad);
            for kj in 0..k {
                let row = (c * k + ki) * k + kj;
                let dst = &mut col[row * ld + off..row * ld + off + oh * ow];
                let (lo, hi) = valid_range(ow, w, st, kj, pad);
                dst[..oy_lo * ow].fill(T::ZERO);
                dst[oy_hi * ow..].fill(T::ZERO);
                for oy in oy_lo..oy_hi {
                    let iy = oy * st + ki - pad;
                    let src = &plane[iy * w..(iy + 1) * w];
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    d[..lo].fill(T::ZERO);
                    d[hi..].fill(T::ZERO);
                    if hi > lo {
                        let ix0 = lo * st + kj - pad;
                        if st == 1 {
                            d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                        } else {
                            for (o, v) in d[lo..hi].iter_mut().zip(src[ix0..].iter().step_by(st)) {
                                *o = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns `off .. off + oh·ow` of the `[c·k·k × ld]` matrix `col`
/// back into image `dx` (`[c, h, w]`, which the caller has zeroed): the
/// adjoint of [`im2col`].
fn col2im<T: Float>(s: &ConvShape, col: &[T], ld: usize, off: usize, dx: &mut [T]) {
    let (h, w, k, st, pad) = (s.h, s.w, s.k, s.stride, s.pad);
    let (oh, ow) = (s.oh(), s.ow());
    for (c, plane) in dx.chunks_exact_mut(h * w).enumerate().take(s.c) {
        for ki in 0..k {
            let (oy_lo, oy_hi) = valid_range(oh, h, st, ki, pad);
            for kj in 0..k {
                let row = (c * k + ki) * k + kj;
                let src = &col[row * ld + off..row * ld + off + oh * ow];
                let (lo, hi) = valid_range(ow, w, st, kj, pad);
                if hi == lo {
                    continue;
                }
                let ix0 = lo * st + kj - pad;
                for oy in oy_lo..oy_hi {
                    let iy = oy * st + ki - pad;
                    let d = &mut plane[iy * w..(iy + 1) * w];
                    let sv = &src[oy * ow + lo..oy * ow + hi];
                    if st == 1 {
                        for (o, v) in d[ix0..ix0 + sv.len()].iter_mut().zip(sv) {
                            *o += *v;
                        }
                    } else {
                        for (o, v) in d[ix0..].iter_mut().step_by(st).zip(sv) {
                            *o += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Writes image `x` (`[c, h, w]`) as rows `off .. off + oh·ow` of the
/// `[L × c·k·k]` matrix `rows` ("im2row", the transpose of [`im2col`]); the
/// weight gradient uses this layout so that its GEMM reads row-major operands.
fn im2row<T: Float>(s: &ConvShape, x: &[T], rows: &mut [T], off: usize) {
    // Constant kernel widths let the k-element copies compile to plain moves.
    match s.k {
        3 => im2row_k::<T, 3>(s, x, rows, off),
        5 => im2row_k::<T, 5>(s, x, rows, off),
        _ => im2row_k::<T, 0>(s, x, rows, off),
    }
}

/// [`im2row`] for kernel width `K` (`K == 0`: width taken from `s.k`).
#[inline(always)]
fn im2row_k<T: Float, const K: usize>(s: &ConvShape, x: &[T], rows: &mut [T], off: usize) {
    let k = if K == 0 { s.k } else { K };
    let (h, w, st, pad) = (s.h, s.w, s.stride, s.pad);
    let (oh, ow, ckk) = (s.oh(), s.ow(), s.ckk());
    // Output columns whose whole k-wide window lies inside the input row.
    let full_lo = pad.div_ceil(st).min(ow);
    let full_hi = if w + pad >= k {
        ((w + pad - k) / st + 1).min(ow)
    } else {
        0
    }
    .max(full_lo);
    for oy in 0..oh {
        let block = &mut rows[(off + oy * ow) * ckk..(off + (oy + 1) * ow) * ckk];
        for (c, plane) in x.chunks_exact(h * w).enumerate().take(s.c) {
            for ki in 0..k {
                let base = (c * k + ki) * k;
                let iy = oy * st + ki;
                if iy < pad || iy - pad >= h {
                    for r in block.chunks_exact_mut(ckk) {
                        r[base..base + k].fill(T::ZERO);
                    }
                    continue;
                }
                let src = &plane[(iy - pad) * w..(iy - pad + 1) * w];
                for (ox, r) in block.chunks_exact_mut(ckk).enumerate() {
                    let d = &mut r[base..base + k];
                    let x0 = ox * st;
                    if K != 0 && ox >= full_lo && ox < full_hi {
                        let ix0 = x0 - pad;
                        d.copy_from_slice(&src[ix0..ix0 + K]);
                        continue;
                    }
                    // kj with ix = x0 + kj − pad inside [0, w); empty when
                    // the whole window lies in the padding (pad may exceed k).
                    let kj_lo = pad.saturating_sub(x0).min(k);
                    let kj_hi = (w + pad).saturating_sub(x0).min(k).max(kj_lo);
                    d[..kj_lo].fill(T::ZERO);
                    d[kj_hi..].fill(T::ZERO);
                    if kj_hi > kj_lo {
                        let ix0 = x0 + kj_lo - pad;
                        d[kj_lo..kj_hi].copy_from_slice(&src[ix0..ix0 + (kj_hi - kj_lo)]);
                    }
                }
            }
        }
    }
}

/// Forward: `y = act(conv(x, w) + bias)`.
///
/// `x: [n, c, h, w]`, `w: [f, c, k, k]`, `bias: [f]` (optional),
/// `y: [n, f, oh, ow]` (OVERWRITTEN). `scratch_buf` is grown to
/// [`forward_scratch_len`] on first use and reused; its contents are not
/// needed after the call.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward<T: Float>(
    s: &ConvShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    act: Act,
    y: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    debug_assert!(s.valid());
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert!(bias.is_none_or(|b| b.len() == s.f));
    debug_assert_eq!(y.len(), s.output().len());
    if s.n == 0 {
        return;
    }
    let (ckk, ohw, f) = (s.ckk(), s.ohw(), s.f);
    let ipt = images_per_task(s);
    let tasks = s.n.div_ceil(ipt);
    let col_len = ckk * ipt * ohw;
    let per = col_len + f * ipt * ohw;
    let pst = tasks_per_slot(tasks);
    debug_assert_eq!(tasks.div_ceil(pst) * per, forward_scratch_len(s));
    let scr = scratch(scratch_buf, tasks.div_ceil(pst) * per);
    let in_img = s.input().chw();
    let out_img = f * ohw;
    let slot = |scr: &mut [T], xs: &[T], ys: &mut [T]| {
        for (xc, yc) in xs.chunks(ipt * in_img).zip(ys.chunks_mut(ipt * out_img)) {
            forward_task(s, w, bias, act, scr, xc, yc);
        }
    };
    scr.par_chunks_mut(per)
        .zip(x.par_chunks(pst * ipt * in_img))
        .zip(y.par_chunks_mut(pst * ipt * out_img))
        .for_each(|((scr, xs), ys)| slot(scr, xs, ys));
}

/// One task of [`conv2d_forward`]: im2col of its images, one GEMM, the
/// bias and activation.
#[allow(clippy::too_many_arguments)]
fn forward_task<T: Float>(
    s: &ConvShape,
    w: &[T],
    bias: Option<&[T]>,
    act: Act,
    scr: &mut [T],
    xc: &[T],
    yc: &mut [T],
) {
    let (ckk, ohw, f) = (s.ckk(), s.ohw(), s.f);
    let col_len = ckk * images_per_task(s) * ohw;
    let in_img = s.input().chw();
    let out_img = f * ohw;
    let b = xc.len() / in_img;
    let l = b * ohw;
    let (col, out) = scr.split_at_mut(col_len);
    let col = &mut col[..ckk * l];
    let out = &mut out[..f * l];
    for (i, xi) in xc.chunks_exact(in_img).enumerate() {
        im2col(s, xi, col, l, i * ohw);
    }
    gemm(
        f,
        l,
        ckk,
        T::ZERO,
        out,
        T::ONE,
        w,
        false,
        col,
        false,
        Par::Seq,
    );
    for (i, yi) in yc.chunks_exact_mut(out_img).enumerate() {
        for (fi, yrow) in yi.chunks_exact_mut(ohw).enumerate() {
            let src = &out[fi * l + i * ohw..fi * l + (i + 1) * ohw];
            let bv = bias.map_or(T::ZERO, |b| b[fi]);
            bias_act(src, bv, act, yrow);
        }
    }
}

/// Scratch layout for the backward pass: per slot an im2row matrix and the
/// masked output gradient (`per` in all); per task the partial weight and
/// bias gradients (`part = dw + f`).
struct BwdLayout {
    rows: usize,
    dw: usize,
    per: usize,
    part: usize,
}

#[allow(clippy::too_many_arguments)]
fn backward_task<T: Float>(
    s: &ConvShape,
    lay: &BwdLayout,
    act: Act,
    w: &[T],
    xc: &[T],
    yc: &[T],
    dyc: &[T],
    dxc: Option<&mut [T]>,
    scr: &mut [T],
    part: &mut [T],
) {
    let (ckk, ohw, f) = (s.ckk(), s.ohw(), s.f);
    let in_img = s.input().chw();
    let out_img = f * ohw;
    let b = xc.len() / in_img;
    let l = b * ohw;
    let (rows, dz) = scr.split_at_mut(lay.rows);
    let (dwp, dbp) = part.split_at_mut(lay.dw);
    let rows = &mut rows[..l * ckk];
    let dz = &mut dz[..f * l];
    // dz = dy (masked by y > 0 under a fused ReLU), images side by side.
    for (i, (dyi, yi)) in dyc
        .chunks_exact(out_img)
        .zip(yc.chunks_exact(out_img))
        .enumerate()
    {
        for fi in 0..f {
            let d = &mut dz[fi * l + i * ohw..fi * l + (i + 1) * ohw];
            let g = &dyi[fi * ohw..(fi + 1) * ohw];
            match act {
                Act::None => d.copy_from_slice(g),
                Act::Relu => relu_mask(&yi[fi * ohw..(fi + 1) * ohw], g, d),
            }
        }
    }
    for (fi, dbv) in dbp.iter_mut().enumerate() {
        *dbv = sum_lanes(&dz[fi * l..(fi + 1) * l]);
    }
    for (i, xi) in xc.chunks_exact(in_img).enumerate() {
        im2row(s, xi, rows, i * ohw);
    }
    // dW_task[f × ckk] = dz[f × l] · rows[l × ckk]
    gemm(
        f,
        ckk,
        l,
        T::ZERO,
        dwp,
        T::ONE,
        dz,
        false,
        rows,
        false,
        Par::Seq,
    );
    if let Some(dxc) = dxc {
        // dcol[ckk × l] = Wᵀ · dz, reusing the im2row buffer; col2im runs over
        // contiguous input rows, which is cheaper than the im2row adjoint.
        let dcol = rows;
        gemm(
            ckk,
            l,
            f,
            T::ZERO,
            dcol,
            T::ONE,
            w,
            true,
            dz,
            false,
            Par::Seq,
        );
        for (i, dxi) in dxc.chunks_exact_mut(in_img).enumerate() {
            dxi.fill(T::ZERO);
            col2im(s, dcol, l, i * ohw, dxi);
        }
    }
}

/// Backward: from `dy` (gradient w.r.t. the forward output `y`, i.e. after
/// the fused activation) computes `dw` and `db` (OVERWRITTEN, deterministic),
/// and `dx` (OVERWRITTEN) unless the caller passes `None` (first layer).
///
/// `y` is the forward output and is read only when `act == Act::Relu` (pass
/// any slice of the same length otherwise, e.g. `dy`). `db = None` skips the
/// bias gradient. The forward pass saves nothing else: im2row is recomputed
/// from `x`. `scratch_buf` is grown to [`backward_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward<T: Float>(
    s: &ConvShape,
    act: Act,
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    scratch_buf: &mut Vec<T>,
) {
    debug_assert!(s.valid());
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(y.len(), s.output().len());
    debug_assert_eq!(dy.len(), s.output().len());
    debug_assert!(dx.as_ref().is_none_or(|d| d.len() == x.len()));
    debug_assert_eq!(dw.len(), s.w_len());
    debug_assert!(db.as_ref().is_none_or(|d| d.len() == s.f));
    if s.n == 0 {
        dw.fill(T::ZERO);
        if let Some(db) = db {
            db.fill(T::ZERO);
        }
        return;
    }
    let (ckk, ohw, f) = (s.ckk(), s.ohw(), s.f);
    let ipt = images_per_task(s);
    let tasks = s.n.div_ceil(ipt);
    let lay = BwdLayout {
        rows: ckk * ipt * ohw,
        dw: f * ckk,
        per: ckk * ipt * ohw + f * ipt * ohw,
        part: f * ckk + f,
    };
    let pst = tasks_per_slot(tasks);
    let nslots = tasks.div_ceil(pst);
    debug_assert_eq!(nslots * lay.per + tasks * lay.part, backward_scratch_len(s));
    let scr = scratch(scratch_buf, nslots * lay.per + tasks * lay.part);
    let (work, parts) = scr.split_at_mut(nslots * lay.per);
    let in_img = s.input().chw();
    let out_img = f * ohw;
    let yy = if act == Act::Relu { y } else { dy };
    let (xn, yn) = (ipt * in_img, ipt * out_img);
    let base = work
        .par_chunks_mut(lay.per)
        .zip(parts.par_chunks_mut(pst * lay.part))
        .zip(x.par_chunks(pst * xn))
        .zip(yy.par_chunks(pst * yn))
        .zip(dy.par_chunks(pst * yn));
    match dx {
        Some(dx) => {
            base.zip(dx.par_chunks_mut(pst * xn))
                .for_each(|(((((scr, ps), xs), ys), dys), dxs)| {
                    let it = xs.chunks(xn).zip(ys.chunks(yn)).zip(dys.chunks(yn));
                    for ((((xc, yc), dyc), dxc), part) in
                        it.zip(dxs.chunks_mut(xn)).zip(ps.chunks_mut(lay.part))
                    {
                        backward_task(s, &lay, act, w, xc, yc, dyc, Some(dxc), scr, part);
                    }
                })
        }
        None => base.for_each(|((((scr, ps), xs), ys), dys)| {
            let it = xs.chunks(xn).zip(ys.chunks(yn)).zip(dys.chunks(yn));
            for (((xc, yc), dyc), part) in it.zip(ps.chunks_mut(lay.part)) {
                backward_task(s, &lay, act, w, xc, yc, dyc, None, scr, part);
            }
        }),
    }
    // Sum the per-task partials in task order.
    let parts: &[T] = parts;
    const BLOCK: usize = 4096;
    dw.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let start = bi * BLOCK;
        blk.copy_from_slice(&parts[start..start + blk.len()]);
        for t in 1..tasks {
            let p = &parts[t * lay.part + start..t * lay.part + start + blk.len()];
            for (o, v) in blk.iter_mut().zip(p) {
                *o += *v;
            }
        }
    });
    if let Some(db) = db {
        let db_off = lay.dw;
        db.copy_from_slice(&parts[db_off..db_off + f]);
        for t in 1..tasks {
            for (o, v) in db
                .iter_mut()
                .zip(&parts[t * lay.part + db_off..t * lay.part + db_off + f])
            {
                *o += *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::concat::{concat_channels, split_channels};
    use crate::backend::cpu::kernels::gradcheck::*;

    /// Direct 7-loop convolution (plus bias and optional ReLU), f64.
    fn naive(s: &ConvShape, x: &[f64], w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
        let (oh, ow) = (s.oh(), s.ow());
        let mut y = vec![0.0; s.n * s.f * oh * ow];
        for n in 0..s.n {
            for f in 0..s.f {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[f];
                        for c in 0..s.c {
                            for ki in 0..s.k {
                                for kj in 0..s.k {
                                    let iy = (oy * s.stride + ki) as isize - s.pad as isize;
                                    let ix = (ox * s.stride + kj) as isize - s.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * s.c + c) * s.h + iy as usize) * s.w + ix as usize];
                                    acc += xv * w[((f * s.c + c) * s.k + ki) * s.k + kj];
                                }
                            }
                        }
                        y[((n * s.f + f) * oh + oy) * ow + ox] =
                            if relu { acc.max(0.0) } else { acc };
                    }
                }
            }
        }
        y
    }

    fn shapes() -> Vec<ConvShape> {
        vec![
            ConvShape {
                n: 2,
                c: 2,
                h: 5,
                w: 6,
                f: 3,
                k: 3,
                stride: 2,
                pad: 1,
            },
            ConvShape {
                n: 2,
                c: 3,
                h: 4,
                w: 4,
                f: 2,
                k: 2,
                stride: 1,
                pad: 0,
            },
            ConvShape {
                n: 3,
                c: 1,
                h: 7,
                w: 5,
                f: 2,
                k: 3,
                stride: 3,
                pad: 2,
            },
            ConvShape {
                n: 1,
                c: 2,
                h: 6,
                w: 6,
                f: 2,
                k: 5,
                stride: 1,
                pad: 2,
            },
            ConvShape {
                n: 2,
                c: 1,
                h: 3,
                w: 3,
                f: 1,
                k: 5,
                stride: 1,
                pad: 1,
            },
            // Padding larger than the kernel: whole windows lie in the padding.
            ConvShape {
                n: 2,
                c: 2,
                h: 4,
                w: 5,
                f: 2,
                k: 3,
                stride: 1,
                pad: 4,
            },
            ConvShape {
                n: 2,
                c: 1,
                h: 3,
                w: 3,
                f: 2,
                k: 2,
                stride: 2,
                pad: 3,
            },
            ConvShape {
                n: 1,
                c: 2,
                h: 5,
                w: 4,
                f: 1,
                k: 1,
                stride: 3,
                pad: 2,
            },
            ConvShape {
                n: 1,
                c: 1,
                h: 2,
                w: 3,
                f: 2,
                k: 5,
                stride: 2,
                pad: 7,
            },
        ]
    }

    #[test]
    fn conv_matches_naive_f64_and_f32() {
        let mut all = shapes();
        // Several tasks per batch (images_per_task = 3 here), uneven last task.
        all.push(ConvShape {
            n: 7,
            c: 2,
            h: 28,
            w: 28,
            f: 4,
            k: 5,
            stride: 1,
            pad: 2,
        });
        all.push(ConvShape {
            n: 5,
            c: 3,
            h: 11,
            w: 9,
            f: 4,
            k: 4,
            stride: 2,
            pad: 1,
        });
        for (si, s) in all.iter().enumerate() {
            let x = rand_vec(100 + si as u64, s.input().len());
            let w = rand_vec(200 + si as u64, s.w_len());
            let b = rand_vec(300 + si as u64, s.f);
            let mut scr = Vec::new();
            for act in [Act::None, Act::Relu] {
                let want = naive(s, &x, &w, &b, act == Act::Relu);
                let mut y = vec![f64::NAN; want.len()];
                conv2d_forward(s, &x, &w, Some(&b), act, &mut y, &mut scr);
                assert!(rel_err(&y, &want) < 1e-14, "f64 {s:?} {act:?}");
                let mut y32 = vec![f32::NAN; want.len()];
                let mut scr32 = Vec::new();
                conv2d_forward(
                    s,
                    &to_f32(&x),
                    &to_f32(&w),
                    Some(&to_f32(&b)),
                    act,
                    &mut y32,
                    &mut scr32,
                );
                for (a, b) in y32.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-4, "f32 {s:?}: {a} vs {b}");
                }
            }
            let want = naive(s, &x, &w, &vec![0.0; s.f], false);
            let mut y = vec![f64::NAN; want.len()];
            conv2d_forward(s, &x, &w, None, Act::None, &mut y, &mut scr);
            assert!(rel_err(&y, &want) < 1e-14, "no bias {s:?}");
        }
    }

    fn gradcheck(s: &ConvShape, act: Act, seed: u64, check_x: bool) {
        let mut x = rand_vec(seed, s.input().len());
        let mut w = rand_vec(seed + 1, s.w_len());
        let mut b = rand_vec(seed + 2, s.f);
        let r = rand_vec(seed + 3, s.output().len());
        let mut scr = Vec::new();
        let mut y = vec![0.0; r.len()];
        conv2d_forward(s, &x, &w, Some(&b), act, &mut y, &mut scr);
        let (mut dx, mut dw, mut db) = (
            vec![f64::NAN; x.len()],
            vec![f64::NAN; w.len()],
            vec![f64::NAN; s.f],
        );
        conv2d_backward(
            s,
            act,
            &x,
            &w,
            &y,
            &r,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &mut scr,
        );
        // Skipping dx must not change dw/db.
        let (mut dw2, mut db2) = (vec![0.0; w.len()], vec![0.0; s.f]);
        conv2d_backward(
            s,
            act,
            &x,
            &w,
            &y,
            &r,
            None,
            &mut dw2,
            Some(&mut db2),
            &mut scr,
        );
        assert_eq!(dw, dw2);
        assert_eq!(db, db2);
        let f = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; r.len()];
            let mut scr = Vec::new();
            conv2d_forward(s, x, w, Some(b), act, &mut y, &mut scr);
            dot(&y, &r)
        };
        let (x0, w0, b0) = (x.clone(), w.clone(), b.clone());
        if check_x {
            let nx = numeric_grad(&mut x, EPS, |x| f(x, &w0, &b0));
            assert_grad(&format!("conv dx {s:?} {act:?}"), &dx, &nx, TOL);
        }
        let nw = numeric_grad(&mut w, EPS, |w| f(&x0, w, &b0));
        assert_grad(&format!("conv dw {s:?} {act:?}"), &dw, &nw, TOL);
        let nb = numeric_grad(&mut b, EPS, |b| f(&x0, &w0, b));
        assert_grad(&format!("conv db {s:?} {act:?}"), &db, &nb, TOL);
    }

    #[test]
    fn conv_gradcheck_stride_pad_relu() {
        for (i, s) in shapes().iter().enumerate() {
            gradcheck(s, Act::None, 400 + 10 * i as u64, true);
            gradcheck(s, Act::Relu, 500 + 10 * i as u64, true);
        }
    }

    #[test]
    fn conv_gradcheck_several_tasks() {
        // 32×32 output -> 2 images per task -> 3 tasks for n = 5.
        let s = ConvShape {
            n: 5,
            c: 2,
            h: 32,
            w: 32,
            f: 2,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert_eq!(images_per_task(&s), 2);
        gradcheck(&s, Act::Relu, 600, false);
    }

    #[test]
    fn conv_backward_f32_matches_f64() {
        let s = ConvShape {
            n: 20,
            c: 3,
            h: 13,
            w: 11,
            f: 5,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let x = rand_vec(900, s.input().len());
        let w = rand_vec(901, s.w_len());
        let r = rand_vec(902, s.output().len());
        let mut scr = Vec::new();
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; s.f]);
        conv2d_backward(
            &s,
            Act::None,
            &x,
            &w,
            &r,
            &r,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &mut scr,
        );
        let mut scr32 = Vec::new();
        let (x32, w32, r32) = (to_f32(&x), to_f32(&w), to_f32(&r));
        let (mut dx32, mut dw32) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
        conv2d_backward(
            &s,
            Act::None,
            &x32,
            &w32,
            &r32,
            &r32,
            Some(&mut dx32),
            &mut dw32,
            None,
            &mut scr32,
        );
        let up = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        assert!(rel_err(&up(&dx32), &dx) < 1e-6);
        assert!(rel_err(&up(&dw32), &dw) < 1e-6);
    }

    #[test]
    fn conv_backward_deterministic_across_threads() {
        let s = ConvShape {
            n: 40,
            c: 8,
            h: 13,
            w: 13,
            f: 16,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert!(s.n.div_ceil(images_per_task(&s)) > 2);
        let x = to_f32(&rand_vec(700, s.input().len()));
        let w = to_f32(&rand_vec(701, s.w_len()));
        let b = to_f32(&rand_vec(702, s.f));
        let r = to_f32(&rand_vec(703, s.output().len()));
        let runs = in_pools(|| {
            let mut scr = Vec::new();
            let mut y = vec![0.0f32; r.len()];
            conv2d_forward(&s, &x, &w, Some(&b), Act::Relu, &mut y, &mut scr);
            let (mut dx, mut dw, mut db) = (
                vec![0.0f32; x.len()],
                vec![0.0f32; w.len()],
                vec![0.0f32; s.f],
            );
            conv2d_backward(
                &s,
                Act::Relu,
                &x,
                &w,
                &y,
                &r,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
                &mut scr,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            (bits(&y), bits(&dx), bits(&dw), bits(&db))
        });
        assert!(runs[1] == runs[0] && runs[2] == runs[0]);
    }

    #[test]
    fn groups_as_two_half_convs_on_channel_slices() {
        // Grouped conv, 2 groups: x has 4 channels, each group maps 2 in -> 3 out.
        let (n, c, h, wd, g) = (2, 4, 6, 5, 2);
        let (cg, fg, k) = (c / g, 3, 3);
        let half = ConvShape {
            n,
            c: cg,
            h,
            w: wd,
            f: fg,
            k,
            stride: 1,
            pad: 1,
        };
        let x = rand_vec(800, n * c * h * wd);
        let wts: Vec<Vec<f64>> = (0..g)
            .map(|i| rand_vec(810 + i as u64, half.w_len()))
            .collect();
        let bs: Vec<Vec<f64>> = (0..g).map(|i| rand_vec(820 + i as u64, fg)).collect();
        let ohw = half.oh() * half.ow();
        // Reference: direct grouped convolution.
        let mut want = vec![0.0; n * g * fg * ohw];
        for gi in 0..g {
            // Gather this group's channels per image, then run the naive conv.
            let mut xs = vec![0.0; n * cg * h * wd];
            for ni in 0..n {
                for ci in 0..cg {
                    for p in 0..h * wd {
                        xs[(ni * cg + ci) * h * wd + p] = x[(ni * c + gi * cg + ci) * h * wd + p];
                    }
                }
            }
            let yg = naive(&half, &xs, &wts[gi], &bs[gi], true);
            for ni in 0..n {
                for fi in 0..fg {
                    for p in 0..ohw {
                        want[(ni * g * fg + gi * fg + fi) * ohw + p] = yg[(ni * fg + fi) * ohw + p];
                    }
                }
            }
        }
        // Towers: split channels, one conv per tower, concat outputs.
        let (mut x0, mut x1) = (vec![0.0; n * cg * h * wd], vec![0.0; n * cg * h * wd]);
        split_channels(n, h * wd, &x, &mut [(&mut x0, cg), (&mut x1, cg)]);
        let mut scr = Vec::new();
        let (mut y0, mut y1) = (vec![0.0; n * fg * ohw], vec![0.0; n * fg * ohw]);
        conv2d_forward(
            &half,
            &x0,
            &wts[0],
            Some(&bs[0]),
            Act::Relu,
            &mut y0,
            &mut scr,
        );
        conv2d_forward(
            &half,
            &x1,
            &wts[1],
            Some(&bs[1]),
            Act::Relu,
            &mut y1,
            &mut scr,
        );
        let mut got = vec![0.0; want.len()];
        concat_channels(n, ohw, &[(&y0, fg), (&y1, fg)], &mut got);
        assert!(rel_err(&got, &want) < 1e-14);
    }

    /// CPU time of the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`), so
    /// that other processes on a busy machine do not inflate the timings.
    fn cpu_secs() -> f64 {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `t` is a valid, writable timespec; clock 3 is
        // CLOCK_THREAD_CPUTIME_ID on Linux.
        let rc = unsafe { clock_gettime(3, &mut t) };
        assert_eq!(rc, 0);
        t.sec as f64 + t.nsec as f64 * 1e-9
    }

    /// Per-component timings of one backward task for the conv2 shape:
    /// `cargo test --lib conv_parts_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn conv_parts_timing() {
        let s = ConvShape {
            n: 13,
            c: 32,
            h: 13,
            w: 13,
            f: 64,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let (ckk, ohw, f) = (s.ckk(), s.ohw(), s.f);
        let l = s.n * ohw;
        let x = to_f32(&rand_vec(1, s.input().len()));
        let w = to_f32(&rand_vec(2, s.w_len()));
        let dz = to_f32(&rand_vec(3, f * l));
        let mut buf = vec![0.0f32; ckk * l];
        let mut dwp = vec![0.0f32; f * ckk];
        let mut dx = vec![0.0f32; x.len()];
        let in_img = s.input().chw();
        let time = |name: &str, g: &mut dyn FnMut()| {
            let mut best = f64::INFINITY;
            for _ in 0..20 {
                let t = cpu_secs();
                g();
                best = best.min(cpu_secs() - t);
            }
            println!("{name:>28}: {:.3} ms", best * 1e3);
        };
        time("im2col", &mut || {
            for (i, xi) in x.chunks_exact(in_img).enumerate() {
                im2col(&s, xi, &mut buf, l, i * ohw);
            }
        });
        time("gemm dW = dz colT (nt)", &mut || {
            gemm(
                f,
                ckk,
                l,
                0.0,
                &mut dwp,
                1.0,
                &dz,
                false,
                &buf,
                true,
                Par::Seq,
            )
        });
        time("im2row", &mut || {
            for (i, xi) in x.chunks_exact(in_img).enumerate() {
                im2row(&s, xi, &mut buf, i * ohw);
            }
        });
        time("gemm dW = dz rows (nn)", &mut || {
            gemm(
                f,
                ckk,
                l,
                0.0,
                &mut dwp,
                1.0,
                &dz,
                false,
                &buf,
                false,
                Par::Seq,
            )
        });
        time("gemm dcol = WT dz (tn)", &mut || {
            gemm(
                ckk,
                l,
                f,
                0.0,
                &mut buf,
                1.0,
                &w,
                true,
                &dz,
                false,
                Par::Seq,
            )
        });
        time("col2im", &mut || {
            for (i, dxi) in dx.chunks_exact_mut(in_img).enumerate() {
                dxi.fill(0.0);
                col2im(&s, &buf, l, i * ohw, dxi);
            }
        });
    }

    /// Rough single-thread timings (best of 10, thread CPU time) for the small-AlexNet conv shapes at batch
    /// 128: `cargo test --lib conv_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn conv_timing() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        for s in [
            ConvShape {
                n: 128,
                c: 1,
                h: 28,
                w: 28,
                f: 32,
                k: 5,
                stride: 1,
                pad: 2,
            },
            ConvShape {
                n: 128,
                c: 32,
                h: 13,
                w: 13,
                f: 64,
                k: 3,
                stride: 1,
                pad: 1,
            },
            ConvShape {
                n: 128,
                c: 64,
                h: 6,
                w: 6,
                f: 96,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ] {
            let x = to_f32(&rand_vec(1, s.input().len()));
            let w = to_f32(&rand_vec(2, s.w_len()));
            let b = to_f32(&rand_vec(3, s.f));
            let mut y = vec![0.0f32; s.output().len()];
            let mut dx = vec![0.0f32; x.len()];
            let mut dw = vec![0.0f32; w.len()];
            let mut db = vec![0.0f32; s.f];
            let mut scr = Vec::new();
            pool.install(|| {
                let reps = 10;
                conv2d_forward(&s, &x, &w, Some(&b), Act::Relu, &mut y, &mut scr);
                let mut fwd = f64::INFINITY;
                for _ in 0..reps {
                    let t = cpu_secs();
                    conv2d_forward(&s, &x, &w, Some(&b), Act::Relu, &mut y, &mut scr);
                    fwd = fwd.min(cpu_secs() - t);
                }
                let mut bwd = f64::INFINITY;
                for _ in 0..reps {
                    let t = cpu_secs();
                    conv2d_backward(&s, Act::Relu, &x, &w, &y, &y, Some(&mut dx), &mut dw, Some(&mut db), &mut scr);
                    bwd = bwd.min(cpu_secs() - t);
                }
                let mut bwd_w = f64::INFINITY;
                for _ in 0..reps {
                    let t = cpu_secs();
                    conv2d_backward(&s, Act::Relu, &x, &w, &y, &y, None, &mut dw, Some(&mut db), &mut scr);
                    bwd_w = bwd_w.min(cpu_secs() - t);
                }
                let gflop = 2.0 * (s.n * s.f * s.oh() * s.ow() * s.c * s.k * s.k) as f64 / 1e9;
                println!(
                    "{s:?}: fwd {:.2} ms ({:.1} GFLOP/s), bwd(dx+dw) {:.2} ms, bwd(dw only) {:.2} ms",
                    fwd * 1e3,
                    gflop / fwd,
                    bwd * 1e3,
                    bwd_w * 1e3
                );
            });
        }
    }
}
