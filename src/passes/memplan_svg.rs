//! A picture of a memory plan as SVG text: one panel per device, x = time
//! (position in the order), y = address (0 at the bottom), each buffer a
//! rectangle over its lifetime and byte range, coloured by kind; a dashed
//! line marks the device's lower bound. The title gives the plan's three
//! numbers. Hovering a rectangle shows the buffer (an SVG `<title>`).
//! Pure: the same plan always gives the same text.
//!
//! Cost: one rectangle per buffer, O(B log B) with the sort.

use std::fmt::Write;

use super::memplan::{BufKind, Plan};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const PANEL: f64 = 260.0;
const GAP: f64 = 80.0;

fn colour(k: BufKind) -> &'static str {
    match k {
        BufKind::Input => "#9e9e9e",
        BufKind::Activation => "#4c78a8",
        BufKind::Gradient => "#e45756",
        BufKind::Parameter => "#54a24b",
        BufKind::State => "#88d27a",
        BufKind::Side => "#f2b701",
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The plan as a standalone SVG document.
pub fn svg(plan: &Plan) -> String {
    let mut s = String::new();
    let panels = plan.arenas.len().max(1) as f64;
    let height = TOP + panels * (PANEL + GAP) + 40.0;
    let w = WIDTH - LEFT - RIGHT;
    let len = plan.order.len().max(1) as f64;
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{} training step, batch {}: no reuse {:.1} MiB, planned {:.1} MiB, lower bound {:.1} MiB</text>"#,
        escape(&plan.graph_name),
        plan.batch,
        mib(plan.no_reuse()),
        mib(plan.planned()),
        mib(plan.lower_bound())
    );
    // Legend.
    let kinds = [
        BufKind::Input,
        BufKind::Activation,
        BufKind::Gradient,
        BufKind::Parameter,
        BufKind::State,
        BufKind::Side,
    ];
    for (i, k) in kinds.iter().enumerate() {
        let x = LEFT + i as f64 * 120.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="34" width="12" height="12" fill="{}"/><text x="{}" y="44">{}</text>"#,
            colour(*k),
            x + 16.0,
            k.name()
        );
    }
    for (pi, a) in plan.arenas.iter().enumerate() {
        let y0 = TOP + pi as f64 * (PANEL + GAP) + 20.0;
        let bottom = y0 + PANEL;
        let scale = if a.size == 0 {
            0.0
        } else {
            PANEL / a.size as f64
        };
        let _ = writeln!(s, r#"<g>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}: arena {:.1} MiB, lower bound {:.1} MiB, no reuse {:.1} MiB, persistent {:.1} MiB</text>"#,
            y0 - 6.0,
            a.device,
            mib(a.size),
            mib(a.lower_bound),
            mib(a.no_reuse),
            mib(a.persistent)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0}" width="{w}" height="{PANEL}" fill="#fafafa" stroke="black"/>"##
        );
        for b in plan.buffers.iter().filter(|b| b.device == a.device) {
            let x = LEFT + b.first as f64 / len * w;
            let bw = ((b.last - b.first.min(b.last) + 1) as f64 / len * w).max(0.5);
            let bh = (b.span() as f64 * scale).max(0.3);
            let y = bottom - (b.offset + b.span()) as f64 * scale;
            let _ = writeln!(
                s,
                r##"<rect x="{x:.2}" y="{y:.2}" width="{bw:.2}" height="{bh:.2}" fill="{}" fill-opacity="0.85" stroke="#333" stroke-width="0.2"><title>{} ({}): {} bytes at {}, ops {}..={}</title></rect>"##,
                colour(b.kind),
                escape(&b.name),
                b.kind.name(),
                b.size,
                b.offset,
                b.first,
                b.last
            );
        }
        let lb = bottom - a.lower_bound as f64 * scale;
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{lb:.2}" x2="{:.2}" y2="{lb:.2}" stroke="black" stroke-dasharray="6,3"/>"#,
            LEFT + w
        );
        // Y axis: address.
        for t in 0..=4 {
            let bytes = a.size as f64 * t as f64 / 4.0;
            let y = bottom - bytes * scale;
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{y:.2}" x2="{LEFT}" y2="{y:.2}" stroke="black"/><text x="{}" y="{:.2}" text-anchor="end">{:.1}</text>"#,
                LEFT - 4.0,
                LEFT - 6.0,
                y + 4.0,
                bytes / (1024.0 * 1024.0)
            );
        }
        let cy = y0 + PANEL / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="24" y="{cy}" text-anchor="middle" transform="rotate(-90 24 {cy})">address (MiB)</text>"#
        );
        // X axis: op index.
        let ticks = 10usize;
        for t in 0..=ticks {
            let op = (plan.order.len() * t) / ticks;
            let x = LEFT + op as f64 / len * w;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.2}" y1="{bottom}" x2="{x:.2}" y2="{}" stroke="black"/><text x="{x:.2}" y="{}" text-anchor="middle">{op}</text>"#,
                bottom + 4.0,
                bottom + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">op index (execution order)</text>"#,
            LEFT + w / 2.0,
            bottom + 32.0
        );
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "</svg>");
    s
}
