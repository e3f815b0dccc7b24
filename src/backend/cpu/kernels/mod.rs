//! CPU reference kernels for the AlexNet op set, forward and backward.
//!
//! Assumes NCHW layout, row-major contiguous tensors, and that the batch size
//! `n` is passed explicitly in every shape. Every kernel is generic over
//! [`Float`] (`f32` in production, `f64` for gradient checks).
//!
//! Conventions shared by all kernels:
//! - Outputs are caller-provided `&mut [T]` slices and are OVERWRITTEN (never
//!   accumulated into), gradients of parameters included.
//! - Scratch memory is a caller-owned `&mut Vec<T>` that the kernel grows on
//!   first use and then reuses; kernels do not allocate otherwise.
//! - Lengths are checked with `debug_assert!`.
//! - Results are bit-identical for any rayon thread count: work is split into
//!   pieces whose size depends only on the shapes, and reductions across pieces
//!   are summed in piece order. (How pieces are grouped onto threads, and so
//!   how much scratch a kernel takes, may depend on the thread count.)

pub mod act;
pub mod avgpool;
pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod conv_general;
pub mod dense;
pub mod dropout;
pub mod float;
pub mod gemm;
pub mod lrn;
pub mod pool;
pub mod relu;
pub mod sgd;
pub mod softmax;
pub mod softmax_xent;
pub mod winograd;

#[cfg(test)]
pub(crate) mod gradcheck;

pub use float::Float;

/// Activation fused into the epilogue of a conv or dense forward pass (and
/// undone in its backward pass, which then needs the forward output `y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    Relu,
}

/// The dense shape of an NCHW activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Nchw {
    pub fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Nchw { n, c, h, w }
    }
    /// Elements in one channel plane.
    #[inline]
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Elements in one image.
    #[inline]
    pub fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Elements in the whole tensor.
    #[inline]
    pub fn len(&self) -> usize {
        self.n * self.chw()
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Grows `buf` to at least `len` elements (never shrinks) and returns the
/// first `len` of them; contents are unspecified.
#[inline]
pub(crate) fn scratch<T: Float>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::ZERO);
    }
    &mut buf[..len]
}

/// Tasks per worker slot: a kernel's tasks are dealt out in contiguous
/// runs, one run per slot (at most twice the threads), and a slot's tasks
/// reuse one scratch area, so it stays in cache. The grouping never
/// changes a result: each task computes its outputs (or its partial sums,
/// kept apart and added in task order) alone.
pub(crate) fn tasks_per_slot(tasks: usize) -> usize {
    let slots = (2 * rayon::current_num_threads()).clamp(1, tasks.max(1));
    tasks.div_ceil(slots)
}

/// Slots for `tasks` tasks (see [`tasks_per_slot`]).
pub(crate) fn slots(tasks: usize) -> usize {
    tasks.div_ceil(tasks_per_slot(tasks).max(1))
}

/// `max(v, 0)` written as a select so loops over it vectorise. NaN stays
/// NaN (as in PyTorch): `!(v <= 0)` holds for a positive `v` and for NaN.
#[inline(always)]
pub(crate) fn relu1<T: Float>(v: T) -> T {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(v <= T::ZERO) { v } else { T::ZERO }
}

/// `out = src + bias`, then ReLU if `act == Relu`.
#[inline]
pub(crate) fn bias_act<T: Float>(src: &[T], bias: T, act: Act, out: &mut [T]) {
    debug_assert_eq!(src.len(), out.len());
    match act {
        Act::None => {
            for (o, v) in out.iter_mut().zip(src) {
                *o = *v + bias;
            }
        }
        Act::Relu => {
            for (o, v) in out.iter_mut().zip(src) {
                *o = relu1(*v + bias);
            }
        }
    }
}

/// `out = g · [y > 0]` (ReLU backward from the forward output `y`).
#[inline]
pub(crate) fn relu_mask<T: Float>(y: &[T], g: &[T], out: &mut [T]) {
    debug_assert_eq!(y.len(), out.len());
    debug_assert_eq!(g.len(), out.len());
    for ((o, yv), gv) in out.iter_mut().zip(y).zip(g) {
        let (yv, gv) = (*yv, *gv);
        *o = if yv > T::ZERO { gv } else { T::ZERO };
    }
}

/// Sum of `v` with 8 interleaved partial sums (vectorisable; the order is a
/// fixed function of the length, so the result is deterministic).
#[inline]
pub(crate) fn sum_lanes<T: Float>(v: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += *x;
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for x in it.remainder() {
        s += *x;
    }
    s
}
