//! The learning-curve picture `netc train` writes after every epoch: an SVG
//! with two panels, losses (train and test) and test errors (top-1 and
//! top-5), against the epoch. Hand-written SVG: no fonts or native
//! libraries needed, viewable in any browser.

use std::fmt::Write;

use super::report::EpochReport;

const W: f64 = 460.0;
const H: f64 = 300.0;
const M: f64 = 50.0;

fn panel(
    s: &mut String,
    x0: f64,
    title: &str,
    series: &[(&str, &str, Vec<f64>)],
    epochs: usize,
    percent: bool,
) {
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let px = |i: usize| {
        x0 + M
            + (W - 1.5 * M)
                * if epochs > 1 {
                    i as f64 / (epochs - 1) as f64
                } else {
                    0.5
                }
    };
    let py = |v: f64| M + (H - 2.0 * M) * (1.0 - (v / top).clamp(0.0, 1.0));
    let _ = write!(
        s,
        r#"<g><rect x="{}" y="{M}" width="{}" height="{}" fill="none" stroke="grey"/>"#,
        x0 + M,
        W - 1.5 * M,
        H - 2.0 * M
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{title}</text>"#,
        x0 + W / 2.0,
        M - 20.0
    );
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let label = if percent {
            format!("{:.0}%", 100.0 * v)
        } else {
            format!("{v:.2}")
        };
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{label}</text>"#,
            x0 + M - 4.0,
            py(v) + 3.0
        );
    }
    for i in 0..epochs {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            px(i),
            H - M + 14.0,
            i + 1
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">epoch</text>"#,
        x0 + W / 2.0,
        H - M + 30.0
    );
    for (k, (name, colour, v)) in series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .filter(|(_, y)| y.is_finite())
            .map(|(i, y)| format!("{:.1},{:.1}", px(i), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        // A marker per epoch, so a single epoch (one point, no line) shows.
        for p in &pts {
            if let Some((x, y)) = p.split_once(',') {
                let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>"#);
            }
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="11" fill="{colour}">{name}</text>"#,
            x0 + M + 8.0,
            H - M - 8.0 - 14.0 * (series.len() - 1 - k) as f64
        );
    }
    s.push_str("</g>");
}

/// The SVG text for these epochs.
pub fn learning_curves(network: &str, reports: &[EpochReport]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
        2.0 * W,
        H + 20.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="15" text-anchor="middle">{network}</text>"#,
        W
    );
    let col = |f: fn(&EpochReport) -> f64| reports.iter().map(f).collect::<Vec<_>>();
    panel(
        &mut s,
        0.0,
        "loss",
        &[
            ("train", "steelblue", col(|r| r.train_loss)),
            ("test", "firebrick", col(|r| r.test_loss)),
        ],
        reports.len(),
        false,
    );
    panel(
        &mut s,
        W,
        "test error",
        &[
            ("top-1", "seagreen", col(|r| r.top1_error)),
            ("top-5", "rebeccapurple", col(|r| r.top5_error)),
        ],
        reports.len(),
        true,
    );
    s.push_str("</svg>\n");
    s
}

const PALETTE: &[&str] = &[
    "steelblue",
    "firebrick",
    "seagreen",
    "rebeccapurple",
    "darkorange",
    "teal",
    "saddlebrown",
    "deeppink",
];

/// Several runs' test top-1 error and test loss against the epoch (a sweep).
pub fn compare(title: &str, runs: &[(String, Vec<EpochReport>)]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
        2.0 * W,
        H + 20.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="15" text-anchor="middle">{title}</text>"#,
        W
    );
    let series = |f: fn(&EpochReport) -> f64| -> Vec<(&str, &str, Vec<f64>)> {
        runs.iter()
            .enumerate()
            .map(|(i, (name, r))| {
                (
                    name.as_str(),
                    PALETTE[i % PALETTE.len()],
                    r.iter().map(f).collect(),
                )
            })
            .collect()
    };
    let epochs = runs.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    panel(
        &mut s,
        0.0,
        "test loss",
        &series(|r| r.test_loss),
        epochs,
        false,
    );
    panel(
        &mut s,
        W,
        "test top-1 error",
        &series(|r| r.top1_error),
        epochs,
        true,
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_epoch_is_drawn_as_points() {
        let r = EpochReport {
            epoch: 1,
            lr: 0.01,
            train_loss: 1.5,
            test_loss: 1.2,
            top1_error: 0.4,
            top5_error: 0.1,
            images_per_s: 100.0,
        };
        let svg = learning_curves("net", &[r]);
        // Two series in each of two panels, one point each.
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
    }
}
