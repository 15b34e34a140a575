//! Build support shared by every operator crate's `build.rs` and by xtask: one place that
//! knows where the CUDA toolchain and CUTLASS are and how kernels are compiled.

#![deny(missing_docs)]

pub mod compile;
pub mod toolchain;

pub use compile::{dependency_includes, parse_ptxas_report, KernelLibrary, KernelResources, GENCODE};
pub use toolchain::{
    pinned_dir, workspace_root, Toolchain, ToolchainError, ToolchainSource, ToolchainVersions, PINNED_PACKAGES,
    STAMP_FILE,
};
