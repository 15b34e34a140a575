// Fused residual-add norm forward kernels for f16 rows: h = x + residual, then layernorm or
// rmsnorm of h; both written.
#include "rows_kernel.cuh"

CKB_NORM_ADD(ckb::f16, f16)
