//! Placement: pure transforms of a generated program onto several logical
//! devices. [`split`] puts each tower on its own device (cross-device reads
//! become copies into mirrors, proved by `proof::alias`); [`streams`] turns a
//! placed program into one command list per stream (steps, and the events
//! that order copies).
//!
//! May import: `backend::cuda::{program, proof}`.

pub mod split;
pub mod streams;
