//! Convolution kernels (implicit GEMM, Winograd, direct) written with CuTe.

#![deny(missing_docs)]

pub mod reference;
