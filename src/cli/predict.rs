//! `netc predict`: the top classes of image files, by name, from a
//! checkpoint (`model::predict`).

use std::process::ExitCode;

use netc::model::predict::Predictor;

use super::args::PredictArgs;
use super::load;

/// `netc predict`.
pub fn run(a: PredictArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let mut p = Predictor::open(&c.module, &a.weights, a.data.as_deref())
        .map_err(|e| format!("error: {e}"))?;
    let ten = a.ten_crop || (!a.center && p.ten_crop_default());
    for image in &a.images {
        let r = p
            .predict(image, ten, a.top)
            .map_err(|e| format!("error: {e}"))?;
        if a.json {
            let line = serde_json::to_string(&r).map_err(|e| format!("error: {e}"))?;
            println!("{line}");
        } else {
            println!("{}", image.display());
            for t in &r.top {
                println!("  {:>7.3}%  {}", 100.0 * t.probability, t.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
