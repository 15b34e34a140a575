// Forward row kernels for f16 rows: softmax (and log-softmax), layernorm, rmsnorm.
#include "rows_kernel.cuh"

CKB_NORM_FORWARD(ckb::f16, f16)
