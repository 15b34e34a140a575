// Forward row kernels for bf16 rows: softmax (and log-softmax), layernorm, rmsnorm.
#include "rows_kernel.cuh"

CKB_NORM_FORWARD(ckb::bf16, bf16)
