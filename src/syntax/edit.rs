//! Text edits on source: replace byte ranges, applied back to front so the
//! spans of the AST they were computed from stay valid. Untouched text,
//! comments and layout included, is kept byte for byte.

use crate::span::Span;

#[derive(Clone, Debug, Default)]
pub struct Edits {
    edits: Vec<(Span, String)>,
}

impl Edits {
    pub fn replace(&mut self, span: Span, text: impl Into<String>) {
        self.edits.push((span, text.into()));
    }

    pub fn delete(&mut self, span: Span) {
        self.replace(span, "");
    }

    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.replace(Span::new(at, at), text);
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Applies the edits; overlapping edits keep the first one recorded.
    pub fn apply(mut self, src: &str) -> String {
        self.edits.sort_by_key(|(s, _)| (s.start, s.end));
        let mut kept: Vec<(Span, String)> = Vec::new();
        for (s, t) in self.edits {
            if kept.last().is_some_and(|(p, _)| s.start < p.end) {
                continue;
            }
            kept.push((s, t));
        }
        let mut out = src.to_string();
        for (s, t) in kept.into_iter().rev() {
            if s.end <= out.len() && out.is_char_boundary(s.start) && out.is_char_boundary(s.end) {
                out.replace_range(s.range(), &t);
            }
        }
        out
    }
}
