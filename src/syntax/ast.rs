//! The abstract syntax tree of a `.net` file. Every node keeps the span it
//! was parsed from. Numbers keep their source text so that `netc fmt`
//! rewrites `1e-4` as `1e-4`. The AST is what the parser guarantees
//! (grammatical structure); names, types and shapes are checked later.

use crate::span::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub network: Network,
    pub train: Option<Block>,
    /// Every `//` comment with the span of its text (including the slashes).
    pub comments: Vec<(Span, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: Ident,
    pub items: Vec<Item>,
    pub span: Span,
    /// Span of the closing brace, so trailing comments can be placed.
    pub close: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Input(Input),
    Let(Let),
    Towers(Towers),
    Binding(Binding),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Input(i) => i.span,
            Item::Let(l) => l.span,
            Item::Towers(t) => t.span,
            Item::Binding(b) => b.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: Ident,
    pub ty: InputType,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputType {
    /// `[3, 227, 227]`: channels, height, width (or any rank).
    Tensor(Vec<Dim>),
    /// `class(1000)`: one integer label per example.
    Class(Dim),
}

/// A size written as a number or as the name of a `let` constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Number(Number),
    Name(Ident),
}

impl Dim {
    pub fn span(&self) -> Span {
        match self {
            Dim::Number(n) => n.span,
            Dim::Name(i) => i.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Number {
    pub text: String,
    pub value: f64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: LetValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LetValue {
    Number(Number),
    Chain(Chain),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Towers {
    pub count: Dim,
    pub body: Vec<Binding>,
    pub span: Span,
    pub close: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub name: Ident,
    pub chain: Chain,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub stages: Vec<Stage>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The layer type (`conv`) or the name of a `let`-bound configuration.
    pub op: Ident,
    /// `None` for a bare name (`relu`); `Some(vec![])` for `relu()`.
    pub args: Option<Vec<Arg>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Source(Source),
    Named(Ident, Value),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A layer or input by name; inside a tower, that tower's instance.
    Local(Ident),
    /// `across(x)`: every tower's instance of `x`, concatenated along
    /// channels. These are the cross-tower edges.
    Across(Ident, Span),
}

impl Source {
    pub fn ident(&self) -> &Ident {
        match self {
            Source::Local(i) | Source::Across(i, _) => i,
        }
    }
    pub fn span(&self) -> Span {
        match self {
            Source::Local(i) => i.span,
            Source::Across(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Number(Number),
    Bool(bool),
    Str(String),
    Ident(String),
    Call(Ident, Vec<CallArg>),
    List(Vec<Value>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CallArg {
    pub name: Option<Ident>,
    pub value: Value,
}

/// `{ key: value  key { ... } }` in the training section.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub settings: Vec<Setting>,
    pub span: Span,
    pub close: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// Dotted key, e.g. `conv2.bias` is `[conv2, bias]`.
    pub key: Vec<Ident>,
    pub body: SettingBody,
    pub span: Span,
}

impl Setting {
    pub fn key_text(&self) -> String {
        self.key
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
    pub fn key_span(&self) -> Span {
        match (self.key.first(), self.key.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SettingBody {
    Value(Value),
    Block(Block),
}
