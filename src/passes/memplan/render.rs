//! The plan as text (`netc compile --emit memplan`), and the planned bytes
//! of a network's training step as the ablation tools report them.

use super::types::{Buffer, Plan};

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The plan as text: the three numbers, per device, then one row per buffer.
pub fn render(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let ratio = |a: u64, b: u64| {
        if b == 0 { 1.0 } else { a as f64 / b as f64 }
    };
    let _ = writeln!(
        s,
        "memory plan: {}, training step, batch {}, {} ops, order: {}",
        plan.graph_name,
        plan.batch,
        plan.order.len(),
        plan.order_kind.name()
    );
    let _ = writeln!(
        s,
        "no reuse:    {:>14} bytes  {:>12}",
        plan.no_reuse(),
        mib(plan.no_reuse())
    );
    let _ = writeln!(
        s,
        "planned:     {:>14} bytes  {:>12}  ({:.3} × lower bound)",
        plan.planned(),
        mib(plan.planned()),
        ratio(plan.planned(), plan.lower_bound())
    );
    let _ = writeln!(
        s,
        "lower bound: {:>14} bytes  {:>12}",
        plan.lower_bound(),
        mib(plan.lower_bound())
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:>14} {:>14} {:>14} {:>14}",
        "device", "no reuse", "planned", "lower bound", "persistent"
    );
    for a in &plan.arenas {
        let _ = writeln!(
            s,
            "{:<8} {:>14} {:>14} {:>14} {:>14}",
            a.device.to_string(),
            a.no_reuse,
            a.size,
            a.lower_bound,
            a.persistent
        );
    }
    let _ = writeln!(s);
    let w = plan
        .buffers
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        s,
        "{:<w$} {:<6} {:<10} {:>12} {:>12} {:>5} {:>5}  note",
        "buffer", "device", "kind", "size", "offset", "first", "last"
    );
    let mut rows: Vec<&Buffer> = plan.buffers.iter().collect();
    rows.sort_by_key(|b| (b.device, b.offset, b.first, b.name.clone()));
    for b in rows {
        let note = b
            .in_place_of
            .and_then(|a| plan.buffers.get(a))
            .map(|a| format!("in place of {}", a.name))
            .unwrap_or_default();
        let row = format!(
            "{:<w$} {:<6} {:<10} {:>12} {:>12} {:>5} {:>5}  {}",
            b.name,
            b.device.to_string(),
            b.kind.name(),
            b.size,
            b.offset,
            b.first,
            b.last,
            note
        );
        let _ = writeln!(s, "{}", row.trim_end());
    }
    s
}
