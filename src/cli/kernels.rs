//! `netc kernels`: a picture of a convolution layer's learned kernels
//! (the paper's figure 3), from a checkpoint, written atomically as PNG.

use std::process::ExitCode;

use netc::picture::kernels::{self, Style};

use super::args::KernelsArgs;
use super::{load, write_atomic};

/// `netc kernels`.
pub fn run(a: KernelsArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let err = |e: kernels::KernelsError| format!("error: {e}");
    let k = kernels::load(&c.module, a.layer.as_deref(), &a.weights).map_err(err)?;
    let l = kernels::layout(&k, a.scale.map(usize::from)).map_err(err)?;
    let bytes = kernels::png(&kernels::draw(&k, &l)).map_err(err)?;
    write_atomic(&a.output, &bytes)?;
    let per: Vec<String> = l.filters.iter().map(usize::to_string).collect();
    let how = match l.style {
        Style::Grey => "greyscale",
        Style::Rgb => "colour",
        Style::Slices => "one greyscale tile per input channel",
    };
    println!(
        "{}: `{}`, {} tower{} × {} kernels {}×{}×{} ({how}), scale {}, {}×{} pixels",
        a.output.display(),
        k.layer,
        per.len(),
        if per.len() == 1 { "" } else { "s" },
        per.join("/"),
        l.kh,
        l.kw,
        l.channels,
        l.scale,
        l.width,
        l.height
    );
    Ok(ExitCode::SUCCESS)
}
