//! The graph IR: a `StableDiGraph` of [`Node`]s (op, name, device, type,
//! source span, and the forward node a backward node differentiates)
//! joined by [`Edge`]s that carry the input port and whether they cross
//! towers. Node ids stay valid while passes delete nodes, so relations
//! between nodes are recorded as ids ([`Node::forward`], the `of` of the
//! ops that apply a dropout's mask); names are for display.
//! Invariants (checked by [`verify::verify`]): acyclic; each node's inputs
//! occupy ports `0..n` exactly once; every type agrees with
//! [`infer::infer`]; an edge is marked cross-tower iff its endpoints sit on
//! different towers; every recorded relation names a node of the graph, of
//! the kind the op needs, on the same device.

pub mod cost;
pub mod dot;
mod id;
pub mod infer;
pub mod op;
pub mod order;
pub mod print;
pub mod table;
pub mod train;
pub mod ty;
pub mod verify;

use petgraph::Direction;
use petgraph::stable_graph::StableDiGraph;
use petgraph::visit::EdgeRef;
use serde::Serialize;

pub use id::{GradPart, NodeId};
pub use op::{Activation, FanMode, Init, InputKind, Nonlinearity, Op, ParamRole};
pub use ty::Ty;

use crate::span::Span;

/// Where a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Inputs: every tower receives its own copy (the paper fed each GPU
    /// the whole batch), so edges from here never cross towers.
    Shared,
    /// Tower (GPU) number `0..towers`.
    Tower(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Shared => write!(f, "shared"),
            Device::Tower(t) => write!(f, "t{t}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub op: Op,
    /// `layer/op` for layers (`conv1/conv`, `conv1/relu`), `layer/op.weight`
    /// for parameters, the input's name for inputs. Unique per device.
    pub name: String,
    /// The `.net` binding this node came from (`conv1`); the unit of the
    /// architecture table and of `train.init` paths.
    pub layer: String,
    pub device: Device,
    pub ty: Ty,
    pub span: Span,
    /// The forward node this node differentiates or updates (set by
    /// `passes::autodiff` on every node it adds but the velocities, kept by
    /// `passes::fuse`): a layer's gradients, the gradient of a ReLU, LRN,
    /// pooling, dropout, concat or loss, the sum of a value's gradients, a
    /// parameter's update. `None` on forward nodes.
    #[serde(skip)]
    pub forward: Option<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// Which input of the destination this edge feeds.
    pub port: u32,
    /// Source and destination run on different towers (a cross-GPU copy).
    pub cross: bool,
}

/// The gradient nodes of one conv or dense layer ([`Graph::layer_grads`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerGrads {
    pub dx: Option<NodeId>,
    pub dw: Option<NodeId>,
    pub db: Option<NodeId>,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub towers: u32,
    pub g: StableDiGraph<Node, Edge>,
}

impl Graph {
    pub fn new(name: impl Into<String>, towers: u32) -> Self {
        Graph {
            name: name.into(),
            towers,
            g: StableDiGraph::default(),
        }
    }

    pub fn add(&mut self, node: Node) -> NodeId {
        self.g.add_node(node)
    }

    /// Connects `src` to input `port` of `dst`, marking tower crossings.
    pub fn connect(&mut self, src: NodeId, dst: NodeId, port: u32) {
        let cross = crosses(self.g[src].device, self.g[dst].device);
        self.g.add_edge(src, dst, Edge { port, cross });
    }

    /// Inputs of `n` in port order.
    pub fn inputs(&self, n: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (e.weight().port, e.source()))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Consumers of `n` (each once per edge), in a deterministic order.
    pub fn users(&self, n: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .g
            .edges_directed(n, Direction::Outgoing)
            .map(|e| e.target())
            .collect();
        v.sort_unstable();
        v
    }

    pub fn node(&self, n: NodeId) -> &Node {
        &self.g[n]
    }

    /// The node `n`, if the graph has it (a recorded relation may not).
    pub fn get(&self, n: NodeId) -> Option<&Node> {
        self.g.node_weight(n)
    }

    /// The first node, by index, that records `f` as its forward node and
    /// whose op `pick` accepts, with what `pick` returned.
    pub fn backward_of<T>(
        &self,
        f: NodeId,
        pick: impl Fn(&Op) -> Option<T>,
    ) -> Option<(NodeId, T)> {
        self.g
            .node_indices()
            .filter(|&n| self.g[n].forward == Some(f))
            .find_map(|n| pick(&self.g[n].op).map(|t| (n, t)))
    }

    /// The key of the random stream of the dropout mask that `n` draws or
    /// applies (`rng::dropout_stream`): the name of the forward dropout (a
    /// `dropout`'s own, a `dense_relu_dropout`'s `of`, that of the dropout
    /// a `dropout_grad` or `grad_chain` names). `None`: `n` uses no mask,
    /// or names a node the graph lacks.
    pub fn mask_key(&self, n: NodeId) -> Option<&str> {
        let node = self.get(n)?;
        match &node.op {
            Op::Dropout { .. } => Some(&node.name),
            Op::DenseReluDropout { of, .. } => Some(of),
            op => op
                .mask_of()
                .and_then(|m| self.get(m))
                .map(|m| m.name.as_str()),
        }
    }

    /// The gradients of conv or dense layer `f` (plain or fused), by part.
    pub fn layer_grads(&self, f: NodeId) -> LayerGrads {
        let part = |p: GradPart| {
            self.backward_of(f, |op| (op.grad_part() == Some(p)).then_some(()))
                .map(|(n, ())| n)
        };
        LayerGrads {
            dx: part(GradPart::Input),
            dw: part(GradPart::Weight),
            db: part(GradPart::Bias),
        }
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// Finds a node by name and device.
    pub fn find(&self, name: &str, device: Device) -> Option<NodeId> {
        self.g
            .node_indices()
            .find(|&n| self.g[n].name == name && self.g[n].device == device)
    }

    /// The first node, by index, whose op satisfies `f`.
    pub fn find_op(&self, f: impl Fn(&Op) -> bool) -> Option<NodeId> {
        self.g.node_indices().find(|&n| f(&self.g[n].op))
    }

    /// The image input, the label input, the loss and the logits of a
    /// network that has them (every trainable one).
    pub fn training_io(&self) -> Result<(NodeId, NodeId, NodeId, NodeId), &'static str> {
        let image = self
            .find_op(|op| {
                *op == Op::Input {
                    kind: InputKind::Tensor,
                }
            })
            .ok_or("image")?;
        let label = self
            .find_op(|op| {
                *op == Op::Input {
                    kind: InputKind::Labels,
                }
            })
            .ok_or("label")?;
        let loss = self
            .find_op(|op| *op == Op::SoftmaxXent)
            .ok_or("softmax_xent")?;
        let logits = *self.inputs(loss).first().ok_or("softmax_xent")?;
        Ok((image, label, loss, logits))
    }

    /// Number of edges that cross towers.
    pub fn cross_edges(&self) -> usize {
        self.g.edge_weights().filter(|e| e.cross).count()
    }
}

pub fn crosses(a: Device, b: Device) -> bool {
    matches!((a, b), (Device::Tower(x), Device::Tower(y)) if x != y)
}
