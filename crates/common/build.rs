//! Builds common's CUDA pieces: the runtime helpers and the raw baselines in `baselines/`
//! (the naive CUDA kernels and the CUB shim).

use ckb_cuda_build::{workspace_root, KernelLibrary};
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let baselines = workspace_root(&manifest).join("baselines");
    KernelLibrary::from_kernels_dir("ckb_common_cuda")
        .sources_in(baselines.join("cuda"))
        .sources_in(baselines.join("cub"))
        .build();
}
