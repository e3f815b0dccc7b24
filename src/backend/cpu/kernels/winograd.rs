//! Winograd F(2×2, 3×3) convolution (Lavin and Gray 2016) for 3×3,
//! stride-1 layers: the forward pass and, as a forward convolution of the
//! output gradient with the flipped, transposed filters, the input gradient.
//!
//! Assumes NCHW, weight `[F, C, 3, 3]`, stride 1 and zero padding of at most
//! 2 on each side ([`applies`]); the output is `(h + 2·pad − 2) × (w + 2·pad
//! − 2)`, cut into 2×2 tiles (the last row and column of tiles are clipped
//! when the output size is odd). Each tile reads a 4×4 input patch `d`; with
//! `V = Bᵀ d B` and `U = G g Gᵀ` the 16 products `M = U ⊙ V` summed over
//! channels give `Y = Aᵀ M A`, so the channel sum is 16 GEMMs
//! `M_e[F × P] = U_e[F × C] · V_e[C × P]` over the `P` tiles of a task:
//! 2.25 times fewer multiply-adds than the direct or im2col form (16 per
//! 2×2 outputs instead of 36), plus the transforms (about 32 adds per
//! input tile and channel, 24 per output tile and filter).
//!
//! Accuracy: the transforms add and subtract up to four values and halve
//! the filters, so the result differs from the reference kernel by a few
//! f32 rounding errors of the operands' magnitude: measured relative error
//! (max |diff| / max |reference|) below 1e-6 over the tests' geometries;
//! the tests assert 1e-5 in f32 and 1e-12 in f64.
//!
//! Guarantees: outputs are OVERWRITTEN. The batch is split into tasks of a
//! few images (a function of the shape only); each output element is
//! computed within one task by single-threaded GEMMs in a fixed order, so
//! results are bit-identical for any rayon thread count.

use rayon::prelude::*;

use super::conv::{ConvShape, conv2d_backward};
use super::gemm::{Par, gemm};
use super::{Act, Float, relu1, scratch, slots, sum_lanes, tasks_per_slot};

/// Whether the shape is one this kernel computes: 3×3, stride 1, padding
/// at most 2 (the input gradient is a convolution padded by `2 − pad`).
pub fn applies(s: &ConvShape) -> bool {
    s.k == 3 && s.stride == 1 && s.pad <= 2 && s.h + 2 * s.pad >= 3 && s.w + 2 * s.pad >= 3
}

/// Tile rows and columns of the output.
fn tiles(s: &ConvShape) -> (usize, usize) {
    (s.oh().div_ceil(2), s.ow().div_ceil(2))
}

/// Images per task: about `8192 / (C + F)` tiles (so that a task's
/// transformed inputs and products, `16·(C + F)` per tile, stay within
/// the L2 cache), 1 to 16 images. A function of the shape only.
fn images_per_task(s: &ConvShape) -> usize {
    let (th, tw) = tiles(s);
    let target = (8192 / (s.c + s.f).max(1)).clamp(32, 1024);
    target.div_ceil((th * tw).max(1)).clamp(1, 16)
}

/// Per-task scratch: transformed inputs `[16][C][P]`, products
/// `[16][F][P]`, one zero-padded input plane, and the transforms' rows.
fn per_task(s: &ConvShape) -> usize {
    let (th, tw) = tiles(s);
    let p = images_per_task(s) * th * tw;
    16 * (s.c + s.f) * p + (2 * th + 2) * (2 * tw + 2) + 12 * (tw + 1)
}

/// Elements of scratch [`forward`] uses.
pub fn forward_scratch_len(s: &ConvShape) -> usize {
    16 * s.f * s.c + slots(s.n.div_ceil(images_per_task(s))) * per_task(s)
}

/// The convolution whose forward pass is the input gradient of `s`: the
/// output gradient `[n, f, oh, ow]` convolved with the flipped filters,
/// their channel and filter axes swapped, padded by `2 − pad`.
fn adjoint(s: &ConvShape) -> ConvShape {
    ConvShape {
        n: s.n,
        c: s.f,
        h: s.oh(),
        w: s.ow(),
        f: s.c,
        k: 3,
        stride: 1,
        pad: 2 - s.pad,
    }
}

/// Elements of scratch [`backward_data`] uses.
pub fn backward_data_scratch_len(s: &ConvShape) -> usize {
    forward_scratch_len(&adjoint(s))
}

/// `U = G g Gᵀ` for every filter, laid out `[16][F][C]`; with `adjoint`,
/// for the flipped filter `g[2−i][2−j]` of filter `f`, channel `c`, laid
/// out `[16][C][F]` (the adjoint convolution's filters).
fn transform_weights<T: Float>(w: &[T], f: usize, c: usize, adjoint: bool, u: &mut [T]) {
    let half = T::from_f64(0.5);
    for fi in 0..f {
        for ci in 0..c {
            let g0 = &w[(fi * c + ci) * 9..(fi * c + ci + 1) * 9];
            let mut g = [T::ZERO; 9];
            if adjoint {
                for (i, v) in g.iter_mut().enumerate() {
                    *v = g0[8 - i];
                }
            } else {
                g.copy_from_slice(g0);
            }
            // Gg: [4 × 3]
            let mut t = [[T::ZERO; 3]; 4];
            for j in 0..3 {
                let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
                t[0][j] = a;
                t[1][j] = (a + b + cc) * half;
                t[2][j] = (a - b + cc) * half;
                t[3][j] = cc;
            }
            let (rows, cols, r, q) = if adjoint {
                (c, f, ci, fi)
            } else {
                (f, c, fi, ci)
            };
            for (i, ti) in t.iter().enumerate() {
                let (a, b, cc) = (ti[0], ti[1], ti[2]);
                let row = [a, (a + b + cc) * half, (a - b + cc) * half, cc];
                for (j, v) in row.iter().enumerate() {
                    u[((i * 4 + j) * rows + r) * cols + q] = *v;
                }
            }
        }
    }
}

/// Forward: `y = act(conv(x, w) + bias)`, `y: [n, f, oh, ow]`
/// (OVERWRITTEN); the shape must satisfy [`applies`].
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    s: &ConvShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    act: Act,
    y: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    debug_assert!(applies(s));
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(y.len(), s.output().len());
    let scr = scratch(scratch_buf, forward_scratch_len(s));
    let (u, rest) = scr.split_at_mut(16 * s.f * s.c);
    transform_weights(w, s.f, s.c, false, u);
    run(s, x, u, bias, act, y, rest);
}

/// Input gradient: `dx = ∂(conv(x, w))/∂x · dz` for the output gradient
/// `dz: [n, f, oh, ow]` (any fused activation already undone), `dx`
/// OVERWRITTEN; the shape must satisfy [`applies`].
pub fn backward_data<T: Float>(
    s: &ConvShape,
    w: &[T],
    dz: &[T],
    dx: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    backward_data_in(
        s,
        w,
        dz,
        dx,
        scratch(scratch_buf, backward_data_scratch_len(s)),
    );
}

/// [`backward_data`] with a scratch slice of at least
/// [`backward_data_scratch_len`] elements.
pub fn backward_data_in<T: Float>(s: &ConvShape, w: &[T], dz: &[T], dx: &mut [T], scr: &mut [T]) {
    debug_assert!(applies(s));
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(dz.len(), s.output().len());
    debug_assert_eq!(dx.len(), s.input().len());
    let a = adjoint(s);
    debug_assert_eq!((a.oh(), a.ow()), (s.h, s.w));
    let (u, rest) = scr.split_at_mut(16 * s.f * s.c);
    transform_weights(w, s.f, s.c, true, u);
    run(&a, dz, u, None, Act::None, dx, rest);
}

/// Per-task scratch of [`backward_weight`]: transformed inputs
/// `[16][C][P]`, transformed output gradients `[16][F][P]`, the padded
/// input plane, the padded output-gradient plane and the transforms' rows
/// (each task also keeps its partial sums `[16][F][C]` apart).
fn per_task_weight(s: &ConvShape) -> usize {
    let (th, tw) = tiles(s);
    let p = images_per_task(s) * th * tw;
    16 * (s.c + s.f) * p + (2 * th + 2) * (2 * tw + 2) + 4 * th * tw + 12 * (tw + 1)
}

/// Elements of scratch [`backward_weight`] uses.
pub fn backward_weight_scratch_len(s: &ConvShape) -> usize {
    let tasks = s.n.div_ceil(images_per_task(s));
    slots(tasks) * per_task_weight(s) + tasks * 16 * s.f * s.c
}

/// Weight gradient by Winograd F(3×3, 2×2), the transpose of the forward
/// algorithm: `dW[f, c] = Gᵀ [Σ_tiles (A dz A ᵀ) ⊙ (Bᵀ x B)] G`, where `x`
/// runs over the same 4×4 input patches as the forward pass and `dz` over
/// the 2×2 output tiles (zero past the output's edge). The sum over tiles
/// is 16 GEMMs `M_e[F × C] = Z_e[F × P] · V_e[C × P]ᵀ` per task; partial
/// sums are added in task order. `dw` is OVERWRITTEN.
pub fn backward_weight<T: Float>(
    s: &ConvShape,
    x: &[T],
    dz: &[T],
    dw: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    backward_weight_in(
        s,
        x,
        dz,
        dw,
        scratch(scratch_buf, backward_weight_scratch_len(s)),
    );
}

/// [`backward_weight`] with a scratch slice of at least
/// [`backward_weight_scratch_len`] elements.
pub fn backward_weight_in<T: Float>(s: &ConvShape, x: &[T], dz: &[T], dw: &mut [T], scr: &mut [T]) {
    debug_assert!(applies(s));
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(dz.len(), s.output().len());
    debug_assert_eq!(dw.len(), s.w_len());
    let (c, f) = (s.c, s.f);
    if s.n == 0 {
        dw.fill(T::ZERO);
        return;
    }
    let ipt = images_per_task(s);
    let per = per_task_weight(s);
    let in_img = c * s.h * s.w;
    let out_img = f * s.oh() * s.ow();
    let tasks = s.n.div_ceil(ipt);
    let part_len = 16 * f * c;
    let pst = tasks_per_slot(tasks);
    let (work, parts) = scr.split_at_mut(tasks.div_ceil(pst) * per);
    let parts = &mut parts[..tasks * part_len];
    work.par_chunks_mut(per)
        .zip(x.par_chunks(pst * ipt * in_img))
        .zip(dz.par_chunks(pst * ipt * out_img))
        .zip(parts.par_chunks_mut(pst * part_len))
        .for_each(|(((scr, xs), zs), ps)| {
            for ((xc, zc), part) in xs
                .chunks(ipt * in_img)
                .zip(zs.chunks(ipt * out_img))
                .zip(ps.chunks_mut(part_len))
            {
                weight_task(s, scr, xc, zc, part);
            }
        });
    // Sum the partials in task order (into the first task's), then
    // dW = Gᵀ M G.
    let (acc, others) = parts.split_at_mut(part_len);
    for o in others.chunks_exact(part_len) {
        for (a, v) in acc.iter_mut().zip(o) {
            *a += *v;
        }
    }
    let acc: &[T] = acc;
    output_transform_weights(f, c, acc, dw);
}

/// One task of [`backward_weight_in`]: its images' transforms and the
/// partial sums `part = [16][F][C]`.
fn weight_task<T: Float>(s: &ConvShape, scr: &mut [T], xc: &[T], zc: &[T], part: &mut [T]) {
    let (c, f, h, w, pad) = (s.c, s.f, s.h, s.w, s.pad);
    let (oh, ow) = (s.oh(), s.ow());
    let (th, tw) = tiles(s);
    let tt = th * tw;
    let pmax = images_per_task(s) * tt;
    let plane_len = (2 * th + 2) * (2 * tw + 2);
    let zplane_len = 4 * tt;
    let in_img = c * h * w;
    let out_img = f * oh * ow;
    let b = xc.len() / in_img;
    let p = b * tt;
    let (v, rest) = scr.split_at_mut(16 * c * pmax);
    let (z, rest) = rest.split_at_mut(16 * f * pmax);
    let (plane, rest) = rest.split_at_mut(plane_len);
    let (zplane, rows) = rest.split_at_mut(zplane_len);
    let v = &mut v[..16 * c * p];
    let z = &mut z[..16 * f * p];
    plane.fill(T::ZERO);
    zplane.fill(T::ZERO);
    for (i, (xi, zi)) in xc
        .chunks_exact(in_img)
        .zip(zc.chunks_exact(out_img))
        .enumerate()
    {
        for (ci, xp) in xi.chunks_exact(h * w).enumerate() {
            copy_split(xp, w, pad, tw + 1, plane);
            input_transform(plane, th, tw, v, c * p, ci * p + i * tt, rows);
        }
        for (fi, zp) in zi.chunks_exact(oh * ow).enumerate() {
            copy_split(zp, ow, 0, tw, zplane);
            grad_transform(zplane, th, tw, z, f * p, fi * p + i * tt, rows);
        }
    }
    for e in 0..16 {
        gemm(
            f,
            c,
            p,
            T::ZERO,
            &mut part[e * f * c..(e + 1) * f * c],
            T::ONE,
            &z[e * f * p..(e + 1) * f * p],
            false,
            &v[e * c * p..(e + 1) * c * p],
            true,
            Par::Seq,
        );
    }
}

/// `dW = Gᵀ M G` for every filter and channel of the summed products
/// `acc = [16][F][C]`.
fn output_transform_weights<T: Float>(f: usize, c: usize, acc: &[T], dw: &mut [T]) {
    let half = T::from_f64(0.5);
    let gt = |m: [T; 4]| -> [T; 3] {
        [
            m[0] + (m[1] + m[2]) * half,
            (m[1] - m[2]) * half,
            (m[1] + m[2]) * half + m[3],
        ]
    };
    for fi in 0..f {
        for ci in 0..c {
            let mut mm = [[T::ZERO; 4]; 4];
            for (e, v) in mm.iter_mut().flatten().enumerate() {
                *v = acc[(e * f + fi) * c + ci];
            }
            // Gᵀ M: [3 × 4], then (Gᵀ M) G: [3 × 3]
            let mut t = [[T::ZERO; 4]; 3];
            for j in 0..4 {
                let col = gt([mm[0][j], mm[1][j], mm[2][j], mm[3][j]]);
                for i in 0..3 {
                    t[i][j] = col[i];
                }
            }
            let d = &mut dw[(fi * c + ci) * 9..(fi * c + ci + 1) * 9];
            for i in 0..3 {
                d[i * 3..i * 3 + 3].copy_from_slice(&gt(t[i]));
            }
        }
    }
}

/// All gradients of one convolution from the output gradient `dz` (any
/// fused activation already undone): `dx` by Winograd if `wino_dx`
/// (else by [`conv2d_backward`]), `dw` by Winograd if `wino_dw`, `db` as
/// per-filter sums. Where `dx` is wanted but not by Winograd, the im2col
/// kernel computes `dw` as well (one lowering serves both), so `wino_dw`
/// then has no effect. All outputs OVERWRITTEN; deterministic.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    s: &ConvShape,
    wino_dx: bool,
    wino_dw: bool,
    x: &[T],
    w: &[T],
    dz: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    scratch_buf: &mut Vec<T>,
) {
    let (dx, gemm_dx) = match dx {
        Some(d) if !wino_dx => (None, Some(d)),
        d => (d, None),
    };
    if gemm_dx.is_some() || !wino_dw {
        conv2d_backward(s, Act::None, x, w, dz, dz, gemm_dx, dw, db, scratch_buf);
    } else {
        backward_weight(s, x, dz, dw, scratch_buf);
        if let Some(db) = db {
            bias_grad(s, dz, db);
        }
    }
    if let Some(dx) = dx {
        backward_data(s, w, dz, dx, scratch_buf);
    }
}

/// `db[f] = Σ dz[·, f, ·, ·]`, each filter summed image by image in order.
fn bias_grad<T: Float>(s: &ConvShape, dz: &[T], db: &mut [T]) {
    let ohw = s.oh() * s.ow();
    db.par_iter_mut().enumerate().for_each(|(fi, d)| {
        let mut acc = T::ZERO;
        for i in 0..s.n {
            let o = (i * s.f + fi) * ohw;
            acc += sum_lanes(&dz[o..o + ohw]);
        }
        *d = acc;
    });
}

/// The tiled convolution with filters already transformed (`u: [16][F][C]`).
fn run<T: Float>(
    s: &ConvShape,
    x: &[T],
    u: &[T],
    bias: Option<&[T]>,
    act: Act,
    y: &mut [T],
    scr: &mut [T],
) {
    if s.n == 0 {
        return;
    }
    let (c, f, h, w, pad) = (s.c, s.f, s.h, s.w, s.pad);
    let (oh, ow) = (s.oh(), s.ow());
    let (th, tw) = tiles(s);
    let tt = th * tw;
    let ipt = images_per_task(s);
    let per = per_task(s);
    let pmax = ipt * tt;
    let plane_len = (2 * th + 2) * (2 * tw + 2);
    let in_img = c * h * w;
    let out_img = f * oh * ow;
    let tasks = s.n.div_ceil(ipt);
    let pst = tasks_per_slot(tasks);
    scr[..tasks.div_ceil(pst) * per]
        .par_chunks_mut(per)
        .zip(x.par_chunks(pst * ipt * in_img))
        .zip(y.par_chunks_mut(pst * ipt * out_img))
        .for_each(|((scr, xs), ys)| {
            for (xc, yc) in xs.chunks(ipt * in_img).zip(ys.chunks_mut(ipt * out_img)) {
                let b = xc.len() / in_img;
                let p = b * tt;
                let (v, rest) = scr.split_at_mut(16 * c * pmax);
                let (m, rest) = rest.split_at_mut(16 * f * pmax);
                let (plane, rows) = rest.split_at_mut(plane_len);
                let v = &mut v[..16 * c * p];
                let m = &mut m[..16 * f * p];
                // The border of the padded plane is the same for every channel.
                plane.fill(T::ZERO);
                for (i, xi) in xc.chunks_exact(in_img).enumerate() {
                    for (ci, xp) in xi.chunks_exact(h * w).enumerate() {
                        copy_split(xp, w, pad, tw + 1, plane);
                        input_transform(plane, th, tw, v, c * p, ci * p + i * tt, rows);
                    }
                }
                for e in 0..16 {
                    gemm(
                        f,
                        p,
                        c,
                        T::ZERO,
                        &mut m[e * f * p..(e + 1) * f * p],
                        T::ONE,
                        &u[e * f * c..(e + 1) * f * c],
                        false,
                        &v[e * c * p..(e + 1) * c * p],
                        false,
                        Par::Seq,
                    );
                }
                for (i, yi) in yc.chunks_exact_mut(out_img).enumerate() {
                    for (fi, yp) in yi.chunks_exact_mut(oh * ow).enumerate() {
                        let bv = bias.map_or(T::ZERO, |b| b[fi]);
                        let geo = (th, tw, oh, ow);
                        output_transform(m, f * p, fi * p + i * tt, geo, bv, act, yp, rows);
                    }
                }
            }
        });
}

/// Copies the `h × w` plane `src` into `plane` at row and column offset
/// `pad`, each padded row of `2·half` elements stored split: its even
/// columns, then its odd ones (so the transforms read contiguous runs).
/// Positions not written keep their value (the caller zeroes the border).
fn copy_split<T: Float>(src: &[T], w: usize, pad: usize, half: usize, plane: &mut [T]) {
    for (r, srow) in src.chunks_exact(w).enumerate() {
        let dst = &mut plane[(r + pad) * 2 * half..(r + pad + 1) * 2 * half];
        let (even, odd) = dst.split_at_mut(half);
        // Source columns landing on even padded columns start at pad % 2.
        let x0 = pad % 2;
        let e0 = (x0 + pad) / 2;
        for (d, v) in even[e0..].iter_mut().zip(srow.iter().skip(x0).step_by(2)) {
            *d = *v;
        }
        let x1 = 1 - pad % 2;
        let o0 = (x1 + pad) / 2;
        for (d, v) in odd[o0..].iter_mut().zip(srow.iter().skip(x1).step_by(2)) {
            *d = *v;
        }
    }
}

#[inline(always)]
fn zip2<T: Float>(d: &mut [T], a: &[T], b: &[T], op: impl Fn(T, T) -> T) {
    for ((d, a), b) in d.iter_mut().zip(a).zip(b) {
        *d = op(*a, *b);
    }
}

#[inline(always)]
fn zip3<T: Float>(d: &mut [T], a: &[T], b: &[T], c: &[T], op: impl Fn(T, T, T) -> T) {
    for (((d, a), b), c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = op(*a, *b, *c);
    }
}

/// `V = Bᵀ d B` for every 4×4 patch of the split padded plane (rows of
/// `2·(tw + 1)`), tile `t` written to `v[e·estride + off + t]` for `e`
/// in 0..16; `rows` is scratch of at least `8·(tw + 1)` elements.
#[allow(clippy::too_many_arguments)]
fn input_transform<T: Float>(
    plane: &[T],
    th: usize,
    tw: usize,
    v: &mut [T],
    estride: usize,
    off: usize,
    rows: &mut [T],
) {
    let hl = tw + 1;
    let rl = 2 * hl;
    for ty in 0..th {
        let r = |i: usize| &plane[(2 * ty + i) * rl..(2 * ty + i + 1) * rl];
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        // Bᵀ d: four rows, each its even and odd columns.
        let (t0, rest) = rows[..4 * rl].split_at_mut(rl);
        let (t1, rest) = rest.split_at_mut(rl);
        let (t2, t3) = rest.split_at_mut(rl);
        zip2(t0, r0, r2, |a, b| a - b);
        zip2(t1, r1, r2, |a, b| a + b);
        zip2(t2, r2, r1, |a, b| a - b);
        zip2(t3, r1, r3, |a, b| a - b);
        let o = off + ty * tw;
        for (i, t) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
            // Columns 2tx .. 2tx + 3 are even[tx], odd[tx], even[tx + 1], odd[tx + 1].
            let (e, od) = t.split_at(hl);
            let at = |k: usize| (4 * i + k) * estride + o;
            zip2(&mut v[at(0)..at(0) + tw], &e[..tw], &e[1..], |a, b| a - b);
            zip2(&mut v[at(1)..at(1) + tw], &od[..tw], &e[1..], |a, b| a + b);
            zip2(&mut v[at(2)..at(2) + tw], &e[1..], &od[..tw], |a, b| a - b);
            zip2(&mut v[at(3)..at(3) + tw], &od[..tw], &od[1..], |a, b| a - b);
        }
    }
}

/// `Y = Aᵀ M A` for every tile of one filter (`M_e` at
/// `m[e·estride + off + t]`), plus the bias and activation, clipped to the
/// `oh × ow` output plane `y`; `rows` is scratch of at least `12·tw`.
#[allow(clippy::too_many_arguments)]
fn output_transform<T: Float>(
    m: &[T],
    estride: usize,
    off: usize,
    (th, tw, oh, ow): (usize, usize, usize, usize),
    bias: T,
    act: Act,
    y: &mut [T],
    rows: &mut [T],
) {
    let fin = |v: T| match act {
        Act::None => v + bias,
        Act::Relu => relu1(v + bias),
    };
    let (s, out) = rows[..12 * tw].split_at_mut(8 * tw);
    for ty in 0..th {
        let o = off + ty * tw;
        let me = |e: usize| &m[e * estride + o..e * estride + o + tw];
        // Aᵀ M: two rows of four columns.
        for j in 0..4 {
            zip3(
                &mut s[j * tw..(j + 1) * tw],
                me(j),
                me(4 + j),
                me(8 + j),
                |a, b, c| a + b + c,
            );
            zip3(
                &mut s[(4 + j) * tw..(5 + j) * tw],
                me(4 + j),
                me(8 + j),
                me(12 + j),
                |a, b, c| a - b - c,
            );
        }
        // (Aᵀ M) A: the even and odd output columns of both rows.
        for i in 0..2 {
            let sr = |j: usize| &s[(4 * i + j) * tw..(4 * i + j + 1) * tw];
            let (ev, od) = out[2 * i * tw..(2 * i + 2) * tw].split_at_mut(tw);
            zip3(ev, sr(0), sr(1), sr(2), |a, b, c| a + b + c);
            zip3(od, sr(1), sr(2), sr(3), |a, b, c| a - b - c);
        }
        for i in 0..2 {
            let oy = 2 * ty + i;
            if oy >= oh {
                break;
            }
            let (ev, od) = out[2 * i * tw..(2 * i + 2) * tw].split_at(tw);
            let row = &mut y[oy * ow..(oy + 1) * ow];
            let mut pairs = row.chunks_exact_mut(2);
            for ((pr, e), d) in (&mut pairs).zip(ev).zip(od) {
                pr[0] = fin(*e);
                pr[1] = fin(*d);
            }
            if let [last] = pairs.into_remainder() {
                *last = fin(ev[tw - 1]);
            }
        }
    }
}

/// `A z Aᵀ` for every 2×2 tile of the split output-gradient plane (rows
/// of `2·tw`: even columns, then odd; zero past the output's edge), tile
/// `t` written to `z[e·estride + off + t]`; `rows` is scratch of at least
/// `8·tw` elements.
fn grad_transform<T: Float>(
    zplane: &[T],
    th: usize,
    tw: usize,
    z: &mut [T],
    estride: usize,
    off: usize,
    rows: &mut [T],
) {
    let rl = 2 * tw;
    for ty in 0..th {
        let r0 = &zplane[2 * ty * rl..(2 * ty + 1) * rl];
        let r1 = &zplane[(2 * ty + 1) * rl..(2 * ty + 2) * rl];
        // A z: rows z0, z0 + z1, z0 − z1, −z1.
        let (t1, rest) = rows[..3 * rl].split_at_mut(rl);
        let (t2, t3) = rest.split_at_mut(rl);
        zip2(t1, r0, r1, |a, b| a + b);
        zip2(t2, r0, r1, |a, b| a - b);
        zip2(t3, r1, r1, |a, _| -a);
        let o = off + ty * tw;
        for (i, t) in [r0, &*t1, &*t2, &*t3].into_iter().enumerate() {
            let (e, od) = t.split_at(tw);
            let at = |k: usize| (4 * i + k) * estride + o;
            z[at(0)..at(0) + tw].copy_from_slice(e);
            zip2(&mut z[at(1)..at(1) + tw], e, od, |a, b| a + b);
            zip2(&mut z[at(2)..at(2) + tw], e, od, |a, b| a - b);
            zip2(&mut z[at(3)..at(3) + tw], od, od, |a, _| -a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::conv::conv2d_forward;
    use crate::backend::cpu::kernels::gradcheck::{in_pools, rand_vec, to_f32};

    fn geoms() -> Vec<ConvShape> {
        let s = |n, c, h, w, f, pad| ConvShape {
            n,
            c,
            h,
            w,
            f,
            k: 3,
            stride: 1,
            pad,
        };
        vec![
            s(1, 1, 5, 5, 1, 1),
            s(2, 3, 7, 6, 4, 1),
            s(3, 2, 8, 8, 5, 0),
            s(2, 4, 5, 9, 3, 2),
            s(1, 5, 3, 3, 2, 0),
            s(5, 16, 13, 11, 8, 1),
            s(20, 3, 9, 7, 6, 1),
            s(1, 1, 1, 1, 1, 1),
            s(2, 2, 1, 4, 3, 2),
        ]
    }

    /// Largest |a − b| over the largest |b|.
    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        a.iter()
            .zip(b)
            .fold(0.0f64, |e, (x, y)| e.max((x - y).abs()))
            / m
    }

    fn up(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&a| a as f64).collect()
    }

    #[test]
    fn forward_matches_reference() {
        for (i, s) in geoms().iter().enumerate() {
            assert!(applies(s), "{s:?}");
            let seed = 10 * i as u64;
            let x = rand_vec(seed, s.input().len());
            let w = rand_vec(seed + 1, s.w_len());
            let b = rand_vec(seed + 2, s.f);
            for (bias, act) in [(None, Act::None), (Some(&b[..]), Act::Relu)] {
                let mut want = vec![0.0; s.output().len()];
                conv2d_forward(s, &x, &w, bias, act, &mut want, &mut Vec::new());
                let mut got = vec![f64::NAN; want.len()];
                forward(s, &x, &w, bias, act, &mut got, &mut Vec::new());
                assert!(max_rel(&got, &want) < 1e-12, "f64 {s:?}");
                let mut got32 = vec![f32::NAN; want.len()];
                let b32 = to_f32(&b);
                forward(
                    s,
                    &to_f32(&x),
                    &to_f32(&w),
                    bias.map(|_| &b32[..]),
                    act,
                    &mut got32,
                    &mut Vec::new(),
                );
                let e = max_rel(&up(&got32), &want);
                assert!(e < 1e-5, "f32 {s:?}: {e}");
            }
        }
    }

    #[test]
    fn input_gradient_matches_reference() {
        for (i, s) in geoms().iter().enumerate() {
            let seed = 100 + 10 * i as u64;
            let x = rand_vec(seed, s.input().len());
            let w = rand_vec(seed + 1, s.w_len());
            let dy = rand_vec(seed + 2, s.output().len());
            let (mut want, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
            conv2d_backward(
                s,
                Act::None,
                &x,
                &w,
                &dy,
                &dy,
                Some(&mut want),
                &mut dw,
                None,
                &mut Vec::new(),
            );
            let mut got = vec![f64::NAN; x.len()];
            backward_data(s, &w, &dy, &mut got, &mut Vec::new());
            assert!(max_rel(&got, &want) < 1e-12, "f64 {s:?}");
            let mut got32 = vec![f32::NAN; x.len()];
            backward_data(s, &to_f32(&w), &to_f32(&dy), &mut got32, &mut Vec::new());
            let e = max_rel(&up(&got32), &want);
            assert!(e < 1e-5, "f32 {s:?}: {e}");
        }
    }

    #[test]
    fn weight_gradient_matches_reference() {
        for (i, s) in geoms().iter().enumerate() {
            let seed = 200 + 10 * i as u64;
            let x = rand_vec(seed, s.input().len());
            let w = rand_vec(seed + 1, s.w_len());
            let dy = rand_vec(seed + 2, s.output().len());
            let mut want = vec![0.0; w.len()];
            conv2d_backward(
                s,
                Act::None,
                &x,
                &w,
                &dy,
                &dy,
                None,
                &mut want,
                None,
                &mut Vec::new(),
            );
            let mut got = vec![f64::NAN; w.len()];
            backward_weight(s, &x, &dy, &mut got, &mut Vec::new());
            assert!(max_rel(&got, &want) < 1e-12, "f64 {s:?}");
            let mut got32 = vec![f32::NAN; w.len()];
            backward_weight(s, &to_f32(&x), &to_f32(&dy), &mut got32, &mut Vec::new());
            let e = max_rel(&up(&got32), &want);
            assert!(e < 1e-5, "f32 {s:?}: {e}");
        }
    }

    #[test]
    fn deterministic_across_threads() {
        let s = ConvShape {
            n: 37,
            c: 8,
            h: 14,
            w: 13,
            f: 12,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert!(s.n.div_ceil(images_per_task(&s)) > 2);
        let x = to_f32(&rand_vec(1, s.input().len()));
        let w = to_f32(&rand_vec(2, s.w_len()));
        let dy = to_f32(&rand_vec(3, s.output().len()));
        let runs = in_pools(|| {
            let mut y = vec![0.0f32; dy.len()];
            forward(&s, &x, &w, None, Act::Relu, &mut y, &mut Vec::new());
            let mut dx = vec![0.0f32; x.len()];
            backward_data(&s, &w, &dy, &mut dx, &mut Vec::new());
            let mut dw = vec![0.0f32; w.len()];
            backward_weight(&s, &x, &dy, &mut dw, &mut Vec::new());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            (bits(&y), bits(&dx), bits(&dw))
        });
        assert!(runs.iter().all(|r| *r == runs[0]));
    }

    /// Single-thread timings (best of 5, wall time) of Winograd against the
    /// im2col kernel for the VGG and ResNet shapes at batch 128:
    /// `cargo test --release --lib winograd_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn winograd_timing() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let sh = |c, h, f| ConvShape {
            n: 128,
            c,
            h,
            w: h,
            f,
            k: 3,
            stride: 1,
            pad: 1,
        };
        for s in [
            sh(1, 28, 16),
            sh(16, 28, 16),
            sh(32, 14, 32),
            sh(64, 7, 64),
            sh(1, 28, 32),
            sh(32, 28, 32),
            sh(32, 14, 64),
            sh(64, 14, 64),
            sh(64, 7, 128),
        ] {
            let x = to_f32(&rand_vec(1, s.input().len()));
            let w = to_f32(&rand_vec(2, s.w_len()));
            let dy = to_f32(&rand_vec(3, s.output().len()));
            let mut y = vec![0.0f32; dy.len()];
            let mut dx = vec![0.0f32; x.len()];
            let mut dw = vec![0.0f32; w.len()];
            let mut scr = Vec::new();
            let time = |f: &mut dyn FnMut()| {
                f();
                let mut best = f64::INFINITY;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    f();
                    best = best.min(t.elapsed().as_secs_f64());
                }
                best * 1e3
            };
            pool.install(|| {
                let gf = time(&mut || {
                    conv2d_forward(&s, &x, &w, None, Act::None, &mut y, &mut scr)
                });
                let wf = time(&mut || forward(&s, &x, &w, None, Act::None, &mut y, &mut scr));
                let gw = time(&mut || {
                    conv2d_backward(
                        &s,
                        Act::None,
                        &x,
                        &w,
                        &dy,
                        &dy,
                        None,
                        &mut dw,
                        None,
                        &mut scr,
                    )
                });
                let gall = time(&mut || {
                    conv2d_backward(
                        &s,
                        Act::None,
                        &x,
                        &w,
                        &dy,
                        &dy,
                        Some(&mut dx),
                        &mut dw,
                        None,
                        &mut scr,
                    )
                });
                let wd = time(&mut || backward_data(&s, &w, &dy, &mut dx, &mut scr));
                let ww = time(&mut || backward_weight(&s, &x, &dy, &mut dw, &mut scr));
                println!(
                    "c{} {}x{} f{}: fwd gemm {gf:.2} wino {wf:.2} | dx gemm {:.2} wino {wd:.2} | dw gemm {gw:.2} wino {ww:.2} ms",
                    s.c,
                    s.h,
                    s.w,
                    s.f,
                    gall - gw
                );
            });
        }
    }
}
