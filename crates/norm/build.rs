fn main() {
    ckb_cuda_build::KernelLibrary::from_kernels_dir("ckb_norm_kernels").build();
}
