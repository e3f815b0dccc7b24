//! Errors and warnings found while lowering an AST to the IR. Each holds
//! spans and data, never rendered text; `diag.rs` renders them.

use crate::ir::infer::ShapeError;
use crate::span::Span;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("unknown name `{name}`")]
    UnknownName {
        name: String,
        span: Span,
        suggestion: Option<String>,
    },
    #[error("`{name}` is defined twice")]
    Duplicate {
        name: String,
        span: Span,
        first: Span,
    },
    #[error("unknown layer type `{name}`")]
    UnknownOp {
        name: String,
        span: Span,
        suggestion: Option<String>,
    },
    #[error("`{op}` has no hyperparameter `{name}`")]
    UnknownParam {
        op: String,
        name: String,
        span: Span,
        expected: Vec<&'static str>,
    },
    #[error("`{op}` needs `{name}`")]
    MissingParam {
        op: String,
        name: &'static str,
        span: Span,
    },
    #[error("invalid `{name}`: {reason}")]
    InvalidValue {
        name: String,
        span: Span,
        reason: String,
    },
    #[error("{source}")]
    Shape {
        span: Span,
        layer: String,
        source: ShapeError,
    },
    #[error("`{name}: {total}` cannot be split evenly over {towers} towers")]
    NotDivisible {
        name: &'static str,
        total: u64,
        towers: u64,
        span: Span,
    },
    #[error("`{name}` depends on itself")]
    Cycle {
        name: String,
        span: Span,
        path: Vec<String>,
    },
    #[error("a size overflows 64 bits")]
    Overflow { span: Span },
    #[error("`{op}` takes {expected} input(s), got {got}")]
    Sources {
        op: String,
        expected: String,
        got: usize,
        span: Span,
    },
    #[error("`{name}` exists once per tower")]
    NeedsAcross { name: String, span: Span },
    #[error("`across({name})` needs a layer defined inside `towers`")]
    AcrossNotTower { name: String, span: Span },
    #[error("only the first layer of a chain names its inputs")]
    SourceInLaterStage { span: Span },
    #[error("the first layer of `{binding}` has no input")]
    NoSource { binding: String, span: Span },
    #[error("`{name}` is a number, not a layer")]
    NotALayer { name: String, span: Span },
    #[error("`{name}` is a layer, not a number")]
    NotANumber { name: String, span: Span },
    #[error("`towers` blocks cannot nest or differ in count")]
    Towers { span: Span, first: Span },
    #[error("unknown setting `{key}`")]
    UnknownSetting {
        key: String,
        span: Span,
        expected: Vec<&'static str>,
    },
    #[error("`{key}` expects {expected}")]
    SettingType {
        key: String,
        span: Span,
        expected: &'static str,
    },
    #[error("`leaky_relu` slope must be finite and at least 0, got {value}")]
    Slope { value: f64, span: Span },
    #[error("`{into}` is fed by `softmax`, whose output is a network output")]
    SoftmaxFeeds {
        into: String,
        span: Span,
        softmax: Span,
    },
    #[error("pooling pad {pad} is more than half the window size {size}")]
    PoolPad { pad: u64, size: u64, span: Span },
    #[error("`{name}` takes one number or two, `[h, w]`; got a list of {got}")]
    BadPair {
        name: &'static str,
        span: Span,
        got: usize,
    },
    #[error("`{name}` takes `true` or `false`")]
    NotABool { name: &'static str, span: Span },
    #[error("{filters} filters do not split into {groups} groups")]
    GroupsFilters {
        groups: u64,
        filters: u64,
        span: Span,
    },
    #[error("`{layer}` has no parameter `{param}`")]
    NoSuchParam {
        layer: String,
        param: String,
        span: Span,
    },
    #[error("invalid argument to `{init}`: {reason}")]
    InitArg {
        init: String,
        span: Span,
        reason: String,
    },
    #[error("`{init}` is scaled by a weight's fans; a bias has none")]
    FanlessInit { init: String, span: Span },
    #[error("`nesterov: true` needs a momentum above 0")]
    NesterovMomentum { span: Span },
    #[error("invalid `{key}`: {reason}")]
    Multiplier {
        key: String,
        span: Span,
        reason: String,
    },
    #[error("`multipliers` names `{name}`, which {what}")]
    MultiplierTarget {
        name: String,
        what: &'static str,
        span: Span,
        suggestion: Option<String>,
    },
    #[error("`label_smoothing` must lie in [0, 1), got {value}")]
    LabelSmoothing { value: f64, span: Span },
    #[error("invalid warm-up: {reason}")]
    Warmup { span: Span, reason: String },
    #[error("invalid `min_lr`: {reason}")]
    MinLr { span: Span, reason: String },
    #[error("invalid `{name}`: {reason}")]
    LayerMult {
        name: &'static str,
        span: Span,
        reason: String,
    },
    #[error("`{name}` lists {got} multipliers, one per parameter, but this `{op}` has {want}")]
    LayerMultLength {
        name: &'static str,
        op: String,
        got: usize,
        want: usize,
        span: Span,
    },
    #[error("`{name}` on `{op}`, which has no parameters")]
    LayerMultNoParams {
        name: String,
        op: String,
        span: Span,
    },
}

impl LowerError {
    pub fn span(&self) -> Span {
        use LowerError::*;
        match self {
            UnknownName { span, .. }
            | Duplicate { span, .. }
            | UnknownOp { span, .. }
            | UnknownParam { span, .. }
            | MissingParam { span, .. }
            | InvalidValue { span, .. }
            | Shape { span, .. }
            | NotDivisible { span, .. }
            | Cycle { span, .. }
            | Overflow { span }
            | Sources { span, .. }
            | NeedsAcross { span, .. }
            | AcrossNotTower { span, .. }
            | SourceInLaterStage { span }
            | NoSource { span, .. }
            | NotALayer { span, .. }
            | NotANumber { span, .. }
            | Towers { span, .. }
            | UnknownSetting { span, .. }
            | SettingType { span, .. }
            | NoSuchParam { span, .. }
            | InitArg { span, .. }
            | FanlessInit { span, .. }
            | NesterovMomentum { span }
            | Multiplier { span, .. }
            | MultiplierTarget { span, .. }
            | LabelSmoothing { span, .. }
            | Warmup { span, .. }
            | MinLr { span, .. }
            | LayerMult { span, .. }
            | LayerMultLength { span, .. }
            | LayerMultNoParams { span, .. }
            | Slope { span, .. }
            | SoftmaxFeeds { span, .. }
            | PoolPad { span, .. }
            | BadPair { span, .. }
            | NotABool { span, .. }
            | GroupsFilters { span, .. } => *span,
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LowerWarning {
    #[error("`{name}` is never used")]
    Unused { name: String, span: Span },
}

impl LowerWarning {
    pub fn span(&self) -> Span {
        match self {
            LowerWarning::Unused { span, .. } => *span,
        }
    }
}

/// The closest of `candidates` to `name` if it is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
