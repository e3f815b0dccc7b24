//! What the training loop (`run.rs`) needs of an executor: [`StepExec`],
//! implemented here for the CPU executor and in `train::cuda` for a GPU.
//!
//! Assumes an executor built for the training graph of a run (forward,
//! backward, update), whose parameters and velocities are named
//! `name@device` as `CpuExec::state` names them (checkpoints use these
//! names, so a checkpoint written by one executor loads into another).
//! Guarantees for the CPU executor: each method calls the executor's own
//! method of that name (`set_state` and `state_finite` do what the loop
//! did with `value_mut` and `value`), so a CPU run behaves exactly as
//! before the trait existed.

use crate::backend::cpu::exec::{CpuExec, StepStats};
use crate::train::data::RawBatch;
use crate::train::run::TrainError;

/// Which executor `netc train` runs the training step on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The CPU executor (the reference).
    #[default]
    Cpu,
    /// The generated CUDA program on GPU 0 (see `train::cuda`).
    Cuda,
}

/// A step's inputs as the loop hands them to [`StepExec::submit`] and
/// [`StepExec::prefetch`].
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// A host-augmented batch.
    Host {
        images: &'a [f32],
        labels: &'a [u32],
    },
    /// A raw batch, for an executor that [`StepExec::augments`].
    Raw(&'a RawBatch),
}

/// A parameter or velocity: `name@device`, dims, values.
pub type StateTensor<'a> = (String, Vec<usize>, &'a [f32]);

/// A training-step executor as the loop drives it.
pub trait StepExec {
    /// Values per example of the image input.
    fn image_len(&self) -> usize;

    /// One training step (forward, backward, update with `lr`); `step`
    /// numbers the step and keys the dropout masks.
    fn train_step(
        &mut self,
        images: &[f32],
        labels: &[u32],
        lr: f64,
        step: u64,
    ) -> Result<StepStats, TrainError>;

    /// The forward pass only, dropout off, on a batch of any size.
    fn eval_batch(&mut self, images: &[f32], labels: &[u32]) -> Result<StepStats, TrainError>;

    /// The logits of the last [`StepExec::eval_batch`] (examples × classes).
    fn logits(&self) -> &[f32];

    /// Every parameter and velocity as the last step left it, in a stable
    /// order (what a checkpoint holds).
    fn state(&mut self) -> Result<Vec<StateTensor<'_>>, TrainError>;

    /// Replaces the values of state tensor `name`; `values` has the length
    /// [`StepExec::state`] gives it.
    fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), TrainError>;

    /// Whether every parameter and velocity is finite after a step, when
    /// the executor can tell cheaply; `None` when finding out would cost a
    /// copy of the whole state (the loop then relies on the next step's
    /// loss and on the check it makes before writing a checkpoint).
    fn state_finite(&self) -> Option<bool>;

    /// The first layer, in execution order, holding a non-finite value.
    fn first_non_finite(&mut self) -> Result<Option<String>, TrainError>;

    /// Whether the executor augments on its device, so the loop feeds it
    /// raw batches ([`StepExec::train_step_raw`]) instead of host crops.
    fn augments(&self) -> bool {
        false
    }

    /// Issues one training step on `input` (as [`StepExec::train_step`] or
    /// [`StepExec::train_step_raw`]). An executor that runs the step
    /// while the host goes on returns `None`, and [`StepExec::collect`]
    /// gives the step's figures; the default runs it to the end.
    fn submit(
        &mut self,
        input: Input<'_>,
        lr: f64,
        step: u64,
    ) -> Result<Option<StepStats>, TrainError> {
        match input {
            Input::Host { images, labels } => self.train_step(images, labels, lr, step).map(Some),
            Input::Raw(b) => self.train_step_raw(b, lr, step).map(Some),
        }
    }

    /// The inputs of the step after the one submitted last: an executor
    /// may copy them to its device while that step runs. The next
    /// [`StepExec::submit`] must be on the same inputs. The default does
    /// nothing.
    fn prefetch(&mut self, input: Input<'_>) -> Result<(), TrainError> {
        let _ = input;
        Ok(())
    }

    /// Waits for the step [`StepExec::submit`] left running and returns
    /// its figures; an error if none is running.
    fn collect(&mut self) -> Result<StepStats, TrainError> {
        Err(TrainError::Config("no training step is running".into()))
    }

    /// One training step on a raw batch (`Loader::raw_batch`), augmented
    /// by the executor; an error unless [`StepExec::augments`].
    fn train_step_raw(
        &mut self,
        batch: &RawBatch,
        lr: f64,
        step: u64,
    ) -> Result<StepStats, TrainError> {
        let _ = (batch, lr, step);
        Err(TrainError::Config(
            "this executor takes host-augmented batches".into(),
        ))
    }
}

impl StepExec for CpuExec<f32> {
    fn image_len(&self) -> usize {
        CpuExec::image_len(self)
    }

    fn train_step(
        &mut self,
        images: &[f32],
        labels: &[u32],
        lr: f64,
        step: u64,
    ) -> Result<StepStats, TrainError> {
        Ok(CpuExec::train_step(self, images, labels, lr, step)?)
    }

    fn eval_batch(&mut self, images: &[f32], labels: &[u32]) -> Result<StepStats, TrainError> {
        Ok(CpuExec::eval_batch(self, images, labels)?)
    }

    fn logits(&self) -> &[f32] {
        CpuExec::logits(self)
    }

    fn state(&mut self) -> Result<Vec<StateTensor<'_>>, TrainError> {
        let this: &CpuExec = self;
        Ok(CpuExec::state(this)
            .into_iter()
            .map(|(name, n)| {
                let dims = this
                    .graph()
                    .node(n)
                    .ty
                    .dims()
                    .iter()
                    .map(|&d| d as usize)
                    .collect();
                (name, dims, this.value(n))
            })
            .collect())
    }

    fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), TrainError> {
        let n = CpuExec::state(self)
            .into_iter()
            .find(|(s, _)| s == name)
            .map(|(_, n)| n)
            .ok_or_else(|| TrainError::Config(format!("the network has no parameter `{name}`")))?;
        let slot = self.value_mut(n);
        if slot.len() != values.len() {
            return Err(TrainError::Config(format!(
                "`{name}` has {} values, expected {}",
                values.len(),
                slot.len()
            )));
        }
        slot.copy_from_slice(values);
        Ok(())
    }

    fn state_finite(&self) -> Option<bool> {
        Some(
            CpuExec::state(self)
                .iter()
                .all(|(_, n)| self.value(*n).iter().all(|v| v.is_finite())),
        )
    }

    fn first_non_finite(&mut self) -> Result<Option<String>, TrainError> {
        Ok(CpuExec::first_non_finite(self).map(str::to_string))
    }
}
