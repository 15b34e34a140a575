//! Memory-bound streaming kernels: reductions and the element-wise family.
//!
//! Follow a call: [`problem`] (typed problems, validation, errors), [`variants`] (the table of
//! compiled variants), `launch` (the `extern "C"` launchers of `kernels/*.cu`), [`reference`](mod@reference)
//! (float64 CPU references), [`verify`] (device results checked against them).

#![deny(missing_docs)]

pub mod elementwise;
mod launch;
pub mod problem;
pub mod reduce;
pub mod reference;
pub mod variants;
pub mod verify;

pub use problem::{ArgOp, EwElement, ReduceError, ReduceOp, ReduceOutput, ReduceResult};
pub use reduce::Reducer;
