// Backward row kernels for f16 rows: softmax, layernorm, rmsnorm (with their column sums).
#include "rows_kernel.cuh"

CKB_NORM_BACKWARD(ckb::f16, f16)
