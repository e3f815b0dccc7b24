//! Lowers the `train { … }` section to a [`TrainConfig`] and the
//! initialisation rules. Every key is checked against the schema below;
//! unknown keys and values of the wrong kind are errors pointing at the
//! setting. Missing keys take the paper's values.
//!
//! ```text
//! batch: 128   epochs: 90   seed: 0
//! sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005, nesterov: false }
//! schedule: fixed | step(every: 30, factor: 0.1) | plateau(factor: 0.1, patience: 1, drops: 3)
//!         | cosine(warmup: 0, min_lr: 0)
//! label_smoothing: 0
//! multipliers { bias { lr: 2, decay: 0 }  fc8 { lr: 10 }  conv1.weight { decay: 0 } }
//! init { weight: normal(0, 0.01)  bias: 0  conv2.bias: 1
//!        conv1.weight: kaiming_uniform(a: 0, mode: fan_in, nonlinearity: relu) }
//! data { rescale: 256  crop: 227  pad: 0  random_crop: true  mirror: true
//!        lighting: 0.1  mean: true  scale: 1  test: center | ten_crop }
//! ```

use super::error::{LowerError, suggest};
use super::layers::Consts;
use crate::ir::train::{Multiplier, Schedule, TestCrop, TrainConfig};
use crate::ir::{FanMode, Init, Nonlinearity, ParamRole};
use crate::span::Span;
use crate::syntax::ast::{Block, CallArg, Setting, SettingBody, Value, ValueKind};

/// How parameters start: defaults for weights and biases, then per-layer
/// overrides (`conv2.bias: 1`) in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct InitRules {
    pub weight: InitRule,
    pub bias: InitRule,
    pub overrides: Vec<InitOverride>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InitOverride {
    pub layer: String,
    pub role: ParamRole,
    pub init: InitRule,
    pub span: Span,
}

/// An initialiser as written: one the IR holds as it is, or
/// `pytorch_default`, which depends on the parameter's role and, for a
/// bias, on its layer's weight ([`InitRule::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub enum InitRule {
    Init(Init),
    /// PyTorch's default of `Conv2d` and `Linear`: weights
    /// `kaiming_uniform(a: √5)` (U(±1/√fan_in)), biases U(±1/√fan_in) with
    /// the fan-in of the layer's weight.
    PytorchDefault,
}

impl InitRule {
    /// The [`Init`] of a parameter of `role`; `weight_fan_in`: the fan-in
    /// of its layer's weight (`in·Πk`), what `pytorch_default` scales a
    /// bias by.
    pub fn resolve(&self, role: ParamRole, weight_fan_in: u64) -> Init {
        match (self, role) {
            (InitRule::Init(i), _) => i.clone(),
            (InitRule::PytorchDefault, ParamRole::Bias) => {
                let bound = 1.0 / (weight_fan_in.max(1) as f64).sqrt();
                Init::Uniform {
                    low: -bound,
                    high: bound,
                }
            }
            (InitRule::PytorchDefault, _) => Init::KaimingUniform {
                a: 5f64.sqrt(),
                mode: FanMode::FanIn,
                nonlinearity: Nonlinearity::LeakyRelu,
            },
        }
    }
}

impl Default for InitRules {
    /// The paper: weights N(0, 0.01), biases 0.
    fn default() -> Self {
        InitRules {
            weight: InitRule::Init(Init::Normal {
                mean: 0.0,
                std: 0.01,
            }),
            bias: InitRule::Init(Init::Constant { value: 0.0 }),
            overrides: Vec::new(),
        }
    }
}

impl InitRules {
    pub fn for_param(&self, layer: &str, role: ParamRole) -> InitRule {
        self.override_for(layer, role)
            .unwrap_or_else(|| match role {
                ParamRole::Weight => self.weight.clone(),
                ParamRole::Bias => self.bias.clone(),
                ParamRole::Velocity | ParamRole::RunningMean => {
                    InitRule::Init(Init::Constant { value: 0.0 })
                }
                ParamRole::RunningVar => InitRule::Init(Init::Constant { value: 1.0 }),
            })
    }

    /// The init a `layer.role` override in `train.init` gives, if any.
    pub fn override_for(&self, layer: &str, role: ParamRole) -> Option<InitRule> {
        self.overrides
            .iter()
            .rev()
            .find(|o| o.layer == layer && o.role == role)
            .map(|o| o.init.clone())
    }
}

struct Cx<'a> {
    consts: &'a Consts,
}

fn unknown(s: &Setting, expected: &[&'static str]) -> LowerError {
    LowerError::UnknownSetting {
        key: s.key_text(),
        span: s.key_span(),
        expected: expected.to_vec(),
    }
}

fn wrong(s: &Setting, span: Span, expected: &'static str) -> LowerError {
    LowerError::SettingType {
        key: s.key_text(),
        span,
        expected,
    }
}

impl Cx<'_> {
    fn value<'v>(&self, s: &'v Setting, expected: &'static str) -> Result<&'v Value, LowerError> {
        match &s.body {
            SettingBody::Value(v) => Ok(v),
            SettingBody::Block(b) => Err(wrong(s, b.span, expected)),
        }
    }

    fn num_of(&self, s: &Setting, v: &Value) -> Result<f64, LowerError> {
        match &v.kind {
            ValueKind::Number(n) => Ok(n.value),
            ValueKind::Ident(id) => match self.consts.get(id) {
                Some(n) => Ok(n.value),
                None => Err(wrong(s, v.span, "a number")),
            },
            _ => Err(wrong(s, v.span, "a number")),
        }
    }

    fn float(
        &self,
        s: &Setting,
        ok: impl Fn(f64) -> bool,
        expected: &'static str,
    ) -> Result<f64, LowerError> {
        let v = self.value(s, expected)?;
        let x = self.num_of(s, v)?;
        if !ok(x) {
            return Err(LowerError::InvalidValue {
                name: s.key_text(),
                span: v.span,
                reason: format!("expected {expected}, got {x}"),
            });
        }
        Ok(x)
    }

    fn int(&self, s: &Setting, min: u64) -> Result<u64, LowerError> {
        let x = self.float(
            s,
            |x| x.fract() == 0.0 && x >= min as f64 && x < 2f64.powi(53),
            if min == 0 {
                "a whole number ≥ 0"
            } else {
                "a whole number ≥ 1"
            },
        )?;
        Ok(x as u64)
    }

    fn boolean(&self, s: &Setting) -> Result<bool, LowerError> {
        let v = self.value(s, "`true` or `false`")?;
        match v.kind {
            ValueKind::Bool(b) => Ok(b),
            _ => Err(wrong(s, v.span, "`true` or `false`")),
        }
    }

    /// Named-or-positional call arguments against a parameter list.
    fn call_args(
        &self,
        s: &Setting,
        args: &[CallArg],
        names: &[&'static str],
        span: Span,
    ) -> Result<Vec<Option<f64>>, LowerError> {
        let mut out = vec![None; names.len()];
        for (i, a) in args.iter().enumerate() {
            let slot = match &a.name {
                Some(n) => names.iter().position(|x| *x == n.name).ok_or_else(|| {
                    LowerError::UnknownParam {
                        op: s.key_text(),
                        name: n.name.clone(),
                        span: n.span,
                        expected: names.to_vec(),
                    }
                })?,
                None if i < names.len() => i,
                None => return Err(wrong(s, a.value.span, "fewer arguments")),
            };
            out[slot] = Some(self.num_of(s, &a.value)?);
        }
        let _ = span;
        Ok(out)
    }

    /// An initialiser of a parameter of `role`: the fan-based ones
    /// (`kaiming_*`, `xavier_*`) need a weight's fans and are refused on a bias.
    fn init(&self, s: &Setting, role: ParamRole) -> Result<InitRule, LowerError> {
        let v = self.value(s, INIT_EXPECTED)?;
        let name = match &v.kind {
            ValueKind::Ident(id) => Some(id.as_str()),
            ValueKind::Call(n, _) => Some(n.name.as_str()),
            _ => None,
        };
        let rule = match name {
            Some("pytorch_default") => match &v.kind {
                ValueKind::Ident(_) => InitRule::PytorchDefault,
                _ => return Err(wrong(s, v.span, "`pytorch_default` without arguments")),
            },
            Some(
                n @ ("kaiming_uniform" | "kaiming_normal" | "xavier_uniform" | "xavier_normal"),
            ) => {
                let args = match &v.kind {
                    ValueKind::Call(_, args) => args.as_slice(),
                    _ => &[],
                };
                InitRule::Init(self.pytorch_init(s, n, args)?)
            }
            _ => InitRule::Init(self.plain_init(s)?),
        };
        if let InitRule::Init(i) = &rule
            && role == ParamRole::Bias
            && i.needs_fans()
        {
            return Err(LowerError::FanlessInit {
                init: name.unwrap_or_default().to_string(),
                span: v.span,
            });
        }
        Ok(rule)
    }

    /// `kaiming_uniform(a, mode, nonlinearity)`, `kaiming_normal(…)`,
    /// `xavier_uniform(gain)`, `xavier_normal(gain)`, with PyTorch's
    /// defaults (`a: 0, mode: fan_in, nonlinearity: leaky_relu`; `gain: 1`).
    fn pytorch_init(&self, s: &Setting, name: &str, args: &[CallArg]) -> Result<Init, LowerError> {
        let kaiming = name.starts_with("kaiming");
        let names: &[&'static str] = if kaiming {
            &["a", "mode", "nonlinearity"]
        } else {
            &["gain"]
        };
        let mut slots: Vec<Option<&Value>> = vec![None; names.len()];
        for (i, a) in args.iter().enumerate() {
            let slot = match &a.name {
                Some(n) => names.iter().position(|x| *x == n.name).ok_or_else(|| {
                    LowerError::UnknownParam {
                        op: name.to_string(),
                        name: n.name.clone(),
                        span: n.span,
                        expected: names.to_vec(),
                    }
                })?,
                None if i < names.len() => i,
                None => return Err(wrong(s, a.value.span, "fewer arguments")),
            };
            slots[slot] = Some(&a.value);
        }
        let bad = |span: Span, reason: String| LowerError::InitArg {
            init: name.to_string(),
            span,
            reason,
        };
        let number = |v: &Value, what: &str| -> Result<f64, LowerError> {
            match &v.kind {
                ValueKind::Number(n) => Ok(n.value),
                ValueKind::Ident(id) if self.consts.get(id).is_some() => self.num_of(s, v),
                _ => Err(bad(v.span, format!("`{what}` takes a number"))),
            }
        };
        if !kaiming {
            let gain = match slots[0] {
                Some(v) => number(v, "gain")?,
                None => 1.0,
            };
            if gain <= 0.0 {
                return Err(bad(
                    slots[0].map_or(s.span, |v| v.span),
                    format!("`gain` must be positive, got {gain}"),
                ));
            }
            return Ok(if name == "xavier_uniform" {
                Init::XavierUniform { gain }
            } else {
                Init::XavierNormal { gain }
            });
        }
        let a = match slots[0] {
            Some(v) => number(v, "a")?,
            None => 0.0,
        };
        if a < 0.0 {
            return Err(bad(
                slots[0].map_or(s.span, |v| v.span),
                format!("`a` (the negative slope) must not be negative, got {a}"),
            ));
        }
        let mode = match slots[1] {
            None => FanMode::FanIn,
            Some(v) => match ident(v) {
                Some("fan_in") => FanMode::FanIn,
                Some("fan_out") => FanMode::FanOut,
                _ => return Err(bad(v.span, "`mode` is `fan_in` or `fan_out`".into())),
            },
        };
        let nonlinearity = match slots[2] {
            None => Nonlinearity::LeakyRelu,
            Some(v) => match ident(v).and_then(|t| Nonlinearity::ALL.iter().find(|(n, _)| *n == t))
            {
                Some((_, nl)) => *nl,
                None => {
                    let all: Vec<&str> = Nonlinearity::ALL.iter().map(|(n, _)| *n).collect();
                    return Err(bad(
                        v.span,
                        format!("`nonlinearity` is one of {}", all.join(", ")),
                    ));
                }
            },
        };
        Ok(if name == "kaiming_uniform" {
            Init::KaimingUniform {
                a,
                mode,
                nonlinearity,
            }
        } else {
            Init::KaimingNormal {
                a,
                mode,
                nonlinearity,
            }
        })
    }

    fn plain_init(&self, s: &Setting) -> Result<Init, LowerError> {
        const EXPECTED: &str = INIT_EXPECTED;
        let v = self.value(s, EXPECTED)?;
        let positive = |x: f64, v: &Value| {
            if x > 0.0 {
                Ok(x)
            } else {
                Err(LowerError::InvalidValue {
                    name: s.key_text(),
                    span: v.span,
                    reason: format!("a standard deviation must be positive, got {x}"),
                })
            }
        };
        match &v.kind {
            ValueKind::Number(_) => Ok(Init::Constant {
                value: self.num_of(s, v)?,
            }),
            ValueKind::Ident(id) if id == "he" => Ok(Init::He),
            ValueKind::Ident(id) if id == "xavier" => Ok(Init::Xavier),
            ValueKind::Ident(id) if self.consts.get(id).is_some() => Ok(Init::Constant {
                value: self.num_of(s, v)?,
            }),
            // An unknown initialiser: say which ones exist.
            ValueKind::Ident(_) => Err(wrong(s, v.span, EXPECTED)),
            ValueKind::Call(name, args) => match name.name.as_str() {
                "normal" => {
                    let a = self.call_args(s, args, &["mean", "std"], v.span)?;
                    let std = a[1].ok_or_else(|| wrong(s, v.span, "`normal(mean, std)`"))?;
                    Ok(Init::Normal {
                        mean: a[0].unwrap_or(0.0),
                        std: positive(std, v)?,
                    })
                }
                "uniform" => {
                    let a = self.call_args(s, args, &["low", "high"], v.span)?;
                    match (a[0], a[1]) {
                        (Some(low), Some(high)) if low < high => Ok(Init::Uniform { low, high }),
                        _ => Err(wrong(s, v.span, "`uniform(low, high)` with low < high")),
                    }
                }
                "constant" => {
                    let a = self.call_args(s, args, &["value"], v.span)?;
                    Ok(Init::Constant {
                        value: a[0].ok_or_else(|| wrong(s, v.span, EXPECTED))?,
                    })
                }
                _ => Err(wrong(s, name.span, EXPECTED)),
            },
            _ => Err(wrong(s, v.span, EXPECTED)),
        }
    }

    fn schedule(&self, s: &Setting) -> Result<Schedule, LowerError> {
        const EXPECTED: &str = "`fixed`, `step(every, factor)`, `plateau(factor, patience, drops)` \
             or `cosine(warmup, min_lr)`";
        let v = self.value(s, EXPECTED)?;
        let factor_ok = |f: f64| f > 0.0 && f <= 1.0;
        let bad_factor = || LowerError::InvalidValue {
            name: s.key_text(),
            span: v.span,
            reason: "the factor must lie in (0, 1]".into(),
        };
        let whole = |x: Option<f64>, d: u64, min: f64| -> Result<u64, LowerError> {
            match x {
                None => Ok(d),
                Some(x) if x.fract() == 0.0 && x >= min && x < 1e9 => Ok(x as u64),
                Some(_) => Err(wrong(s, v.span, "whole numbers for epochs and counts")),
            }
        };
        // A form without arguments may drop its parentheses (`cosine` is
        // `cosine()`), and `fixed()` is `fixed`.
        let (form, args): (&str, &[CallArg]) = match &v.kind {
            ValueKind::Ident(id) => (id.as_str(), &[]),
            ValueKind::Call(n, args) => (n.name.as_str(), args.as_slice()),
            _ => return Err(wrong(s, v.span, EXPECTED)),
        };
        match form {
            "fixed" if args.is_empty() => Ok(Schedule::Fixed),
            "step" => {
                let a = self.call_args(s, args, &["every", "factor"], v.span)?;
                let every = whole(a[0], 30, 1.0)?;
                let factor = a[1].unwrap_or(0.1);
                if !factor_ok(factor) {
                    return Err(bad_factor());
                }
                Ok(Schedule::Step { every, factor })
            }
            "cosine" => {
                let a = self.call_args(s, args, &["warmup", "min_lr"], v.span)?;
                let warmup = a[0].unwrap_or(0.0);
                if warmup < 0.0 {
                    return Err(LowerError::Warmup {
                        span: v.span,
                        reason: format!("the warm-up must not be negative, got {warmup}"),
                    });
                }
                let min_lr = a[1].unwrap_or(0.0);
                if min_lr < 0.0 {
                    return Err(LowerError::MinLr {
                        span: v.span,
                        reason: format!("`min_lr` must not be negative, got {min_lr}"),
                    });
                }
                Ok(Schedule::Cosine { warmup, min_lr })
            }
            "plateau" => {
                let a = self.call_args(s, args, &["factor", "patience", "drops"], v.span)?;
                let factor = a[0].unwrap_or(0.1);
                if !factor_ok(factor) {
                    return Err(bad_factor());
                }
                Ok(Schedule::Plateau {
                    factor,
                    patience: whole(a[1], 1, 0.0)?,
                    drops: whole(a[2], 3, 0.0)?,
                })
            }
            _ => Err(wrong(s, v.span, EXPECTED)),
        }
    }

    /// `multipliers { bias { lr: 2, decay: 0 }  fc8 { lr: 10 }  conv1.weight { lr: 0.5 } }`.
    fn multipliers(&self, s: &Setting) -> Result<Vec<Multiplier>, LowerError> {
        let role_of = |k: &str| match k {
            "weight" => Some(ParamRole::Weight),
            "bias" => Some(ParamRole::Bias),
            _ => None,
        };
        let mut out = Vec::new();
        for rule in &self.block(s)?.settings {
            let (layer, role) = match rule.key.as_slice() {
                [k] => match role_of(&k.name) {
                    Some(r) => (None, Some(r)),
                    None => (Some(k.name.clone()), None),
                },
                [l, k] if role_of(&k.name).is_some() => (Some(l.name.clone()), role_of(&k.name)),
                _ => {
                    return Err(unknown(
                        rule,
                        &["weight", "bias", "LAYER", "LAYER.weight", "LAYER.bias"],
                    ));
                }
            };
            let mut m = Multiplier {
                layer,
                role,
                lr: None,
                decay: None,
                span: rule.key_span(),
            };
            const FIELDS: &[&str] = &["lr", "decay"];
            for f in &self.block(rule)?.settings {
                let field = key1(f, FIELDS)?;
                let v = self.value(f, "a number ≥ 0")?;
                let x = self.num_of(f, v)?;
                if x < 0.0 {
                    return Err(LowerError::Multiplier {
                        key: format!("{}.{}", rule.key_text(), field),
                        span: v.span,
                        reason: format!("a multiplier must not be negative, got {x}"),
                    });
                }
                match field {
                    "lr" => m.lr = Some(x),
                    "decay" => m.decay = Some(x),
                    _ => return Err(unknown(f, FIELDS)),
                }
            }
            out.push(m);
        }
        Ok(out)
    }

    fn block<'b>(&self, s: &'b Setting) -> Result<&'b Block, LowerError> {
        match &s.body {
            SettingBody::Block(b) => Ok(b),
            SettingBody::Value(v) => Err(wrong(s, v.span, "a `{ … }` block")),
        }
    }
}

/// An identifier or string argument (`mode: fan_out`, `mode: "fan_out"`).
fn ident(v: &Value) -> Option<&str> {
    match &v.kind {
        ValueKind::Ident(id) => Some(id.as_str()),
        ValueKind::Str(t) => Some(t.trim_matches('"')),
        _ => None,
    }
}

const INIT_EXPECTED: &str = "a number, `normal(mean, std)`, `uniform(low, high)`, `he`, `xavier`, \
     `kaiming_uniform(…)`, `kaiming_normal(…)`, `xavier_uniform(…)`, `xavier_normal(…)` or `pytorch_default`";

fn key1<'s>(s: &'s Setting, expected: &[&'static str]) -> Result<&'s str, LowerError> {
    match s.key.as_slice() {
        [k] => Ok(k.name.as_str()),
        _ => Err(unknown(s, expected)),
    }
}

pub fn lower_train(
    block: Option<&Block>,
    consts: &Consts,
) -> Result<(TrainConfig, InitRules), LowerError> {
    let mut cfg = TrainConfig::default();
    let mut init = InitRules::default();
    let Some(block) = block else {
        return Ok((cfg, init));
    };
    let cx = Cx { consts };
    const TOP: &[&str] = &[
        "batch",
        "epochs",
        "seed",
        "sgd",
        "schedule",
        "label_smoothing",
        "multipliers",
        "init",
        "data",
    ];
    // Settings checked against each other once the whole section is read.
    let mut nesterov_span = None;
    let mut schedule_span = None;
    for s in &block.settings {
        match key1(s, TOP)? {
            "batch" => cfg.batch = cx.int(s, 1)?,
            "epochs" => cfg.epochs = cx.int(s, 1)?,
            "seed" => cfg.seed = cx.int(s, 0)?,
            "schedule" => {
                cfg.schedule = cx.schedule(s)?;
                schedule_span = Some(cx.value(s, "a schedule")?.span);
            }
            "label_smoothing" => {
                let v = cx.value(s, "a number in [0, 1)")?;
                let x = cx.num_of(s, v)?;
                if !(0.0..1.0).contains(&x) {
                    return Err(LowerError::LabelSmoothing {
                        value: x,
                        span: v.span,
                    });
                }
                cfg.sgd.label_smoothing = x;
            }
            "multipliers" => cfg.sgd.multipliers.extend(cx.multipliers(s)?),
            "sgd" => {
                const SGD: &[&str] = &["lr", "momentum", "weight_decay", "nesterov"];
                for s in &cx.block(s)?.settings {
                    match key1(s, SGD)? {
                        "nesterov" => {
                            cfg.sgd.nesterov = cx.boolean(s)?;
                            nesterov_span = cfg.sgd.nesterov.then_some(s.span);
                        }
                        "lr" => cfg.sgd.lr = cx.float(s, |x| x > 0.0, "a positive number")?,
                        "momentum" => {
                            cfg.sgd.momentum =
                                cx.float(s, |x| (0.0..1.0).contains(&x), "a number in [0, 1)")?
                        }
                        "weight_decay" => {
                            cfg.sgd.weight_decay = cx.float(s, |x| x >= 0.0, "a number ≥ 0")?
                        }
                        _ => return Err(unknown(s, SGD)),
                    }
                }
            }
            "init" => {
                for s in &cx.block(s)?.settings {
                    match s.key.as_slice() {
                        [k] if k.name == "weight" => init.weight = cx.init(s, ParamRole::Weight)?,
                        [k] if k.name == "bias" => init.bias = cx.init(s, ParamRole::Bias)?,
                        [layer, role] if role.name == "weight" || role.name == "bias" => {
                            let role = if role.name == "weight" {
                                ParamRole::Weight
                            } else {
                                ParamRole::Bias
                            };
                            init.overrides.push(InitOverride {
                                layer: layer.name.clone(),
                                role,
                                init: cx.init(s, role)?,
                                span: s.key_span(),
                            })
                        }
                        _ => {
                            return Err(unknown(
                                s,
                                &["weight", "bias", "LAYER.weight", "LAYER.bias"],
                            ));
                        }
                    }
                }
            }
            "data" => {
                const DATA: &[&str] = &[
                    "rescale",
                    "crop",
                    "pad",
                    "random_crop",
                    "mirror",
                    "lighting",
                    "mean",
                    "test",
                ];
                let d = &mut cfg.data;
                for s in &cx.block(s)?.settings {
                    match key1(s, DATA)? {
                        "rescale" => d.rescale = Some(cx.int(s, 1)?),
                        "crop" => d.crop = Some(cx.int(s, 1)?),
                        "pad" => d.pad = cx.int(s, 0)?,
                        "random_crop" => d.random_crop = cx.boolean(s)?,
                        "mirror" => d.mirror = cx.boolean(s)?,
                        "mean" => d.mean = cx.boolean(s)?,
                        "lighting" => d.lighting = cx.float(s, |x| x >= 0.0, "a number ≥ 0")?,
                        "scale" => d.scale = cx.float(s, |x| x > 0.0, "a positive number")?,
                        "test" => {
                            let v = cx.value(s, "`center` or `ten_crop`")?;
                            d.test = match &v.kind {
                                ValueKind::Ident(i) if i == "center" => TestCrop::Center,
                                ValueKind::Ident(i) if i == "ten_crop" => TestCrop::TenCrop,
                                _ => return Err(wrong(s, v.span, "`center` or `ten_crop`")),
                            }
                        }
                        _ => return Err(unknown(s, DATA)),
                    }
                }
            }
            other => {
                let _ = suggest(other, TOP.iter().copied());
                return Err(unknown(s, TOP));
            }
        }
    }
    if let Some(span) = nesterov_span
        && cfg.sgd.momentum == 0.0
    {
        return Err(LowerError::NesterovMomentum { span });
    }
    if let (Schedule::Cosine { warmup, min_lr }, Some(span)) = (&cfg.schedule, schedule_span) {
        if *warmup >= cfg.epochs as f64 {
            return Err(LowerError::Warmup {
                span,
                reason: format!(
                    "a warm-up of {warmup} epochs leaves nothing of the {} to decay over",
                    cfg.epochs
                ),
            });
        }
        if *min_lr >= cfg.sgd.lr {
            return Err(LowerError::MinLr {
                span,
                reason: format!("`min_lr` {min_lr} is not below the base lr {}", cfg.sgd.lr),
            });
        }
    }
    Ok((cfg, init))
}
