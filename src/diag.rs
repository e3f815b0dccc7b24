//! The one place where errors become text. Each stage's error enum maps to
//! a stable code, a message, labelled spans and one help line; this module
//! renders them with codespan-reporting as
//! `error[N0101]: message` + `file:line:col` + the source line underlined.
//! Codes are stable: tests and users may rely on them.

use codespan_reporting::diagnostic::{Diagnostic, Label, Severity};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

use crate::ir::infer::ShapeError;
use crate::lower::{LowerError, LowerWarning};
use crate::passes::trainable::TrainableError;
use crate::span::Span;
use crate::syntax::SyntaxError;

/// Anything that can be shown as a diagnostic against a source file.
pub trait Diagnose {
    fn diagnostic(&self) -> Diagnostic<()>;
}

fn primary(span: Span, msg: impl std::fmt::Display) -> Label<()> {
    Label::primary((), span.range()).with_message(msg)
}

fn secondary(span: Span, msg: impl std::fmt::Display) -> Label<()> {
    Label::secondary((), span.range()).with_message(msg)
}

fn help(d: Diagnostic<()>, text: impl Into<String>) -> Diagnostic<()> {
    d.with_notes(vec![format!("help: {}", text.into())])
}

impl Diagnose for SyntaxError {
    fn diagnostic(&self) -> Diagnostic<()> {
        match self {
            SyntaxError::Unexpected { span, expected, .. } => help(
                Diagnostic::error()
                    .with_code("N0001")
                    .with_message(self.to_string())
                    .with_labels(vec![primary(*span, format!("expected {expected}"))]),
                "see the language reference in docs/src/language.md",
            ),
            SyntaxError::TooDeep { span } => help(
                Diagnostic::error()
                    .with_code("N0002")
                    .with_message(self.to_string())
                    .with_labels(vec![primary(*span, "too deep")]),
                "a network never needs this much nesting; check for unclosed brackets",
            ),
            SyntaxError::BadNumber { span, .. } => help(
                Diagnostic::error()
                    .with_code("N0003")
                    .with_message(self.to_string())
                    .with_labels(vec![primary(*span, "not a finite number")]),
                "write a number no larger than about 1.8e308",
            ),
        }
    }
}

/// The code of a shape error: N0107, or one of the layer-specific codes.
fn shape_code(s: &ShapeError) -> &'static str {
    match s {
        ShapeError::GroupsChannels { .. } => "N0140",
        ShapeError::DilatedKernelTooLarge { .. } => "N0142",
        ShapeError::AddMismatch { .. } => "N0143",
        ShapeError::NotChannels { .. } => "N0144",
        ShapeError::SoftmaxNotVector { .. } => "N0133",
        ShapeError::PoolNotImage { .. } => "N0134",
        ShapeError::PoolTooLarge { .. } => "N0135",
        _ => "N0107",
    }
}

fn shape_help(s: &ShapeError) -> String {
    match s {
        ShapeError::GroupsChannels { groups, .. } => format!(
            "the input's channels must split into {groups} equal groups; change `groups` or the layer before"
        ),
        ShapeError::DilatedKernelTooLarge { .. } => {
            "use a smaller `dilation` or kernel, or add padding".into()
        }
        ShapeError::AddMismatch { .. } => {
            "`add` sums inputs of one shape; match their filters and sizes, or project one with a 1×1 `conv`".into()
        }
        ShapeError::NotChannels { .. } => {
            "`batchnorm` normalises the channels of an image or the features of a vector".into()
        }
        ShapeError::KernelTooLarge { .. } => {
            "use a smaller kernel, add padding, or remove a pooling layer upstream".into()
        }
        ShapeError::Classes { .. } => {
            "make the last dense layer's `units` equal the number of classes".into()
        }
        ShapeError::NotImage { .. } => {
            "convolution, pooling and LRN need [channels, height, width] inputs".into()
        }
        ShapeError::ConcatMismatch { .. } => {
            "only maps of the same height and width can be concatenated".into()
        }
        ShapeError::Overflow => "these sizes are far too large for any machine".into(),
        ShapeError::SoftmaxNotVector { .. } => {
            "softmax runs over the class axis of a vector: add `flatten` or a `dense` layer before it".into()
        }
        ShapeError::PoolNotImage { .. } => {
            "pooling needs [channels, height, width] maps; pool before `dense` or `flatten`".into()
        }
        ShapeError::PoolTooLarge { .. } => {
            "use a smaller window, add `pad`, or pool less upstream".into()
        }
        _ => "check the layer's input".into(),
    }
}

fn did_you_mean(s: &Option<String>, otherwise: &str) -> String {
    match s {
        Some(x) => format!("did you mean `{x}`?"),
        None => otherwise.to_string(),
    }
}

impl Diagnose for LowerError {
    fn diagnostic(&self) -> Diagnostic<()> {
        use LowerError::*;
        let msg = self.to_string();
        let (code, labels, h): (&str, Vec<Label<()>>, String) = match self {
            UnknownName {
                span, suggestion, ..
            } => (
                "N0101",
                vec![primary(*span, "not defined")],
                did_you_mean(
                    suggestion,
                    "define it with `input`, `let` or `NAME = layer(...)`",
                ),
            ),
            Duplicate { span, first, .. } => (
                "N0102",
                vec![
                    primary(*span, "defined again here"),
                    secondary(*first, "first defined here"),
                ],
                "rename one of them".into(),
            ),
            UnknownOp {
                span, suggestion, ..
            } => (
                "N0103",
                vec![primary(*span, "not a layer type or a `let` layer")],
                did_you_mean(
                    suggestion,
                    "layer types: conv, relu, tanh, sigmoid, leaky_relu, lrn, maxpool, avgpool, global_avgpool, flatten, dense, dropout, concat, add, batchnorm, softmax, softmax_xent",
                ),
            ),
            UnknownParam { span, expected, .. } => (
                "N0104",
                vec![primary(*span, "unknown hyperparameter")],
                if expected.is_empty() {
                    "this layer takes no hyperparameters".into()
                } else {
                    format!("expected one of: {}", expected.join(", "))
                },
            ),
            MissingParam { span, name, .. } => (
                "N0105",
                vec![primary(*span, format!("`{name}` is missing"))],
                format!("add `{name}: …` to the arguments"),
            ),
            InvalidValue { span, reason, .. } => (
                "N0106",
                vec![primary(*span, reason.clone())],
                "change the value to one in range".into(),
            ),
            Shape {
                span,
                source,
                layer,
            } => (
                shape_code(source),
                vec![primary(*span, format!("in `{layer}`"))],
                shape_help(source),
            ),
            Slope { span, .. } => (
                "N0130",
                vec![primary(*span, "not a valid slope")],
                "the slope of the negative part is a finite number ≥ 0 (0.01 by default)".into(),
            ),
            SoftmaxFeeds {
                span,
                softmax,
                into,
            } => (
                if into == "softmax_xent" {
                    "N0132"
                } else {
                    "N0131"
                },
                vec![
                    primary(*span, format!("`{into}` reads probabilities here")),
                    secondary(*softmax, "the softmax"),
                ],
                if into == "softmax_xent" {
                    "`softmax_xent` applies the softmax itself; give it the logits (the layer before `softmax`)".into()
                } else {
                    "`softmax` ends a branch of the network; feed the next layer from the layer before it".into()
                },
            ),
            PoolPad { span, .. } => (
                "N0136",
                vec![primary(*span, "too much padding")],
                "a pooling window may overhang the input by at most half its size: use `pad` ≤ `size`/2".into(),
            ),
            NotDivisible { span, towers, .. } => (
                "N0108",
                vec![primary(*span, format!("not a multiple of {towers}"))],
                format!("inside `towers {towers}` sizes are totals; use a multiple of {towers}"),
            ),
            Cycle { span, path, .. } => (
                "N0109",
                vec![primary(*span, "used here")],
                if path.len() > 1 {
                    format!("the cycle is {}", path.join(" -> "))
                } else {
                    "a layer cannot feed itself".into()
                },
            ),
            Overflow { span } => (
                "N0110",
                vec![primary(*span, "too large")],
                "these sizes are far too large for any machine".into(),
            ),
            Sources { span, .. } => (
                "N0111",
                vec![primary(*span, "wrong number of inputs")],
                "only `concat` and `add` take several inputs (`add` at least two); `softmax_xent` takes logits and labels".into(),
            ),
            NeedsAcross { span, name } => (
                "N0112",
                vec![primary(*span, "defined inside `towers`")],
                format!("write `across({name})` to gather every tower's `{name}`"),
            ),
            AcrossNotTower { span, .. } => (
                "N0113",
                vec![primary(*span, "not a tower layer")],
                "`across` gathers the instances of a layer defined inside `towers`".into(),
            ),
            SourceInLaterStage { span } => (
                "N0114",
                vec![primary(*span, "an input here")],
                "a layer after `->` takes the previous layer's output; start a new binding instead"
                    .into(),
            ),
            NoSource { span, .. } => (
                "N0115",
                vec![primary(*span, "no input")],
                "name the input first, e.g. `conv(image, …)`".into(),
            ),
            NotALayer { span, .. } => (
                "N0116",
                vec![primary(*span, "a number")],
                "only layers and inputs can feed a layer".into(),
            ),
            NotANumber { span, .. } => (
                "N0117",
                vec![primary(*span, "not a number")],
                "sizes take numbers or `let` constants".into(),
            ),
            Towers { span, first } => (
                "N0118",
                vec![
                    primary(*span, "this count"),
                    secondary(*first, "differs from this one"),
                ],
                "use one tower count for the whole network".into(),
            ),
            UnknownSetting { span, expected, .. } => (
                "N0120",
                vec![primary(*span, "unknown setting")],
                format!("expected one of: {}", expected.join(", ")),
            ),
            SettingType { span, expected, .. } => (
                "N0121",
                vec![primary(*span, format!("expected {expected}"))],
                "see the `train` section of the language reference".into(),
            ),
            NoSuchParam { span, .. } => (
                "N0122",
                vec![primary(*span, "no such parameter")],
                "only `conv` and `dense` layers have `weight` and `bias` (and `batchnorm` its `weight` γ and `bias` β); a `conv` with `bias: false` has no bias".into(),
            ),
            GroupsFilters { span, groups, .. } => (
                "N0141",
                vec![primary(*span, "not a divisor of the filters")],
                format!("each of the {groups} groups needs the same number of filters; use a multiple of {groups} for `filters` (per tower inside `towers`)"),
            ),
            BadPair { span, .. } => (
                "N0145",
                vec![primary(*span, "expected a number or `[h, w]`")],
                "write `size: 3` for a square kernel or `size: [3, 5]` for height 3, width 5".into(),
            ),
            NotABool { span, .. } => (
                "N0146",
                vec![primary(*span, "not `true` or `false`")],
                "write `bias: false` to leave out the bias".into(),
            ),
            InitArg { span, reason, .. } => (
                "N0150",
                vec![primary(*span, reason.clone())],
                "`kaiming_*` take `a` ≥ 0, `mode: fan_in | fan_out` and a `nonlinearity`; `xavier_*` a `gain` > 0".into(),
            ),
            FanlessInit { span, .. } => (
                "N0151",
                vec![primary(*span, "on a bias")],
                "give biases a number, `normal`, `uniform` or `pytorch_default`".into(),
            ),
            NesterovMomentum { span } => (
                "N0152",
                vec![primary(*span, "with `momentum: 0`")],
                "give `sgd` a `momentum` in (0, 1), or drop `nesterov`".into(),
            ),
            Multiplier { span, reason, .. } => (
                "N0153",
                vec![primary(*span, reason.clone())],
                "multipliers scale the learning rate (`lr`) and weight decay (`decay`): numbers ≥ 0".into(),
            ),
            MultiplierTarget {
                span,
                suggestion,
                what,
                ..
            } => (
                "N0154",
                vec![primary(*span, *what)],
                did_you_mean(
                    suggestion,
                    "name `weight`, `bias`, a `conv` or `dense` binding, or `BINDING.weight`/`BINDING.bias`",
                ),
            ),
            LabelSmoothing { span, .. } => (
                "N0155",
                vec![primary(*span, "out of range")],
                "ε is the weight moved from the label to the uniform distribution; 0.1 is usual".into(),
            ),
            Warmup { span, reason } => (
                "N0156",
                vec![primary(*span, reason.clone())],
                "the warm-up is in epochs, at least 0 and fewer than `epochs`".into(),
            ),
            MinLr { span, reason } => (
                "N0157",
                vec![primary(*span, reason.clone())],
                "`min_lr` is where the cosine ends: at least 0 and below `sgd.lr`".into(),
            ),
            LayerMult { span, reason, .. } => (
                "N0158",
                vec![primary(*span, reason.clone())],
                "`lr_mult` and `decay_mult` take a number ≥ 0 (every parameter of the layer) or a list `[weight, bias]` of them".into(),
            ),
            LayerMultLength { span, want, .. } => (
                "N0159",
                vec![primary(*span, format!("expected {want}"))],
                "list one multiplier per parameter, the weight's first and the bias's second (a `conv` with `bias: false` has only a weight), or give one number for all".into(),
            ),
            LayerMultNoParams { span, .. } => (
                "N0160",
                vec![primary(*span, "no parameters to scale")],
                "only `conv`, `dense` and `batchnorm` layers take `lr_mult` and `decay_mult`".into(),
            ),
        };
        help(
            Diagnostic::error()
                .with_code(code)
                .with_message(msg)
                .with_labels(labels),
            h,
        )
    }
}

impl Diagnose for TrainableError {
    fn diagnostic(&self) -> Diagnostic<()> {
        use TrainableError::*;
        let (code, labels, h): (&str, Vec<Label<()>>, &str) = match self {
            Unfed { span, fed_span, .. } => (
                "N0123",
                vec![
                    primary(*span, "nothing feeds this"),
                    secondary(*fed_span, "the data feeds this one"),
                ],
                "a network takes one image input and one label input; feed the layers from those",
            ),
            NoInput { span, .. } => (
                "N0123",
                vec![primary(*span, "in this network")],
                "declare `input image: [C, H, W]` and `input label: class(N)`",
            ),
            NoLoss { span } => (
                "N0124",
                vec![primary(*span, "in this network")],
                "end the network with `loss = softmax_xent(logits, label)`",
            ),
            ManyLosses { span, first, .. } => (
                "N0124",
                vec![
                    primary(*span, "a second loss"),
                    secondary(*first, "the first loss"),
                ],
                "keep one `softmax_xent`",
            ),
            Step { span, .. } => (
                "N0125",
                vec![primary(*span, "the step built from this loss")],
                "this network compiles but its training step does not; please report it",
            ),
        };
        help(
            Diagnostic::error()
                .with_code(code)
                .with_message(self.to_string())
                .with_labels(labels),
            h,
        )
    }
}

impl Diagnose for LowerWarning {
    fn diagnostic(&self) -> Diagnostic<()> {
        match self {
            LowerWarning::Unused { span, .. } => help(
                Diagnostic::warning()
                    .with_code("W0001")
                    .with_message(self.to_string())
                    .with_labels(vec![primary(*span, "defined here")]),
                "remove it, or feed it to a layer",
            ),
        }
    }
}

/// Renders diagnostics against `src` as plain text (no colour).
pub fn render(name: &str, src: &str, diags: &[Diagnostic<()>]) -> String {
    let file = SimpleFile::new(name, src);
    let mut out = String::new();
    let config = Config::default();
    for d in diags {
        let mut buf = term::termcolor::NoColor::new(Vec::new());
        if term::emit_to_write_style(&mut buf, &config, &file, d).is_err() {
            out.push_str(&format!("{}: {}\n", name, d.message));
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&buf.into_inner()));
    }
    out
}

pub fn is_error(d: &Diagnostic<()>) -> bool {
    d.severity >= Severity::Error
}
