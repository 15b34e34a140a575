//! Hopper GEMM kernels written with CuTe, driven from Rust.

pub mod reference;
