//! Code generation: training graph -> [`CudaProgram`] (CUDA C source and
//! launch list). Pure: no device, no driver, no toolkit.
//!
//! Assumes a verified graph built by `passes::autodiff` (backward nodes
//! named `F.dx`, `F.dw`, `F.db` after the forward node `F` they
//! differentiate) and runs exactly the computation of the CPU executor
//! (`backend::cpu::exec`), in its order: nodes in `ir::order::topo` order;
//! the gradients of one convolution or dense layer are all computed when
//! the first of them is reached (so a weight's update never precedes the
//! input gradient that reads it). Convolutions are GEMMs over an im2col
//! matrix of the whole batch (`C·K·K × N·OH·OW`), dense layers plain GEMMs;
//! both are cuBLAS `sgemm` steps followed by a bias epilogue kernel that
//! also restores the NCHW layout. Everything else is one generated kernel
//! per op from the table in [`super::kernels`].

use std::collections::HashSet;

use super::buffers::{self, Buffers, Side, node_key};
use super::kernels::{Kernel, spec};
use super::program::{Arg, CudaProgram, Gemm, Launch, Step};
use super::render::{PRELUDE, Source};
use crate::ir::{Graph, NodeId, Op, order};
use crate::rng;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CodegenError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("the graph has no `{0}`; CUDA code is generated for a training step")]
    Missing(&'static str),
    #[error("`{name}` has no forward node `{base}`")]
    Orphan { name: String, base: String },
    #[error("`{name}` has {count} inputs; generated kernels take at most 8")]
    TooManyInputs { name: String, count: usize },
    #[error("the batch size must be at least 1")]
    EmptyBatch,
    #[error("`{name}` is a fused `{op}`; CUDA code is generated from the unfused training step")]
    Fused { name: String, op: &'static str },
    #[error("`{name}` is too large for one launch ({elems} elements)")]
    TooLarge { name: String, elems: usize },
}

struct Gen<'g> {
    g: &'g Graph,
    batch: usize,
    bufs: Buffers,
    src: Source,
    steps: Vec<Step>,
}

/// `(C, H, W)` of an activation; flat activations are `(len, 1, 1)`.
fn chw(g: &Graph, n: NodeId) -> (usize, usize, usize) {
    match g.node(n).ty.dims() {
        [c, h, w] => (*c as usize, *h as usize, *w as usize),
        d => (d.iter().product::<u64>() as usize, 1, 1),
    }
}

impl Gen<'_> {
    fn buf(&self, n: NodeId) -> usize {
        self.bufs.node[&n]
    }

    fn launch(&mut self, n: NodeId, k: Kernel, args: Vec<Arg>) -> Result<(), CodegenError> {
        let s = spec(&k);
        let (grid, block) = s.grid_block();
        if let super::render::Shape::Elementwise { total } = s.shape
            && total > (i32::MAX as usize) * 64
        {
            return Err(CodegenError::TooLarge {
                name: node_key(self.g, n),
                elems: total,
            });
        }
        debug_assert_eq!(s.params.len(), args.len());
        let kernel = self.src.add(&s);
        self.steps.push(Step::Launch(Launch {
            kernel,
            grid,
            block,
            args,
            node: node_key(self.g, n),
        }));
        Ok(())
    }

    /// Row-major `C[M×N] = op(A)·op(B)` (`op(A)` is `M×K`), written as the
    /// column-major cuBLAS call `Cᵀ = op(B)ᵀ·op(A)ᵀ`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_rm(
        &mut self,
        n: NodeId,
        c: usize,
        a: usize,
        ta: bool,
        b: usize,
        tb: bool,
        (mm, nn, kk): (usize, usize, usize),
    ) {
        self.steps.push(Step::Gemm(Gemm {
            transa: tb,
            transb: ta,
            m: nn,
            n: mm,
            k: kk,
            alpha: 1.0,
            a: b,
            lda: if tb { kk } else { nn },
            b: a,
            ldb: if ta { mm } else { kk },
            beta: 0.0,
            c,
            ldc: nn,
            node: node_key(self.g, n),
        }));
    }

    fn node(&mut self, n: NodeId, done: &mut HashSet<NodeId>) -> Result<(), CodegenError> {
        let g = self.g;
        let node = g.node(n);
        let ins = g.inputs(n);
        let b = self.batch;
        let total = buffers::elems(&node.ty, b);
        let inb: Vec<usize> = ins
            .iter()
            .map(|i| self.bufs.node.get(i).copied().unwrap_or(0))
            .collect();
        let a = |i: usize| Arg::Buf(inb[i]);
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => {}
            Op::ConvRelu { .. }
            | Op::DenseRelu { .. }
            | Op::DenseReluDropout { .. }
            | Op::LrnMaxPool { .. }
            | Op::ConvReluGradInput { .. }
            | Op::ConvReluGradWeight { .. }
            | Op::ConvReluGradBias
            | Op::DenseReluGradInput { .. }
            | Op::DenseReluGradWeight { .. }
            | Op::DenseReluGradBias { .. }
            | Op::LrnMaxPoolGrad { .. }
            | Op::GradChain { .. } => {
                return Err(CodegenError::Fused {
                    name: node.name.clone(),
                    op: node.op.mnemonic(),
                });
            }
            Op::Conv {
                filters,
                size,
                stride,
                pad,
            } => {
                let (c, h, w) = chw(g, ins[0]);
                let (_, oh, ow) = chw(g, n);
                let (f, k) = (*filters as usize, *size as usize);
                let (col, tmp) = (self.bufs.col.unwrap_or(0), self.bufs.tmp.unwrap_or(0));
                let im = Kernel::Im2col {
                    n: b,
                    c,
                    h,
                    w,
                    k,
                    stride: *stride as usize,
                    pad: *pad as usize,
                    oh,
                    ow,
                };
                self.launch(n, im, vec![a(0), Arg::Buf(col)])?;
                let np = b * oh * ow;
                self.gemm_rm(
                    n,
                    tmp,
                    self.buf(ins[1]),
                    false,
                    col,
                    false,
                    (f, np, c * k * k),
                );
                let ep = Kernel::BiasEpilogue {
                    n: b,
                    f,
                    p: oh * ow,
                };
                self.launch(n, ep, vec![Arg::Buf(tmp), a(2), Arg::Buf(self.buf(n))])?;
            }
            Op::Dense { units } => {
                let inp = g.node(ins[0]).ty.numel() as usize;
                let u = *units as usize;
                let tmp = self.bufs.tmp.unwrap_or(0);
                self.gemm_rm(
                    n,
                    tmp,
                    self.buf(ins[1]),
                    false,
                    self.buf(ins[0]),
                    true,
                    (u, b, inp),
                );
                let ep = Kernel::BiasEpilogue { n: b, f: u, p: 1 };
                self.launch(n, ep, vec![Arg::Buf(tmp), a(2), Arg::Buf(self.buf(n))])?;
            }
            Op::Relu => {
                self.launch(n, Kernel::Relu { total }, vec![a(0), Arg::Buf(self.buf(n))])?
            }
            Op::ReluGrad => self.launch(
                n,
                Kernel::ReluGrad { total },
                vec![a(0), a(1), Arg::Buf(self.buf(n))],
            )?,
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => {
                let (c, h, w) = chw(g, n);
                let kern = Kernel::LrnFwd {
                    n: b,
                    c,
                    p: h * w,
                    size: *size as usize,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                };
                let scale = self.bufs.side[&(n, Side::Scale)];
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Buf(scale)])?;
            }
            Op::LrnGrad {
                size,
                alpha,
                beta,
                k,
            } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, n);
                let kern = Kernel::LrnBwd {
                    n: b,
                    c,
                    p: h * w,
                    size: *size as usize,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                };
                let scale = self.bufs.side[&(f, Side::Scale)];
                let args = vec![a(0), a(1), Arg::Buf(scale), a(2), Arg::Buf(self.buf(n))];
                self.launch(n, kern, args)?;
            }
            Op::MaxPool { size, stride } => {
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::MaxPoolFwd {
                    planes: b * c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let am = self.bufs.side[&(n, Side::Argmax)];
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Buf(am)])?;
            }
            Op::MaxPoolGrad { size, stride } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::MaxPoolBwd {
                    planes: b * c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let am = self.bufs.side[&(f, Side::Argmax)];
                self.launch(n, kern, vec![a(1), Arg::Buf(am), Arg::Buf(self.buf(n))])?;
            }
            Op::Dropout { rate } => {
                let kern = Kernel::Dropout {
                    total,
                    rate: *rate,
                    stream: rng::dropout_stream(&node.name, node.device),
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Seed])?;
            }
            Op::DropoutGrad { rate, of } => {
                let kern = Kernel::Dropout {
                    total,
                    rate: *rate,
                    stream: rng::dropout_stream(of, node.device),
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Seed])?;
            }
            Op::Concat => {
                self.check_inputs(n, ins.len())?;
                let (_, h, w) = chw(g, n);
                let parts = ins.iter().map(|i| chw(g, *i).0).collect();
                let mut args: Vec<Arg> = (0..ins.len()).map(a).collect();
                args.push(Arg::Buf(self.buf(n)));
                self.launch(
                    n,
                    Kernel::Concat {
                        n: b,
                        p: h * w,
                        parts,
                    },
                    args,
                )?;
            }
            Op::Slice { start, len } => {
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::Slice {
                    n: b,
                    p: h * w,
                    c,
                    start: *start as usize,
                    len: *len as usize,
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::Add => {
                self.check_inputs(n, ins.len())?;
                let mut args: Vec<Arg> = (0..ins.len()).map(a).collect();
                args.push(Arg::Buf(self.buf(n)));
                let kern = Kernel::Add {
                    total,
                    inputs: ins.len(),
                };
                self.launch(n, kern, args)?;
            }
            Op::SoftmaxXent => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let probs = self.bufs.side[&(n, Side::Probs)];
                let kern = Kernel::SoftmaxXentFwd { n: b, classes };
                let args = vec![a(0), a(1), Arg::Buf(probs), Arg::Buf(self.buf(n))];
                self.launch(n, kern, args)?;
            }
            Op::SoftmaxXentGrad => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let loss = g
                    .node_ids()
                    .find(|m| g.node(*m).op == Op::SoftmaxXent)
                    .ok_or(CodegenError::Missing("softmax_xent"))?;
                let probs = self.bufs.side[&(loss, Side::Probs)];
                let kern = Kernel::SoftmaxXentBwd { n: b, classes };
                self.launch(n, kern, vec![Arg::Buf(probs), a(1), Arg::Buf(self.buf(n))])?;
            }
            Op::ConvGradInput { .. }
            | Op::ConvGradWeight { .. }
            | Op::ConvGradBias
            | Op::DenseGradInput { .. }
            | Op::DenseGradWeight
            | Op::DenseGradBias => {
                let f = self.forward_of(n)?;
                if done.insert(f) {
                    self.layer_grads(f)?;
                }
            }
            Op::SgdUpdate {
                momentum,
                weight_decay,
            } => {
                let kern = Kernel::Sgd {
                    total: buffers::elems(&g.node(ins[0]).ty, b),
                    momentum: *momentum,
                    weight_decay: *weight_decay,
                };
                self.launch(n, kern, vec![a(0), a(1), a(2), Arg::Lr])?;
            }
        }
        Ok(())
    }

    fn check_inputs(&self, n: NodeId, count: usize) -> Result<(), CodegenError> {
        if count > 8 {
            return Err(CodegenError::TooManyInputs {
                name: node_key(self.g, n),
                count,
            });
        }
        Ok(())
    }

    /// The forward node `F` of a backward node named `F.suffix`.
    fn forward_of(&self, n: NodeId) -> Result<NodeId, CodegenError> {
        let node = self.g.node(n);
        let base = node
            .name
            .rsplit_once('.')
            .map_or(node.name.as_str(), |(b, _)| b);
        self.g
            .find(base, node.device)
            .ok_or_else(|| CodegenError::Orphan {
                name: node.name.clone(),
                base: base.to_string(),
            })
    }

    /// All gradients of conv or dense layer `f`, as the CPU's one call.
    fn layer_grads(&mut self, f: NodeId) -> Result<(), CodegenError> {
        let g = self.g;
        let fnode = g.node(f);
        let get = |s: &str| g.find(&format!("{}.{s}", fnode.name), fnode.device);
        let (dx, dw, db) = (get("dx"), get("dw"), get("db"));
        let Some(dw) = dw else { return Ok(()) };
        let dy = g.inputs(dw)[1];
        let fins = g.inputs(f);
        let b = self.batch;
        let (x, w) = (self.buf(fins[0]), self.buf(fins[1]));
        let dyb = self.buf(dy);
        match &fnode.op {
            Op::Conv {
                filters,
                size,
                stride,
                pad,
            } => {
                let (c, h, wd) = chw(g, fins[0]);
                let (_, oh, ow) = chw(g, f);
                let (nf, k, p) = (*filters as usize, *size as usize, oh * ow);
                let (col, tmp) = (self.bufs.col.unwrap_or(0), self.bufs.tmp.unwrap_or(0));
                if let Some(db) = db {
                    let kern = Kernel::BiasGrad { n: b, f: nf, p };
                    self.launch(db, kern, vec![Arg::Buf(dyb), Arg::Buf(self.buf(db))])?;
                }
                let tc = Kernel::ToChannelMajor { n: b, f: nf, p };
                self.launch(dw, tc, vec![Arg::Buf(dyb), Arg::Buf(tmp)])?;
                let geo = (k, *stride as usize, *pad as usize);
                let im = Kernel::Im2col {
                    n: b,
                    c,
                    h,
                    w: wd,
                    k: geo.0,
                    stride: geo.1,
                    pad: geo.2,
                    oh,
                    ow,
                };
                self.launch(dw, im, vec![Arg::Buf(x), Arg::Buf(col)])?;
                let ckk = c * k * k;
                // dW[F×CKK] = dYᵀ[F×NP] · colᵀ
                self.gemm_rm(dw, self.buf(dw), tmp, false, col, true, (nf, ckk, b * p));
                if let Some(dx) = dx {
                    // dcol[CKK×NP] = Wᵀ · dYᵀ, then scattered back (as a gather).
                    self.gemm_rm(dx, col, w, true, tmp, false, (ckk, b * p, nf));
                    let c2 = Kernel::Col2im {
                        n: b,
                        c,
                        h,
                        w: wd,
                        k: geo.0,
                        stride: geo.1,
                        pad: geo.2,
                        oh,
                        ow,
                    };
                    self.launch(dx, c2, vec![Arg::Buf(col), Arg::Buf(self.buf(dx))])?;
                }
            }
            Op::Dense { units } => {
                let inp = g.node(fins[0]).ty.numel() as usize;
                let u = *units as usize;
                if let Some(db) = db {
                    let kern = Kernel::BiasGrad { n: b, f: u, p: 1 };
                    self.launch(db, kern, vec![Arg::Buf(dyb), Arg::Buf(self.buf(db))])?;
                }
                // dW[U×In] = dYᵀ · x
                self.gemm_rm(dw, self.buf(dw), dyb, true, x, false, (u, inp, b));
                if let Some(dx) = dx {
                    // dx[N×In] = dY · W
                    self.gemm_rm(dx, self.buf(dx), dyb, false, w, false, (b, inp, u));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Generates the CUDA program of one training step of `graph` at `batch`.
pub fn generate(graph: &Graph, batch: usize) -> Result<CudaProgram, CodegenError> {
    if batch == 0 {
        return Err(CodegenError::EmptyBatch);
    }
    let order = order::topo(graph).map_err(|_| CodegenError::Cycle)?;
    let (image, labels, loss, logits) = graph.training_io().map_err(CodegenError::Missing)?;
    graph
        .find_op(|op| matches!(op, Op::SgdUpdate { .. }))
        .ok_or(CodegenError::Missing("sgd_update"))?;
    let bufs = buffers::assign(graph, &order, batch);
    let mut gen_ = Gen {
        g: graph,
        batch,
        bufs,
        src: Source::default(),
        steps: Vec::new(),
    };
    let mut done = HashSet::new();
    for &n in &order {
        gen_.node(n, &mut done)?;
    }
    let mut source = format!(
        "// CUDA C for one training step of network `{}` at batch {batch}, generated by netc.\n\
         // Buffers and launches: see launch.txt. Kernels are extern \"C\" with sizes baked in.\n\n",
        graph.name
    );
    source.push_str(PRELUDE);
    source.push_str(&gen_.src.text);
    Ok(CudaProgram {
        network: graph.name.clone(),
        batch,
        source,
        kernels: gen_.src.kernels,
        loss: gen_.bufs.node[&loss],
        logits: gen_.bufs.node[&logits],
        image: gen_.bufs.node[&image],
        labels: gen_.bufs.node[&labels],
        buffers: gen_.bufs.decls,
        steps: gen_.steps,
    })
}
