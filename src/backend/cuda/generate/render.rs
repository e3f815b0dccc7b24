//! The shared C-style renderer: literals, the source prelude (the
//! counter-based RNG of `crate::rng` in CUDA C), and the text of one
//! `extern "C" __global__` function from a [`Spec`]. Kernels with the same
//! text are emitted once ([`Source::add`] deduplicates). Pointer
//! parameters are `__restrict__` unless the kernel may run in place.

use std::collections::HashMap;
use std::fmt::Write;

use crate::backend::cuda::program::{KernelDecl, ParamTy};

/// Threads per block of elementwise kernels.
pub const BLOCK: u32 = 256;

/// How a kernel's threads map to work.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// One thread per element `i` in `0..total` (the body sees `i`).
    Elementwise { total: usize },
    /// An explicit grid of blocks (the body uses `blockIdx`/`threadIdx`).
    Blocks { grid: u32, block: u32 },
}

/// A kernel before naming: parameters, body lines, launch shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Name prefix (`relu`, `lrn_fwd`, ...).
    pub stem: &'static str,
    pub params: Vec<(ParamTy, &'static str)>,
    pub body: Vec<String>,
    pub shape: Shape,
    pub sync: bool,
    /// Elementwise at index `i` only (see `KernelDecl::in_place`): the
    /// memory plan may give it an output equal to an input, so its
    /// pointers are rendered without `__restrict__`.
    pub in_place: bool,
}

impl Spec {
    pub fn grid_block(&self) -> (u32, u32) {
        match self.shape {
            Shape::Elementwise { total } => (total.div_ceil(BLOCK as usize).max(1) as u32, BLOCK),
            Shape::Blocks { grid, block } => (grid, block),
        }
    }
}

/// A float constant as a C `float` literal that parses to the same `f32`.
pub fn f32_lit(v: f64) -> String {
    format!("{:?}f", v as f32)
}

/// A C `double` literal that parses to the same `f64`.
pub fn f64_lit(v: f64) -> String {
    format!("{v:?}")
}

/// A C `unsigned long long` literal.
pub fn u64_lit(v: u64) -> String {
    format!("0x{v:016X}ULL")
}

/// Integer constants are `long long` so index arithmetic never overflows.
pub fn ll(v: usize) -> String {
    format!("{v}LL")
}

pub const PRELUDE: &str = r#"// SplitMix64 finaliser and counter-based uniforms: `crate::rng` in CUDA C.
__device__ __forceinline__ unsigned long long netc_mix64(unsigned long long z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
__device__ __forceinline__ double netc_uniform(unsigned long long seed, unsigned long long stream, unsigned long long index) {
  const unsigned long long b = netc_mix64(netc_mix64(seed ^ netc_mix64(stream * 0xD1B54A32D192ED03ULL)) ^ index);
  return (double)(b >> 11) * (1.0 / 9007199254740992.0);
}
"#;

/// Renders one kernel under `name`.
pub fn kernel_text(name: &str, spec: &Spec) -> String {
    let mut s = String::new();
    let params: Vec<String> = spec
        .params
        .iter()
        .map(|(t, n)| t.c_param(n, !spec.in_place))
        .collect();
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void {name}({}) {{",
        params.join(", ")
    );
    if let Shape::Elementwise { total } = spec.shape {
        let _ = writeln!(
            s,
            "  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;"
        );
        let _ = writeln!(s, "  if (i >= {}) return;", ll(total));
    }
    for line in &spec.body {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "  {line}");
        }
    }
    s.push_str("}\n");
    s
}

/// The source being built: kernels in first-use order, deduplicated by text.
#[derive(Default)]
pub struct Source {
    pub text: String,
    pub kernels: Vec<KernelDecl>,
    by_body: HashMap<String, usize>,
    per_stem: HashMap<&'static str, usize>,
}

impl Source {
    /// Adds `spec` (or finds an identical kernel) and returns its index.
    pub fn add(&mut self, spec: &Spec) -> usize {
        let body = kernel_text("@", spec);
        if let Some(&k) = self.by_body.get(&body) {
            return k;
        }
        let count = self.per_stem.entry(spec.stem).or_insert(0);
        let name = format!("{}_{}", spec.stem, count);
        *count += 1;
        self.text.push('\n');
        self.text.push_str(&kernel_text(&name, spec));
        self.kernels.push(KernelDecl {
            name,
            params: spec
                .params
                .iter()
                .map(|(t, n)| (*t, n.to_string()))
                .collect(),
            sync: spec.sync,
            in_place: spec.in_place,
        });
        self.by_body.insert(body, self.kernels.len() - 1);
        self.kernels.len() - 1
    }
}
