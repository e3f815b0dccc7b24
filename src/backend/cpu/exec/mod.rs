//! The CPU executor: runs a training graph (forward, backward, update, as
//! built by `passes::autodiff`, fused or not) or its forward part, one
//! node at a time, calling the reference kernels.
//!
//! Layout. Every buffer of the step (values, the side buffers forward ops
//! keep for their backward, parameters and velocities) comes from a
//! memory plan (`passes::memplan`). [`Layout::Planned`] executes from the
//! plan: one arena per device, each buffer at its planned offset, nodes in
//! the plan's order, elementwise ops in place where the plan says; values
//! whose memory is reused are gone when the step ends. [`Layout::Separate`]
//! gives every buffer its own allocation and runs in `ir::order::topo`, so
//! every value of the step can be read afterwards (tests, parity checks).
//! Both compute bit-for-bit the same results: each kernel overwrites its
//! output and reads only live values. Buffers are allocated when a batch
//! larger than any before arrives (the plan for a batch serves every
//! smaller one) and kept; parameters move with them. Labels are kept
//! beside the arena. Workspace a kernel needs for itself (im2col, the
//! masked output gradient of a `dense_relu_dropout`) is the executor's own.
//!
//! Assumes a verified graph whose backward nodes follow autodiff's naming
//! (`F.dx`, `F.dw`, `F.db` for the gradients of forward node `F`). The
//! gradients of one convolution or dense layer are computed together by
//! one kernel call when the first of them is reached. Results are
//! deterministic for a given seed whatever the thread count (the kernels
//! guarantee it).
//!
//! Generic over the scalar: `CpuExec<f32>` (the default) trains,
//! `CpuExec<f64>` checks gradients; parameters are drawn in f64 and
//! rounded, so an f32 run starts from the same values either way. The
//! fused ops of `passes::fuse` run here too (`ops.rs`, `fused.rs`).

pub mod error;
mod folded;
mod fused;
pub mod layout;
mod ops;

use std::collections::HashMap;

use self::layout::{Arenas, Loc};
use super::kernels::{self as k, Float};
use crate::backend::params;
use crate::ir::{Graph, NodeId, Op, ParamRole, Ty, order};
use crate::passes::conv_algo;
use crate::passes::memplan::{self, Side};

pub use self::error::ExecError;
pub use crate::backend::layout::Layout;
pub use crate::backend::step::StepStats;

pub struct CpuExec<T: Float = f32> {
    graph: Graph,
    memory: Layout,
    order: Vec<NodeId>,
    forward: Vec<bool>,
    layout: Arenas,
    arenas: Vec<Vec<T>>,
    /// The masked output gradient of a `dense_relu_dropout`.
    masked: Vec<T>,
    labels: Vec<u32>,
    batch: usize,
    image: NodeId,
    label: NodeId,
    loss: NodeId,
    logits: NodeId,
    /// Backward node -> the forward node it differentiates.
    fwd_of: HashMap<NodeId, NodeId>,
    scratch: Vec<T>,
    /// Which gradient groups were computed in the current step.
    done: Vec<bool>,
    /// Fill the arenas with NaN before every step (see [`CpuExec::set_poison`]).
    poison: bool,
    /// Seconds and calls per op mnemonic, when profiling.
    profile: Option<HashMap<&'static str, (f64, u64)>>,
    pub seed: u64,
    /// The figures of the step submitted through the step interface and
    /// not yet collected.
    pending: Option<StepStats>,
    /// The memory plan the buffers are laid out by.
    plan: Option<memplan::Plan>,
    /// The per-channel gradient sums of each batchnorm (keyed by it and
    /// its `dy`) computed in the current step, shared by its three
    /// gradient ops.
    bn_sums: HashMap<(NodeId, NodeId), Vec<(T, T)>>,
    /// Bumped by every step and every write through [`CpuExec::value_mut`]:
    /// what the folded evaluation checks its copy of the state against.
    version: u64,
    /// Evaluate with the batchnorms folded (`folded.rs`).
    fold_bn: bool,
    folded: folded::Folded<T>,
    /// The last evaluation ran the folded executor (its logits are there).
    eval_folded: bool,
    /// The algorithms of each convolution (`passes::conv_algo`), chosen
    /// under `conv_policy`.
    conv_algos: HashMap<NodeId, conv_algo::ConvAlgos>,
    conv_policy: conv_algo::Policy,
    /// Where this executor's examples start in the global batch of a
    /// data-parallel step: the dropout masks are keyed by the flat index
    /// of the global batch's tensor, so the ranks draw one process's masks.
    example_offset: u64,
    /// Called on each parameter gradient between the backward pass and
    /// its update (data-parallel training averages it across ranks).
    grad_hook: Option<GradHook<T>>,
}

/// What [`CpuExec::set_grad_hook`] takes: it may change the gradient in
/// place; an error stops the step before the update.
pub type GradHook<T> = Box<dyn FnMut(&mut [T]) -> Result<(), String> + Send>;

fn numel(g: &Graph, n: NodeId, batch: usize) -> usize {
    match &g.node(n).ty {
        Ty::Act { dims } => dims.iter().product::<u64>() as usize * batch,
        Ty::Param { dims } => dims.iter().product::<u64>() as usize,
        Ty::Labels { .. } => batch,
        Ty::Scalar => 1,
        Ty::Effect => 0,
    }
}

/// The per-channel shape a batchnorm of `x` normalises at batch `n`.
fn bn_shape(g: &Graph, x: NodeId, n: usize) -> k::batchnorm::BnShape {
    let (c, h, w) = chw(g, x);
    k::batchnorm::BnShape { n, c, p: h * w }
}

/// The kernel's parameters of an LRN op.
fn lrn_params(size: u64, alpha: f64, beta: f64, k: f64) -> k::lrn::LrnParams {
    k::lrn::LrnParams {
        size: size as usize,
        alpha,
        beta,
        k,
    }
}

/// The kernel's shape of a max pooling of `x` at batch `n`.
fn pool_shape(g: &Graph, x: NodeId, n: usize, size: u64, stride: u64) -> k::pool::PoolShape {
    let (c, h, w) = chw(g, x);
    k::pool::PoolShape {
        n,
        c,
        h,
        w,
        size: size as usize,
        stride: stride as usize,
    }
}

/// A convolution's or dense layer's kernel shape, fused or not.
enum LayerShape {
    Conv(k::conv::ConvShape),
    /// Groups, dilation or a rectangular window ([`k::conv_general`]).
    ConvGeneral(k::conv_general::ConvGeom),
    Dense(k::dense::DenseShape),
}

/// The shape of layer op `op` applied to `x` at batch `n` (`None` for any
/// other op).
fn layer_shape(g: &Graph, op: &Op, x: NodeId, n: usize) -> Option<LayerShape> {
    match op {
        Op::Conv {
            filters,
            size,
            stride,
            pad,
            dilation,
            groups,
            ..
        }
        | Op::ConvRelu {
            filters,
            size,
            stride,
            pad,
            dilation,
            groups,
            ..
        } => {
            let (c, h, w) = chw(g, x);
            let geom = k::conv_general::ConvGeom {
                n,
                c,
                h,
                w,
                f: *filters as usize,
                kh: size.h as usize,
                kw: size.w as usize,
                sh: stride.h as usize,
                sw: stride.w as usize,
                ph: pad.h as usize,
                pw: pad.w as usize,
                dil: *dilation as usize,
                groups: *groups as usize,
            };
            // The plain geometry runs the fast kernel, as it always has.
            Some(match geom.plain() {
                Some(s) => LayerShape::Conv(s),
                None => LayerShape::ConvGeneral(geom),
            })
        }
        Op::Dense { units } | Op::DenseRelu { units, .. } | Op::DenseReluDropout { units, .. } => {
            Some(LayerShape::Dense(k::dense::DenseShape {
                n,
                inp: g.node(x).ty.numel() as usize,
                out: *units as usize,
            }))
        }
        _ => None,
    }
}

fn chw(g: &Graph, n: NodeId) -> (usize, usize, usize) {
    match g.node(n).ty.dims() {
        [c, h, w] => (*c as usize, *h as usize, *w as usize),
        d => (d.iter().product::<u64>() as usize, 1, 1),
    }
}

pub use crate::backend::params::init_param;

/// A `'static` copy of `s`, made once per distinct string (the profile's
/// keys: a few per network).
fn intern(s: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static KEYS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys = keys.get_or_insert_with(HashSet::new);
    if let Some(k) = keys.get(s.as_str()) {
        return k;
    }
    let k: &'static str = Box::leak(s.into_boxed_str());
    keys.insert(k);
    k
}

impl<T: Float> CpuExec<T> {
    /// Prepares a graph (forward only, or a whole training step) with every
    /// buffer in its own allocation ([`Layout::Separate`]) and initialises
    /// its parameters from `seed`.
    pub fn new(graph: Graph, seed: u64) -> Result<Self, ExecError> {
        Self::with_memory(graph, seed, Layout::Separate)
    }

    /// Like [`CpuExec::new`], executing from the memory plan ([`Layout::Planned`]).
    pub fn planned(graph: Graph, seed: u64) -> Result<Self, ExecError> {
        Self::with_memory(graph, seed, Layout::Planned)
    }

    pub fn with_memory(graph: Graph, seed: u64, memory: Layout) -> Result<Self, ExecError> {
        let cap = graph
            .g
            .node_indices()
            .map(|n| n.index() + 1)
            .max()
            .unwrap_or(0);
        let (image, label, loss, logits) = graph.training_io().map_err(ExecError::MissingInput)?;
        let mut forward = vec![false; cap];
        let mut fwd_of = HashMap::new();
        for n in graph.node_ids() {
            let node = graph.node(n);
            forward[n.index()] = node.op.is_forward();
            if node.op.is_layer_grad()
                || matches!(
                    node.op,
                    Op::LrnGrad { .. }
                        | Op::MaxPoolGrad { .. }
                        | Op::BatchNormGradInput { .. }
                        | Op::BatchNormGradGamma { .. }
                        | Op::RunningUpdate { .. }
                )
            {
                let f = node
                    .forward
                    .filter(|f| graph.get(*f).is_some())
                    .ok_or_else(|| ExecError::Orphan(node.name.clone()))?;
                fwd_of.insert(n, f);
            }
        }
        let conv_policy = conv_algo::Policy::from_env();
        let conv_algos = conv_algo::choose(&graph, conv_policy);
        let mut exec = CpuExec {
            graph,
            memory,
            order: Vec::new(),
            forward,
            layout: Arenas::default(),
            arenas: Vec::new(),
            masked: Vec::new(),
            labels: Vec::new(),
            batch: 0,
            image,
            label,
            loss,
            logits,
            fwd_of,
            scratch: Vec::new(),
            done: vec![false; cap],
            poison: false,
            profile: None,
            seed,
            pending: None,
            plan: None,
            bn_sums: HashMap::new(),
            version: 0,
            example_offset: 0,
            grad_hook: None,
            fold_bn: folded::fold_from_env(),
            folded: folded::Folded::Unknown,
            eval_folded: false,
            conv_algos,
            conv_policy,
        };
        exec.relayout(1)?;
        for n in exec.layout.persistent.clone() {
            let node = exec.graph.node(n);
            if let Op::Param { init, role } = &node.op
                && *role != ParamRole::Velocity
            {
                let (init, name, device) = (init.clone(), node.name.clone(), node.device);
                let dims = node.ty.dims().to_vec();
                init_param(&init, &name, device, &dims, seed, exec.value_mut(n));
            }
        }
        Ok(exec)
    }

    /// Plans for `batch` and moves the persistent buffers to the new arenas.
    fn relayout(&mut self, batch: usize) -> Result<(), ExecError> {
        let plan = memplan::plan(&self.graph, batch as u64)?;
        self.relayout_with(plan)
    }

    /// Lays the buffers out by `plan` (of this graph, at its batch).
    fn relayout_with(&mut self, plan: memplan::Plan) -> Result<(), ExecError> {
        let (layout, order) = match self.memory {
            Layout::Planned => (Arenas::planned(&plan), plan.order.clone()),
            Layout::Separate => (
                Arenas::separate(&plan),
                order::topo(&self.graph).map_err(|_| ExecError::Cycle)?,
            ),
        };
        // Refused before anything is allocated when the plan's bytes exceed
        // what the machine has (a huge layer would otherwise abort).
        let elems = layout
            .arena_len
            .iter()
            .fold(0u64, |t, &n| t.saturating_add(n as u64));
        let bytes = elems.saturating_mul(std::mem::size_of::<T>() as u64);
        let what = format!("the step at batch {}", plan.batch);
        super::memory::check_fits(&what, bytes)?;
        let mut arenas: Vec<Vec<T>> = Vec::with_capacity(layout.arena_len.len());
        for &n in &layout.arena_len {
            arenas.push(super::memory::zeroed(&what, n, T::ZERO)?);
        }
        for &n in &layout.persistent {
            if let (Some(&old), Some(&new)) = (self.layout.out.get(&n), layout.out.get(&n)) {
                let len = old.len.min(new.len);
                layout::view_mut(&mut arenas, new.take(len))
                    .copy_from_slice(layout::view(&self.arenas, old.take(len)));
            }
        }
        self.layout = layout;
        self.arenas = arenas;
        self.order = order;
        self.plan = Some(plan);
        Ok(())
    }

    /// The memory plan of the step at `batch`: the executor's own (it lays
    /// its buffers out at that batch if they are laid out for another), so
    /// a backend running beside it generates from the same analysis.
    pub fn plan_at(&mut self, batch: usize) -> Result<&memplan::Plan, ExecError> {
        if self.plan.as_ref().is_none_or(|p| p.batch != batch as u64) {
            self.relayout(batch)?;
        }
        self.plan
            .as_ref()
            .ok_or_else(|| ExecError::Internal("no memory plan".into()))
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn memory(&self) -> Layout {
        self.memory
    }

    /// Bytes of the arenas (the planned arenas, or the sum of every buffer).
    pub fn arena_bytes(&self) -> usize {
        self.layout.arena_len.iter().sum::<usize>() * std::mem::size_of::<T>()
    }

    /// Parameters and optimiser state: (name@device, node) pairs in a stable order.
    pub fn state(&self) -> Vec<(String, NodeId)> {
        let mut v: Vec<(String, NodeId)> = self
            .graph
            .node_ids()
            .filter(|n| self.graph.node(*n).op.is_param())
            .map(|n| (params::key(&self.graph, n), n))
            .collect();
        v.sort();
        v
    }

    /// The range holding `n`'s value at the current batch.
    fn loc(&self, n: NodeId) -> Result<Loc, ExecError> {
        self.layout
            .out
            .get(&n)
            .map(|l| l.take(numel(&self.graph, n, self.batch)))
            .ok_or_else(|| {
                ExecError::Internal(format!("`{}` has no buffer", self.graph.node(n).name))
            })
    }

    /// The range of side buffer `s` of forward node `n` at the current batch.
    fn side_loc(&self, n: NodeId, s: Side) -> Result<Loc, ExecError> {
        let g = &self.graph;
        let len = match (s, &g.node(n).op) {
            (Side::LrnOut | Side::LrnScale, Op::LrnMaxPool { .. }) => {
                g.inputs(n).first().map_or(0, |&x| numel(g, x, self.batch))
            }
            (Side::SoftmaxProbs, _) => g.inputs(n).first().map_or(0, |&x| numel(g, x, self.batch)),
            (Side::BnMean | Side::BnVar, _) => {
                g.node(n).ty.dims().first().map_or(0, |&c| c as usize)
            }
            _ => numel(g, n, self.batch),
        };
        self.layout
            .side
            .get(&(n, s))
            .map(|l| l.take(len))
            .ok_or_else(|| {
                ExecError::Internal(format!("`{}` has no {} buffer", g.node(n).name, s.suffix()))
            })
    }

    /// `n`'s value. After a planned step, only values the plan keeps to the
    /// end (parameters, velocities, the loss, the logits, and values whose
    /// memory was not reused) are still there; see [`CpuExec::is_kept`].
    /// Keeps a submitted step's figures until they are collected.
    pub(crate) fn set_pending(&mut self, stats: Option<StepStats>) {
        self.pending = stats;
    }

    /// The figures of the step submitted last, once.
    pub(crate) fn take_pending(&mut self) -> Option<StepStats> {
        self.pending.take()
    }

    pub fn value(&self, n: NodeId) -> &[T] {
        match self.loc(n) {
            Ok(l) => layout::view(&self.arenas, l),
            Err(_) => &[],
        }
    }

    /// `n`'s value, to write (a parameter written here reaches the folded
    /// evaluation).
    pub fn value_mut(&mut self, n: NodeId) -> &mut [T] {
        self.version = self.version.wrapping_add(1);
        match self.loc(n) {
            Ok(l) => layout::view_mut(&mut self.arenas, l),
            Err(_) => &mut [],
        }
    }

    /// Whether `n`'s value survives the step (always, with [`Layout::Separate`]).
    pub fn is_kept(&self, n: NodeId) -> bool {
        self.layout.kept.get(&n).copied().unwrap_or(false)
    }

    /// With `on`, every step first fills every buffer but the parameters and
    /// velocities with NaN, so a kernel that read memory it had not written
    /// would show it (a check for tests; it costs a pass over the arenas).
    pub fn set_poison(&mut self, on: bool) {
        self.poison = on;
    }

    fn fill_nan(&mut self) {
        let mut keep: Vec<Loc> = self
            .layout
            .persistent
            .iter()
            .filter_map(|n| self.layout.out.get(n).copied())
            .collect();
        keep.sort_by_key(|l| (l.arena, l.start));
        let nan = T::from_f64(f64::NAN);
        for (a, arena) in self.arenas.iter_mut().enumerate() {
            let mut at = 0;
            for l in keep.iter().filter(|l| l.arena == a) {
                if let Some(gap) = arena.get_mut(at..l.start) {
                    gap.fill(nan);
                }
                at = at.max(l.start + l.len);
            }
            if let Some(rest) = arena.get_mut(at..) {
                rest.fill(nan);
            }
        }
    }

    /// The per-example size of the image input.
    pub fn image_len(&self) -> usize {
        numel(&self.graph, self.image, 1)
    }

    fn load(&mut self, images: &[T], labels: &[u32]) -> Result<(), ExecError> {
        let per = self.image_len();
        let n = labels.len();
        if images.len() != n * per {
            return Err(ExecError::BadBatch {
                name: self.graph.node(self.image).name.clone(),
                got: images.len(),
                want: per,
            });
        }
        let classes = match self.graph.node(self.label).ty {
            Ty::Labels { classes } => classes,
            _ => 0,
        };
        if let Some(&bad) = labels.iter().find(|&&l| l as u64 >= classes) {
            return Err(ExecError::BadLabel {
                label: bad,
                classes,
            });
        }
        if n > self.layout.batch {
            self.relayout(n)?;
        }
        if self.poison {
            self.fill_nan();
        }
        self.batch = n;
        // Not through `value_mut`: an input is not state.
        let at = self.loc(self.image)?;
        layout::view_mut(&mut self.arenas, at).copy_from_slice(images);
        self.labels.clear();
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// One training step: forward, backward and the update with learning
    /// rate `lr`. `step` numbers the step (it keys the dropout masks).
    pub fn train_step(
        &mut self,
        images: &[T],
        labels: &[u32],
        lr: f64,
        step: u64,
    ) -> Result<StepStats, ExecError> {
        self.load(images, labels)?;
        self.version = self.version.wrapping_add(1);
        self.eval_folded = false;
        self.bn_sums.clear();
        self.done.iter_mut().for_each(|d| *d = false);
        let order = std::mem::take(&mut self.order);
        let mut hook = self.grad_hook.take();
        let r = order.iter().try_for_each(|&n| {
            if let Some(h) = hook.as_mut()
                && matches!(self.graph.node(n).op, Op::SgdUpdate { .. })
            {
                self.hook_gradient(n, h)?;
            }
            self.timed(n, true, lr, step)
        });
        self.grad_hook = hook;
        self.order = order;
        r?;
        Ok(self.stats())
    }

    /// Runs `hook` on the gradient the update `n` reads (its third input),
    /// which the backward pass has finished and the plan keeps until `n`.
    fn hook_gradient(&mut self, n: NodeId, hook: &mut GradHook<T>) -> Result<(), ExecError> {
        let g = *self
            .graph
            .inputs(n)
            .get(2)
            .ok_or_else(|| ExecError::Internal("sgd_update has no gradient input".into()))?;
        let at = self.loc(g)?;
        hook(layout::view_mut(&mut self.arenas, at))
            .map_err(|e| ExecError::Internal(format!("`{}`: {e}", self.graph.node(n).name)))
    }

    /// Data-parallel training: `hook` runs on every parameter gradient
    /// after the backward pass and before the update, in the step's order
    /// (the same on every rank); `example_offset` is the index in the
    /// global batch of this executor's first example (it keys the dropout
    /// masks). `None` and 0: one process, as without a call.
    pub fn set_grad_hook(&mut self, hook: Option<GradHook<T>>, example_offset: u64) {
        self.grad_hook = hook;
        self.example_offset = example_offset;
    }

    /// The forward pass only, dropout off (evaluation). Returns the stats
    /// and leaves the logits readable through [`CpuExec::logits`]. A
    /// network with batchnorms that fold runs folded (`folded.rs`).
    pub fn eval_batch(&mut self, images: &[T], labels: &[u32]) -> Result<StepStats, ExecError> {
        self.eval_folded = false;
        if self.fold_bn
            && let Some(f) = self.folded_eval()?
        {
            let stats = f.eval_batch(images, labels)?;
            self.eval_folded = true;
            return Ok(stats);
        }
        self.load(images, labels)?;
        let order = std::mem::take(&mut self.order);
        let r = order.iter().try_for_each(|&n| {
            if self.forward[n.index()] {
                self.timed(n, false, 0.0, 0)
            } else {
                Ok(())
            }
        });
        self.order = order;
        r?;
        Ok(self.stats())
    }

    /// Runs node `n`, adding its time to the profile if one is kept.
    fn timed(&mut self, n: NodeId, training: bool, lr: f64, step: u64) -> Result<(), ExecError> {
        if self.profile.is_none() {
            return self.run(n, training, lr, step);
        }
        let t = std::time::Instant::now();
        let r = self.run(n, training, lr, step);
        let secs = t.elapsed().as_secs_f64();
        let op = self.profile_key(n);
        if let Some(p) = &mut self.profile {
            let e = p.entry(op).or_insert((0.0, 0));
            e.0 += secs;
            e.1 += 1;
        }
        r
    }

    /// Chooses the convolutions' algorithms under `policy` (by default
    /// `conv_algo::Policy::from_env()`, the cost model unless
    /// `NETC_CONV_ALGO` says otherwise), for this executor and its folded
    /// evaluation.
    pub fn set_conv_policy(&mut self, policy: conv_algo::Policy) {
        self.conv_policy = policy;
        self.conv_algos = conv_algo::choose(&self.graph, policy);
        if let folded::Folded::Ready(f) = &mut self.folded {
            f.exec.set_conv_policy(policy);
        }
    }

    /// The algorithms chosen for each convolution, by node name, in the
    /// graph's order.
    pub fn conv_algos(&self) -> Vec<(String, conv_algo::ConvAlgos)> {
        order::topo(&self.graph)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| Some((self.graph.node(n).name.clone(), *self.conv_algos.get(&n)?)))
            .collect()
    }

    /// The profile's name of node `n`: its op, and for a convolution or
    /// its gradients the algorithms it runs.
    fn profile_key(&self, n: NodeId) -> &'static str {
        let op = self.graph.node(n).op.mnemonic();
        let f = if self.forward[n.index()] {
            Some(n)
        } else {
            self.fwd_of.get(&n).copied()
        };
        let Some(a) = f.and_then(|f| self.conv_algos.get(&f)) else {
            return op;
        };
        let key = if self.forward[n.index()] {
            format!("{op} [{}]", a.forward.name())
        } else {
            format!(
                "{op} [dx {}, dw {}]",
                a.input_grad.name(),
                a.weight_grad.name()
            )
        };
        intern(key)
    }

    /// Starts (or stops) timing every op; starting clears the profile.
    pub fn set_profile(&mut self, on: bool) {
        self.profile = on.then(HashMap::new);
        if let folded::Folded::Ready(f) = &mut self.folded {
            f.exec.set_profile(on);
        }
    }

    /// Seconds and calls per op, most time first (a layer's gradients are
    /// computed by the first of its gradient ops to run, which gets the time).
    pub fn profile(&self) -> Vec<(&'static str, f64, u64)> {
        let mut all: HashMap<&'static str, (f64, u64)> = HashMap::new();
        let folded = match &self.folded {
            folded::Folded::Ready(f) => f.exec.profile.as_ref(),
            _ => None,
        };
        for (k, (s, c)) in self.profile.iter().chain(folded).flatten() {
            let e = all.entry(k).or_insert((0.0, 0));
            e.0 += s;
            e.1 += c;
        }
        let mut v: Vec<_> = all.into_iter().map(|(k, (s, c))| (k, s, c)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Classes: the logits per example.
    pub fn logits_width(&self) -> usize {
        self.graph.node(self.logits).ty.numel() as usize
    }

    /// The logits of the last step or evaluation.
    pub fn logits(&self) -> &[T] {
        if let (true, folded::Folded::Ready(f)) = (self.eval_folded, &self.folded) {
            return f.exec.logits();
        }
        self.value(self.logits)
    }

    fn stats(&self) -> StepStats {
        let n = self.batch;
        let classes = self.graph.node(self.logits).ty.numel() as usize;
        let (top1, top5) = k::softmax_xent::top1_top5(n, classes, self.logits(), &self.labels);
        StepStats {
            loss: self
                .value(self.loss)
                .first()
                .map_or(f64::NAN, |v| v.to_f64()),
            top1,
            top5,
            n,
        }
    }

    /// The first node, in execution order, whose value is not finite, among
    /// the values still held after the step (see [`CpuExec::value`]):
    /// activations and gradients first, then the parameters (a non-finite
    /// update reaches every parameter below the layer it started at, so the
    /// first parameter in order says little unless nothing else is left),
    /// velocities last.
    pub fn first_non_finite(&self) -> Option<&str> {
        let rank = |n: NodeId| match &self.graph.node(n).op {
            Op::Param {
                role: ParamRole::Velocity,
                ..
            } => 2,
            op if op.is_param() => 1,
            _ => 0,
        };
        (0..3)
            .flat_map(|r| self.order.iter().filter(move |n| rank(**n) == r))
            .filter(|n| self.is_kept(**n))
            .find(|n| self.value(**n).iter().any(|v| !v.is_finite()))
            .map(|n| self.graph.node(*n).name.as_str())
    }
}
