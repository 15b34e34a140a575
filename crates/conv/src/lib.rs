//! Convolution kernels (implicit GEMM, Winograd, direct) written with CuTe.

pub mod reference;
