//! Builds common's CUDA runtime helpers (`kernels/`). The raw baselines and the CUB shim
//! are their own package, `ckb-baselines-cuda` (the workspace's `baselines/`).

use ckb_cuda_build::KernelLibrary;

fn main() {
    KernelLibrary::from_kernels_dir("ckb_common_cuda").build();
}
