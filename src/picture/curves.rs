//! The learning-curve picture `netc train` writes after every epoch: an SVG
//! with two panels, losses (train and test) and test errors (top-1 and
//! top-5), against the epoch. Hand-written SVG: no fonts or native
//! libraries needed, viewable in any browser.

use std::fmt::Write;

use crate::train::report::EpochReport;

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

/// Several runs' training top-1 error against the training steps taken,
/// with the `target` drawn across (the paper's figure 1). A run's point
/// sits at the step count at the end of each epoch; epochs without a
/// recorded training error are left out.
pub fn train_error(title: &str, runs: &[(String, Vec<EpochReport>)], target: f64) -> String {
    let (w, h) = (2.0 * W, H + 60.0);
    let pts: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|(_, r)| {
            r.iter()
                .filter_map(|e| Some((e.steps as f64, e.train_top1_error?)))
                .filter(|(_, y)| y.is_finite())
                .collect()
        })
        .collect();
    let xmax = pts.iter().flatten().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = pts
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(target, f64::max)
        .min(1.0)
        * 1.05;
    let (x0, x1, y0, y1) = (M + 10.0, w - M, M, h - M);
    let px = |x: f64| x0 + (x1 - x0) * x / xmax;
    let py = |y: f64| y1 - (y1 - y0) * (y / ymax).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="15" text-anchor="middle">{title}: training top-1 error</text>"#,
        w / 2.0
    );
    let _ = write!(
        s,
        r#"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="grey"/>"#,
        x1 - x0,
        y1 - y0
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let x = xmax * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{:.0}%</text>"#,
            x0 - 4.0,
            py(v) + 3.0,
            100.0 * v
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{:.0}</text>"#,
            px(x),
            y1 + 14.0,
            x
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">training steps</text>"#,
        (x0 + x1) / 2.0,
        y1 + 30.0
    );
    let _ = write!(
        s,
        r#"<line x1="{x0}" x2="{x1}" y1="{0:.1}" y2="{0:.1}" stroke="black" stroke-dasharray="5,4"/><text x="{1}" y="{2:.1}" font-size="11" text-anchor="end">{3}%</text>"#,
        py(target),
        x1 - 4.0,
        py(target) - 4.0,
        100.0 * target
    );
    for (i, ((name, _), p)) in runs.iter().zip(&pts).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let line: Vec<String> = p
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for (x, y) in p {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="11" fill="{colour}" text-anchor="end">{name}</text>"#,
            x1 - 8.0,
            y0 + 16.0 + 14.0 * i as f64
        );
    }
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
            train_top1_error: Some(0.5),
            steps: 10,
        };
        let svg = learning_curves("net", &[r]);
        // Two series in each of two panels, one point each.
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
    }

    #[test]
    fn training_error_is_drawn_against_steps_with_the_target() {
        let at = |epoch, steps, e: Option<f64>| EpochReport {
            epoch,
            lr: 0.01,
            train_loss: 1.0,
            test_loss: 1.0,
            top1_error: 0.3,
            top5_error: 0.1,
            images_per_s: 100.0,
            train_top1_error: e,
            steps,
        };
        let runs = vec![
            (
                "relu".to_string(),
                vec![at(1, 50, Some(0.4)), at(2, 100, Some(0.2))],
            ),
            (
                "tanh".to_string(),
                vec![at(1, 50, None), at(2, 100, Some(0.3))],
            ),
        ];
        let svg = train_error("fig", &runs, 0.25);
        // Three recorded points (one epoch has no training error), one
        // dashed target line, both names.
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
        assert!(svg.contains(">relu<") && svg.contains(">tanh<") && svg.contains(">25%<"));
    }
}
