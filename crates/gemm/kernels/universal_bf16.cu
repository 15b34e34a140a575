// The universal (any shape, stride and alignment) GEMM for bf16 inputs.
#include "gemm/launcher.cuh"

CKB_UNIVERSAL_GEMM(ckb_gemm_universal_bf16, cutlass::bfloat16_t)
