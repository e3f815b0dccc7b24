//! `netc run`: the forward pass on tensors given as a `.npy` file, no image
//! preparation: what a runtime offers (and what ONNX's conformance cases
//! need). The input is `N × C × H × W` float32 (or one `C × H × W`
//! tensor) of the network's input shape; the output is the logits,
//! `N × classes` (or `classes`), computed by the CPU reference executor as
//! `eval` computes them (`train::weights::logits`: dropout off, batchnorm
//! on its running statistics).

use std::process::ExitCode;

use netc::model::weights;

use super::args::RunArgs;
use super::{load, write_atomic};

/// `netc run`.
pub fn run(a: RunArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let m = &c.module;
    let g = &m.graph;
    let (image, _, _, logits) = g
        .training_io()
        .map_err(|what| format!("error: `{}` has no {what}", a.file.display()))?;
    let want: Vec<usize> = g
        .node(image)
        .ty
        .dims()
        .iter()
        .map(|&d| d as usize)
        .collect();
    let classes = g.node(logits).ty.dims().iter().product::<u64>() as usize;
    let bytes = std::fs::read(&a.input)
        .map_err(|e| format!("error: cannot read `{}`: {e}", a.input.display()))?;
    let (dims, x) =
        netc::npy::read_f32(&bytes).map_err(|e| format!("error: `{}`: {e}", a.input.display()))?;
    let one = dims == want;
    if !one && (dims.len() != want.len() + 1 || dims[1..] != want[..]) {
        return Err(format!(
            "error: `{}` holds a tensor of shape {dims:?}; `{}` takes N×{} (or one {:?})",
            a.input.display(),
            a.file.display(),
            want.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("×"),
            want
        ));
    }
    let n = if one { 1 } else { dims[0] };
    let w = weights::load(m, &a.weights).map_err(|e| format!("error: {e}"))?;
    let batch = a
        .batch
        .map_or(m.train.batch as usize, |b| b as usize)
        .max(1);
    let y = if n == 0 {
        Vec::new()
    } else {
        weights::logits(m, &w, &x, batch).map_err(|e| format!("error: {e}"))?
    };
    let out_dims = if one { vec![classes] } else { vec![n, classes] };
    if y.len() != n * classes {
        return Err(format!(
            "error: the forward pass gave {} values for {n} inputs of {classes} classes",
            y.len()
        ));
    }
    write_atomic(&a.output, &netc::npy::write_f32(&out_dims, &y))?;
    eprintln!(
        "{}: {n} input{} -> {}",
        a.output.display(),
        if n == 1 { "" } else { "s" },
        if one {
            format!("[{classes}]")
        } else {
            format!("[{n}, {classes}]")
        }
    );
    Ok(ExitCode::SUCCESS)
}
