//! Ablation variants of a `.net` file, made by rewriting its source so that
//! comments and the layout of untouched lines survive. Each change is a
//! named rewrite:
//!
//! - `no-lrn`: every LRN layer removed (and `let`s that only named one);
//! - `non-overlapping-pool`: every overlapping max pool (stride < size)
//!   becomes size 2, stride 2, as in the paper's comparison;
//! - `one-tower`: `towers N` becomes `towers 1`; sizes are totals, so the
//!   single tower has the full channel counts and no cross-tower edge;
//! - `no-dropout`: every dropout layer removed;
//! - `no-augmentation`: random crops, mirroring and PCA lighting off;
//! - `activation=LAYER`: every ReLU becomes `LAYER` (`tanh`, `sigmoid`,
//!   `leaky_relu(slope: 0.1)`, …), as in the paper's figure 1;
//! - `lrn=LAYER`: every LRN layer becomes `LAYER` (`batchnorm`, …), its
//!   hyperparameters dropped;
//! - `set PATH=VALUE`: one hyperparameter, `LAYER.PARAM` (`conv1.filters`),
//!   `LET.PARAM` (`norm.alpha`) or `train.…` (`train.sgd.lr`).
//!
//! Guarantees: the result of [`apply`] is in canonical form (`netc fmt`),
//! starts with a header comment naming the changes, and compiles, or an
//! error says which change broke it.

pub mod spec;

use crate::syntax::ast::*;
use crate::syntax::edit::Edits;
use crate::syntax::{self, fmt};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    NoLrn,
    NonOverlappingPool,
    OneTower,
    NoDropout,
    NoAugmentation,
    /// Every ReLU replaced by this layer (stage text, e.g. `tanh`).
    #[serde(skip)]
    Activation(String),
    /// Every LRN layer replaced by this layer (stage text, e.g. `batchnorm`).
    #[serde(skip)]
    Norm(String),
    #[serde(untagged)]
    Set(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::NoLrn => write!(f, "no-lrn"),
            Change::NonOverlappingPool => write!(f, "non-overlapping-pool"),
            Change::OneTower => write!(f, "one-tower"),
            Change::NoDropout => write!(f, "no-dropout"),
            Change::NoAugmentation => write!(f, "no-augmentation"),
            Change::Activation(l) => write!(f, "activation={l}"),
            Change::Norm(l) => write!(f, "lrn={l}"),
            Change::Set(s) => write!(f, "set {s}"),
        }
    }
}

impl std::str::FromStr for Change {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "no-lrn" => Change::NoLrn,
            "non-overlapping-pool" => Change::NonOverlappingPool,
            "one-tower" => Change::OneTower,
            "no-dropout" => Change::NoDropout,
            "no-augmentation" => Change::NoAugmentation,
            other if other.starts_with("activation=") || other.starts_with("lrn=") => {
                let (what, layer) = other.split_once('=').unwrap_or_default();
                let layer = layer.trim();
                let ok = layer
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
                if !ok {
                    return Err(format!("`{other}`: expected a layer, as in `{what}=tanh`"));
                }
                if what == "activation" {
                    Change::Activation(layer.to_string())
                } else {
                    Change::Norm(layer.to_string())
                }
            }
            other if other.contains('=') => {
                Change::Set(other.trim_start_matches("set ").to_string())
            }
            other => return Err(format!("unknown change `{other}`")),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AblateError {
    #[error("the parent does not parse: {0}")]
    Parse(String),
    #[error("`{change}` does not apply: {reason}")]
    NotApplicable { change: String, reason: String },
    #[error("`{change}` gives a network that does not compile:\n{diagnostic}")]
    Broken { change: String, diagnostic: String },
}

fn na(change: &Change, reason: impl Into<String>) -> AblateError {
    AblateError::NotApplicable {
        change: change.to_string(),
        reason: reason.into(),
    }
}

/// What layer type a stage names, following single-layer `let`s.
fn layer_type<'a>(stage: &'a Stage, lets: &'a [&'a Let]) -> Option<&'a str> {
    let mut name = stage.op.name.as_str();
    for _ in 0..16 {
        match lets.iter().find(|l| l.name.name == name) {
            Some(Let {
                value: LetValue::Chain(c),
                ..
            }) if c.stages.len() == 1 => name = &c.stages[0].op.name,
            Some(_) => return None,
            None => return Some(name),
        }
    }
    None
}

fn all_chains(net: &Network) -> Vec<&Chain> {
    let mut v = Vec::new();
    for item in &net.items {
        match item {
            Item::Binding(b) => v.push(&b.chain),
            Item::Towers(t) => v.extend(t.body.iter().map(|b| &b.chain)),
            Item::Let(Let {
                value: LetValue::Chain(c),
                ..
            }) => v.push(c),
            _ => {}
        }
    }
    v
}

fn lets(net: &Network) -> Vec<&Let> {
    net.items
        .iter()
        .filter_map(|i| if let Item::Let(l) = i { Some(l) } else { None })
        .collect()
}

/// Removes every stage of layer type `ty` from every chain, and the `let`
/// lines that only defined such a layer.
fn remove_layers(
    src: &str,
    file: &File,
    ty: &str,
    change: &Change,
    e: &mut Edits,
) -> Result<usize, AblateError> {
    let net = &file.network;
    let ls = lets(net);
    let mut removed = 0;
    for chain in all_chains(net) {
        let is_let_chain = ls
            .iter()
            .any(|l| matches!(&l.value, LetValue::Chain(c) if std::ptr::eq(c, chain)));
        if is_let_chain {
            continue;
        }
        for (k, st) in chain.stages.iter().enumerate() {
            if layer_type(st, &ls) != Some(ty) {
                continue;
            }
            if k == 0 {
                return Err(na(
                    change,
                    format!("`{}` is the first layer of its chain", st.op.name),
                ));
            }
            // Delete from the end of the previous stage through this one.
            e.delete(crate::span::Span::new(
                chain.stages[k - 1].span.end,
                st.span.end,
            ));
            removed += 1;
        }
    }
    for l in ls {
        if let LetValue::Chain(c) = &l.value
            && c.stages.len() == 1
            && layer_type(&c.stages[0], &[]) == Some(ty)
        {
            e.delete(with_comments_above(src, line_of(src, l.span)));
        }
    }
    Ok(removed)
}

/// Replaces every stage of layer type `ty` (written directly, or as the one
/// stage of a `let` configuration, which is rewritten once) by the stage
/// text `with`; the old stage's hyperparameters go with it.
fn replace_layers(net: &Network, ty: &str, with: &str, e: &mut Edits) -> usize {
    let mut n = 0;
    for chain in all_chains(net) {
        for st in &chain.stages {
            if st.op.name == ty {
                e.replace(st.span, with);
                n += 1;
            }
        }
    }
    n
}

/// Extends a line span upwards over the comment lines directly above it
/// (they describe what is being removed).
fn with_comments_above(src: &str, span: crate::span::Span) -> crate::span::Span {
    let mut start = span.start;
    while start > 0 {
        let prev_start = src[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        if src[prev_start..start].trim_start().starts_with("//") {
            start = prev_start;
        } else {
            break;
        }
    }
    crate::span::Span::new(start, span.end)
}

/// The span of the whole line(s) holding `span`, newline included.
fn line_of(src: &str, span: crate::span::Span) -> crate::span::Span {
    let start = src[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = src[span.end..]
        .find('\n')
        .map_or(src.len(), |i| span.end + i + 1);
    crate::span::Span::new(start, end)
}

fn named_arg<'a>(st: &'a Stage, name: &str) -> Option<(&'a Ident, &'a Value)> {
    st.args.iter().flatten().find_map(|a| match a {
        Arg::Named(k, v) if k.name == name => Some((k, v)),
        _ => None,
    })
}

/// Sets hyperparameter `name` of stage `st` to `value` (adds it if absent).
fn set_stage_arg(st: &Stage, name: &str, value: &str, e: &mut Edits) {
    if let Some((_, v)) = named_arg(st, name) {
        e.replace(v.span, value);
        return;
    }
    match &st.args {
        Some(args) if !args.is_empty() => e.insert(st.span.end - 1, format!(", {name}: {value}")),
        Some(_) => e.insert(st.span.end - 1, format!("{name}: {value}")),
        None => e.insert(st.span.end, format!("({name}: {value})")),
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match &v.kind {
        ValueKind::Number(n) => Some(n.value),
        _ => None,
    }
}

fn apply_one(src: &str, change: &Change) -> Result<String, AblateError> {
    let file = syntax::parse(src).map_err(|e| AblateError::Parse(e.to_string()))?;
    let net = &file.network;
    let mut e = Edits::default();
    match change {
        Change::NoLrn => {
            if remove_layers(src, &file, "lrn", change, &mut e)? == 0 {
                return Err(na(change, "the network has no LRN layer"));
            }
        }
        Change::NoDropout => {
            if remove_layers(src, &file, "dropout", change, &mut e)? == 0 {
                return Err(na(change, "the network has no dropout layer"));
            }
        }
        Change::Activation(layer) => {
            if replace_layers(net, "relu", layer, &mut e) == 0 {
                return Err(na(change, "the network has no ReLU"));
            }
        }
        Change::Norm(layer) => {
            if replace_layers(net, "lrn", layer, &mut e) == 0 {
                return Err(na(change, "the network has no LRN layer"));
            }
        }
        Change::NonOverlappingPool => {
            let ls = lets(net);
            let mut n = 0;
            for chain in all_chains(net) {
                for st in &chain.stages {
                    if st.op.name != "maxpool" {
                        continue;
                    }
                    let size = named_arg(st, "size").and_then(|(_, v)| number_of(v));
                    let stride = named_arg(st, "stride")
                        .and_then(|(_, v)| number_of(v))
                        .or(size);
                    if let (Some(z), Some(s)) = (size, stride)
                        && s < z
                    {
                        set_stage_arg(st, "size", "2", &mut e);
                        set_stage_arg(st, "stride", "2", &mut e);
                        n += 1;
                    }
                }
            }
            let _ = ls;
            if n == 0 {
                return Err(na(change, "no max pool overlaps (stride < size)"));
            }
        }
        Change::OneTower => {
            let mut n = 0;
            for item in &net.items {
                if let Item::Towers(t) = item {
                    e.replace(t.count.span(), "1");
                    n += 1;
                }
            }
            if n == 0 {
                return Err(na(change, "the network has no `towers` block"));
            }
        }
        Change::NoAugmentation => {
            for (k, v) in [
                ("random_crop", "false"),
                ("mirror", "false"),
                ("lighting", "0"),
                ("pad", "0"),
            ] {
                set_train(src, &file, &["data", k], v, &mut e);
            }
        }
        Change::Set(assign) => {
            let (path, value) = assign
                .split_once('=')
                .ok_or_else(|| na(change, "expected `PATH=VALUE`"))?;
            let (path, value) = (path.trim(), value.trim());
            let parts: Vec<&str> = path.split('.').collect();
            if parts.first() == Some(&"train") && parts.len() >= 2 {
                set_train(src, &file, &parts[1..], value, &mut e);
            } else if let [layer, param] = parts.as_slice() {
                let mut done = false;
                for item in &net.items {
                    let chains: Vec<(&Ident, &Chain)> = match item {
                        Item::Binding(b) => vec![(&b.name, &b.chain)],
                        Item::Towers(t) => t.body.iter().map(|b| (&b.name, &b.chain)).collect(),
                        Item::Let(Let {
                            name,
                            value: LetValue::Chain(c),
                            ..
                        }) => vec![(name, c)],
                        _ => vec![],
                    };
                    for (name, chain) in chains {
                        if name.name != *layer || done {
                            continue;
                        }
                        let target = chain.stages.iter().find(|st| {
                            crate::lower::layers::schema(&st.op.name)
                                .is_some_and(|s| s.contains(param))
                        });
                        if let Some(st) = target {
                            set_stage_arg(st, param, value, &mut e);
                            done = true;
                        }
                    }
                }
                if !done {
                    return Err(na(
                        change,
                        format!("no layer `{layer}` with a hyperparameter `{param}`"),
                    ));
                }
            } else {
                return Err(na(change, "paths are `LAYER.PARAM` or `train.SECTION.KEY`"));
            }
        }
    }
    Ok(e.apply(src))
}

/// Sets `train.<path>` to `value`, creating the setting (and its blocks)
/// when absent.
fn set_train(src: &str, file: &File, path: &[&str], value: &str, e: &mut Edits) {
    let Some(train) = &file.train else {
        let mut text = format!(
            "\ntrain {{\n  {}",
            path[..path.len() - 1]
                .iter()
                .map(|p| format!("{p} {{ "))
                .collect::<String>()
        );
        text.push_str(&format!(
            "{}: {value}{}\n}}\n",
            path[path.len() - 1],
            " }".repeat(path.len() - 1)
        ));
        e.insert(src.len(), text);
        return;
    };
    let mut block = train;
    for (i, key) in path.iter().enumerate() {
        let last = i == path.len() - 1;
        let found = block
            .settings
            .iter()
            .find(|s| s.key_text() == *key || (last && s.key_text() == path[i..].join(".")));
        match (found, last) {
            (Some(s), true) => {
                match &s.body {
                    SettingBody::Value(v) => e.replace(v.span, value),
                    SettingBody::Block(b) => e.replace(b.span, value),
                }
                return;
            }
            (Some(s), false) => match &s.body {
                SettingBody::Block(b) => block = b,
                SettingBody::Value(v) => {
                    e.replace(
                        v.span,
                        format!("{{ {}: {value} }}", path[i + 1..].join(".")),
                    );
                    return;
                }
            },
            (None, _) => {
                let rest = &path[i..];
                let mut text = String::new();
                for p in &rest[..rest.len() - 1] {
                    text.push_str(&format!("{p} {{ "));
                }
                text.push_str(&format!("{}: {value}", rest[rest.len() - 1]));
                text.push_str(&" }".repeat(rest.len() - 1));
                e.insert(block.close.start, format!("{text}\n"));
                return;
            }
        }
    }
}

/// Applies `changes` in order to the parent source `src` (named `parent`),
/// checks the result compiles, formats it and adds a header comment.
pub fn apply(parent: &str, src: &str, changes: &[Change]) -> Result<String, AblateError> {
    let mut text = src.to_string();
    for c in changes {
        text = apply_one(&text, c)?;
        if let Err(d) = crate::frontend::compile(&text) {
            return Err(AblateError::Broken {
                change: c.to_string(),
                diagnostic: crate::diag::render("variant.net", &text, &[d]),
            });
        }
        let file = syntax::parse(&text).map_err(|e| AblateError::Parse(e.to_string()))?;
        text = fmt::format(&file, &text);
    }
    let list = changes
        .iter()
        .map(Change::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!("// Variant of {parent}: {list}.\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "network n {\n  input image: [1, 8, 8]\n  input label: class(2)\n  let norm = lrn(size: 3, alpha: 1e-4, beta: 0.75, k: 2)\n  c1 = conv(image, filters: 4, size: 3) -> relu -> norm\n  c2 = conv(c1, filters: 4, size: 3) -> relu -> lrn(size: 5) // keep me\n  fc = dense(c2, units: 2)\n  loss = softmax_xent(fc, label)\n}\n";

    #[test]
    fn activation_replaces_every_relu_and_keeps_comments() {
        let c: Change = "activation=tanh".parse().unwrap();
        assert_eq!(c, Change::Activation("tanh".into()));
        assert_eq!(c.to_string(), "activation=tanh");
        let out = apply_one(NET, &c).unwrap();
        assert_eq!(out.matches("-> tanh").count(), 2, "{out}");
        assert!(!out.contains("relu") && out.contains("// keep me"), "{out}");
    }

    #[test]
    fn lrn_replaces_every_lrn_stage_and_configuration_with_its_arguments() {
        let c: Change = "lrn=batchnorm".parse().unwrap();
        assert_eq!(c, Change::Norm("batchnorm".into()));
        let out = apply_one(NET, &c).unwrap();
        assert!(out.contains("let norm = batchnorm\n"), "{out}");
        assert!(out.contains("-> relu -> batchnorm // keep me"), "{out}");
        assert!(!out.contains("lrn") && !out.contains("alpha"), "{out}");
    }

    #[test]
    fn replacing_what_the_network_lacks_or_with_no_layer_is_refused() {
        let none = "network n {\n  input image: [1, 8, 8]\n  input label: class(2)\n  fc = dense(image, units: 2)\n  loss = softmax_xent(fc, label)\n}\n";
        let e = apply_one(none, &"activation=tanh".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("no ReLU"), "{e}");
        let e = apply_one(none, &"lrn=batchnorm".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("no LRN"), "{e}");
        assert!("activation=".parse::<Change>().is_err());
        assert!("lrn=(x)".parse::<Change>().is_err());
        // A `let`'s hyperparameter is still a `set`.
        assert_eq!(
            "norm.alpha=5e-4".parse::<Change>().unwrap(),
            Change::Set("norm.alpha=5e-4".into())
        );
    }
}
