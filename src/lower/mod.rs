//! AST -> IR. Resolves names, expands `let` configurations, instantiates
//! every layer of a `towers N` block once per tower (each with its share of
//! `filters`/`units`), turns `across(x)` into an explicit `concat` whose
//! inputs from other towers are cross-tower edges, adds parameter nodes
//! with their initialisation, and infers every type. Layers outside a
//! `towers` block run on tower 0. Bindings may appear in any order;
//! dependency cycles are errors. Guarantees: the returned graph passes
//! `ir::verify`; every node's span points at the source it came from.

pub mod error;
pub mod layers;
pub mod train;

use std::collections::{HashMap, HashSet};

use error::suggest;
pub use error::{LowerError, LowerWarning};
use layers::Consts;

use crate::ir::train::TrainConfig;
use crate::ir::{Device, Graph, InputKind, Node, NodeId, Op, ParamRole, Ty, infer};
use crate::span::Span;
use crate::syntax::ast::*;

/// At most this many towers; more is surely a mistake and would only
/// multiply the graph.
pub const MAX_TOWERS: u64 = 64;

/// The result of lowering a file.
#[derive(Clone, Debug)]
pub struct Module {
    pub graph: Graph,
    pub train: TrainConfig,
    pub warnings: Vec<LowerWarning>,
}

enum Sym<'a> {
    Input,
    Const(&'a Number),
    Config(&'a Let, &'a Chain),
    Binding(usize),
}

struct Bind<'a> {
    b: &'a Binding,
    towered: bool,
}

/// One layer after `let` expansion.
struct Flat<'a> {
    op: Ident,
    named: Vec<(Ident, Value)>,
    sources: Vec<&'a Source>,
    span: Span,
}

struct Lowerer<'a> {
    syms: HashMap<&'a str, (Sym<'a>, Span)>,
    binds: Vec<Bind<'a>>,
    consts: Consts,
    towers: u64,
    graph: Graph,
    inputs: HashMap<&'a str, NodeId>,
    outputs: HashMap<(usize, u32), NodeId>,
    used: HashSet<String>,
    params: HashMap<String, Vec<(ParamRole, NodeId)>>,
    /// γ and β of batchnorms: their init is theirs unless overridden by layer.
    bn_params: HashSet<NodeId>,
    /// The layers' `lr_mult`/`decay_mult` arguments, per parameter.
    param_mults: Vec<crate::ir::train::ParamMultiplier>,
}

pub fn lower(file: &File) -> Result<Module, LowerError> {
    let net = &file.network;
    let mut lw = Lowerer {
        syms: HashMap::new(),
        binds: Vec::new(),
        consts: Consts::new(),
        towers: 1,
        graph: Graph::new(net.name.name.clone(), 1),
        inputs: HashMap::new(),
        outputs: HashMap::new(),
        used: HashSet::new(),
        params: HashMap::new(),
        bn_params: HashSet::new(),
        param_mults: Vec::new(),
    };
    lw.declare(net)?;
    let (mut train, init) = train::lower_train(file.train.as_ref(), &lw.consts)?;
    if let Some(b) = &file.train {
        mark_block(b, &mut lw.used);
    }
    let order = lw.order()?;
    for i in order {
        lw.lower_binding(i)?;
    }
    // Initialisation: check every override names a real parameter.
    for o in &init.overrides {
        let Some(ps) = lw.params.get(&o.layer) else {
            if let Some((Sym::Binding(_), _)) = lw.syms.get(o.layer.as_str()) {
                return Err(LowerError::NoSuchParam {
                    layer: o.layer.clone(),
                    param: format!("{:?}", o.role).to_lowercase(),
                    span: o.span,
                });
            }
            return Err(LowerError::UnknownName {
                name: o.layer.clone(),
                span: o.span,
                suggestion: suggest(&o.layer, lw.params.keys().map(String::as_str)),
            });
        };
        if !ps.iter().any(|(r, _)| *r == o.role) {
            return Err(LowerError::NoSuchParam {
                layer: o.layer.clone(),
                param: format!("{:?}", o.role).to_lowercase(),
                span: o.span,
            });
        }
    }
    // Multipliers: every rule must name parameters that exist.
    for m in &train.sgd.multipliers {
        let role_name = |r: ParamRole| format!("{r:?}").to_lowercase();
        let found = match (&m.layer, m.role) {
            (None, _) => true,
            (Some(l), role) => lw
                .params
                .get(l)
                .is_some_and(|ps| role.is_none_or(|r| ps.iter().any(|(pr, _)| *pr == r))),
        };
        if !found {
            let layer = m.layer.clone().unwrap_or_default();
            let known = lw.params.contains_key(&layer);
            return Err(LowerError::MultiplierTarget {
                suggestion: if known {
                    None
                } else {
                    suggest(&layer, lw.params.keys().map(String::as_str))
                },
                what: match (known, m.role.is_some()) {
                    (true, _) => "the layer does not have",
                    (false, _) if lw.syms.contains_key(layer.as_str()) => "has no parameters",
                    _ => "is not defined",
                },
                name: match m.role {
                    Some(r) => format!("{layer}.{}", role_name(r)),
                    None => layer,
                },
                span: m.span,
            });
        }
    }
    for (layer, ps) in &lw.params {
        // Weights come before their layer's bias; a bias's fan-in (what
        // `pytorch_default` scales it by) is that of the weight before it.
        let mut fan_in = 1;
        for (role, n) in ps {
            if *role == ParamRole::Weight {
                fan_in = lw.graph.g[*n].ty.dims().iter().skip(1).product::<u64>();
            }
            let explicit = init.override_for(layer, *role);
            if let Op::Param { init: slot, .. } = &mut lw.graph.g[*n].op {
                if lw.bn_params.contains(n) {
                    if let Some(i) = explicit {
                        *slot = i.resolve(*role, fan_in);
                    }
                } else {
                    *slot = init.for_param(layer, *role).resolve(*role, fan_in);
                }
            }
        }
    }
    let warnings = lw.unused(net);
    lw.graph.towers = lw.towers as u32;
    debug_assert_eq!(crate::ir::verify::verify(&lw.graph), Ok(()));
    train.sgd.param_multipliers = lw.param_mults;
    Ok(Module {
        graph: lw.graph,
        train,
        warnings,
    })
}

impl<'a> Lowerer<'a> {
    fn define(&mut self, name: &'a Ident, sym: Sym<'a>) -> Result<(), LowerError> {
        if let Some((_, first)) = self.syms.get(name.name.as_str()) {
            return Err(LowerError::Duplicate {
                name: name.name.clone(),
                span: name.span,
                first: *first,
            });
        }
        self.syms.insert(&name.name, (sym, name.span));
        Ok(())
    }

    fn declare(&mut self, net: &'a Network) -> Result<(), LowerError> {
        let mut towers_seen: Option<(u64, Span)> = None;
        // Constants first, so sizes may name them wherever they appear.
        for item in &net.items {
            if let Item::Let(l) = item {
                match &l.value {
                    LetValue::Number(n) => {
                        self.define(&l.name, Sym::Const(n))?;
                        self.consts.insert(l.name.name.clone(), n.clone());
                    }
                    LetValue::Chain(c) => {
                        for st in &c.stages {
                            if let Some(a) = st
                                .args
                                .iter()
                                .flatten()
                                .find(|a| matches!(a, Arg::Source(_)))
                            {
                                let Arg::Source(s) = a else { continue };
                                return Err(LowerError::SourceInLaterStage { span: s.span() });
                            }
                        }
                        self.define(&l.name, Sym::Config(l, c))?;
                    }
                }
            }
        }
        for item in &net.items {
            match item {
                Item::Let(_) => {}
                Item::Input(i) => self.define(&i.name, Sym::Input)?,
                Item::Binding(b) => {
                    self.define(&b.name, Sym::Binding(self.binds.len()))?;
                    self.binds.push(Bind { b, towered: false });
                }
                Item::Towers(t) => {
                    let n = self.dim(&t.count, "towers")?;
                    if n > MAX_TOWERS {
                        return Err(LowerError::InvalidValue {
                            name: "towers".into(),
                            span: t.count.span(),
                            reason: format!("at most {MAX_TOWERS} towers, got {n}"),
                        });
                    }
                    if let Some((m, first)) = towers_seen
                        && m != n
                    {
                        return Err(LowerError::Towers {
                            span: t.count.span(),
                            first,
                        });
                    }
                    towers_seen = Some((n, t.count.span()));
                    self.towers = n;
                    for b in &t.body {
                        self.define(&b.name, Sym::Binding(self.binds.len()))?;
                        self.binds.push(Bind { b, towered: true });
                    }
                }
            }
        }
        // Input nodes, in source order.
        for item in &net.items {
            if let Item::Input(i) = item {
                let ty = match &i.ty {
                    InputType::Tensor(dims) => {
                        let dims = dims
                            .iter()
                            .map(|d| self.dim(d, "a size"))
                            .collect::<Result<Vec<_>, _>>()?;
                        if infer::checked_product(&dims).is_err() {
                            return Err(LowerError::Overflow { span: i.span });
                        }
                        Ty::Act { dims }
                    }
                    InputType::Class(d) => Ty::Labels {
                        classes: self.dim(d, "classes")?,
                    },
                };
                let kind = if matches!(ty, Ty::Labels { .. }) {
                    InputKind::Labels
                } else {
                    InputKind::Tensor
                };
                let n = self.graph.add(Node {
                    op: Op::Input { kind },
                    name: i.name.name.clone(),
                    layer: i.name.name.clone(),
                    device: Device::Shared,
                    ty,
                    span: i.name.span,
                    forward: None,
                });
                self.inputs.insert(&i.name.name, n);
            }
        }
        Ok(())
    }

    /// A size: a positive whole number, written or named.
    fn dim(&mut self, d: &Dim, what: &str) -> Result<u64, LowerError> {
        let (v, span) = match d {
            Dim::Number(n) => (n.value, n.span),
            Dim::Name(id) => match self.syms.get(id.name.as_str()) {
                Some((Sym::Const(n), _)) => {
                    self.used.insert(id.name.clone());
                    (n.value, id.span)
                }
                Some(_) => {
                    return Err(LowerError::NotANumber {
                        name: id.name.clone(),
                        span: id.span,
                    });
                }
                None => {
                    return Err(LowerError::UnknownName {
                        name: id.name.clone(),
                        span: id.span,
                        suggestion: suggest(&id.name, self.consts.keys().map(String::as_str)),
                    });
                }
            },
        };
        if v.fract() != 0.0 || v < 1.0 {
            return Err(LowerError::InvalidValue {
                name: what.into(),
                span,
                reason: format!("must be a whole number ≥ 1, got {v}"),
            });
        }
        if v >= 2f64.powi(53) {
            return Err(LowerError::Overflow { span });
        }
        Ok(v as u64)
    }

    /// Expands `let` configurations into plain layers.
    fn flatten(
        &mut self,
        chain: &'a Chain,
        depth: usize,
        out: &mut Vec<Flat<'a>>,
    ) -> Result<(), LowerError> {
        for st in &chain.stages {
            let sources: Vec<&'a Source> = st
                .args
                .iter()
                .flatten()
                .filter_map(|a| {
                    if let Arg::Source(s) = a {
                        Some(s)
                    } else {
                        None
                    }
                })
                .collect();
            let named: Vec<(Ident, Value)> = st
                .args
                .iter()
                .flatten()
                .filter_map(|a| {
                    if let Arg::Named(k, v) = a {
                        Some((k.clone(), v.clone()))
                    } else {
                        None
                    }
                })
                .collect();
            match self.syms.get(st.op.name.as_str()) {
                Some((Sym::Config(l, c), _)) => {
                    let (l, c) = (*l, *c);
                    self.used.insert(l.name.name.clone());
                    if depth > 16 {
                        return Err(LowerError::Cycle {
                            name: l.name.name.clone(),
                            span: st.op.span,
                            path: vec![l.name.name.clone()],
                        });
                    }
                    let start = out.len();
                    self.flatten(c, depth + 1, out)?;
                    let expanded = out.len() - start;
                    if !named.is_empty() && expanded != 1 {
                        return Err(LowerError::InvalidValue {
                            name: st.op.name.clone(),
                            span: named[0].0.span,
                            reason: "a `let` of several layers takes no hyperparameters".into(),
                        });
                    }
                    for f in &mut out[start..] {
                        f.named.extend(named.iter().cloned());
                        f.span = st.span;
                    }
                    if let Some(f) = out.get_mut(start) {
                        f.sources = sources;
                    }
                }
                Some((Sym::Const(_), _)) => {
                    return Err(LowerError::NotALayer {
                        name: st.op.name.clone(),
                        span: st.op.span,
                    });
                }
                Some((Sym::Input | Sym::Binding(_), _)) if st.args.is_none() => {
                    // `x -> conv1`: naming a layer where a layer type belongs.
                    return Err(LowerError::UnknownOp {
                        name: st.op.name.clone(),
                        span: st.op.span,
                        suggestion: suggest(&st.op.name, layers::LAYERS.iter().copied()),
                    });
                }
                _ => out.push(Flat {
                    op: st.op.clone(),
                    named,
                    sources,
                    span: st.span,
                }),
            }
        }
        Ok(())
    }

    /// Bindings in dependency order; a cycle is an error naming its path.
    fn order(&mut self) -> Result<Vec<usize>, LowerError> {
        let n = self.binds.len();
        let mut deps: Vec<Vec<(usize, Span)>> = vec![Vec::new(); n];
        for (i, b) in self.binds.iter().enumerate() {
            for st in &b.b.chain.stages {
                for a in st.args.iter().flatten() {
                    if let Arg::Source(s) = a
                        && let Some((Sym::Binding(j), _)) = self.syms.get(s.ident().name.as_str())
                    {
                        deps[i].push((*j, s.span()));
                    }
                }
            }
        }
        // Iterative DFS; colour 1 = on the stack, 2 = done.
        let mut colour = vec![0u8; n];
        let mut order = Vec::with_capacity(n);
        for root in 0..n {
            if colour[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            colour[root] = 1;
            while let Some(&mut (v, ref mut k)) = stack.last_mut() {
                if let Some(&(w, span)) = deps[v].get(*k) {
                    *k += 1;
                    match colour[w] {
                        0 => {
                            colour[w] = 1;
                            stack.push((w, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                            let mut path: Vec<String> = stack[pos..]
                                .iter()
                                .map(|(x, _)| self.binds[*x].b.name.name.clone())
                                .collect();
                            path.push(self.binds[w].b.name.name.clone());
                            return Err(LowerError::Cycle {
                                name: self.binds[w].b.name.name.clone(),
                                span,
                                path,
                            });
                        }
                        _ => {}
                    }
                } else {
                    colour[v] = 2;
                    order.push(v);
                    stack.pop();
                }
            }
        }
        Ok(order)
    }

    fn resolve(
        &mut self,
        src: &Source,
        device: Device,
        tower: u32,
        towered: bool,
        binding: &str,
    ) -> Result<NodeId, LowerError> {
        let id = src.ident();
        let sym = self.syms.get(id.name.as_str()).map(|(s, _)| match s {
            Sym::Input => 0usize,
            Sym::Const(_) | Sym::Config(..) => 1,
            Sym::Binding(_) => 2,
        });
        self.used.insert(id.name.clone());
        let binding_idx = match self.syms.get(id.name.as_str()) {
            Some((Sym::Binding(j), _)) => Some(*j),
            _ => None,
        };
        match (src, sym) {
            (_, None) => {
                let mut names: Vec<&str> = self.inputs.keys().copied().collect();
                names.extend(self.binds.iter().map(|b| b.b.name.name.as_str()));
                Err(LowerError::UnknownName {
                    name: id.name.clone(),
                    span: id.span,
                    suggestion: suggest(&id.name, names),
                })
            }
            (_, Some(1)) => Err(LowerError::NotALayer {
                name: id.name.clone(),
                span: id.span,
            }),
            (Source::Local(_), Some(0)) => Ok(self.inputs[id.name.as_str()]),
            (Source::Across(..), Some(0)) => Err(LowerError::AcrossNotTower {
                name: id.name.clone(),
                span: src.span(),
            }),
            (Source::Local(_), _) => {
                let j = binding_idx.unwrap_or(0);
                if self.binds[j].towered {
                    if !towered && self.towers > 1 {
                        return Err(LowerError::NeedsAcross {
                            name: id.name.clone(),
                            span: id.span,
                        });
                    }
                    Ok(self.outputs[&(j, if towered { tower } else { 0 })])
                } else {
                    Ok(self.outputs[&(j, 0)])
                }
            }
            (Source::Across(..), _) => {
                let j = binding_idx.unwrap_or(0);
                if !self.binds[j].towered {
                    return Err(LowerError::AcrossNotTower {
                        name: id.name.clone(),
                        span: src.span(),
                    });
                }
                let parts: Vec<NodeId> = (0..self.towers as u32)
                    .map(|t| self.outputs[&(j, t)])
                    .collect();
                if parts.len() > 1
                    && let Some(&sm) = parts
                        .iter()
                        .find(|&&p| self.graph.node(p).op == Op::Softmax)
                {
                    return Err(LowerError::SoftmaxFeeds {
                        into: "concat".into(),
                        span: src.span(),
                        softmax: self.graph.node(sm).span,
                    });
                }
                if parts.len() == 1 {
                    return Ok(parts[0]);
                }
                let tys: Vec<&Ty> = parts.iter().map(|p| &self.graph.node(*p).ty).collect();
                let ty = infer::infer(&Op::Concat, &tys).map_err(|source| LowerError::Shape {
                    span: src.span(),
                    layer: binding.to_string(),
                    source,
                })?;
                let node = self.graph.add(Node {
                    op: Op::Concat,
                    name: format!("{binding}/across_{}", id.name),
                    layer: binding.to_string(),
                    device,
                    ty,
                    span: src.span(),
                    forward: None,
                });
                for (port, p) in parts.into_iter().enumerate() {
                    self.graph.connect(p, node, port as u32);
                }
                Ok(node)
            }
        }
    }

    fn lower_binding(&mut self, i: usize) -> Result<(), LowerError> {
        let b = self.binds[i].b;
        let towered = self.binds[i].towered;
        let mut flat = Vec::new();
        self.flatten(&b.chain, 0, &mut flat)?;
        let split = if towered { self.towers } else { 1 };
        let instances = if towered { self.towers as u32 } else { 1 };
        let name = b.name.name.clone();
        for t in 0..instances {
            let device = Device::Tower(t);
            let mut prev: Option<NodeId> = None;
            let mut counts: HashMap<String, usize> = HashMap::new();
            for (k, f) in flat.iter().enumerate() {
                if k > 0
                    && let Some(s) = f.sources.first()
                {
                    return Err(LowerError::SourceInLaterStage { span: s.span() });
                }
                let mut srcs = Vec::new();
                if let Some(p) = prev {
                    srcs.push(p);
                }
                for s in &f.sources {
                    srcs.push(self.resolve(s, device, t, towered, &name)?);
                }
                if srcs.is_empty() {
                    return Err(LowerError::NoSource {
                        binding: name.clone(),
                        span: f.span,
                    });
                }
                if let Some(&sm) = srcs.iter().find(|&&s| self.graph.node(s).op == Op::Softmax) {
                    return Err(LowerError::SoftmaxFeeds {
                        into: f.op.name.clone(),
                        span: f.span,
                        softmax: self.graph.node(sm).span,
                    });
                }
                let op = layers::build_op(&f.op, &f.named, &self.consts, split)?;
                for (_, v) in &f.named {
                    mark_idents(v, &mut self.used);
                }
                let (lo, hi) = layers::arity(&f.op.name);
                if srcs.len() < lo || srcs.len() > hi {
                    return Err(LowerError::Sources {
                        op: f.op.name.clone(),
                        expected: if lo == hi {
                            lo.to_string()
                        } else {
                            format!("at least {lo}")
                        },
                        got: srcs.len(),
                        span: f.span,
                    });
                }
                let c = counts.entry(f.op.name.clone()).or_insert(0);
                *c += 1;
                let node_name = if *c == 1 {
                    format!("{name}/{}", f.op.name)
                } else {
                    format!("{name}/{}{}", f.op.name, c)
                };
                let shape_err = |source| LowerError::Shape {
                    span: f.span,
                    layer: name.clone(),
                    source,
                };
                let data_ty = self.graph.node(srcs[0]).ty.clone();
                let shapes = infer::param_shapes(&op, &data_ty).map_err(shape_err)?;
                let mut inputs = srcs.clone();
                let bn = matches!(op, Op::BatchNorm { .. });
                let roles = infer::param_roles(&op);
                // (A conv with `bias: false` has a weight only.)
                let trained = roles
                    .iter()
                    .zip(&shapes)
                    .filter(|(r, _)| !r.is_running())
                    .count();
                let mults = layers::multipliers(&f.op, &f.named, &self.consts, trained)?;
                let mut mults = mults.into_iter();
                for (dims, &role) in shapes.into_iter().zip(roles) {
                    // A batchnorm starts at γ = 1, β = 0, mean 0, variance 1
                    // (`train.init` may override γ and β, never the statistics).
                    let init = match role {
                        ParamRole::Weight | ParamRole::RunningVar => 1.0,
                        _ => 0.0,
                    };
                    let p = self.graph.add(Node {
                        op: Op::Param {
                            role,
                            init: crate::ir::Init::Constant { value: init },
                        },
                        name: format!("{node_name}.{}", role.suffix()),
                        layer: name.clone(),
                        device,
                        ty: Ty::Param { dims },
                        span: f.span,
                        forward: None,
                    });
                    if bn {
                        self.bn_params.insert(p);
                    }
                    if !role.is_running() {
                        self.params.entry(name.clone()).or_default().push((role, p));
                        let param = &self.graph.node(p).name;
                        if let Some((lr, decay)) = mults.next()
                            && (lr, decay) != (1.0, 1.0)
                            && !self.param_mults.iter().any(|m| m.param == *param)
                        {
                            self.param_mults.push(crate::ir::train::ParamMultiplier {
                                param: param.clone(),
                                lr,
                                decay,
                            });
                        }
                    }
                    inputs.push(p);
                }
                let tys: Vec<&Ty> = inputs.iter().map(|n| &self.graph.node(*n).ty).collect();
                let ty = infer::infer(&op, &tys).map_err(shape_err)?;
                let node = self.graph.add(Node {
                    op,
                    name: node_name,
                    layer: name.clone(),
                    device,
                    ty,
                    span: f.span,
                    forward: None,
                });
                for (port, s) in inputs.into_iter().enumerate() {
                    self.graph.connect(s, node, port as u32);
                }
                prev = Some(node);
            }
            let out = prev.ok_or(LowerError::NoSource {
                binding: name.clone(),
                span: b.span,
            })?;
            self.outputs.insert((i, t), out);
        }
        Ok(())
    }

    fn unused(&self, net: &Network) -> Vec<LowerWarning> {
        let mut w = Vec::new();
        for item in &net.items {
            let names: Vec<&Ident> = match item {
                Item::Input(i) => vec![&i.name],
                Item::Let(l) => vec![&l.name],
                Item::Binding(b) => vec![&b.name],
                Item::Towers(t) => t.body.iter().map(|b| &b.name).collect(),
            };
            for id in names {
                if self.used.contains(&id.name) {
                    continue;
                }
                // A binding whose value is the loss, or probabilities (a
                // `softmax`), is a network output.
                let is_loss = match self.syms.get(id.name.as_str()) {
                    Some((Sym::Binding(j), _)) => self.outputs.get(&(*j, 0)).is_some_and(|n| {
                        let node = self.graph.node(*n);
                        node.ty == Ty::Scalar || node.op == Op::Softmax
                    }),
                    _ => false,
                };
                if !is_loss {
                    w.push(LowerWarning::Unused {
                        name: id.name.clone(),
                        span: id.span,
                    });
                }
            }
        }
        w
    }
}

/// Records the `let` constants a value names.
fn mark_idents(v: &Value, used: &mut HashSet<String>) {
    match &v.kind {
        ValueKind::Ident(id) => {
            used.insert(id.clone());
        }
        ValueKind::List(items) => items.iter().for_each(|i| mark_idents(i, used)),
        ValueKind::Call(_, args) => args.iter().for_each(|a| mark_idents(&a.value, used)),
        _ => {}
    }
}

fn mark_block(b: &Block, used: &mut HashSet<String>) {
    for s in &b.settings {
        match &s.body {
            SettingBody::Value(v) => mark_idents(v, used),
            SettingBody::Block(b) => mark_block(b, used),
        }
    }
}
