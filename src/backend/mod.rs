//! Backends that execute the IR.
pub mod cpu;
pub mod cuda;
pub mod layout;
