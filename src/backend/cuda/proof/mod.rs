//! The alias proof: [`alias::check`] shows that no step of a program is
//! handed memory it cannot share, and that every mirror a step reads has
//! been filled by a copy. Generation and placement run it on what they
//! produce.
//!
//! May import: `backend::cuda::program`.

pub mod alias;
