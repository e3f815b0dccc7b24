//! `netc export` (a network and its weights as an ONNX model) and
//! `netc import` (an ONNX model as a `.net` file and a checkpoint).

use std::process::ExitCode;

use netc::onnx::export;
use netc::train::weights;

use super::args::{ExportArgs, ImportArgs};
use super::{load, write_atomic};

/// `netc export`.
pub fn export(a: ExportArgs) -> Result<ExitCode, String> {
    let ExportArgs {
        file,
        weights: from,
        output,
    } = a;
    let (c, _) = load(&file)?;
    let module = &c.module;
    let values = match &from {
        Some(p) => weights::load(module, p).map_err(|e| format!("error: {e}"))?,
        None => weights::initial(module),
    };
    let step = netc::passes::pipeline::training_step(&module.graph, &module.train.sgd, false)
        .map_err(|e| format!("error: {e}"))?;
    let fwd = netc::passes::forward::forward_graph(&step).map_err(|e| format!("error: {e}"))?;
    let (image, ..) = fwd
        .training_io()
        .map_err(|what| format!("error: the network has no {what}"))?;
    let meta = export::preparation(&module.train.data, fwd.node(image).ty.dims());
    let key = |n: &netc::ir::Node| {
        values
            .get(&netc::backend::params::key_of(&n.name, n.device))
            .map(Vec::as_slice)
    };
    let bytes = export::export_bytes(&fwd, &key, &meta).map_err(|e| format!("error: {e}"))?;
    write_atomic(&output, &bytes)?;
    eprintln!(
        "{}: wrote {} ({} bytes, opset {}, weights {})",
        file.display(),
        output.display(),
        bytes.len(),
        export::OPSET,
        from.as_ref()
            .map_or("initial".into(), |p| p.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// The largest model `netc import` reads (it is read whole).
const MAX_MODEL: u64 = 2 << 30;

/// `netc import`.
pub fn import(a: ImportArgs) -> Result<ExitCode, String> {
    use std::io::Read;
    let ImportArgs {
        model,
        output,
        weights_out,
    } = a;
    let name = model.display().to_string();
    let cannot = |e: std::io::Error| format!("error: cannot read `{name}`: {e}");
    let mut bytes = Vec::new();
    std::fs::File::open(&model)
        .map_err(cannot)?
        .take(MAX_MODEL + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_MODEL {
        return Err(format!(
            "error: `{name}` is larger than {} GiB",
            MAX_MODEL >> 30
        ));
    }
    let origin = model
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().to_string());
    let imported =
        netc::onnx::import::import(&bytes, &origin).map_err(|e| format!("error: `{name}`: {e}"))?;
    // The network must be one `netc check` accepts before anything is written.
    let c = netc::frontend::check(&imported.source).map_err(|d| {
        format!(
            "error: `{name}`: the imported network does not check:\n{}",
            netc::diag::render(&output.display().to_string(), &imported.source, &[d])
        )
    })?;
    if let Some(w) = &weights_out {
        weights::save(&c.module, &imported.weights, w).map_err(|e| format!("error: {e}"))?;
    }
    write_atomic(&output, imported.source.as_bytes())?;
    let cost = netc::ir::cost::total(&c.module.graph);
    eprintln!(
        "{name}: wrote {}{} ({} parameters, {} MACs per image{})",
        output.display(),
        weights_out
            .as_ref()
            .map_or(String::new(), |w| format!(" and {}", w.display())),
        cost.params,
        cost.macs,
        if imported.towers > 1 {
            format!(", {} towers", imported.towers)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
