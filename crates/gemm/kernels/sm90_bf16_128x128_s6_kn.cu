// bf16 inputs, 128x128x64 tile, 6 stages, K-major A (row-major) x N-major B (row-major); see variants.rs.
#include "gemm/launcher.cuh"

CKB_WS_GEMM_VARIANT(ckb_gemm_sm90_bf16_128x128_s6_kn, cutlass::bfloat16_t, 128, 128, 64, 6, true, false)
