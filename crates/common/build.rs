//! Builds common's CUDA runtime helpers (`kernels/`) and exports its device headers
//! (`kernels/common/`: element types, vector accesses, warp and CTA reductions) through
//! `links = "ckb_common_cuda"`: a crate that depends on ckb-common sees
//! `DEP_CKB_COMMON_CUDA_INCLUDE` in its build script, and ckb-cuda-build puts it on nvcc's
//! include path (`#include "common/vector_io.cuh"`). The raw baselines and the CUB shim are
//! their own package, `ckb-baselines-cuda` (the workspace's `baselines/`).

use ckb_cuda_build::KernelLibrary;

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    println!("cargo:include={}", manifest.join("kernels").display());
    KernelLibrary::from_kernels_dir("ckb_common_cuda").build();
}
