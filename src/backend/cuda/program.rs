//! What code generation produces: CUDA C source, the kernels it defines
//! (with their parameter lists, so a host can launch them by name), the
//! buffers and where they lie, and the ordered steps of one training step.
//! GEMM steps are cuBLAS `sgemm` calls in cuBLAS's own column-major terms.
//!
//! Memory. A program needs one device allocation of [`CudaProgram::bytes`]
//! bytes, split into [`Region`]s: one per arena of the memory plan
//! (`passes::memplan`: `shared` for the inputs, `t{t}` per tower), laid
//! one after another, then the `workspace` (scratch the plan does not
//! model). A buffer lies at byte [`CudaProgram::addr`] of the allocation:
//! its region's base plus its offset. Buffers live at the same time are
//! disjoint, except an elementwise kernel's output written in place over an
//! input (same address and size); `super::alias` proves it of every step.
//! A kernel argument may point into a buffer at an element offset
//! ([`Arg::At`]: one chunk of a convolution's images), and a GEMM may
//! accumulate into its output (`beta = 1`: a chunked weight gradient).
//!
//! Devices. A program as generated runs on one device (every region's
//! [`Region::device`] is 0). `super::split` places one on several logical
//! devices: each region is tagged with its device, each device's regions
//! are laid out from byte 0 of that device's own allocation
//! ([`CudaProgram::device_bytes`]), addresses ([`CudaProgram::addr`]) are
//! within the buffer's device, and a buffer read on another device is
//! read through a [`BufKind::Mirror`] there, filled by a [`Step::Copy`].

use serde::Serialize;

use crate::ir::Device;

/// Element type of a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    F32,
    U32,
}

impl DType {
    pub fn c_name(self) -> &'static str {
        match self {
            DType::F32 => "float",
            DType::U32 => "unsigned int",
        }
    }
    pub fn size(self) -> usize {
        4
    }
}

/// What a buffer holds; the host uses it to know what to upload/download.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufKind {
    /// The image batch (uploaded each step).
    Image,
    /// The labels (uploaded each step).
    Labels,
    /// A weight or bias (initialised once, updated in place).
    Param,
    /// A momentum buffer (zero at start, updated in place).
    Velocity,
    /// The value of a node.
    Value,
    /// State a forward op keeps for its backward (LRN scale, argmax,
    /// softmax, the LRN output inside an `lrn_maxpool`).
    Side,
    /// Workspace shared by the GEMM-based layers (of one device).
    Scratch,
    /// A copy, on the device that reads it, of a buffer that lives on
    /// another device; only a [`Step::Copy`] writes it (`super::split`).
    Mirror,
    /// An input of the augmentation kernel (`super::augment`): the raw
    /// batch and per-image draws (uploaded each step), the mean image
    /// (uploaded once).
    Augment,
    /// The step's scalars ([`CudaProgram::scalars`]): dropout seed and
    /// learning rate, written by the host before each step.
    Scalars,
}

/// An IR node as a program names it: its name and layer (the `.net`
/// binding), for display, and the device (tower) it runs on, as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    pub name: String,
    pub layer: String,
    pub device: Device,
}

impl NodeRef {
    /// `name@device`: how buffers, steps and the manifest show a node.
    pub fn key(&self) -> String {
        crate::backend::params::key_of(&self.name, self.device)
    }
}

/// One device buffer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BufferDecl {
    /// `node name@device`, with a `.scale`/`.argmax`/`.probs`/`.lrn`
    /// suffix for side buffers, or `scratch.*` (for display and for
    /// finding a buffer by name; nothing parses it).
    pub name: String,
    /// The IR node whose value (or side value) the buffer holds, a mirror
    /// its source's; `None` for scratch, the scalars and the augmentation
    /// inputs.
    pub node: Option<NodeRef>,
    pub dtype: DType,
    pub elems: usize,
    pub kind: BufKind,
    /// Index into [`CudaProgram::regions`].
    pub region: usize,
    /// Byte offset in its region (the plan's offset in its arena).
    pub offset: u64,
    /// Positions in [`CudaProgram::order`] of the step that writes it and
    /// of its last reader (the plan's lifetime; `0..=end` for workspace,
    /// parameters, velocities and inputs).
    pub first: usize,
    pub last: usize,
}

impl BufferDecl {
    /// Bytes the buffer's elements take.
    pub fn bytes(&self) -> u64 {
        (self.elems as u64).saturating_mul(self.dtype.size() as u64)
    }
}

/// One region of the program's device allocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Region {
    /// The plan's arena (`shared`, `t0`, ...) or `workspace`, for display.
    pub name: String,
    /// The device of the plan's arena the region holds (`None`: a region
    /// outside the plan, `planned` false).
    pub arena: Option<Device>,
    /// Byte offset of the region in the allocation, a multiple of [`REGION_ALIGN`].
    pub base: u64,
    /// Bytes.
    pub size: u64,
    /// Laid out by the memory plan (`false`: the workspace).
    pub planned: bool,
    /// The logical device whose allocation holds the region (0 unless
    /// `super::split` placed the program on several).
    pub device: usize,
}

/// Alignment of every region's base in the allocation, in bytes (the
/// alignment `cuMemAlloc` guarantees).
pub const REGION_ALIGN: u64 = 256;

/// The C type of a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamTy {
    /// `const float*`
    InF32,
    /// `float*`
    OutF32,
    /// `const unsigned int*`
    InU32,
    /// `unsigned int*`
    OutU32,
    /// `const unsigned long long*` (the step's dropout seed, in
    /// [`CudaProgram::scalars`])
    InU64,
    /// `const double*` (the step's learning rate, in [`CudaProgram::scalars`])
    InF64,
}

impl ParamTy {
    /// The declaration, pointers `__restrict__`.
    pub fn c_decl(self, name: &str) -> String {
        self.c_param(name, true)
    }
    /// The declaration; pointers `__restrict__` only if `restrict` (a
    /// kernel that may run in place must not promise its pointers differ).
    pub fn c_param(self, name: &str, restrict: bool) -> String {
        let r = if restrict { " __restrict__" } else { "" };
        match self {
            ParamTy::InF32 => format!("const float*{r} {name}"),
            ParamTy::OutF32 => format!("float*{r} {name}"),
            ParamTy::InU32 => format!("const unsigned int*{r} {name}"),
            ParamTy::OutU32 => format!("unsigned int*{r} {name}"),
            ParamTy::InU64 => format!("const unsigned long long*{r} {name}"),
            ParamTy::InF64 => format!("const double*{r} {name}"),
        }
    }
    pub fn is_output(self) -> bool {
        matches!(self, ParamTy::OutF32 | ParamTy::OutU32)
    }
}

/// A `extern "C" __global__` function of the generated source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelDecl {
    pub name: String,
    pub params: Vec<(ParamTy, String)>,
    /// Uses `__syncthreads` and `__shared__` (an emulator must run the
    /// threads of a block concurrently).
    pub sync: bool,
    /// Thread `i` reads element `i` of its inputs only to write element `i`
    /// of its output, so the output may be an input (in place); its
    /// pointers are declared without `__restrict__`.
    pub in_place: bool,
}

/// A kernel argument: always a device address, fixed for the program's
/// life. What changes from step to step (the dropout seed, the learning
/// rate) is read from [`CudaProgram::scalars`], never passed by value, so
/// the launch list recorded once (a CUDA graph) replays every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A buffer, by index into [`CudaProgram::buffers`].
    Buf(usize),
    /// A buffer from an element offset on (`buffer, offset`): one chunk of
    /// images of a convolution's input, output or gradient, or the
    /// learning rate's word in the scalars. The offset is below the
    /// buffer's length.
    At(usize, usize),
}

impl Arg {
    /// The buffer and element offset the argument points at.
    pub fn buffer(&self) -> Option<(usize, usize)> {
        match *self {
            Arg::Buf(b) => Some((b, 0)),
            Arg::At(b, at) => Some((b, at)),
        }
    }
    /// The dropout seed in scalars buffer `scalars` (words 0 and 1).
    pub fn seed(scalars: usize) -> Arg {
        Arg::Buf(scalars)
    }
    /// The learning rate in scalars buffer `scalars` (words 2 and 3).
    pub fn lr(scalars: usize) -> Arg {
        Arg::At(scalars, SCALAR_LR)
    }
}

/// Words of the scalars buffer: the seed (u64) in words 0–1, the learning
/// rate (f64) in words 2–3, both little-endian.
pub const SCALAR_WORDS: usize = 4;
/// The learning rate's first word in the scalars buffer.
pub const SCALAR_LR: usize = 2;

/// The scalars buffer's contents for one step: dropout seed
/// `seed ^ rng::mix64(step)` (as the CPU executor draws its masks) and
/// learning rate `lr`, as the `f32` bit patterns [`Device::upload`]
/// takes for a u32 buffer.
///
/// [`Device::upload`]: super::device::Device::upload
pub fn scalar_words(seed: u64, lr: f64) -> [f32; SCALAR_WORDS] {
    let l = lr.to_bits();
    [seed as u32, (seed >> 32) as u32, l as u32, (l >> 32) as u32].map(f32::from_bits)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Launch {
    /// Index into [`CudaProgram::kernels`].
    pub kernel: usize,
    pub grid: u32,
    pub block: u32,
    pub args: Vec<Arg>,
    /// The IR node (`name@device`) this step computes.
    pub node: String,
    /// Position in [`CudaProgram::order`] of the node whose turn runs it.
    pub pos: usize,
}

/// `C = alpha·op(A)·op(B) + beta·C` as `cublasSgemm` sees it: column-major,
/// `op(A)` is `m×k`, `op(B)` is `k×n`, `C` is `m×n`; offsets in elements.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gemm {
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: usize,
    pub lda: usize,
    pub b: usize,
    pub ldb: usize,
    pub beta: f32,
    pub c: usize,
    pub ldc: usize,
    /// Element offsets into `a`, `b` and `c` (one group's weights, columns
    /// and outputs of a grouped convolution); 0 for every other GEMM.
    #[serde(skip_serializing_if = "is_zero")]
    pub a_at: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub b_at: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub c_at: usize,
    pub node: String,
    /// Position in [`CudaProgram::order`] of the node whose turn runs it.
    pub pos: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Gemm {
    /// `(buffer, element offset, elements read or written, written)` of
    /// `A`, `B` and `C`: the column-major extents cuBLAS touches.
    pub fn extents(&self) -> [(usize, usize, usize, bool); 3] {
        let span = |ld: usize, rows: usize, cols: usize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                ld.saturating_mul(cols - 1).saturating_add(rows)
            }
        };
        let (ar, ac) = if self.transa {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.transb {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        [
            (self.a, self.a_at, span(self.lda, ar, ac), false),
            (self.b, self.b_at, span(self.ldb, br, bc), false),
            (self.c, self.c_at, span(self.ldc, self.m, self.n), true),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Launch(Launch),
    Gemm(Gemm),
    /// Copies buffer `src` (on one device) into `dst`, a
    /// [`BufKind::Mirror`] of the same length on the device of the reader
    /// that follows (`super::split`): a device-to-device copy.
    Copy {
        src: usize,
        dst: usize,
        /// The node (`name@device`) of the step that reads the copy.
        node: String,
        /// Position in [`CudaProgram::order`] of that step.
        pos: usize,
    },
}

impl Step {
    /// Position in [`CudaProgram::order`] of the node whose turn runs it.
    pub fn pos(&self) -> usize {
        match self {
            Step::Launch(l) => l.pos,
            Step::Gemm(g) => g.pos,
            Step::Copy { pos, .. } => *pos,
        }
    }
    /// The IR node (`name@device`) the step computes (a copy: its reader's).
    pub fn node(&self) -> &str {
        match self {
            Step::Launch(l) => &l.node,
            Step::Gemm(g) => &g.node,
            Step::Copy { node, .. } => node,
        }
    }
}

/// The generated program for one network at one batch size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CudaProgram {
    pub network: String,
    pub batch: usize,
    /// CUDA C source: every kernel, `extern "C"`, sizes baked in.
    pub source: String,
    pub kernels: Vec<KernelDecl>,
    pub buffers: Vec<BufferDecl>,
    /// The allocation's regions: the plan's arenas, then the workspace.
    pub regions: Vec<Region>,
    /// Bytes the planned buffers would take each in its own place (the
    /// plan's *no reuse* figure; the workspace aside).
    pub no_reuse: u64,
    /// The nodes in the order the step runs them (the plan's order);
    /// steps and lifetimes refer to positions in it. A step runs on the
    /// device of the node at its position (the node it computes, or one of
    /// the same layer).
    pub order: Vec<NodeRef>,
    pub steps: Vec<Step>,
    /// The buffer holding the mean loss (one f32) after a step.
    pub loss: usize,
    /// The logits buffer (`batch × classes`).
    pub logits: usize,
    pub image: usize,
    pub labels: usize,
    /// The step's scalars ([`scalar_words`]): written by the host before
    /// each step, read by the dropout kernels (seed) and the update (rate).
    pub scalars: usize,
}

impl CudaProgram {
    pub fn buffer(&self, name: &str) -> Option<usize> {
        self.buffers.iter().position(|b| b.name == name)
    }
    pub fn kernel(&self, name: &str) -> Option<&KernelDecl> {
        self.kernels.iter().find(|k| k.name == name)
    }
    /// Bytes of the one device allocation: every region, the workspace
    /// last (of a program placed on several devices: the largest of
    /// [`device_bytes`](Self::device_bytes)).
    pub fn bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.base.saturating_add(r.size))
            .max()
            .unwrap_or(0)
    }
    /// Logical devices the program runs on (1 unless placed on several).
    pub fn devices(&self) -> usize {
        self.regions.iter().map(|r| r.device).max().unwrap_or(0) + 1
    }
    /// Bytes of logical device `d`'s allocation: its regions.
    pub fn device_bytes(&self, d: usize) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.device == d)
            .map(|r| r.base.saturating_add(r.size))
            .max()
            .unwrap_or(0)
    }
    /// The logical device holding buffer `b` (`None`: no such buffer).
    pub fn device_of(&self, b: usize) -> Option<usize> {
        let d = self.buffers.get(b)?;
        Some(self.regions.get(d.region)?.device)
    }
    /// The device a step runs on: that of the first buffer it touches (a
    /// copy: its destination's); `super::alias::check` proves a launch or
    /// GEMM touches no other device's memory. `None` for a step without
    /// buffers or with a buffer the program lacks.
    pub fn step_device(&self, st: &Step) -> Option<usize> {
        let b = match st {
            Step::Launch(l) => l.args.iter().find_map(|a| a.buffer())?.0,
            Step::Gemm(g) => g.c,
            Step::Copy { dst, .. } => *dst,
        };
        self.device_of(b)
    }
    /// `(buffer, written)` for every buffer step `st` touches (a launch of
    /// a kernel the program lacks: none).
    pub fn touches(&self, st: &Step) -> Vec<(usize, bool)> {
        match st {
            Step::Launch(l) => self.kernels.get(l.kernel).map_or(Vec::new(), |k| {
                l.args
                    .iter()
                    .zip(&k.params)
                    .filter_map(|(a, (t, _))| a.buffer().map(|(b, _)| (b, t.is_output())))
                    .collect()
            }),
            Step::Gemm(g) => vec![(g.a, false), (g.b, false), (g.c, true)],
            Step::Copy { src, dst, .. } => vec![(*src, false), (*dst, true)],
        }
    }
    /// Bytes the [`Step::Copy`] steps move in one step.
    pub fn copy_bytes(&self) -> u64 {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Copy { src, .. } => self.buffers.get(*src).map(|d| d.bytes()),
                _ => None,
            })
            .fold(0u64, |t, b| t.saturating_add(b))
    }
    /// Bytes of the mirrors (buffers read from another device).
    pub fn mirror_bytes(&self) -> u64 {
        self.buffers
            .iter()
            .filter(|d| d.kind == BufKind::Mirror)
            .fold(0u64, |t, d| t.saturating_add(d.bytes()))
    }
    /// Bytes of the planned arenas (the plan's *planned* figure).
    pub fn planned_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.planned)
            .fold(0u64, |t, r| t.saturating_add(r.size))
    }
    /// Bytes of the regions outside the plan: the workspace (and the
    /// augmentation inputs, when `super::augment::attach` added them, and
    /// the mirrors of a placed program), over every device.
    pub fn workspace_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| !r.planned)
            .fold(0u64, |t, r| t.saturating_add(r.size))
    }
    /// Byte offset of buffer `b` in its device's allocation (`None`: no such buffer).
    pub fn addr(&self, b: usize) -> Option<u64> {
        let d = self.buffers.get(b)?;
        let r = self.regions.get(d.region)?;
        Some(r.base.saturating_add(d.offset))
    }
    /// Whether buffer `b` still holds its value when the step ends: no
    /// buffer of its device written later in the step overlaps it (always
    /// true of parameters, velocities, the loss and the logits).
    pub fn kept(&self, b: usize) -> bool {
        let (Some(d), Some(a)) = (self.buffers.get(b), self.addr(b)) else {
            return false;
        };
        let end = a.saturating_add(d.bytes());
        let dev = self.device_of(b);
        !self.buffers.iter().enumerate().any(|(j, c)| {
            let ca = self.addr(j).unwrap_or(0);
            j != b
                && self.device_of(j) == dev
                && c.first > d.first
                && ca < end
                && a < ca.saturating_add(c.bytes())
        })
    }
}
