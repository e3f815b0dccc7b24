//! Finds `//` comments outside string literals. The grammar skips comments;
//! this scanner recovers them (with spans) so that `netc fmt` and source
//! rewrites keep every comment. Guarantees: the ranges returned by
//! [`code_ranges`] and the comment spans of [`collect`] partition the
//! source, never split a UTF-8 character, and the scan is linear.

use crate::span::Span;

/// Every comment: its span (from `//` to the end of the line, newline
/// excluded) and its text without the leading `//` and trailing spaces.
pub fn collect(src: &str) -> Vec<(Span, String)> {
    scan(src).1
}

/// The byte ranges of `src` that are not inside comments.
pub fn code_ranges(src: &str) -> Vec<(usize, usize)> {
    scan(src).0
}

/// Code ranges and comments.
type Scan = (Vec<(usize, usize)>, Vec<(Span, String)>);

fn scan(src: &str) -> Scan {
    let bytes = src.as_bytes();
    let mut code = Vec::new();
    let mut comments = Vec::new();
    let mut i = 0;
    let mut code_start = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'"' || b == b'\n' {
                in_string = false;
            }
            i += 1;
        } else if b == b'"' {
            in_string = true;
            i += 1;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            code.push((code_start, i));
            let end = src[i..].find('\n').map_or(src.len(), |n| i + n);
            let text = src[i + 2..end].trim_end().to_string();
            comments.push((Span::new(i, end), text));
            i = end;
            code_start = end;
        } else {
            i += 1;
        }
    }
    code.push((code_start, src.len()));
    (code, comments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_comments_but_not_in_strings() {
        let src = "a // one\nb: \"x // y\" // two\n// three";
        let c = collect(src);
        let texts: Vec<_> = c.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, [" one", " two", " three"]);
        assert_eq!(&src[c[0].0.range()], "// one");
    }
}
