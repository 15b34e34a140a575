//! Convolution kernels (implicit GEMM, Winograd, direct) written with CuTe.
//!
//! Follow a call: [`problem`] (the typed [`Conv2dProblem`], its validation, the crate's
//! errors), then [`reference`](mod@reference) (the float64 CPU reference the kernels are checked
//! against). The kernels, their variants table and their launches come with phase 3 of the
//! roadmap; each takes a problem that [`Conv2dProblem::validate`] accepted.
//!
//! ```
//! # use ckb_conv::Conv2dProblem;
//! // ResNet-50's 3x3, 64 -> 64 channels at 56x56, padding 1.
//! let layer = Conv2dProblem::new(256, (56, 56), 64, 64, (3, 3)).with_padding(1, 1);
//! layer.validate()?;
//! assert_eq!(layer.output_hw()?, (56, 56));
//! assert_eq!(layer.flops()?, 2.0 * 256.0 * 64.0 * 56.0 * 56.0 * 64.0 * 9.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod problem;
pub mod reference;

pub use problem::{Conv2dProblem, ConvError, ConvResult, ConvShapeError, GemmDims, MAX_ELEMENTS, MAX_EXTENT};
