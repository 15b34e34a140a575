//! The native library of the raw CUDA baselines and the CUB shim (`cuda/*.cu`, `cub/*.cu`).
//!
//! This crate holds no Rust API: its build script compiles the `.cu` files into
//! `libckb_baselines_cuda.a`, which cargo links into every binary that depends on it.
//! ckb-common declares the `extern "C"` entry points beside their safe wrappers
//! (`ckb_common::baselines::{cub, naive}`) and names this crate with `extern crate` so that
//! the library is linked although no Rust item of it is used.

#![deny(missing_docs)]
