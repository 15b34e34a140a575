//! Row-wise normalisation kernels: softmax, log-softmax, layernorm, rmsnorm.

pub mod reference;
