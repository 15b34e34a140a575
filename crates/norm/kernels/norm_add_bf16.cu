// Fused residual-add norm forward kernels for bf16 rows: h = x + residual, then layernorm or
// rmsnorm of h; both written.
#include "rows_kernel.cuh"

CKB_NORM_ADD(ckb::bf16, bf16)
