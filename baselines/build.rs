//! Builds the raw CUDA baselines in `cuda/` and the CUB shim in `cub/` into one static
//! library. Everything it reads is inside this package, so ckb-common builds from a path or
//! git dependency outside the workspace too.

use ckb_cuda_build::KernelLibrary;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    KernelLibrary::new("ckb_baselines_cuda").sources_in(manifest.join("cuda")).sources_in(manifest.join("cub")).build();
}
