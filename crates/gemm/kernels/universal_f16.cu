// The universal (any shape, stride and alignment) GEMM for f16 inputs.
#include "gemm/launcher.cuh"

CKB_UNIVERSAL_GEMM(ckb_gemm_universal_f16, cutlass::half_t)
