//! Source text -> AST. Assumes nothing about the input: any byte string
//! either parses or yields a [`SyntaxError`] whose span points into it and
//! whose message names what was expected in the language's own words.
//! Guarantees that every AST node's span lies within the source and that
//! parsing never recurses deeper than [`MAX_NESTING`] brackets.

use pest::Parser;
use pest::iterators::Pair;

use super::ast::*;
use super::comments;
use crate::span::Span;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/net.pest"]
struct NetParser;

/// Brackets may nest at most this deep; deeper input is refused before
/// parsing so that no input can exhaust the stack.
pub const MAX_NESTING: usize = 64;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("expected {expected}, found {found}")]
    Unexpected {
        span: Span,
        expected: String,
        found: String,
    },
    #[error("brackets nest deeper than {MAX_NESTING} levels")]
    TooDeep { span: Span },
    #[error("number `{text}` is out of range")]
    BadNumber { span: Span, text: String },
}

impl SyntaxError {
    pub fn span(&self) -> Span {
        match self {
            SyntaxError::Unexpected { span, .. }
            | SyntaxError::TooDeep { span }
            | SyntaxError::BadNumber { span, .. } => *span,
        }
    }
}

/// Parses a whole `.net` file.
pub fn parse(src: &str) -> Result<File, SyntaxError> {
    check_nesting(src)?;
    // Comments become spaces (offsets unchanged), so that no span of the
    // AST ends in a comment that pest's implicit skipping swallowed.
    let mut blank = src.to_string();
    for (s, _) in comments::collect(src) {
        blank.replace_range(s.range(), &" ".repeat(s.end - s.start));
    }
    pest::set_error_detail(true);
    let mut pairs = NetParser::parse(Rule::file, &blank).map_err(|e| convert(src, e))?;
    let file = pairs.next().ok_or_else(|| SyntaxError::Unexpected {
        span: Span::new(0, 0),
        expected: "`network`".into(),
        found: "end of file".into(),
    })?;
    let mut network = None;
    let mut train = None;
    for p in file.into_inner() {
        match p.as_rule() {
            Rule::network => network = Some(build_network(p)?),
            Rule::train => {
                let block = p.into_inner().next().map(build_block).transpose()?;
                train = block;
            }
            _ => {}
        }
    }
    let network = network.ok_or_else(|| SyntaxError::Unexpected {
        span: Span::new(0, 0),
        expected: "`network`".into(),
        found: "end of file".into(),
    })?;
    Ok(File {
        network,
        train,
        comments: comments::collect(src),
    })
}

fn check_nesting(src: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    for (start, end) in comments::code_ranges(src) {
        for (i, c) in src[start..end].char_indices() {
            match c {
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        let at = start + i;
                        return Err(SyntaxError::TooDeep {
                            span: Span::new(at, at + 1),
                        });
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Words the grammar reserves.
const KEYWORDS: &[&str] = &[
    "network", "input", "let", "towers", "across", "train", "class", "true", "false",
];

/// What a user calls each grammar rule.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::file | Rule::network => "`network`",
        Rule::item => "a declaration",
        Rule::input => "`input`",
        Rule::shape => "a shape such as `[3, 227, 227]`",
        Rule::class_type => "`class(N)`",
        Rule::dim => "a size (a number or a `let` name)",
        Rule::let_decl => "`let`",
        Rule::towers => "`towers`",
        Rule::binding => "a layer definition such as `conv1 = conv(...)`",
        Rule::chain => "a layer",
        Rule::stage => "a layer",
        Rule::args => "`(`",
        Rule::arg | Rule::named | Rule::source => "an argument",
        Rule::across => "`across(...)`",
        Rule::train => "`train`",
        Rule::block => "`{`",
        Rule::setting | Rule::key => "a setting such as `batch: 128`",
        Rule::value => "a value",
        Rule::call => "a call such as `normal(0, 0.01)`",
        Rule::call_arg => "an argument",
        Rule::list => "a list",
        Rule::boolean => "`true` or `false`",
        Rule::string => "a string",
        Rule::number => "a number",
        Rule::keyword => "a keyword",
        Rule::ident => "a name",
        Rule::EOI => "end of file",
        Rule::WHITESPACE | Rule::COMMENT | Rule::ident_char => "a character",
    }
}

fn convert(src: &str, e: pest::error::Error<Rule>) -> SyntaxError {
    use pest::error::{ErrorVariant, InputLocation};
    let mut pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let rule_pos = pos;
    let mut words: Vec<String> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().map(|r| describe(*r).to_string()).collect()
        }
        ErrorVariant::CustomError { message } => vec![message.clone()],
    };
    // With error detail on, pest also knows the farthest position it
    // reached and the literal tokens it wanted there: far more precise.
    if let Some(at) = e.parse_attempts()
        && at.max_position >= pos
    {
        let w: Vec<String> = at
            .expected_tokens()
            .iter()
            .map(|t| t.to_string())
            // Punctuation and keywords; character classes (`0..9`)
            // and whitespace say nothing a user wants to read.
            .filter(|t| {
                !t.trim().is_empty()
                    && t != "//"
                    && t != "BUILTIN_RULE"
                    && !(t.chars().count() == 4 && t.contains(".."))
            })
            .map(|t| match t.as_str() {
                // The first characters of names, numbers and strings.
                "_" => "a name".to_string(),
                "-" => "a number".to_string(),
                "\"" => "a string".to_string(),
                _ => format!("`{t}`"),
            })
            .collect();
        if !w.is_empty() {
            pos = at.max_position;
            words = w;
        }
    }
    words.sort_unstable();
    words.dedup();
    let value_words = ["a name", "a number", "a string", "`[`", "`true`", "`false`"];
    if value_words.iter().all(|w| words.iter().any(|x| x == w)) {
        words.retain(|w| !value_words.contains(&w.as_str()));
        words.push("a value".into());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let expected = join_or(&words);
    // A keyword where a name belongs (`towers = conv(...)`).
    let (word, word_end) = token_at(src, rule_pos);
    let bare = word.trim_matches('`');
    if KEYWORDS.contains(&bare) && pos <= word_end {
        return SyntaxError::Unexpected {
            span: Span::new(rule_pos, word_end),
            expected: "a name".into(),
            found: format!("the keyword {word}"),
        };
    }
    let (found, end) = token_at(src, pos);
    SyntaxError::Unexpected {
        span: Span::new(pos, end),
        expected: if expected.is_empty() {
            "something else".into()
        } else {
            expected
        },
        found,
    }
}

fn join_or(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Describes the text at `pos` for "found ..." and returns where it ends.
fn token_at(src: &str, pos: usize) -> (String, usize) {
    let rest = src.get(pos..).unwrap_or("");
    let Some(c) = rest.chars().next() else {
        return ("end of file".into(), pos);
    };
    if c.is_alphanumeric() || c == '_' {
        let len: usize = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .map(char::len_utf8)
            .sum();
        (format!("`{}`", &rest[..len]), pos + len)
    } else if c == '\n' {
        ("end of line".into(), pos + 1)
    } else {
        (format!("`{}`", c.escape_debug()), pos + c.len_utf8())
    }
}

/// The span of a pair without the whitespace pest's implicit skipping may
/// have appended.
fn span(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.start() + p.as_str().trim_end().len())
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span(&p),
    }
}

fn number(p: Pair<Rule>) -> Result<Number, SyntaxError> {
    let text = p.as_str().to_string();
    let value: f64 = text
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| SyntaxError::BadNumber {
            span: span(&p),
            text: text.clone(),
        })?;
    Ok(Number {
        text,
        value,
        span: span(&p),
    })
}

/// The closing-brace span of a braced rule (its last character).
fn close_of(p: &Pair<Rule>) -> Span {
    let s = span(p);
    Span::new(s.end.saturating_sub(1), s.end)
}

fn build_network(p: Pair<Rule>) -> Result<Network, SyntaxError> {
    let sp = span(&p);
    let close = close_of(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: network name"));
    let mut items = Vec::new();
    for it in inner {
        items.push(match it.as_rule() {
            Rule::input => Item::Input(build_input(it)?),
            Rule::let_decl => Item::Let(build_let(it)?),
            Rule::towers => Item::Towers(build_towers(it)?),
            Rule::binding => Item::Binding(build_binding(it)?),
            r => unreachable!("grammar: network item {r:?}"),
        });
    }
    Ok(Network {
        name,
        items,
        span: sp,
        close,
    })
}

fn build_input(p: Pair<Rule>) -> Result<Input, SyntaxError> {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: input name"));
    let ty = inner.next().expect("grammar: input type");
    let ty = match ty.as_rule() {
        Rule::shape => InputType::Tensor(ty.into_inner().map(build_dim).collect::<Result<_, _>>()?),
        Rule::class_type => InputType::Class(build_dim(
            ty.into_inner().next().expect("grammar: class dim"),
        )?),
        r => unreachable!("grammar: input type {r:?}"),
    };
    Ok(Input { name, ty, span: sp })
}

fn build_dim(p: Pair<Rule>) -> Result<Dim, SyntaxError> {
    let d = p.into_inner().next().expect("grammar: dim");
    Ok(match d.as_rule() {
        Rule::number => Dim::Number(number(d)?),
        _ => Dim::Name(ident(d)),
    })
}

fn build_let(p: Pair<Rule>) -> Result<Let, SyntaxError> {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: let name"));
    let v = inner.next().expect("grammar: let value");
    let value = match v.as_rule() {
        Rule::number => LetValue::Number(number(v)?),
        _ => LetValue::Chain(build_chain(v)?),
    };
    Ok(Let {
        name,
        value,
        span: sp,
    })
}

fn build_towers(p: Pair<Rule>) -> Result<Towers, SyntaxError> {
    let sp = span(&p);
    let close = close_of(&p);
    let mut inner = p.into_inner();
    let count = build_dim(inner.next().expect("grammar: tower count"))?;
    let body = inner.map(build_binding).collect::<Result<_, _>>()?;
    Ok(Towers {
        count,
        body,
        span: sp,
        close,
    })
}

fn build_binding(p: Pair<Rule>) -> Result<Binding, SyntaxError> {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: binding name"));
    let chain = build_chain(inner.next().expect("grammar: binding chain"))?;
    Ok(Binding {
        name,
        chain,
        span: sp,
    })
}

fn build_chain(p: Pair<Rule>) -> Result<Chain, SyntaxError> {
    let sp = span(&p);
    let stages = p.into_inner().map(build_stage).collect::<Result<_, _>>()?;
    Ok(Chain { stages, span: sp })
}

fn build_stage(p: Pair<Rule>) -> Result<Stage, SyntaxError> {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let op = ident(inner.next().expect("grammar: stage op"));
    let args = match inner.next() {
        None => None,
        Some(a) => Some(a.into_inner().map(build_arg).collect::<Result<_, _>>()?),
    };
    Ok(Stage { op, args, span: sp })
}

fn build_arg(p: Pair<Rule>) -> Result<Arg, SyntaxError> {
    Ok(match p.as_rule() {
        Rule::named => {
            let mut inner = p.into_inner();
            let name = ident(inner.next().expect("grammar: arg name"));
            Arg::Named(
                name,
                build_value(inner.next().expect("grammar: arg value"))?,
            )
        }
        Rule::source => {
            let s = p.into_inner().next().expect("grammar: source");
            match s.as_rule() {
                Rule::across => {
                    let sp = span(&s);
                    Arg::Source(Source::Across(
                        ident(s.into_inner().next().expect("grammar: across")),
                        sp,
                    ))
                }
                _ => Arg::Source(Source::Local(ident(s))),
            }
        }
        r => unreachable!("grammar: arg {r:?}"),
    })
}

fn build_value(p: Pair<Rule>) -> Result<Value, SyntaxError> {
    let sp = span(&p);
    let v = p.into_inner().next().expect("grammar: value");
    let kind = match v.as_rule() {
        Rule::number => ValueKind::Number(number(v)?),
        Rule::boolean => ValueKind::Bool(v.as_str() == "true"),
        Rule::string => {
            let s = v.as_str();
            ValueKind::Str(s[1..s.len() - 1].to_string())
        }
        Rule::ident => ValueKind::Ident(v.as_str().to_string()),
        Rule::list => ValueKind::List(v.into_inner().map(build_value).collect::<Result<_, _>>()?),
        Rule::call => {
            let mut inner = v.into_inner();
            let name = ident(inner.next().expect("grammar: call name"));
            let mut args = Vec::new();
            for a in inner {
                let mut parts: Vec<Pair<Rule>> = a.into_inner().collect();
                let value = build_value(parts.pop().expect("grammar: call arg value"))?;
                let name = parts.pop().map(ident);
                args.push(CallArg { name, value });
            }
            ValueKind::Call(name, args)
        }
        r => unreachable!("grammar: value {r:?}"),
    };
    Ok(Value { kind, span: sp })
}

fn build_block(p: Pair<Rule>) -> Result<Block, SyntaxError> {
    let sp = span(&p);
    let close = close_of(&p);
    let settings = p
        .into_inner()
        .map(build_setting)
        .collect::<Result<_, _>>()?;
    Ok(Block {
        settings,
        span: sp,
        close,
    })
}

fn build_setting(p: Pair<Rule>) -> Result<Setting, SyntaxError> {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let key = inner
        .next()
        .expect("grammar: setting key")
        .into_inner()
        .map(ident)
        .collect();
    let b = inner.next().expect("grammar: setting body");
    let body = match b.as_rule() {
        Rule::block => SettingBody::Block(build_block(b)?),
        _ => SettingBody::Value(build_value(b)?),
    };
    Ok(Setting {
        key,
        body,
        span: sp,
    })
}
