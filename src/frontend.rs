//! Source text -> verified [`Module`], with diagnostics. The one entry
//! point the CLI, the examples and the tests use to read a `.net` file.
//! [`check`] adds what `netc train` needs (`passes::trainable`): every
//! command that trains, evaluates or compiles a step reads files through
//! it, so `netc check` accepts exactly the networks `train` runs.

use codespan_reporting::diagnostic::Diagnostic;

use crate::diag::Diagnose;
use crate::lower::{self, Module};
use crate::{ir, syntax};

pub struct Compiled {
    pub module: Module,
    pub ast: syntax::ast::File,
    /// Warnings (never errors).
    pub warnings: Vec<Diagnostic<()>>,
}

/// Parses, lowers and verifies `src`. On failure returns the error's
/// diagnostic (the first error found).
pub fn compile(src: &str) -> Result<Compiled, Diagnostic<()>> {
    let ast = syntax::parse(src).map_err(|e| e.diagnostic())?;
    let module = lower::lower(&ast).map_err(|e| e.diagnostic())?;
    if let Err(e) = ir::verify::verify(&module.graph) {
        return Err(Diagnostic::bug()
            .with_code("N9000")
            .with_message(format!("internal error: the lowered graph is invalid: {e}")));
    }
    let warnings = module.warnings.iter().map(|w| w.diagnostic()).collect();
    Ok(Compiled {
        module,
        ast,
        warnings,
    })
}

/// Reads and compiles a file; errors are rendered against the file.
pub fn compile_file(path: &std::path::Path) -> Result<(Compiled, String), String> {
    let name = path.display().to_string();
    let src = read_source(path)?;
    match compile(&src) {
        Ok(c) => Ok((c, src)),
        Err(d) => Err(crate::diag::render(&name, &src, &[d])),
    }
}

/// [`compile`], then the training rules of `passes::trainable`.
pub fn check(src: &str) -> Result<Compiled, Diagnostic<()>> {
    let c = compile(src)?;
    crate::passes::trainable::check(&c.module.graph, &c.module.train, c.ast.network.name.span)
        .map_err(|e| e.diagnostic())?;
    Ok(c)
}

/// [`compile_file`] with the rules of [`check`].
pub fn check_file(path: &std::path::Path) -> Result<(Compiled, String), String> {
    let name = path.display().to_string();
    let src = read_source(path)?;
    match check(&src) {
        Ok(c) => Ok((c, src)),
        Err(d) => Err(crate::diag::render(&name, &src, &[d])),
    }
}

/// The most bytes a `.net` file may have (the paper's network is 2 KiB).
pub const MAX_SOURCE: u64 = 16 << 20;

/// Reads a source file, refusing one larger than [`MAX_SOURCE`] without
/// reading past it (`/dev/zero` is refused, not read for ever).
pub fn read_source(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let name = path.display().to_string();
    let cannot = |e: std::io::Error| format!("error: cannot read `{name}`: {e}\n");
    let f = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    f.take(MAX_SOURCE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SOURCE {
        return Err(format!(
            "error: `{name}` is larger than {} MiB; a `.net` file is a few kilobytes of text\n",
            MAX_SOURCE >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "error: cannot read `{name}`: it is not UTF-8 text (byte {})\n",
            e.utf8_error().valid_up_to()
        )
    })
}
