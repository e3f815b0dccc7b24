//! Where a step's buffers live, for every backend.

/// How a backend lays out the buffers of the step it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// One arena per device at the memory plan's offsets: memory reused,
    /// elementwise ops in place.
    #[default]
    Planned,
    /// Every buffer in its own range or allocation (no reuse): every value
    /// of the step can be read after it.
    Separate,
}
