// Element-wise arithmetic on two streamed operands: add, sub, mul, fused add+ReLU, axpy.
#include "elementwise.cuh"

using ckb::bf16;
using ckb::f16;
using ckb::f32;

CKB_EW_BINARY(add, ckb::ew::Add, f32, f32)
CKB_EW_BINARY(add, ckb::ew::Add, f16, f16)
CKB_EW_BINARY(add, ckb::ew::Add, bf16, bf16)
CKB_EW_BINARY(sub, ckb::ew::Sub, f32, f32)
CKB_EW_BINARY(sub, ckb::ew::Sub, f16, f16)
CKB_EW_BINARY(sub, ckb::ew::Sub, bf16, bf16)
CKB_EW_BINARY(mul, ckb::ew::Mul, f32, f32)
CKB_EW_BINARY(mul, ckb::ew::Mul, f16, f16)
CKB_EW_BINARY(mul, ckb::ew::Mul, bf16, bf16)
CKB_EW_BINARY(add_relu, ckb::ew::AddRelu, f32, f32)
CKB_EW_BINARY(add_relu, ckb::ew::AddRelu, f16, f16)
CKB_EW_BINARY(add_relu, ckb::ew::AddRelu, bf16, bf16)
CKB_EW_AXPY(f32, f32)
CKB_EW_AXPY(f16, f16)
CKB_EW_AXPY(bf16, bf16)
