// Backward row kernels for f32 rows: softmax, layernorm, rmsnorm (with their column sums).
#include "rows_kernel.cuh"

CKB_NORM_BACKWARD(ckb::f32, f32)
