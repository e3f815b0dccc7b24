//! 2-D convolution in its general form: rectangular kernels `kh×kw`,
//! per-axis stride and zero padding, dilation (the kernel's taps `d` apart,
//! so its extent is `d·(k−1)+1`), and `groups` (channels and filters split
//! into `groups` equal parts, filter group `g` seeing only channel group
//! `g`; the paper's two towers are `groups: 2`). NCHW, weight
//! `[F, C/groups, kh, kw]`, bias `[F]` (optional).
//!
//! The executor runs [`super::conv`] whenever the geometry is the plain one
//! ([`ConvGeom::plain`]: one group, no dilation, square), so the existing
//! numerics and speed stay as they were; this kernel serves every other
//! geometry. Implementation: the batch is split into tasks of a few images
//! (a function of the shape only); each task lowers one image and one group
//! at a time with a dilated im2col into a `[C/g·kh·kw × OH·OW]` matrix and
//! runs one single-threaded GEMM per group; tasks run in parallel on the
//! current rayon pool.
//!
//! Guarantees: all outputs are OVERWRITTEN; weight and bias gradients are
//! reduced per task and summed in task order, so results are bit-identical
//! for any rayon thread count.

use rayon::prelude::*;

use super::conv::ConvShape;
use super::gemm::{Par, gemm};
use super::{Act, Float, bias_act, relu_mask, scratch, sum_lanes};

/// Shape of one general convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub f: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dil: usize,
    pub groups: usize,
}

impl ConvGeom {
    /// The plain geometry as the fast kernel's shape, if it is one.
    pub fn plain(&self) -> Option<ConvShape> {
        (self.groups == 1
            && self.dil == 1
            && self.kh == self.kw
            && self.sh == self.sw
            && self.ph == self.pw)
            .then_some(ConvShape {
                n: self.n,
                c: self.c,
                h: self.h,
                w: self.w,
                f: self.f,
                k: self.kh,
                stride: self.sh,
                pad: self.ph,
            })
    }
    fn ekh(&self) -> usize {
        self.dil * (self.kh - 1) + 1
    }
    fn ekw(&self) -> usize {
        self.dil * (self.kw - 1) + 1
    }
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.ph - self.ekh()) / self.sh + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pw - self.ekw()) / self.sw + 1
    }
    /// Channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Filters per group.
    pub fn fg(&self) -> usize {
        self.f / self.groups
    }
    /// Rows of one group's im2col matrix: `C/g·kh·kw`.
    fn ckk(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn ohw(&self) -> usize {
        self.oh() * self.ow()
    }
    pub fn in_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.n * self.f * self.ohw()
    }
    pub fn w_len(&self) -> usize {
        self.f * self.ckk()
    }
    fn valid(&self) -> bool {
        self.sh > 0
            && self.sw > 0
            && self.kh > 0
            && self.kw > 0
            && self.dil > 0
            && self.groups > 0
            && self.c.is_multiple_of(self.groups)
            && self.f.is_multiple_of(self.groups)
            && self.h + 2 * self.ph >= self.ekh()
            && self.w + 2 * self.pw >= self.ekw()
    }
}

/// Images per parallel task (a function of the shape only).
fn images_per_task(s: &ConvGeom) -> usize {
    1024usize.div_ceil(s.ohw().max(1)).clamp(1, 8)
}

/// Writes channels `c0 .. c0 + C/g` of image `x` as the `[C/g·kh·kw × OH·OW]`
/// matrix `col` (dilated taps; zeros where a tap lies in the padding).
fn im2col<T: Float>(s: &ConvGeom, x: &[T], c0: usize, col: &mut [T]) {
    let (oh, ow) = (s.oh(), s.ow());
    let hw = s.h * s.w;
    for c in 0..s.cg() {
        let plane = &x[(c0 + c) * hw..(c0 + c + 1) * hw];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let row = (c * s.kh + ki) * s.kw + kj;
                let dst = &mut col[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * s.sh + ki * s.dil) as isize - s.ph as isize;
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy as usize >= s.h {
                        d.fill(T::ZERO);
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    for (ox, o) in d.iter_mut().enumerate() {
                        let ix = (ox * s.sw + kj * s.dil) as isize - s.pw as isize;
                        *o = if ix < 0 || ix as usize >= s.w {
                            T::ZERO
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// Adds `col` back into channels `c0 ..` of image `dx`: the adjoint of [`im2col`].
fn col2im<T: Float>(s: &ConvGeom, col: &[T], c0: usize, dx: &mut [T]) {
    let (oh, ow) = (s.oh(), s.ow());
    let hw = s.h * s.w;
    for c in 0..s.cg() {
        let plane = &mut dx[(c0 + c) * hw..(c0 + c + 1) * hw];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let row = (c * s.kh + ki) * s.kw + kj;
                let src = &col[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * s.sh + ki * s.dil) as isize - s.ph as isize;
                    if iy < 0 || iy as usize >= s.h {
                        continue;
                    }
                    let d = &mut plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    for (ox, v) in src[oy * ow..(oy + 1) * ow].iter().enumerate() {
                        let ix = (ox * s.sw + kj * s.dil) as isize - s.pw as isize;
                        if ix >= 0 && (ix as usize) < s.w {
                            d[ix as usize] += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `y = act(conv(x, w) + bias)`, `y: [n, f, oh, ow]` (OVERWRITTEN).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    s: &ConvGeom,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    act: Act,
    y: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    debug_assert!(s.valid());
    debug_assert_eq!(x.len(), s.in_len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(y.len(), s.out_len());
    if s.n == 0 {
        return;
    }
    let (ckk, ohw, fg) = (s.ckk(), s.ohw(), s.fg());
    let ipt = images_per_task(s);
    let tasks = s.n.div_ceil(ipt);
    let per = ckk * ohw + fg * ohw;
    let scr = scratch(scratch_buf, tasks * per);
    let in_img = s.c * s.h * s.w;
    let out_img = s.f * ohw;
    scr.par_chunks_mut(per)
        .zip(x.par_chunks(ipt * in_img))
        .zip(y.par_chunks_mut(ipt * out_img))
        .for_each(|((scr, xc), yc)| {
            let (col, out) = scr.split_at_mut(ckk * ohw);
            for (xi, yi) in xc.chunks_exact(in_img).zip(yc.chunks_exact_mut(out_img)) {
                for g in 0..s.groups {
                    im2col(s, xi, g * s.cg(), col);
                    let wg = &w[g * fg * ckk..(g + 1) * fg * ckk];
                    gemm(
                        fg,
                        ohw,
                        ckk,
                        T::ZERO,
                        out,
                        T::ONE,
                        wg,
                        false,
                        col,
                        false,
                        Par::Seq,
                    );
                    for fi in 0..fg {
                        let f = g * fg + fi;
                        let bv = bias.map_or(T::ZERO, |b| b[f]);
                        bias_act(
                            &out[fi * ohw..(fi + 1) * ohw],
                            bv,
                            act,
                            &mut yi[f * ohw..(f + 1) * ohw],
                        );
                    }
                }
            }
        });
}

/// Backward from `dy` (the gradient of the output after the fused
/// activation; `y` is read only when `act == Relu`): `dw` and `db`
/// (OVERWRITTEN, deterministic; `db = None` skips it) and `dx`
/// (OVERWRITTEN) unless `None`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    s: &ConvGeom,
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
    debug_assert_eq!(x.len(), s.in_len());
    debug_assert_eq!(w.len(), s.w_len());
    debug_assert_eq!(dy.len(), s.out_len());
    debug_assert_eq!(dw.len(), s.w_len());
    if s.n == 0 {
        dw.fill(T::ZERO);
        if let Some(db) = db {
            db.fill(T::ZERO);
        }
        return;
    }
    let (ckk, ohw, fg, f) = (s.ckk(), s.ohw(), s.fg(), s.f);
    let ipt = images_per_task(s);
    let tasks = s.n.div_ceil(ipt);
    // Per task: a column matrix, the masked dy of one image, dw and db partials.
    let (col_len, dz_len, dw_len) = (ckk * ohw, f * ohw, s.w_len());
    let per = col_len + dz_len + dw_len + f;
    let scr = scratch(scratch_buf, tasks * per);
    let in_img = s.c * s.h * s.w;
    let out_img = f * ohw;
    let yy = if act == Act::Relu { y } else { dy };
    let task = |scr: &mut [T], xc: &[T], yc: &[T], dyc: &[T], mut dxc: Option<&mut [T]>| {
        let (col, rest) = scr.split_at_mut(col_len);
        let (dz, rest) = rest.split_at_mut(dz_len);
        let (dwp, dbp) = rest.split_at_mut(dw_len);
        dwp.fill(T::ZERO);
        dbp.fill(T::ZERO);
        for (i, xi) in xc.chunks_exact(in_img).enumerate() {
            let dyi = &dyc[i * out_img..(i + 1) * out_img];
            match act {
                Act::None => dz.copy_from_slice(dyi),
                Act::Relu => relu_mask(&yc[i * out_img..(i + 1) * out_img], dyi, dz),
            }
            for (fi, d) in dbp.iter_mut().enumerate() {
                *d += sum_lanes(&dz[fi * ohw..(fi + 1) * ohw]);
            }
            for g in 0..s.groups {
                let dzg = &dz[g * fg * ohw..(g + 1) * fg * ohw];
                im2col(s, xi, g * s.cg(), col);
                // dW_g[fg × ckk] += dz_g[fg × ohw] · colᵀ
                gemm(
                    fg,
                    ckk,
                    ohw,
                    T::ONE,
                    &mut dwp[g * fg * ckk..(g + 1) * fg * ckk],
                    T::ONE,
                    dzg,
                    false,
                    col,
                    true,
                    Par::Seq,
                );
            }
            if let Some(dxc) = dxc.as_deref_mut() {
                let dxi = &mut dxc[i * in_img..(i + 1) * in_img];
                dxi.fill(T::ZERO);
                for g in 0..s.groups {
                    let dzg = &dz[g * fg * ohw..(g + 1) * fg * ohw];
                    let wg = &w[g * fg * ckk..(g + 1) * fg * ckk];
                    // dcol[ckk × ohw] = W_gᵀ · dz_g
                    gemm(
                        ckk,
                        ohw,
                        fg,
                        T::ZERO,
                        col,
                        T::ONE,
                        wg,
                        true,
                        dzg,
                        false,
                        Par::Seq,
                    );
                    col2im(s, col, g * s.cg(), dxi);
                }
            }
        }
    };
    let base = scr
        .par_chunks_mut(per)
        .zip(x.par_chunks(ipt * in_img))
        .zip(yy.par_chunks(ipt * out_img))
        .zip(dy.par_chunks(ipt * out_img));
    match dx {
        Some(dx) => base
            .zip(dx.par_chunks_mut(ipt * in_img))
            .for_each(|((((scr, xc), yc), dyc), dxc)| task(scr, xc, yc, dyc, Some(dxc))),
        None => base.for_each(|(((scr, xc), yc), dyc)| task(scr, xc, yc, dyc, None)),
    }
    let scr: &[T] = scr;
    let dw_off = col_len + dz_len;
    dw.copy_from_slice(&scr[dw_off..dw_off + dw_len]);
    for t in 1..tasks {
        for (o, v) in dw
            .iter_mut()
            .zip(&scr[t * per + dw_off..t * per + dw_off + dw_len])
        {
            *o += *v;
        }
    }
    if let Some(db) = db {
        let off = dw_off + dw_len;
        db.copy_from_slice(&scr[off..off + f]);
        for t in 1..tasks {
            for (o, v) in db.iter_mut().zip(&scr[t * per + off..t * per + off + f]) {
                *o += *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    /// The definition, loop by loop.
    fn naive(s: &ConvGeom, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
        let (oh, ow, cg, fg) = (s.oh(), s.ow(), s.cg(), s.fg());
        let mut y = vec![0.0; s.out_len()];
        for n in 0..s.n {
            for f in 0..s.f {
                let g = f / fg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(0.0, |b| b[f]);
                        for c in 0..cg {
                            for ki in 0..s.kh {
                                for kj in 0..s.kw {
                                    let iy = (oy * s.sh + ki * s.dil) as isize - s.ph as isize;
                                    let ix = (ox * s.sw + kj * s.dil) as isize - s.pw as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= s.h || ix as usize >= s.w
                                    {
                                        continue;
                                    }
                                    let xc = g * cg + c;
                                    acc += x
                                        [((n * s.c + xc) * s.h + iy as usize) * s.w + ix as usize]
                                        * w[((f * cg + c) * s.kh + ki) * s.kw + kj];
                                }
                            }
                        }
                        y[((n * s.f + f) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn shapes() -> Vec<ConvGeom> {
        let g = |n, c, h, w, f, kh, kw, sh, sw, ph, pw, dil, groups| ConvGeom {
            n,
            c,
            h,
            w,
            f,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            dil,
            groups,
        };
        vec![
            g(2, 4, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1, 2),
            g(3, 3, 9, 8, 4, 3, 2, 2, 1, 1, 0, 2, 1),
            g(2, 6, 8, 8, 6, 3, 3, 1, 2, 2, 1, 2, 3),
            g(1, 2, 5, 7, 2, 1, 5, 1, 1, 0, 2, 1, 2),
            g(9, 4, 5, 5, 4, 2, 2, 1, 1, 0, 0, 1, 4),
        ]
    }

    #[test]
    fn forward_matches_definition() {
        for s in shapes() {
            let x = rand_vec(1, s.in_len());
            let w = rand_vec(2, s.w_len());
            let b = rand_vec(3, s.f);
            for bias in [Some(&b[..]), None] {
                let want = naive(&s, &x, &w, bias);
                let mut y = vec![0.0; s.out_len()];
                forward(&s, &x, &w, bias, Act::None, &mut y, &mut Vec::new());
                assert!(rel_err(&y, &want) < 1e-12, "{s:?}");
            }
        }
    }

    #[test]
    fn plain_geometry_matches_fast_kernel() {
        let s = ConvGeom {
            n: 3,
            c: 3,
            h: 9,
            w: 9,
            f: 4,
            kh: 3,
            kw: 3,
            sh: 2,
            sw: 2,
            ph: 1,
            pw: 1,
            dil: 1,
            groups: 1,
        };
        let p = s.plain().unwrap();
        let x = rand_vec(4, s.in_len());
        let w = rand_vec(5, s.w_len());
        let mut a = vec![0.0; s.out_len()];
        let mut b = vec![0.0; s.out_len()];
        forward(&s, &x, &w, None, Act::None, &mut a, &mut Vec::new());
        super::super::conv::conv2d_forward(&p, &x, &w, None, Act::None, &mut b, &mut Vec::new());
        assert!(rel_err(&a, &b) < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for s in shapes() {
            for act in [Act::None, Act::Relu] {
                let x = rand_vec(6, s.in_len());
                let w = rand_vec(7, s.w_len());
                let b = rand_vec(8, s.f);
                let r = rand_vec(9, s.out_len());
                let loss = |x: &[f64], w: &[f64], b: &[f64]| {
                    let mut y = vec![0.0; s.out_len()];
                    forward(&s, x, w, Some(b), act, &mut y, &mut Vec::new());
                    dot(&y, &r)
                };
                let mut y = vec![0.0; s.out_len()];
                forward(&s, &x, &w, Some(&b), act, &mut y, &mut Vec::new());
                let (mut dx, mut dw, mut db) =
                    (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; s.f]);
                backward(
                    &s,
                    act,
                    &x,
                    &w,
                    &y,
                    &r,
                    Some(&mut dx),
                    &mut dw,
                    Some(&mut db),
                    &mut Vec::new(),
                );
                let (mut xm, mut wm, mut bm) = (x.clone(), w.clone(), b.clone());
                let nx = numeric_grad(&mut xm, EPS, |v| loss(v, &w, &b));
                let nw = numeric_grad(&mut wm, EPS, |v| loss(&x, v, &b));
                let nb = numeric_grad(&mut bm, EPS, |v| loss(&x, &w, v));
                assert_grad("dx", &dx, &nx, TOL);
                assert_grad("dw", &dw, &nw, TOL);
                assert_grad("db", &db, &nb, TOL);
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let s = shapes()[4];
        let x = rand_vec(10, s.in_len());
        let w = rand_vec(11, s.w_len());
        let dy = rand_vec(12, s.out_len());
        let runs = in_pools(|| {
            let mut dw = vec![0.0; s.w_len()];
            let mut dx = vec![0.0; s.in_len()];
            backward(
                &s,
                Act::None,
                &x,
                &w,
                &dy,
                &dy,
                Some(&mut dx),
                &mut dw,
                None,
                &mut Vec::new(),
            );
            (dw, dx)
        });
        for r in &runs[1..] {
            assert_eq!(r, &runs[0]);
        }
    }
}
