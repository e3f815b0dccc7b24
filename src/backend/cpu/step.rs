//! The CPU executor behind the step interface (`backend::step::Step`).
//!
//! Guarantees: each method calls the executor's own method of that name
//! (`submit` runs the step to the end and `collect` hands its figures
//! over; `set_state` and `state_finite` read and write the executor's
//! parameter values), so a run through the interface is exactly the
//! executor's. The CPU executor takes host-augmented batches only.

use crate::backend::cpu::exec::CpuExec;
use crate::backend::error::BackendError;
use crate::backend::step::{Batch, Feed, GradientReducer, StateTensor, Step, StepStats};

impl Step for CpuExec<f32> {
    fn image_len(&self) -> usize {
        CpuExec::image_len(self)
    }

    fn feed(&self) -> Feed {
        Feed::Host
    }

    fn submit(&mut self, batch: Batch<'_>, lr: f64, step: u64) -> Result<(), BackendError> {
        let Batch::Host { images, labels } = batch else {
            return Err(BackendError::Input(
                "the CPU executor takes host-augmented batches".into(),
            ));
        };
        let stats = CpuExec::train_step(self, images, labels, lr, step)?;
        self.set_pending(Some(stats));
        Ok(())
    }

    fn prefetch(&mut self, _batch: Batch<'_>) -> Result<(), BackendError> {
        Ok(())
    }

    fn collect(&mut self) -> Result<StepStats, BackendError> {
        self.take_pending()
            .ok_or_else(|| BackendError::Input("no training step is running".into()))
    }

    fn eval_batch(&mut self, images: &[f32], labels: &[u32]) -> Result<StepStats, BackendError> {
        Ok(CpuExec::eval_batch(self, images, labels)?)
    }

    fn logits(&self) -> &[f32] {
        CpuExec::logits(self)
    }

    fn state(&mut self) -> Result<Vec<StateTensor<'_>>, BackendError> {
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

    fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), BackendError> {
        let n = CpuExec::state(self)
            .into_iter()
            .find(|(s, _)| s == name)
            .map(|(_, n)| n)
            .ok_or_else(|| BackendError::Input(format!("the network has no parameter `{name}`")))?;
        let slot = self.value_mut(n);
        if slot.len() != values.len() {
            return Err(BackendError::Input(format!(
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

    fn first_non_finite(&mut self) -> Result<Option<String>, BackendError> {
        Ok(CpuExec::first_non_finite(self).map(str::to_string))
    }

    fn set_gradient_reducer(
        &mut self,
        reduce: GradientReducer,
        example_offset: u64,
    ) -> Result<(), BackendError> {
        self.set_grad_hook(Some(reduce), example_offset);
        Ok(())
    }
}
