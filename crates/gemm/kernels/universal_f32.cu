// The universal (any shape, stride and alignment) GEMM for f32 inputs.
#include "gemm/launcher.cuh"

CKB_UNIVERSAL_GEMM(ckb_gemm_universal_f32, float)
