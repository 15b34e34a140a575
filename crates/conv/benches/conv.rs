//! Convolution benches arrive with the phase-3 kernels; cuDNN's baseline already exists in
//! `ckb_common::baselines::Cudnn`.
fn main() {
    println!("conv: no kernels yet (phase 3); nothing to bench");
}
