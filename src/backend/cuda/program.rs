//! What code generation produces: CUDA C source, the kernels it defines
//! (with their parameter lists, so a host can launch them by name), the
//! buffers, and the ordered steps of one training step. GEMM steps are
//! cuBLAS `sgemm` calls in cuBLAS's own column-major terms.

use serde::Serialize;

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
    /// Workspace shared by the GEMM-based layers.
    Scratch,
}

/// One device buffer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BufferDecl {
    /// `node name@device`, with a `.scale`/`.argmax`/`.probs`/`.lrn`
    /// suffix for side buffers, or `scratch.*`.
    pub name: String,
    pub dtype: DType,
    pub elems: usize,
    pub kind: BufKind,
}

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
    /// `unsigned long long` (a dropout seed)
    U64,
    /// `double` (a learning rate)
    F64,
}

impl ParamTy {
    pub fn c_decl(self, name: &str) -> String {
        match self {
            ParamTy::InF32 => format!("const float* __restrict__ {name}"),
            ParamTy::OutF32 => format!("float* __restrict__ {name}"),
            ParamTy::InU32 => format!("const unsigned int* __restrict__ {name}"),
            ParamTy::OutU32 => format!("unsigned int* __restrict__ {name}"),
            ParamTy::U64 => format!("unsigned long long {name}"),
            ParamTy::F64 => format!("double {name}"),
        }
    }
    pub fn is_pointer(self) -> bool {
        !matches!(self, ParamTy::U64 | ParamTy::F64)
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
}

/// A kernel argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A buffer, by index into [`CudaProgram::buffers`].
    Buf(usize),
    /// The step's dropout seed: `seed ^ rng::mix64(step)` (as the CPU executor).
    Seed,
    /// The step's learning rate.
    Lr,
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
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Launch(Launch),
    Gemm(Gemm),
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
    pub steps: Vec<Step>,
    /// The buffer holding the mean loss (one f32) after a step.
    pub loss: usize,
    /// The logits buffer (`batch × classes`).
    pub logits: usize,
    pub image: usize,
    pub labels: usize,
}

impl CudaProgram {
    pub fn buffer(&self, name: &str) -> Option<usize> {
        self.buffers.iter().position(|b| b.name == name)
    }
    pub fn kernel(&self, name: &str) -> Option<&KernelDecl> {
        self.kernels.iter().find(|k| k.name == name)
    }
}
