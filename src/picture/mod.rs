//! Pictures of a run and of a network, as SVG (and PNG for weights): no
//! libraries needed, viewable in any browser. The compiler's own pictures
//! (the memory plan, the Graphviz graph) sit with the passes and the IR
//! they draw.
//!
//! - [`curves`]: learning curves of a run, and of a sweep's variants.
//! - [`kernels`]: the first layer's learned kernels (`netc kernels`), the
//!   paper's figure 3.

pub mod curves;
pub mod kernels;
