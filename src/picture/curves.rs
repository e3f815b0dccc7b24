//! Learning curves as SVG: the picture `netc train` writes after every
//! epoch (losses, train and test; test errors, top-1 and top-5, against
//! the epoch), and a sweep's pictures (its variants' test loss and error,
//! and the paper's figure 1: training error against the steps taken).
//! Hand-written SVG: no fonts or native libraries needed, viewable in any
//! browser.
//!
//! Guarantees, for any number of epochs, steps and variants:
//! - axis ticks fall on 1-2-5 steps (0.5, 1, 2, 5, 10, …) and there are at
//!   most [`MAX_TICKS`] labels on an axis, so labels never crowd;
//! - an error axis runs from 0% to at most 100%;
//! - every series has its own style: a colour of a colour-blind-safe
//!   palette (Okabe and Ito's eight), and past eight series a dash pattern
//!   as well, and a legend entry drawn with the same colour and dash;
//! - text never overlaps other text: the figure's title, the panels'
//!   titles, tick labels, axis titles and legends each have a band of
//!   their own, and a sweep's legend sits outside the plots, in a column
//!   as wide as its longest name (checked by rendering, in
//!   `tests/pictures.rs`).
//!
//! Cost: linear in the number of points drawn.

use std::fmt::Write;

use crate::train::report::EpochReport;

/// Width and height of one panel, margins included.
const W: f64 = 460.0;
const H: f64 = 320.0;
/// Left margin (tick labels), right margin, top band (figure and panel
/// titles) and bottom band (tick labels, axis title) of a panel.
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 44.0;
/// Height of a legend row.
const ROW: f64 = 16.0;
/// The most labels drawn on an axis.
pub const MAX_TICKS: usize = 8;

/// Okabe and Ito's colour-blind-safe palette, darkest first; the yellow is
/// left out (it vanishes on white).
pub const PALETTE: &[&str] = &[
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#7F7F7F",
];
/// Dash patterns, one per round of the palette.
const DASHES: &[&str] = &["", "7,4", "2,3", "9,3,2,3"];

/// The colour and dash of the `i`-th series.
pub fn style(i: usize) -> (&'static str, &'static str) {
    (
        PALETTE[i % PALETTE.len()],
        DASHES[(i / PALETTE.len()) % DASHES.len()],
    )
}

/// The tick step for a range of `span`: 1, 2 or 5 times a power of ten,
/// the smallest that gives at most `max` intervals.
pub fn nice_step(span: f64, max: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / max.max(1) as f64;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| span / s <= max as f64 + 1e-9)
        .unwrap_or(10.0 * p)
}

/// A value axis from 0: its top (a whole number of steps at or above the
/// largest value, at most `cap`) and its ticks.
fn value_axis(max: f64, cap: Option<f64>) -> (f64, Vec<f64>) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let max = cap.map_or(max, |c| max.min(c));
    let step = nice_step(max, MAX_TICKS - 1);
    let mut top = (max / step - 1e-9).ceil() * step;
    if let Some(c) = cap {
        top = top.min(c);
    }
    let ticks = (0..)
        .map(|k| k as f64 * step)
        .take_while(|v| *v <= top + step * 1e-6)
        .collect();
    (top, ticks)
}

/// Ticks over `lo..=hi` for a whole-number axis (epochs, steps): whole
/// multiples of a 1-2-5 step, at most [`MAX_TICKS`] of them.
fn count_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = nice_step(hi - lo, MAX_TICKS - 1).max(1.0);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|k| first + k as f64 * step)
        .take_while(|v| *v <= hi + 1e-9)
        .collect()
}

/// A tick label: whole numbers plainly, others with as few decimals as the
/// step needs; percentages of fractions with `%`.
fn label(v: f64, step: f64, percent: bool) -> String {
    let (v, step) = if percent {
        (100.0 * v, 100.0 * step)
    } else {
        (v, step)
    };
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    let s = format!("{v:.decimals$}");
    if percent { format!("{s}%") } else { s }
}

/// A fraction as a percentage with at most one decimal, as people write
/// it (25%, 12.5%).
fn percent(v: f64) -> String {
    let s = format!("{:.1}", 100.0 * v);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// Text that is safe inside SVG markup.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One series: its name, its points `(x, y)`.
struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

/// The plot area of a panel and its axes.
struct Panel<'a> {
    x0: f64,
    /// The panel's width and height, margins included.
    size: (f64, f64),
    /// Drawn above the plot; nothing when empty.
    title: &'a str,
    x_title: &'a str,
    /// The x range, and whether x counts epochs (the axis starts at 1).
    x_range: (f64, f64),
    /// Values are fractions drawn as percentages, capped at 100%.
    percent: bool,
    /// A value drawn across as a dashed black line (the axis reaches it).
    target: Option<f64>,
}

impl Panel<'_> {
    /// Draws the panel (frame, grid, ticks, titles, series) into `s`.
    fn draw(&self, s: &mut String, series: &[Series], first_style: usize) {
        let (px0, px1) = (self.x0 + LEFT, self.x0 + self.size.0 - RIGHT);
        let (py0, py1) = (TOP, self.size.1 - BOTTOM);
        let ymax = series
            .iter()
            .flat_map(|r| r.points.iter().map(|p| p.1))
            .chain(self.target)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let (top, yticks) = value_axis(ymax, self.percent.then_some(1.0));
        let ystep = yticks.get(1).copied().unwrap_or(top);
        let (lo, hi) = self.x_range;
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let px = |x: f64| px0 + (px1 - px0) * (x - lo) / (hi - lo);
        let py = |y: f64| py1 - (py1 - py0) * (y / top).clamp(0.0, 1.0);
        if !self.title.is_empty() {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"#,
                (px0 + px1) / 2.0,
                py0 - 10.0,
                escape(self.title)
            );
        }
        for &v in &yticks {
            let _ = write!(
                s,
                r##"<line x1="{px0:.1}" x2="{px1:.1}" y1="{0:.1}" y2="{0:.1}" stroke="#e4e4e4"/><text x="{1:.1}" y="{2:.1}" font-size="10" text-anchor="end">{3}</text>"##,
                py(v),
                px0 - 5.0,
                py(v) + 3.5,
                label(v, ystep, self.percent)
            );
        }
        for v in count_ticks(lo, hi) {
            let _ = write!(
                s,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{py1:.1}" y2="{1:.1}" stroke="grey"/><text x="{0:.1}" y="{2:.1}" font-size="10" text-anchor="middle">{3}</text>"##,
                px(v),
                py1 + 4.0,
                py1 + 15.0,
                label(v, 1.0, false)
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{px0:.1}" y="{py0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="grey"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            px1 - px0,
            py1 - py0,
            (px0 + px1) / 2.0,
            py1 + 32.0,
            escape(self.x_title)
        );
        if let Some(t) = self.target {
            let _ = write!(
                s,
                r#"<line x1="{px0:.1}" x2="{px1:.1}" y1="{0:.1}" y2="{0:.1}" stroke="black" stroke-dasharray="5,4"/>"#,
                py(t)
            );
        }
        for (k, r) in series.iter().enumerate() {
            let (colour, dash) = style(first_style + k);
            let pts: Vec<String> = r
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
                pts.join(" ")
            );
            // Markers while they stay apart, so a single epoch (one point,
            // no line) shows.
            if pts.len() <= 40 {
                for p in &pts {
                    if let Some((x, y)) = p.split_once(',') {
                        let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>"#);
                    }
                }
            }
        }
    }
}

/// A legend entry: a line sample in the series' style, then its name.
fn legend_entry(s: &mut String, x: f64, y: f64, name: &str, i: usize) {
    let (colour, dash) = style(i);
    let _ = write!(
        s,
        r#"<line x1="{x:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
        x + 22.0,
        x + 28.0,
        y + 4.0,
        escape(name)
    );
}

/// The width a name takes at 11 px: an upper bound for sans-serif fonts.
fn text_width(name: &str) -> f64 {
    7.0 * name.chars().count() as f64
}

fn open(s: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, sans-serif"><rect width="100%" height="100%" fill="white"/><text x="{:.1}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        w / 2.0,
        escape(title)
    );
}

/// The learning curves of one run: its losses and its test errors by
/// epoch, each panel with its legend below it.
pub fn learning_curves(network: &str, reports: &[EpochReport]) -> String {
    let h = H + ROW + 8.0;
    let mut s = String::new();
    open(&mut s, 2.0 * W, h, network);
    let epochs = (1.0, reports.len().max(1) as f64);
    let col = |f: fn(&EpochReport) -> f64| -> Vec<(f64, f64)> {
        reports
            .iter()
            .enumerate()
            .map(|(i, r)| ((i + 1) as f64, f(r)))
            .collect()
    };
    let panels = [
        (
            "loss",
            false,
            [
                ("train", col(|r| r.train_loss)),
                ("test", col(|r| r.test_loss)),
            ],
        ),
        (
            "test error",
            true,
            [
                ("top-1", col(|r| r.top1_error)),
                ("top-5", col(|r| r.top5_error)),
            ],
        ),
    ];
    for (p, (title, percent, series)) in panels.into_iter().enumerate() {
        let x0 = p as f64 * W;
        let series: Vec<Series> = series
            .into_iter()
            .map(|(name, points)| Series { name, points })
            .collect();
        Panel {
            x0,
            size: (W, H),
            title,
            x_title: "epoch",
            x_range: epochs,
            percent,
            target: None,
        }
        .draw(&mut s, &series, 2 * p);
        let mut x = x0 + LEFT;
        for (k, r) in series.iter().enumerate() {
            legend_entry(&mut s, x, H + 4.0, r.name, 2 * p + k);
            x += 40.0 + text_width(r.name);
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A legend column at `x` for runs' names, from `y`.
fn legend_column(s: &mut String, x: f64, y: f64, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        legend_entry(s, x, y + ROW * i as f64, name, i);
    }
}

/// The width and height of a figure of `panels` panels with a legend column
/// for `names`.
fn with_legend(panels: f64, names: &[&str]) -> (f64, f64, f64) {
    let legend_w = 40.0 + names.iter().map(|n| text_width(n)).fold(0.0, f64::max);
    let h = H.max(TOP + ROW * names.len() as f64 + 8.0);
    (panels * W + legend_w, h, panels * W + 8.0)
}

/// Several runs' test loss and test top-1 error against the epoch (a
/// sweep), with a legend column on the right.
pub fn compare(title: &str, runs: &[(String, Vec<EpochReport>)]) -> String {
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    let (w, h, legend_x) = with_legend(2.0, &names);
    let mut s = String::new();
    open(&mut s, w, h, title);
    let epochs = runs.iter().map(|(_, r)| r.len()).max().unwrap_or(1).max(1);
    let series = |f: fn(&EpochReport) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|(name, r)| Series {
                name,
                points: r
                    .iter()
                    .enumerate()
                    .map(|(i, e)| ((i + 1) as f64, f(e)))
                    .collect(),
            })
            .collect()
    };
    for (p, (panel_title, percent, f)) in [
        (
            "test loss",
            false,
            (|r: &EpochReport| r.test_loss) as fn(&EpochReport) -> f64,
        ),
        ("test top-1 error", true, |r: &EpochReport| r.top1_error),
    ]
    .into_iter()
    .enumerate()
    {
        Panel {
            x0: p as f64 * W,
            size: (W, H),
            title: panel_title,
            x_title: "epoch",
            x_range: (1.0, epochs as f64),
            percent,
            target: None,
        }
        .draw(&mut s, &series(f), 0);
    }
    legend_column(&mut s, legend_x, TOP + 8.0, &names);
    s.push_str("</svg>\n");
    s
}

/// Several runs' training top-1 error against the training steps taken,
/// with the `target` drawn across (the paper's figure 1). A run's point
/// sits at the step count at the end of each epoch; epochs without a
/// recorded training error are left out.
pub fn train_error(title: &str, runs: &[(String, Vec<EpochReport>)], target: f64) -> String {
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    let target_name = format!("target {}", percent(target));
    // One wide panel: twice a panel's width, and the legend names the
    // target too.
    let mut legend = names.clone();
    legend.push(&target_name);
    let (w, h, legend_x) = with_legend(2.0, &legend);
    let series: Vec<Series> = runs
        .iter()
        .map(|(name, r)| Series {
            name,
            points: r
                .iter()
                .filter_map(|e| Some((e.steps as f64, e.train_top1_error?)))
                .filter(|(_, y)| y.is_finite())
                .collect(),
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let mut s = String::new();
    open(&mut s, w, h, &format!("{title}: training top-1 error"));
    Panel {
        x0: 0.0,
        size: (2.0 * W, h),
        title: "",
        x_title: "training steps",
        x_range: (0.0, xmax),
        percent: true,
        target: Some(target),
    }
    .draw(&mut s, &series, 0);
    legend_column(&mut s, legend_x, TOP + 8.0, &names);
    let y = TOP + 8.0 + ROW * names.len() as f64;
    let _ = write!(
        s,
        r#"<line x1="{legend_x:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="black" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
        legend_x + 22.0,
        legend_x + 28.0,
        y + 4.0,
        escape(&target_name)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, steps: u64, e: Option<f64>) -> EpochReport {
        EpochReport {
            epoch,
            lr: 0.01,
            train_loss: 1.0,
            test_loss: 1.0,
            top1_error: 0.3,
            top5_error: 0.1,
            images_per_s: 100.0,
            train_top1_error: e,
            steps,
        }
    }

    #[test]
    fn one_epoch_is_drawn_as_points() {
        let svg = learning_curves("net", &[at(1, 10, Some(0.5))]);
        // Two series in each of two panels, one point each.
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
    }

    #[test]
    fn training_error_is_drawn_against_steps_with_the_target() {
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
        // Three recorded points (one epoch has no training error), the
        // dashed target line and its legend sample, both names.
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert_eq!(svg.matches(r#"stroke-dasharray="5,4""#).count(), 2);
        assert!(svg.contains(">relu<") && svg.contains(">tanh<") && svg.contains(">target 25%<"));
    }

    #[test]
    fn steps_are_one_two_five() {
        for (span, max, want) in [
            (1.0, 7, 0.2),
            (0.9, 7, 0.2),
            (3.93, 7, 1.0),
            (60.0, 7, 10.0),
            (59.0, 7, 10.0),
            (12.0, 7, 2.0),
            (7.0, 7, 1.0),
            (12_000.0, 7, 2000.0),
            (0.05, 4, 0.02),
        ] {
            let got = nice_step(span, max);
            assert!((got - want).abs() < 1e-9 * want, "span {span}: {got}");
        }
    }

    #[test]
    fn ticks_are_bounded_and_errors_stay_within_100_percent() {
        for max in [0.05, 0.5, 0.93, 1.0, 1.08, 3.3, 5.23, 120.0] {
            let (top, ticks) = value_axis(max, Some(1.0));
            assert!(top <= 1.0 && ticks.len() <= MAX_TICKS, "{max}: {ticks:?}");
            let (top, ticks) = value_axis(max, None);
            assert!(top >= max && ticks.len() <= MAX_TICKS, "{max}: {ticks:?}");
            let step = ticks[1];
            let m = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|x| (x - m).abs() < 1e-9),
                "{step}"
            );
        }
        for epochs in [1.0, 2.0, 7.0, 12.0, 60.0, 90.0, 1000.0] {
            let t = count_ticks(1.0, epochs);
            assert!(!t.is_empty() && t.len() <= MAX_TICKS, "{epochs}: {t:?}");
        }
    }

    #[test]
    fn every_variant_has_its_own_style() {
        let styles: std::collections::HashSet<_> = (0..32).map(style).collect();
        assert_eq!(styles.len(), 32);
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(label(0.25, 0.05, true), "25%");
        assert_eq!(label(0.025, 0.005, true), "2.5%");
        assert_eq!(label(1.5, 0.5, false), "1.5");
        assert_eq!(label(2.0, 1.0, false), "2");
        assert_eq!(escape("a<b&c"), "a&lt;b&amp;c");
        assert_eq!(percent(0.25), "25%");
        assert_eq!(percent(0.125), "12.5%");
    }
}
