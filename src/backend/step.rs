//! The step interface every backend implements, and what the training loop
//! (`train::run`) drives: [`Step`].
//!
//! Assumes an executor built for the training graph of a run (forward,
//! backward, update) whose parameters and velocities are the
//! [`ParamStore`](super::params::ParamStore)'s, named `name@device` (the
//! names checkpoints use, so a checkpoint written through one backend
//! loads into another).
//!
//! Capabilities are fixed when a backend is built, not discovered by
//! calling a method that fails: what batches a step takes is its
//! [`Step::feed`] (a backend built to augment on its device takes raw
//! batches, every other host-augmented ones), and there is no method a
//! backend implements only to refuse (one that cannot train on several
//! ranks keeps [`Step::set_gradient_reducer`]'s default, which says so).

use super::error::BackendError;
use super::input::RawBatch;

/// Figures of one step or evaluation batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// The mean loss over the batch.
    pub loss: f64,
    /// Examples whose label scored highest / among the five highest.
    pub top1: usize,
    pub top5: usize,
    /// Examples in the batch.
    pub n: usize,
}

/// What batches a training step takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Batches augmented on the host: `f32` crops and labels.
    Host,
    /// Raw `u8` images and the host's per-crop draws, augmented by the
    /// backend on its device.
    Raw,
}

/// One step's inputs as the loop hands them to [`Step::submit`] and
/// [`Step::prefetch`]: the kind the backend's [`Step::feed`] names.
#[derive(Clone, Copy)]
pub enum Batch<'a> {
    /// A host-augmented batch.
    Host {
        images: &'a [f32],
        labels: &'a [u32],
    },
    /// A raw batch.
    Raw(&'a RawBatch),
}

/// A parameter or velocity: `name@device`, dims, values.
pub type StateTensor<'a> = (String, Vec<usize>, &'a [f32]);

/// What [`Step::set_gradient_reducer`] takes: called on a gradient in
/// place (data-parallel training sums it over the ranks and divides).
pub type GradientReducer = Box<dyn FnMut(&mut [f32]) -> Result<(), String> + Send>;

/// A training-step executor as the loop drives it.
pub trait Step {
    /// Values per example of the image input.
    fn image_len(&self) -> usize;

    /// What batches [`Step::submit`] takes (fixed when the backend is built).
    fn feed(&self) -> Feed;

    /// Issues one training step (forward, backward, update with `lr`) on
    /// `batch`; `step` numbers the step and keys the dropout masks. A
    /// backend may return before the step is done: [`Step::collect`] waits
    /// for it. A batch of the wrong kind or size is an error.
    fn submit(&mut self, batch: Batch<'_>, lr: f64, step: u64) -> Result<(), BackendError>;

    /// The inputs of the step after the one submitted last: a backend may
    /// copy them to its device while that step runs (one that cannot
    /// overlap does nothing). The next [`Step::submit`] must be on the
    /// same inputs.
    fn prefetch(&mut self, batch: Batch<'_>) -> Result<(), BackendError>;

    /// Waits for the step [`Step::submit`] issued and returns its figures;
    /// an error if none was issued.
    fn collect(&mut self) -> Result<StepStats, BackendError>;

    /// The forward pass only, dropout off, on a batch of any size.
    fn eval_batch(&mut self, images: &[f32], labels: &[u32]) -> Result<StepStats, BackendError>;

    /// The logits of the last [`Step::eval_batch`] (examples × classes).
    fn logits(&self) -> &[f32];

    /// Every parameter and velocity as the last step left it, in a stable
    /// order (what a checkpoint holds).
    fn state(&mut self) -> Result<Vec<StateTensor<'_>>, BackendError>;

    /// Replaces the values of state tensor `name`; `values` has the length
    /// [`Step::state`] gives it.
    fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), BackendError>;

    /// Whether every parameter and velocity is finite after a step, when
    /// the backend can tell cheaply; `None` when finding out would cost a
    /// copy of the whole state (the loop then relies on the next step's
    /// loss and on the check it makes before writing a checkpoint).
    fn state_finite(&self) -> Option<bool>;

    /// The first layer, in execution order, holding a non-finite value.
    fn first_non_finite(&mut self) -> Result<Option<String>, BackendError>;

    /// Data-parallel training: every later step calls `reduce` on each
    /// parameter gradient once the backward pass has finished it and
    /// before its update (in the same order on every rank), and keys its
    /// dropout masks as the examples `example_offset..` of the global
    /// batch. A backend that cannot split its step there says so (the
    /// loop asks before any data is loaded).
    fn set_gradient_reducer(
        &mut self,
        reduce: GradientReducer,
        example_offset: u64,
    ) -> Result<(), BackendError> {
        let _ = (reduce, example_offset);
        Err(BackendError::Unavailable(
            "this backend does not train on several ranks yet; run the ranks on the CPU backend (`--backend cpu`)".into(),
        ))
    }

    /// One whole training step on a host-augmented batch: submit, then
    /// collect.
    fn train_step(
        &mut self,
        images: &[f32],
        labels: &[u32],
        lr: f64,
        step: u64,
    ) -> Result<StepStats, BackendError> {
        self.submit(Batch::Host { images, labels }, lr, step)?;
        self.collect()
    }
}

impl<S: Step + ?Sized> Step for Box<S> {
    fn image_len(&self) -> usize {
        (**self).image_len()
    }
    fn feed(&self) -> Feed {
        (**self).feed()
    }
    fn submit(&mut self, batch: Batch<'_>, lr: f64, step: u64) -> Result<(), BackendError> {
        (**self).submit(batch, lr, step)
    }
    fn prefetch(&mut self, batch: Batch<'_>) -> Result<(), BackendError> {
        (**self).prefetch(batch)
    }
    fn collect(&mut self) -> Result<StepStats, BackendError> {
        (**self).collect()
    }
    fn eval_batch(&mut self, images: &[f32], labels: &[u32]) -> Result<StepStats, BackendError> {
        (**self).eval_batch(images, labels)
    }
    fn logits(&self) -> &[f32] {
        (**self).logits()
    }
    fn state(&mut self) -> Result<Vec<StateTensor<'_>>, BackendError> {
        (**self).state()
    }
    fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), BackendError> {
        (**self).set_state(name, values)
    }
    fn state_finite(&self) -> Option<bool> {
        (**self).state_finite()
    }
    fn first_non_finite(&mut self) -> Result<Option<String>, BackendError> {
        (**self).first_non_finite()
    }
    fn set_gradient_reducer(
        &mut self,
        reduce: GradientReducer,
        example_offset: u64,
    ) -> Result<(), BackendError> {
        (**self).set_gradient_reducer(reduce, example_offset)
    }
}
