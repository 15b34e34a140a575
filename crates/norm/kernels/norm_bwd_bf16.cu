// Backward row kernels for bf16 rows: softmax, layernorm, rmsnorm (with their column sums).
#include "rows_kernel.cuh"

CKB_NORM_BACKWARD(ckb::bf16, bf16)
