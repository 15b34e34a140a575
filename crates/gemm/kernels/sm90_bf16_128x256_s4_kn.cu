// bf16 inputs, 128x256x64 tile, 4 stages, K-major A (row-major) x N-major B (row-major); see variants.rs.
#include "gemm/launcher.cuh"

CKB_WS_GEMM_VARIANT(ckb_gemm_sm90_bf16_128x256_s4_kn, cutlass::bfloat16_t, 128, 256, 64, 4, true, false)
