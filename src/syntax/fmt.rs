//! AST -> canonical source text (`netc fmt`). Two-space indents, one
//! declaration per line, `name: value` arguments separated by `, `, numbers
//! as written, at most one blank line where the source had one or more.
//! Every comment survives: comments before or inside a declaration are
//! placed on their own lines before it, a comment after a declaration on
//! the same line stays there. Guarantees: `parse(format(x))` yields the same
//! IR as `x`, and `format` is idempotent.

use std::collections::VecDeque;

use super::ast::*;
use crate::span::Span;

/// A `{ … }` block of settings goes on one line when it has only values,
/// no comments, and fits in this many characters.
const INLINE_BLOCK: usize = 72;

pub fn format(file: &File, src: &str) -> String {
    let mut p = Printer {
        src,
        comments: file.comments.iter().cloned().collect(),
        out: String::new(),
        indent: 0,
    };
    let net = &file.network;
    p.leading(Span::new(net.span.start, net.span.start), false);
    p.line(&format!("network {} {{", net.name.name));
    p.indent += 1;
    let mut prev_end = None;
    for item in &net.items {
        p.item(item, prev_end);
        prev_end = Some(item.span().end);
    }
    p.close(net.close);
    if let Some(t) = &file.train {
        p.out.push('\n');
        p.leading(Span::new(t.span.start, t.span.start), false);
        p.block_multiline("train", t);
    }
    p.rest();
    p.out
}

struct Printer<'a> {
    src: &'a str,
    comments: VecDeque<(Span, String)>,
    out: String,
    indent: usize,
}

impl Printer<'_> {
    fn pad(&self) -> String {
        "  ".repeat(self.indent)
    }

    fn line(&mut self, s: &str) {
        let pad = self.pad();
        self.out.push_str(&pad);
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn comment_line(&mut self, text: &str) {
        let pad = self.pad();
        self.out.push_str(&format!("{pad}//{text}\n"));
    }

    /// Emits the comments that start before `span.end` (before or inside
    /// the construct) on their own lines, keeping one blank line where the
    /// source had blank lines between comments.
    fn leading(&mut self, span: Span, blank_before: bool) {
        let mut first = true;
        let mut last_end: Option<usize> = None;
        while let Some((s, _)) = self.comments.front() {
            if s.start >= span.end {
                break;
            }
            let (s, text) = self.comments.pop_front().unwrap_or_default();
            let gap = last_end.map_or(blank_before && first, |e| self.blank_between(e, s.start));
            if gap && !self.out.ends_with("{\n") && !self.out.is_empty() {
                self.out.push('\n');
            }
            self.comment_line(&text);
            first = false;
            last_end = Some(s.end);
        }
        if let Some(e) = last_end
            && self.blank_between(e, span.start)
            && span.start > e
        {
            self.out.push('\n');
        }
    }

    fn blank_between(&self, a: usize, b: usize) -> bool {
        self.src
            .get(a.min(b)..b)
            .is_some_and(|g| g.matches('\n').count() >= 2)
    }

    /// A comment on the same line right after `end`, if any.
    fn trailing(&mut self, end: usize) -> String {
        if let Some((s, _)) = self.comments.front() {
            let gap = self.src.get(end..s.start).unwrap_or("\n");
            if s.start >= end && !gap.contains('\n') {
                let (_, text) = self.comments.pop_front().unwrap_or_default();
                return format!(" //{text}");
            }
        }
        String::new()
    }

    fn close(&mut self, close: Span) {
        // Comments before the closing brace stay inside the block.
        self.leading(Span::new(close.start, close.start), false);
        self.indent = self.indent.saturating_sub(1);
        let t = self.trailing(close.end);
        self.line(&format!("}}{t}"));
    }

    fn rest(&mut self) {
        let mut last_end = None;
        while let Some((s, text)) = self.comments.pop_front() {
            let gap = last_end.is_none_or(|e| self.blank_between(e, s.start));
            if gap {
                self.out.push('\n');
            }
            self.comment_line(&text);
            last_end = Some(s.end);
        }
    }

    fn item(&mut self, item: &Item, prev_end: Option<usize>) {
        let span = item.span();
        let start = self
            .comments
            .front()
            .map_or(span.start, |(s, _)| s.start.min(span.start));
        if prev_end.is_some_and(|e| self.blank_between(e, start)) {
            self.out.push('\n');
        }
        self.leading(Span::new(span.start, span.start), false);
        match item {
            Item::Input(i) => {
                let ty = match &i.ty {
                    InputType::Tensor(d) => {
                        format!("[{}]", d.iter().map(dim).collect::<Vec<_>>().join(", "))
                    }
                    InputType::Class(d) => format!("class({})", dim(d)),
                };
                self.inner_comments(span);
                let t = self.trailing(span.end);
                self.line(&format!("input {}: {ty}{t}", i.name.name));
            }
            Item::Let(l) => {
                let v = match &l.value {
                    LetValue::Number(n) => n.text.clone(),
                    LetValue::Chain(c) => chain(c),
                };
                self.inner_comments(span);
                let t = self.trailing(span.end);
                self.line(&format!("let {} = {v}{t}", l.name.name));
            }
            Item::Binding(b) => self.binding(b),
            Item::Towers(tw) => {
                self.inner_comments(Span::new(span.start, tw.count.span().end));
                let t = self.trailing(tw.count.span().end);
                self.line(&format!("towers {} {{{t}", dim(&tw.count)));
                self.indent += 1;
                let mut prev = None;
                for b in &tw.body {
                    let start = self
                        .comments
                        .front()
                        .map_or(b.span.start, |(s, _)| s.start.min(b.span.start));
                    if prev.is_some_and(|e| self.blank_between(e, start)) {
                        self.out.push('\n');
                    }
                    self.leading(Span::new(b.span.start, b.span.start), false);
                    self.binding(b);
                    prev = Some(b.span.end);
                }
                self.close(tw.close);
            }
        }
    }

    /// Comments inside a construct's span move above it.
    fn inner_comments(&mut self, span: Span) {
        while let Some((s, _)) = self.comments.front() {
            if s.start >= span.end || s.start < span.start {
                break;
            }
            let (_, text) = self.comments.pop_front().unwrap_or_default();
            self.comment_line(&text);
        }
    }

    fn binding(&mut self, b: &Binding) {
        self.inner_comments(b.span);
        let t = self.trailing(b.span.end);
        self.line(&format!("{} = {}{t}", b.name.name, chain(&b.chain)));
    }

    fn block_multiline(&mut self, head: &str, b: &Block) {
        self.inner_comments(Span::new(b.span.start, b.span.start + 1));
        let t = self.trailing(b.span.start + 1);
        self.line(&format!("{head} {{{t}"));
        self.indent += 1;
        let mut prev = None;
        for s in &b.settings {
            let start = self
                .comments
                .front()
                .map_or(s.span.start, |(c, _)| c.start.min(s.span.start));
            if prev.is_some_and(|e| self.blank_between(e, start)) {
                self.out.push('\n');
            }
            self.leading(Span::new(s.span.start, s.span.start), false);
            self.setting(s);
            prev = Some(s.span.end);
        }
        self.close(b.close);
    }

    fn setting(&mut self, s: &Setting) {
        let key = s.key_text();
        match &s.body {
            SettingBody::Value(v) => {
                self.inner_comments(s.span);
                let t = self.trailing(s.span.end);
                self.line(&format!("{key}: {}{t}", value(v)));
            }
            SettingBody::Block(b) => {
                let has_comments = self
                    .comments
                    .front()
                    .is_some_and(|(c, _)| c.start < b.span.end);
                let simple = b
                    .settings
                    .iter()
                    .all(|s| matches!(s.body, SettingBody::Value(_)));
                let inline = format!(
                    "{key} {{ {} }}",
                    b.settings
                        .iter()
                        .map(|s| match &s.body {
                            SettingBody::Value(v) => format!("{}: {}", s.key_text(), value(v)),
                            SettingBody::Block(_) => String::new(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if simple
                    && !has_comments
                    && !b.settings.is_empty()
                    && inline.len() + 2 * self.indent <= INLINE_BLOCK
                {
                    let t = self.trailing(s.span.end);
                    self.line(&format!("{inline}{t}"));
                } else {
                    self.block_multiline(&key, b);
                }
            }
        }
    }
}

fn dim(d: &Dim) -> String {
    match d {
        Dim::Number(n) => n.text.clone(),
        Dim::Name(i) => i.name.clone(),
    }
}

pub fn chain(c: &Chain) -> String {
    c.stages.iter().map(stage).collect::<Vec<_>>().join(" -> ")
}

pub fn stage(s: &Stage) -> String {
    match &s.args {
        None => s.op.name.clone(),
        Some(args) => format!(
            "{}({})",
            s.op.name,
            args.iter().map(arg).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn arg(a: &Arg) -> String {
    match a {
        Arg::Source(Source::Local(i)) => i.name.clone(),
        Arg::Source(Source::Across(i, _)) => format!("across({})", i.name),
        Arg::Named(k, v) => format!("{}: {}", k.name, value(v)),
    }
}

pub fn value(v: &Value) -> String {
    match &v.kind {
        ValueKind::Number(n) => n.text.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Str(s) => format!("\"{s}\""),
        ValueKind::Ident(i) => i.clone(),
        ValueKind::List(items) => format!(
            "[{}]",
            items.iter().map(value).collect::<Vec<_>>().join(", ")
        ),
        ValueKind::Call(n, args) => format!(
            "{}({})",
            n.name,
            args.iter()
                .map(|a| match &a.name {
                    Some(k) => format!("{}: {}", k.name, value(&a.value)),
                    None => value(&a.value),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
