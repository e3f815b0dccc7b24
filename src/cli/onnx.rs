//! `netc export` (a network and its weights as an ONNX model) and
//! `netc import` (an ONNX model as a `.net` file and a checkpoint).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use netc::model::weights;
use netc::onnx::export;

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

/// Where `p` is written: its folder, resolved, and its file name.
fn resolved(p: &Path) -> Result<PathBuf, String> {
    let cannot = |why: String| format!("error: cannot write `{}`: {why}", p.display());
    let file = p
        .file_name()
        .ok_or_else(|| cannot("it names no file".into()))?;
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().map_err(|e| cannot(e.to_string()))?;
    let full = dir.join(file);
    if full.is_dir() {
        return Err(cannot("it is a folder".into()));
    }
    Ok(full)
}

/// An output written to a temporary file beside it first, renamed into
/// place once every output is written (removed when dropped before).
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Staged {
    /// Creates the temporary file: the proof that `dest` can be written.
    fn new(dest: &Path, shown: &Path) -> Result<Staged, String> {
        let name = dest
            .file_name()
            .map_or("out".into(), |n| n.to_string_lossy());
        let tmp = dest.with_file_name(format!(".{name}.import-{}.tmp", std::process::id()));
        std::fs::File::create(&tmp)
            .map_err(|e| format!("error: cannot write `{}`: {e}", shown.display()))?;
        Ok(Staged {
            tmp,
            dest: dest.to_path_buf(),
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// `netc import`.
///
/// Writes nothing unless the model imports, its network checks, and both
/// outputs (the `.net` file and the checkpoint) are distinct files, not
/// the model, that can be written; then both are written beside their
/// places and renamed into them.
pub fn import(a: ImportArgs) -> Result<ExitCode, String> {
    use std::io::Read;
    let ImportArgs {
        model,
        output,
        weights_out,
    } = a;
    let name = model.display().to_string();
    let net_path = resolved(&output)?;
    let ck_path = weights_out.as_deref().map(resolved).transpose()?;
    let model_path = model.canonicalize().ok();
    if ck_path.as_ref() == Some(&net_path) {
        return Err(format!(
            "error: `-o` and `--weights-out` name the same file `{}`; the network and its checkpoint need two",
            output.display()
        ));
    }
    for (p, shown) in [(Some(&net_path), &output)]
        .into_iter()
        .chain(weights_out.as_ref().map(|w| (ck_path.as_ref(), w)))
    {
        if p.is_some() && p == model_path.as_ref() {
            return Err(format!(
                "error: `{}` is the model being imported; write elsewhere",
                shown.display()
            ));
        }
    }
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
    let folder = model
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let imported = netc::onnx::import::import_from(&bytes, &origin, Some(folder))
        .map_err(|e| format!("error: `{name}`: {e}"))?;
    // The network must be one `netc check` accepts before anything is written.
    let c = netc::frontend::check(&imported.source).map_err(|d| {
        format!(
            "error: `{name}`: the imported network does not check:\n{}",
            netc::diag::render(&output.display().to_string(), &imported.source, &[d])
        )
    })?;
    let net = Staged::new(&net_path, &output)?;
    let ck = match (&ck_path, &weights_out) {
        (Some(p), Some(w)) => Some(Staged::new(p, w)?),
        _ => None,
    };
    if let Some(ck) = &ck {
        weights::save(&c.module, &imported.weights, &ck.tmp).map_err(|e| format!("error: {e}"))?;
    }
    write_atomic(&net.tmp, imported.source.as_bytes())?;
    let rename = |s: &Staged, shown: &Path| {
        std::fs::rename(&s.tmp, &s.dest)
            .map_err(|e| format!("error: cannot write `{}`: {e}", shown.display()))
    };
    if let (Some(ck), Some(w)) = (&ck, &weights_out) {
        rename(ck, w)?;
    }
    if let Err(e) = rename(&net, &output) {
        // No checkpoint without its network.
        if let Some(ck) = &ck {
            let _ = std::fs::remove_file(&ck.dest);
        }
        return Err(e);
    }
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
