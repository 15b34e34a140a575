// f16 inputs, 128x128x64 tile, 6 stages, K-major A (row-major) x N-major B (row-major); see variants.rs.
#include "gemm/launcher.cuh"

CKB_WS_GEMM_VARIANT(ckb_gemm_sm90_f16_128x128_s6_kn, cutlass::half_t, 128, 128, 64, 6, true, false)
