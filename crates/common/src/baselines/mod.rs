//! Vendor and raw-CUDA baselines, run on the same stream and inputs as our kernels.

pub mod naive;
