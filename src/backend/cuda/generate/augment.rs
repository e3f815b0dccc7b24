//! Augmentation on the device: the CUDA C kernel that turns a batch of raw
//! `u8` CHW images into the `f32` crops the step's `image` buffer expects,
//! computing exactly what `data::Augmenter::crop_into` computes on
//! the host:
//!
//! ```text
//! out[n][k][y][x] = (img[n][k][sy][sx] + light[n][k] − mean[k][sy][sx]) · scale
//! ```
//!
//! with `sy = oy + y − pad`, `sx = ox + x' − pad`, `x' = crop − 1 − x` when
//! the image is mirrored (else `x`), and 0 where `(sy, sx)` falls outside
//! the image (zero padding). One thread per output element.
//!
//! Buffers (kernel parameters, in order):
//! - `img`, `const unsigned int*`: the batch's bytes packed four to a word,
//!   little-endian (byte `b` is bits `8·(b mod 4)..` of word `b / 4`), see
//!   [`pack_bytes`]; `⌈N·C·H·W / 4⌉` words.
//! - `crop`, `const unsigned int*`: per image `oy, ox, mirror` (mirror 0 or
//!   1), see [`pack_params`]; `3·N` words.
//! - `light`, `const float*`: per image and channel the lighting offset in
//!   pixel units, `255 · Params::light[k]` (0 for channels past the third),
//!   computed on the host in `f32` as `crop_into` does; `N·C` values.
//! - `mean`, `const float*`: the mean image the `Augmenter` subtracts (the
//!   per-pixel mean, the channel means spread over their planes, or zeros),
//!   `C·H·W` values, uploaded once.
//! - `out`, `float*`: `N·C·crop·crop` values.
//!
//! The sizes and `scale` are baked into the source (`scale` as a literal
//! that parses to the same `f32`).
//!
//! [`attach`] adds the kernel to a generated training program: its source
//! and declaration, a region `augment` after the others holding the four
//! input buffers (kind [`BufKind::Augment`]), and a launch before every
//! other step that writes the program's `image` buffer. The program's
//! other buffers and steps are unchanged, so a step fed this way equals
//! one fed the host's crops.
//!
//! Assumes the buffers have the lengths above. Guarantees: the kernel never
//! reads outside them whatever the per-image parameters (an offset past
//! the padded image gives zeros); the arithmetic is the host's operation
//! for operation — `((float)v + light) − mean`, then `· scale`, each
//! rounded to `f32`, with no multiply that a compiler could fuse into an
//! FMA (the lighting product is taken on the host) — so the output equals
//! `crop_into`'s bit for bit.

use crate::backend::cuda::generate::render::{Shape, Spec, f32_lit, kernel_text, ll};
use crate::backend::cuda::program::{
    Arg, BufKind, BufferDecl, CudaProgram, DType, KernelDecl, Launch, ParamTy, REGION_ALIGN,
    Region, Step,
};
use crate::backend::input::{AugmentPlan, Draw};

/// The sizes of one augmentation launch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentDims {
    /// Images in the batch.
    pub batch: usize,
    /// Input image `C × H × W`.
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Side of the square output crop.
    pub crop: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Multiplies the mean-subtracted value.
    pub scale: f32,
}

impl AugmentDims {
    /// The dimensions of `aug`'s crops for batches of `batch` images.
    pub fn of(aug: &AugmentPlan, batch: usize) -> Self {
        AugmentDims {
            batch,
            c: aug.c,
            h: aug.h,
            w: aug.w,
            crop: aug.crop,
            pad: aug.pad,
            scale: aug.scale,
        }
    }
    /// Bytes of the raw batch, `N·C·H·W`.
    pub fn in_bytes(&self) -> usize {
        self.batch * self.c * self.h * self.w
    }
    /// Words of the packed raw batch.
    pub fn in_words(&self) -> usize {
        self.in_bytes().div_ceil(4)
    }
    /// Values of the output batch, `N·C·crop·crop`.
    pub fn out_len(&self) -> usize {
        self.batch * self.c * self.crop * self.crop
    }
}

/// The augmentation kernel (stem `augment`) for `d`.
pub fn spec(d: &AugmentDims) -> Spec {
    let (c, h, w, crop, pad) = (ll(d.c), ll(d.h), ll(d.w), ll(d.crop), ll(d.pad));
    let plane = ll(d.c * d.h * d.w);
    let body = vec![
        format!("const long long x = i % {crop};"),
        format!("const long long y = (i / {crop}) % {crop};"),
        format!("const long long k = (i / ({crop} * {crop})) % {c};"),
        format!("const long long n = i / ({crop} * {crop} * {c});"),
        "const long long oy = (long long)crop[3 * n];".into(),
        "const long long ox = (long long)crop[3 * n + 1];".into(),
        format!("const long long xx = crop[3 * n + 2] != 0u ? {crop} - 1 - x : x;"),
        format!("const long long sy = oy + y - {pad};"),
        format!("const long long sx = ox + xx - {pad};"),
        format!("if (sy < 0 || sy >= {h} || sx < 0 || sx >= {w}) {{ out[i] = 0.0f; return; }}"),
        format!("const long long p = (k * {h} + sy) * {w} + sx;"),
        format!("const long long b = n * {plane} + p;"),
        "const unsigned int v = (img[b >> 2] >> (8 * (unsigned int)(b & 3))) & 255u;".into(),
        format!("const float t = ((float)v + light[n * {c} + k]) - mean[p];"),
        format!("out[i] = t * {};", f32_lit(d.scale as f64)),
    ];
    Spec {
        stem: "augment",
        params: vec![
            (ParamTy::InU32, "img"),
            (ParamTy::InU32, "crop"),
            (ParamTy::InF32, "light"),
            (ParamTy::InF32, "mean"),
            (ParamTy::OutF32, "out"),
        ],
        body,
        shape: Shape::Elementwise { total: d.out_len() },
        sync: false,
        in_place: false,
    }
}

/// Packs `bytes` four to a little-endian word (the last word zero-filled).
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|q| {
            let mut w = [0u8; 4];
            w[..q.len()].copy_from_slice(q);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// The per-image words (`oy, ox, mirror`) and lighting offsets in pixel
/// units (`255 · light[k]` for `k < 3`, else 0) of `params`, for images of
/// `channels` channels.
pub fn pack_params(params: &[Draw], channels: usize) -> (Vec<u32>, Vec<f32>) {
    let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let crop = params
        .iter()
        .flat_map(|p| [clamp(p.oy), clamp(p.ox), p.mirror as u32])
        .collect();
    let light = params
        .iter()
        .flat_map(|p| (0..channels).map(|k| if k < 3 { 255.0f32 * p.light[k] } else { 0.0 }))
        .collect();
    (crop, light)
}

/// The buffers [`attach`] adds, by index into [`CudaProgram::buffers`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentBuffers {
    /// The packed raw batch (`u32`, uploaded each step).
    pub img: usize,
    /// `oy, ox, mirror` per image (`u32`, uploaded each step).
    pub crop: usize,
    /// Lighting offsets in pixel units (uploaded each step).
    pub light: usize,
    /// The mean image (uploaded once).
    pub mean: usize,
    pub dims: AugmentDims,
}

/// Why [`attach`] refused a program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("the program's image buffer holds {got} values, the augmented batch {want}")]
    ImageSize { got: usize, want: usize },
    #[error("the program already runs an augmentation kernel")]
    Twice,
}

/// Adds the augmentation kernel for `aug`'s crops at the program's batch
/// (see the module documentation). The name `augment_0` is reserved.
pub fn attach(prog: &mut CudaProgram, aug: &AugmentPlan) -> Result<AugmentBuffers, AttachError> {
    let d = AugmentDims::of(aug, prog.batch);
    let got = prog.buffers.get(prog.image).map_or(0, |b| b.elems);
    if got != d.out_len() {
        return Err(AttachError::ImageSize {
            got,
            want: d.out_len(),
        });
    }
    let name = "augment_0";
    if prog.kernel(name).is_some() {
        return Err(AttachError::Twice);
    }
    let s = spec(&d);
    prog.source.push('\n');
    prog.source.push_str(&kernel_text(name, &s));
    prog.kernels.push(KernelDecl {
        name: name.into(),
        params: s.params.iter().map(|(t, n)| (*t, n.to_string())).collect(),
        sync: false,
        in_place: false,
    });
    let region = prog.regions.len();
    let last = prog.order.len().saturating_sub(1);
    let mut size = 0u64;
    let mut add = |name: &str, dtype: DType, elems: usize, last: usize| {
        let decl = BufferDecl {
            name: format!("augment.{name}"),
            node: None,
            dtype,
            elems,
            kind: BufKind::Augment,
            region,
            offset: size,
            first: 0,
            last,
        };
        size = size
            .saturating_add(decl.bytes())
            .next_multiple_of(REGION_ALIGN);
        prog.buffers.push(decl);
        prog.buffers.len() - 1
    };
    let img = add("img", DType::U32, d.in_words(), 0);
    let crop = add("crop", DType::U32, 3 * d.batch, 0);
    let light = add("light", DType::F32, d.batch * d.c, 0);
    let mean = add("mean", DType::F32, d.c * d.h * d.w, last);
    let base = prog.bytes().next_multiple_of(REGION_ALIGN);
    prog.regions.push(Region {
        name: "augment".into(),
        arena: None,
        base,
        size,
        planned: false,
        device: 0,
    });
    let (grid, block) = s.grid_block();
    let node = prog.order.first().map(|o| o.key()).unwrap_or_default();
    prog.steps.insert(
        0,
        Step::Launch(Launch {
            kernel: prog.kernels.len() - 1,
            grid,
            block,
            args: [img, crop, light, mean, prog.image].map(Arg::Buf).to_vec(),
            node,
            pos: 0,
        }),
    );
    Ok(AugmentBuffers {
        img,
        crop,
        light,
        mean,
        dims: d,
    })
}
