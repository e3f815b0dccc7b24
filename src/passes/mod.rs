//! IR -> IR passes. Each pass is a free function in its own file; the
//! verifier runs after every pass in tests.

pub mod autodiff;
pub mod fuse;
pub mod memplan;
pub mod memplan_svg;
