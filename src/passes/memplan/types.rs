//! The memory plan's types: buffers, arenas, the plan itself and its
//! error, at the bottom of `memplan` so that the planner and its helpers
//! (greedy order, needs, placement, check, render) import them and not
//! each other's files.

use std::collections::HashMap;

use crate::ir::{Device, NodeId, Op};

/// Alignment of every offset and arena size, in bytes.
pub const ALIGN: u64 = 64;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MemplanError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("the batch size must be at least 1")]
    ZeroBatch,
    #[error("the size of `{name}` overflows 64 bits")]
    Overflow { node: NodeId, name: String },
    #[error("the plan orders {plan} nodes but the graph has {graph}")]
    OrderLength { plan: usize, graph: usize },
    #[error("the plan's order names node {node:?} twice or names a node not in the graph")]
    OrderNode { node: NodeId },
    #[error("`{name}` runs before its input `{input}`")]
    OrderInput {
        node: NodeId,
        name: String,
        input: String,
    },
    #[error("`{name}` updates its state before `{reader}` reads it")]
    OrderHazard {
        node: NodeId,
        name: String,
        reader: String,
    },
    #[error("`{name}` has no planned {what} buffer")]
    MissingBuffer {
        node: NodeId,
        name: String,
        what: &'static str,
    },
    #[error("buffer `{name}` is planned twice or belongs to no node of the graph")]
    ExtraBuffer { name: String },
    #[error("buffer `{name}` is {have} bytes on {have_dev}; it needs {want} bytes on {want_dev}")]
    WrongBuffer {
        name: String,
        have: u64,
        have_dev: Device,
        want: u64,
        want_dev: Device,
    },
    #[error("buffer `{name}` lives {first}..={last} but is used {need_first}..={need_last}")]
    ShortLifetime {
        name: String,
        first: usize,
        last: usize,
        need_first: usize,
        need_last: usize,
    },
    #[error("buffer `{name}` has offset {offset}, not a multiple of {ALIGN}")]
    Misaligned { name: String, offset: u64 },
    #[error("buffer `{name}` is on {device}, which has no arena")]
    NoArena { name: String, device: Device },
    #[error("the plan has two arenas for {device}")]
    DuplicateArena { device: Device },
    #[error("buffer `{name}` ends at byte {end}, past its arena of {arena} bytes")]
    OutOfArena { name: String, end: u64, arena: u64 },
    #[error("`{name}` cannot be written in place over `{over}`")]
    BadInPlace { name: String, over: String },
    #[error("buffers `{a}` and `{b}` on {device} are live at the same time and overlap")]
    Overlap {
        a: String,
        b: String,
        device: Device,
    },
}

/// What a buffer holds; it decides the colour in the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BufKind {
    /// Image or labels, loaded before the step.
    Input,
    /// A forward value (and the loss).
    Activation,
    /// A backward value: the gradient of an activation or a parameter.
    Gradient,
    /// A weight or bias.
    Parameter,
    /// Optimiser state (velocity).
    State,
    /// A forward op's saved state for its backward op.
    Side,
}

impl BufKind {
    pub fn name(self) -> &'static str {
        match self {
            BufKind::Input => "input",
            BufKind::Activation => "activation",
            BufKind::Gradient => "gradient",
            BufKind::Parameter => "parameter",
            BufKind::State => "state",
            BufKind::Side => "side",
        }
    }
}

/// Which side buffer a forward op keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// LRN's `scale`, f32, the size of the LRN's output (for `lrn_maxpool`
    /// the size of its input).
    LrnScale,
    /// Max pooling's `argmax`, u32, the size of its output.
    PoolArgmax,
    /// Softmax cross-entropy's `probs`, f32, `N × classes`.
    SoftmaxProbs,
    /// `lrn_maxpool`'s LRN output, f32, the size of its input.
    LrnOut,
    /// A training batchnorm's batch mean, f32, one per channel.
    BnMean,
    /// A training batchnorm's batch (biased) variance, f32, one per channel.
    BnVar,
}

impl Side {
    pub fn suffix(self) -> &'static str {
        match self {
            Side::LrnScale => "scale",
            Side::PoolArgmax => "argmax",
            Side::SoftmaxProbs => "probs",
            Side::LrnOut => "lrn",
            Side::BnMean => "mean",
            Side::BnVar => "var",
        }
    }

    /// The side buffers `op` keeps, in a fixed order.
    pub fn of(op: &Op) -> &'static [Side] {
        match op {
            Op::Lrn { .. } => &[Side::LrnScale],
            Op::MaxPool { .. } => &[Side::PoolArgmax],
            Op::SoftmaxXent => &[Side::SoftmaxProbs],
            Op::LrnMaxPool { .. } => &[Side::LrnOut, Side::LrnScale, Side::PoolArgmax],
            Op::BatchNorm { .. } => &[Side::BnMean, Side::BnVar],
            _ => &[],
        }
    }
}

/// One planned buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// The node that writes it.
    pub node: NodeId,
    /// `None`: the node's output; `Some`: one of its side buffers.
    pub side: Option<Side>,
    /// `node name` or `node name#side`, with `@device`.
    pub name: String,
    pub device: Device,
    pub kind: BufKind,
    /// Bytes the value needs (not rounded).
    pub size: u64,
    /// Byte offset in its device's arena, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Position of the op that writes it (0 for inputs and persistent buffers).
    pub first: usize,
    /// Position of its last reader.
    pub last: usize,
    /// Index in [`Plan::buffers`] of the buffer this one overwrites in place.
    pub in_place_of: Option<usize>,
}

impl Buffer {
    /// The size rounded up to [`ALIGN`]: the bytes it occupies.
    pub fn span(&self) -> u64 {
        align(self.size)
    }
    pub fn persistent(&self) -> bool {
        matches!(self.kind, BufKind::Parameter | BufKind::State)
    }
}

/// One device's arena and its numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Arena {
    pub device: Device,
    /// Bytes to allocate.
    pub size: u64,
    /// Bytes of the persistent region `[0, persistent)`.
    pub persistent: u64,
    /// Sum of all its buffers, each in its own place.
    pub no_reuse: u64,
    /// The largest total of slots live at one position.
    pub lower_bound: u64,
}

/// Which execution order a plan uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    Topo,
    Greedy,
}

impl OrderKind {
    pub fn name(self) -> &'static str {
        match self {
            OrderKind::Topo => "topological",
            OrderKind::Greedy => "greedy (frees memory early)",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub graph_name: String,
    pub batch: u64,
    pub order_kind: OrderKind,
    /// The order the step must run in.
    pub order: Vec<NodeId>,
    pub buffers: Vec<Buffer>,
    /// One per device that has a buffer, by device.
    pub arenas: Vec<Arena>,
    pub(super) outputs: HashMap<NodeId, usize>,
    pub(super) sides: HashMap<(NodeId, Side), usize>,
}

impl Plan {
    /// The buffer holding `n`'s value (none for `sgd_update`).
    pub fn output(&self, n: NodeId) -> Option<&Buffer> {
        self.outputs.get(&n).and_then(|&i| self.buffers.get(i))
    }
    /// The side buffer `s` that `n` keeps for its backward op, if it has one.
    pub fn side(&self, n: NodeId, s: Side) -> Option<&Buffer> {
        self.sides.get(&(n, s)).and_then(|&i| self.buffers.get(i))
    }
    pub fn arena(&self, d: Device) -> Option<&Arena> {
        self.arenas.iter().find(|a| a.device == d)
    }
    /// Sum of all buffers with no reuse.
    pub fn no_reuse(&self) -> u64 {
        self.arenas
            .iter()
            .fold(0u64, |t, a| t.saturating_add(a.no_reuse))
    }
    /// Sum of the arena sizes.
    pub fn planned(&self) -> u64 {
        self.arenas
            .iter()
            .fold(0u64, |t, a| t.saturating_add(a.size))
    }
    /// Sum over devices of the largest live total.
    pub fn lower_bound(&self) -> u64 {
        self.arenas
            .iter()
            .fold(0u64, |t, a| t.saturating_add(a.lower_bound))
    }
}

pub fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN).saturating_mul(ALIGN)
}
