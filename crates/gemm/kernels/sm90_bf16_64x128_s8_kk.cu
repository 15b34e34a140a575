// bf16 inputs, 64x128x64 tile, 8 stages, K-major A (row-major) x K-major B (column-major); see variants.rs.
#include "gemm/launcher.cuh"

CKB_WS_GEMM_VARIANT(ckb_gemm_sm90_bf16_64x128_s8_kk, cutlass::bfloat16_t, 64, 128, 64, 8, true, true)
