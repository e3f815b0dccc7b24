//! Evaluation on the device for [`CudaStep`](super::run::CudaStep): the evaluation program
//! (`backend::cuda::generate::forward`: the forward part of the step, dropout off)
//! on a [`Device`] of its own, fed the trained parameters from the host
//! mirror before each evaluation.
//!
//! The program has a fixed batch; [`DeviceEval::eval_batch`] takes any
//! number of examples (the last partial batch, ten crops per image) and
//! runs them in pieces of that batch, the last one padded with zeros and
//! label 0. The loss, top-1 and top-5 are computed on the host from the
//! logits of the real examples, with the CPU executor's functions, so the
//! figures are the CPU backend's for the same logits.
//!
//! Assumes the mirror holds the parameters to evaluate when
//! [`DeviceEval::refresh`] is called. Guarantees: bad input (a wrong image
//! length, a label out of range) is an error before anything reaches the
//! device; no panic.

use crate::backend::cpu::exec::{CpuExec, ExecError, StepStats};
use crate::backend::cpu::kernels::softmax_xent::{softmax_xent_forward, top1_top5};
use crate::backend::cuda::program::BufKind;
use crate::backend::cuda::runtime::device::Device;
use crate::backend::error::BackendError;
use crate::ir::NodeId;

pub struct DeviceEval<D: Device> {
    dev: D,
    /// Mirror node and device buffer of each parameter.
    params: Vec<(NodeId, usize)>,
    classes: usize,
    per: usize,
    logits: Vec<f32>,
}

impl<D: Device> DeviceEval<D> {
    /// Evaluation on `dev`, which holds the evaluation program of `host`'s
    /// graph; every parameter of the program must be one of the mirror's.
    pub fn new(host: &CpuExec, dev: D) -> Result<Self, BackendError> {
        let prog = dev.program();
        let batch = prog.batch.max(1);
        let per = prog.buffers[prog.image].elems / batch;
        if per != host.image_len() {
            return Err(BackendError::Program(format!(
                "the evaluation program takes images of {per} values, the network {}",
                host.image_len()
            )));
        }
        let state = host.state();
        let mut params = Vec::new();
        for (b, d) in prog.buffers.iter().enumerate() {
            if d.kind != BufKind::Param {
                continue;
            }
            let Some((_, n)) = state.iter().find(|(name, _)| *name == d.name) else {
                return Err(BackendError::Program(format!(
                    "the evaluation program's `{}` is no parameter of the network",
                    d.name
                )));
            };
            params.push((*n, b));
        }
        Ok(DeviceEval {
            classes: prog.buffers[prog.logits].elems / batch,
            dev,
            params,
            per,
            logits: Vec::new(),
        })
    }

    /// Uploads the mirror's parameters.
    pub fn refresh(&mut self, host: &CpuExec) -> Result<(), BackendError> {
        for &(n, b) in &self.params {
            self.dev.upload(b, host.value(n))?;
        }
        Ok(())
    }

    /// The forward pass on `labels.len()` examples, dropout off.
    pub fn eval_batch(
        &mut self,
        images: &[f32],
        labels: &[u32],
    ) -> Result<StepStats, BackendError> {
        let n = labels.len();
        if images.len() != n * self.per {
            return Err(BackendError::Input(format!(
                "{} values are not {n} images of {} values",
                images.len(),
                self.per
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= self.classes) {
            return Err(ExecError::BadLabel {
                label: bad,
                classes: self.classes as u64,
            }
            .into());
        }
        let prog = self.dev.program();
        let (batch, image, label, logits) = (prog.batch, prog.image, prog.labels, prog.logits);
        self.logits.clear();
        let mut x = vec![0f32; batch * self.per];
        let mut y = vec![0f32; batch];
        for start in (0..n).step_by(batch.max(1)) {
            let m = (n - start).min(batch);
            x[..m * self.per].copy_from_slice(&images[start * self.per..(start + m) * self.per]);
            x[m * self.per..].fill(0.0);
            for (o, &l) in y.iter_mut().zip(&labels[start..start + m]) {
                *o = f32::from_bits(l);
            }
            y[m..].fill(0.0);
            self.dev.stage(image, &x)?;
            self.dev.stage(label, &y)?;
            self.dev.step(0, 0.0)?;
            let out = self.dev.download(logits)?;
            self.logits.extend_from_slice(&out[..m * self.classes]);
        }
        let mut probs = vec![0f32; self.logits.len()];
        let loss = softmax_xent_forward(n, self.classes, &self.logits, labels, &mut probs);
        let (top1, top5) = top1_top5(n, self.classes, &self.logits, labels);
        Ok(StepStats {
            loss,
            top1,
            top5,
            n,
        })
    }

    /// The logits of the last [`eval_batch`](Self::eval_batch).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}
