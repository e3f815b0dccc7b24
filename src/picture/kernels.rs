//! `netc kernels`: a picture of a convolution layer's learned kernels, as
//! the paper's figure 3 draws conv1's (one block of kernels per tower).
//!
//! Assumes a compiled network and a checkpoint `netc train` wrote for it
//! (fused or unfused step; the fingerprint check refuses any other
//! network's), holding each tower's weight `layer/conv.weight@tN` laid out
//! `[F, C, KH, KW]`.
//!
//! Guarantees, for the picture ([`Layout`] gives every position):
//! - one block of rows per tower, tower 0 on top, each below a white band
//!   of [`TOWER_GAP`] pixels that names it (`tower 0`, `tower 1`, as the
//!   IR numbers towers; `shared` for a layer outside the towers) in black;
//!   inside a block the tiles sit in a grid, each framed by [`GAP`]-pixel
//!   lines of [`LINE`], a blue that no grey kernel has, so the lines show
//!   beside white and black weights alike; a row's empty slots are white;
//! - each kernel is normalised on its own: its `C×KH×KW` values are mapped
//!   min–max to `round(255 · (w − min) / (max − min))`, so every kernel
//!   that is not constant reaches 0 and 255 (a constant one is drawn at
//!   128); each weight becomes a `scale × scale` square of pixels;
//! - three input channels draw one colour tile per kernel (channels 0, 1,
//!   2 as red, green, blue; [`COLUMNS`] kernels to a row), one input
//!   channel one grey tile per kernel; any other count draws one row per
//!   kernel holding a grey tile for each input channel's slice, in channel
//!   order, all normalised together as that kernel's values;
//! - a picture larger than [`MAX_PIXELS`] is refused (the default scale
//!   shrinks to fit; an explicit one says which scale fits).

use std::path::Path;

use crate::backend::params::key_of;
use crate::ir::{Device, Graph, NodeId, Op, ParamRole, order, print};
use crate::lower::Module;
use crate::model::build;
use crate::model::checkpoint::{self, CheckpointError};
use crate::model::error::TrainError;

/// Kernels to a row when each kernel is one tile (the paper's figure has 16).
pub const COLUMNS: usize = 16;
/// Width of the lines between tiles and around them, in pixels.
pub const GAP: usize = 2;
/// Height of the band above each tower's block that holds its name.
pub const TOWER_GAP: usize = 20;
/// The default scale makes a tile about this many pixels on its longer side.
pub const TILE_PIXELS: usize = 40;
/// The largest picture drawn, in pixels.
pub const MAX_PIXELS: u64 = 1 << 25;
/// The colour of the lines around tiles.
pub const LINE: [u8; 3] = [0x33, 0x66, 0xCC];
/// The colour of the bands and of a row's empty slots.
pub const PAPER: [u8; 3] = [255; 3];
/// The colour of a tower's name.
pub const INK: [u8; 3] = [0; 3];
/// A constant kernel's value.
pub const FLAT: u8 = 128;

#[derive(Debug, thiserror::Error)]
pub enum KernelsError {
    #[error("network `{network}` has no convolution")]
    NoConv { network: String },
    #[error("network `{network}` has no convolution `{name}`{what}; its convolutions: {list}", list = convs.join(", "))]
    UnknownLayer {
        network: String,
        name: String,
        /// What `name` is, when it names something other than a convolution.
        what: String,
        convs: Vec<String>,
    },
    #[error("layer `{layer}` has no kernels to draw")]
    Empty { layer: String },
    #[error(
        "the kernels of `{layer}` differ in shape between towers ({a:?} and {b:?}); they cannot share one grid"
    )]
    Towers {
        layer: String,
        a: Vec<usize>,
        b: Vec<usize>,
    },
    #[error(
        "the picture would be {width}×{height} pixels at scale {scale}, more than {max} pixels{hint}",
        max = MAX_PIXELS
    )]
    TooLarge {
        width: u64,
        height: u64,
        scale: usize,
        /// Which scale fits, if any does.
        hint: String,
    },
    #[error("cannot encode the picture: {0}")]
    Encode(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// One convolution of the network: its name for people and the nodes of
/// its weights, one per tower in tower order.
#[derive(Clone, Debug)]
pub struct Conv {
    /// The layer's binding (`conv1`), or its node's name (`c/conv_2`) when
    /// the binding holds more than one convolution.
    pub name: String,
    /// The conv node's name (`conv1/conv`).
    pub node: String,
    /// (device, weight parameter) per tower.
    pub weights: Vec<(Device, NodeId)>,
}

/// The convolutions of `g` in the order the data reaches them.
pub fn convolutions(g: &Graph) -> Vec<Conv> {
    let order = order::topo(g).unwrap_or_else(|_| g.node_ids().collect());
    let mut convs: Vec<Conv> = Vec::new();
    for n in order {
        let node = g.node(n);
        if !matches!(node.op, Op::Conv { .. }) {
            continue;
        }
        let weight = g.inputs(n).into_iter().find(|&i| {
            matches!(
                g.node(i).op,
                Op::Param {
                    role: ParamRole::Weight,
                    ..
                }
            )
        });
        let Some(w) = weight else { continue };
        match convs.iter_mut().find(|c| c.node == node.name) {
            Some(c) => c.weights.push((node.device, w)),
            None => convs.push(Conv {
                name: node.layer.clone(),
                node: node.name.clone(),
                weights: vec![(node.device, w)],
            }),
        }
    }
    // A binding with two convolutions names each by its node.
    let names: Vec<String> = convs.iter().map(|c| c.name.clone()).collect();
    for c in &mut convs {
        if names.iter().filter(|n| **n == c.name).count() > 1 {
            c.name = c.node.clone();
        }
        c.weights.sort_by_key(|(d, _)| *d);
    }
    convs
}

/// The convolution `layer` names (its binding or its node's name), or the
/// first one.
pub fn select(g: &Graph, layer: Option<&str>) -> Result<Conv, KernelsError> {
    let convs = convolutions(g);
    let Some(first) = convs.first() else {
        return Err(KernelsError::NoConv {
            network: g.name.clone(),
        });
    };
    let Some(name) = layer else {
        return Ok(first.clone());
    };
    if let Some(c) = convs.iter().find(|c| c.name == name || c.node == name) {
        return Ok(c.clone());
    }
    let what = g
        .node_ids()
        .map(|n| g.node(n))
        // The layer's own op, not its parameters or the concat of `across`.
        .filter(|n| !matches!(n.op, Op::Param { .. } | Op::Concat))
        .find(|n| n.layer == name || n.name == name)
        .map(|n| match n.op {
            Op::Input { .. } => " (it is an input)".to_string(),
            ref op => format!(" (it is a `{}` layer)", op.mnemonic()),
        })
        .unwrap_or_default();
    Err(KernelsError::UnknownLayer {
        network: g.name.clone(),
        name: name.to_string(),
        what,
        convs: convs.into_iter().map(|c| c.name).collect(),
    })
}

/// One tower's kernels: `[F, C, KH, KW]` values.
#[derive(Clone, Debug, PartialEq)]
pub struct TowerKernels {
    pub device: Device,
    pub shape: [usize; 4],
    pub values: Vec<f32>,
}

/// A layer's kernels, one entry per tower in tower order.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernels {
    pub layer: String,
    pub towers: Vec<TowerKernels>,
}

/// Reads `layer`'s kernels (the first convolution by default) from the
/// checkpoint at `path`, refusing a checkpoint of another network.
pub fn load(module: &Module, layer: Option<&str>, path: &Path) -> Result<Kernels, KernelsError> {
    let conv = select(&module.graph, layer)?;
    let ck = checkpoint::load(path)?;
    // Whether the run fused its step or not (`--no-fuse`), the
    // checkpoint carries that step's fingerprint.
    let cfg = module.train.clone();
    let mut mismatch = None;
    for fuse in [true, false] {
        let g = build::training_graph(module, &cfg, fuse)?;
        let fp = checkpoint::fingerprint(&print::print_for_fingerprint(&g));
        match ck.expect(path, &g.name, &fp) {
            Ok(()) => {
                mismatch = None;
                break;
            }
            Err(e) => mismatch = mismatch.or(Some(e)),
        }
    }
    if let Some(e) = mismatch {
        return Err(e.into());
    }
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut towers = Vec::new();
    for &(device, w) in &conv.weights {
        let node = module.graph.node(w);
        let key = key_of(&node.name, device);
        let Some((shape, values)) = ck.tensors.get(&key) else {
            return Err(corrupt(format!("no tensor `{key}`")).into());
        };
        let want: Vec<usize> = node.ty.dims().iter().map(|&d| d as usize).collect();
        if *shape != want || shape.len() != 4 {
            return Err(corrupt(format!(
                "tensor `{key}` has shape {shape:?}, the network's kernels {want:?}"
            ))
            .into());
        }
        towers.push(TowerKernels {
            device,
            shape: [shape[0], shape[1], shape[2], shape[3]],
            values: values.clone(),
        });
    }
    Ok(Kernels {
        layer: conv.name,
        towers,
    })
}

/// A kernel's values mapped to 0–255 on its own (see the module comment).
pub fn normalise(kernel: &[f32]) -> Vec<u8> {
    let lo = kernel.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = kernel.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if hi <= lo || !(hi - lo).is_finite() {
        return vec![FLAT; kernel.len()];
    }
    kernel
        .iter()
        .map(|&w| ((w as f64 - lo) / (hi - lo) * 255.0).round() as u8)
        .collect()
}

/// How a layer's kernels are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One input channel: a grey tile per kernel.
    Grey,
    /// Three input channels: a colour tile per kernel.
    Rgb,
    /// Another count: a row per kernel, a grey tile per input channel.
    Slices,
}

/// Where everything of a picture lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub style: Style,
    pub scale: usize,
    /// Kernel size (KH, KW) and input channels.
    pub kh: usize,
    pub kw: usize,
    pub channels: usize,
    /// Tiles to a row.
    pub cols: usize,
    /// Rows of each tower's block.
    pub rows: Vec<usize>,
    /// Kernels of each tower.
    pub filters: Vec<usize>,
    pub width: usize,
    pub height: usize,
}

impl Layout {
    /// Tile width and height in pixels.
    pub fn tile(&self) -> (usize, usize) {
        (self.kw * self.scale, self.kh * self.scale)
    }

    /// The top row of tower `t`'s block.
    pub fn block_top(&self, t: usize) -> usize {
        let (_, th) = self.tile();
        TOWER_GAP
            + GAP
            + self.rows[..t]
                .iter()
                .map(|r| r * (th + GAP) + GAP + TOWER_GAP)
                .sum::<usize>()
    }

    /// The top-left pixel of kernel `f`'s tile in tower `t` (of its slice
    /// of input channel `c` when each channel has a tile of its own).
    pub fn origin(&self, t: usize, f: usize, c: usize) -> (usize, usize) {
        let (tw, th) = self.tile();
        let i = match self.style {
            Style::Slices => f * self.channels + c,
            Style::Grey | Style::Rgb => f,
        };
        let (row, col) = (i / self.cols, i % self.cols);
        (GAP + col * (tw + GAP), self.block_top(t) + row * (th + GAP))
    }

    /// The pixel of weight `(f, c, y, x)` of tower `t`, at the top left of
    /// its square.
    pub fn pixel(&self, t: usize, f: usize, c: usize, y: usize, x: usize) -> (usize, usize) {
        let (ox, oy) = self.origin(t, f, c);
        (ox + x * self.scale, oy + y * self.scale)
    }
}

/// The picture's width and height with `cols` tiles of `tw × th` pixels
/// to a row and `rows` rows in each tower's block, each block below its
/// band (saturating: a size that overflows is too large anyway). The
/// picture is at least as wide as the longest tower name at its smallest.
fn size(cols: usize, rows: &[usize], tw: u64, th: u64) -> (u64, u64) {
    let g = GAP as u64;
    let width = (cols as u64)
        .saturating_mul(tw.saturating_add(g))
        .saturating_add(g)
        .max(label_width(&format!("tower {}", rows.len().saturating_sub(1)), 1) as u64 + 2 * g);
    let height = rows.iter().fold(0u64, |h, &r| {
        h.saturating_add((r as u64).saturating_mul(th.saturating_add(g)))
            .saturating_add(g + TOWER_GAP as u64)
    });
    (width, height)
}

/// The layout of `k` at `scale` (default: tiles of about [`TILE_PIXELS`],
/// smaller where the picture would not fit).
pub fn layout(k: &Kernels, scale: Option<usize>) -> Result<Layout, KernelsError> {
    let Some(first) = k.towers.first() else {
        return Err(KernelsError::Empty {
            layer: k.layer.clone(),
        });
    };
    let [_, channels, kh, kw] = first.shape;
    for t in &k.towers[1..] {
        if t.shape[1..] != first.shape[1..] {
            return Err(KernelsError::Towers {
                layer: k.layer.clone(),
                a: first.shape.to_vec(),
                b: t.shape.to_vec(),
            });
        }
    }
    let style = match channels {
        1 => Style::Grey,
        3 => Style::Rgb,
        _ => Style::Slices,
    };
    let filters: Vec<usize> = k.towers.iter().map(|t| t.shape[0]).collect();
    let cols = match style {
        Style::Slices => channels.max(1),
        Style::Grey | Style::Rgb => filters.iter().copied().max().unwrap_or(1).clamp(1, COLUMNS),
    };
    let rows: Vec<usize> = filters
        .iter()
        .map(|&f| {
            let tiles = if style == Style::Slices {
                f * channels
            } else {
                f
            };
            tiles.div_ceil(cols).max(1)
        })
        .collect();
    let at = |s: usize| {
        let s = s as u64;
        size(
            cols,
            &rows,
            (kw as u64).saturating_mul(s),
            (kh as u64).saturating_mul(s),
        )
    };
    let fits = |s: usize| Some(at(s)).filter(|&(w, h)| w.saturating_mul(h) <= MAX_PIXELS);
    let scale = match scale {
        Some(s) => s.max(1),
        None => {
            let want = TILE_PIXELS.div_ceil(kh.max(kw).max(1)).max(1);
            (1..=want).rev().find(|&s| fits(s).is_some()).unwrap_or(1)
        }
    };
    let Some((width, height)) = fits(scale) else {
        let (width, height) = at(scale);
        // The largest scale below `scale` that fits (sizes grow with the
        // scale, so a binary search finds it).
        let (mut lo, mut hi) = (0, scale);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid).is_some() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let best = (lo > 0).then_some(lo);
        return Err(KernelsError::TooLarge {
            width,
            height,
            scale,
            hint: match best {
                Some(s) => format!("; `--scale {s}` fits"),
                None => "; even `--scale 1` is too large for this layer".into(),
            },
        });
    };
    Ok(Layout {
        style,
        scale,
        kh,
        kw,
        channels,
        cols,
        rows,
        filters,
        width: width as usize,
        height: height as usize,
    })
}

/// A drawn picture: 8-bit grey or RGB, row-major.
pub struct Picture {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Draws `k` as `l` lays it out.
pub fn draw(k: &Kernels, l: &Layout) -> Picture {
    let pc = 3;
    let mut pixels = PAPER.repeat(l.width * l.height);
    let per = l.channels * l.kh * l.kw;
    for (t, tower) in k.towers.iter().enumerate() {
        for f in 0..tower.shape[0] {
            let n = normalise(&tower.values[f * per..(f + 1) * per]);
            let at = |c: usize, y: usize, x: usize| n[(c * l.kh + y) * l.kw + x];
            let planes = if l.style == Style::Slices {
                l.channels
            } else {
                1
            };
            for plane in 0..planes {
                let (ox, oy) = l.origin(t, f, plane);
                let (tw, th) = l.tile();
                for y in oy - GAP..oy + th + GAP {
                    for x in ox - GAP..ox + tw + GAP {
                        let i = (y * l.width + x) * pc;
                        pixels[i..i + pc].copy_from_slice(&LINE);
                    }
                }
                for y in 0..l.kh {
                    for x in 0..l.kw {
                        let value: [u8; 3] = match l.style {
                            Style::Rgb => [at(0, y, x), at(1, y, x), at(2, y, x)],
                            Style::Grey => [at(0, y, x); 3],
                            Style::Slices => [at(plane, y, x); 3],
                        };
                        let (px, py) = l.pixel(t, f, plane, y, x);
                        for dy in 0..l.scale {
                            let row = (py + dy) * l.width;
                            for dx in 0..l.scale {
                                let i = (row + px + dx) * pc;
                                pixels[i..i + pc].copy_from_slice(&value[..pc]);
                            }
                        }
                    }
                }
            }
        }
    }
    for (t, tower) in k.towers.iter().enumerate() {
        let name = match tower.device {
            Device::Tower(n) => format!("tower {n}"),
            Device::Shared => "shared".to_string(),
        };
        // Twice the font's size where it fits, else its own size.
        let size = if label_width(&name, 2) + 2 * GAP <= l.width {
            2
        } else {
            1
        };
        let bottom = l.block_top(t) - GAP - (TOWER_GAP - 7 * size) / 2;
        write_label(&mut pixels, l.width, GAP, bottom - 7 * size, &name, size);
    }
    Picture {
        width: l.width,
        height: l.height,
        channels: pc,
        pixels,
    }
}

/// The width of `text` in the 5×7 font at `size` pixels a dot (a dot's
/// gap between letters).
pub fn label_width(text: &str, size: usize) -> usize {
    (6 * text.chars().count()).saturating_sub(1) * size
}

/// Rows of a letter of the 5×7 font, the leftmost dot the highest of five
/// bits; the letters a tower's name needs (others are blank).
fn glyph(c: char) -> [u8; 7] {
    match c {
        't' => [
            0b01000, 0b01000, 0b11110, 0b01000, 0b01000, 0b01001, 0b00110,
        ],
        'o' => [0, 0, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
        'w' => [0, 0, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
        'e' => [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'r' => [0, 0, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
        's' => [0, 0, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110],
        'h' => [
            0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001,
        ],
        'a' => [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'd' => [
            0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111,
        ],
        '0' => [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
        '1' => [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        '2' => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
        '3' => [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
        ],
        '4' => [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
        '5' => [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
        '6' => [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
        '7' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
        '8' => [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
        '9' => [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
        _ => [0; 7],
    }
}

/// Writes `text` in [`INK`] into an RGB picture `width` pixels wide, its
/// top-left dot at `(x, y)`, each dot `size × size` pixels; dots beyond
/// the picture's right edge are left out.
fn write_label(pixels: &mut [u8], width: usize, x: usize, y: usize, text: &str, size: usize) {
    for (n, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (0b10000 >> col) == 0 {
                    continue;
                }
                for dy in 0..size {
                    for dx in 0..size {
                        let px = x + (6 * n + col) * size + dx;
                        let py = y + row * size + dy;
                        if px < width {
                            let i = (py * width + px) * 3;
                            if let Some(p) = pixels.get_mut(i..i + 3) {
                                p.copy_from_slice(&INK);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The picture as PNG bytes.
pub fn png(p: &Picture) -> Result<Vec<u8>, KernelsError> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    let color = if p.channels == 3 {
        image::ExtendedColorType::Rgb8
    } else {
        image::ExtendedColorType::L8
    };
    let enc = PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive);
    enc.write_image(&p.pixels, p.width as u32, p.height as u32, color)
        .map_err(|e| KernelsError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels(towers: usize, shape: [usize; 4]) -> Kernels {
        let n: usize = shape.iter().product();
        Kernels {
            layer: "c".into(),
            towers: (0..towers)
                .map(|t| TowerKernels {
                    device: Device::Tower(t as u32),
                    shape,
                    values: (0..n)
                        .map(|i| crate::rng::normal(3, t as u64, i as u64) as f32)
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn normalising_maps_each_kernel_to_the_full_range() {
        assert_eq!(normalise(&[-1.0, 0.0, 1.0, 0.5]), vec![0, 128, 255, 191]);
        assert_eq!(normalise(&[2.0, 2.0]), vec![FLAT, FLAT]);
        assert_eq!(normalise(&[-f32::MAX, f32::MAX]), vec![0, 255]);
    }

    #[test]
    fn layouts_follow_the_formula() {
        // The paper's conv1: 2 towers of 48 kernels 11×11×3, 16 to a row.
        let l = layout(&kernels(2, [48, 3, 11, 11]), None).unwrap();
        assert_eq!(
            (l.style, l.scale, l.cols, l.rows.clone()),
            (Style::Rgb, 4, 16, vec![3, 3])
        );
        assert_eq!(l.width, 16 * (44 + GAP) + GAP);
        assert_eq!(l.height, 2 * (TOWER_GAP + 3 * (44 + GAP) + GAP));
        assert_eq!(l.origin(1, 17, 0), (GAP + 46, l.block_top(1) + 46));
        assert_eq!(l.block_top(0), TOWER_GAP + GAP);
        assert_eq!(l.block_top(1), TOWER_GAP + 3 * 46 + GAP + TOWER_GAP + GAP);
        // Fewer kernels than a row: the row is as wide as the kernels.
        let l = layout(&kernels(1, [5, 1, 3, 2]), Some(2)).unwrap();
        assert_eq!(
            (l.style, l.cols, l.width, l.height),
            (
                Style::Grey,
                5,
                (5 * 6 + GAP).max(label_width("tower 0", 1) + 2 * GAP),
                TOWER_GAP + 6 + 2 * GAP
            )
        );
        // 48 input channels: a row per kernel, a tile per channel.
        let l = layout(&kernels(2, [4, 48, 5, 5]), None).unwrap();
        assert_eq!(
            (l.style, l.cols, l.rows.clone()),
            (Style::Slices, 48, vec![4, 4])
        );
        assert_eq!(
            l.origin(0, 2, 3),
            (GAP + 3 * (40 + GAP), TOWER_GAP + GAP + 2 * (40 + GAP))
        );
    }

    #[test]
    fn a_picture_too_large_is_refused_or_shrunk() {
        let k = kernels(2, [192, 256, 3, 3]);
        let l = layout(&k, None).unwrap();
        assert!((l.width * l.height) as u64 <= MAX_PIXELS, "{l:?}");
        let e = layout(&k, Some(40)).unwrap_err().to_string();
        let fit = format!("`--scale {}` fits", l.scale);
        assert!(e.contains(&fit), "{e}");
        let e = layout(&k, Some(usize::MAX / 2)).unwrap_err().to_string();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn drawn_pixels_are_the_normalised_weights() {
        let k = kernels(2, [3, 3, 2, 2]);
        let l = layout(&k, Some(3)).unwrap();
        let p = draw(&k, &l);
        assert_eq!(p.channels, 3);
        let n = normalise(&k.towers[1].values[12..24]);
        let (x, y) = l.pixel(1, 1, 0, 1, 0);
        for (dx, dy) in [(0, 0), (2, 2)] {
            let i = ((y + dy) * l.width + x + dx) * 3;
            assert_eq!(p.pixels[i..i + 3], [n[2], n[6], n[10]]);
        }
        // The lines around a tile, both pixels wide, are the line colour.
        let (ox, oy) = l.origin(1, 1, 0);
        for (x, y) in [
            (ox - 1, oy),
            (ox - 2, oy),
            (ox, oy - 1),
            (ox + 6, oy),
            (ox + 7, oy),
            (ox, oy + 6),
        ] {
            let i = (y * l.width + x) * 3;
            assert_eq!(p.pixels[i..i + 3], LINE, "({x}, {y})");
        }
        let i = (oy * l.width + ox) * 3;
        assert_ne!(p.pixels[i..i + 3], LINE);
        // Each band names its tower: black dots in the band, and only there
        // and in the weights.
        for t in 0..2 {
            let band = l.block_top(t) - GAP - TOWER_GAP..l.block_top(t) - GAP;
            let ink = band
                .flat_map(|y| (0..l.width).map(move |x| (y * l.width + x) * 3))
                .filter(|&i| p.pixels[i..i + 3] == INK)
                .count();
            assert!(ink > 20, "tower {t}: {ink} dots of ink");
        }
        let bytes = png(&p).unwrap();
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(img.as_raw(), &p.pixels);
    }
}
