//! IR -> IR passes and the analyses that read their result. Each pass is
//! a free function in its own file whose `//!` comment states what it
//! assumes and guarantees: `autodiff` (the training step), `fuse` (the
//! fusion rewrites), `forward` (the forward part of a step, for
//! evaluation) and `fold_bn` (batchnorms folded into the layer before
//! them, for evaluation). `pipeline` runs a named, ordered list of them
//! (`autodiff,fuse` by default, each fusion rewrite a pass of its own)
//! and runs the verifier after every pass. `memplan` (with its picture,
//! `memplan_svg`) is an analysis: it plans the memory of the graph a
//! pipeline produced and does not change it. `trainable` decides, without
//! data, whether `train` can run a network (what `netc check` enforces).
//! `conv_algo` is an analysis too: it chooses each convolution's
//! algorithm per direction by a cost model.

pub mod autodiff;
pub mod conv_algo;
pub mod fold_bn;
pub mod forward;
pub mod fuse;
pub mod memplan;
pub mod memplan_svg;
pub mod pipeline;
pub mod trainable;
