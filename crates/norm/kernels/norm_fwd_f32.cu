// Forward row kernels for f32 rows: softmax (and log-softmax), layernorm, rmsnorm.
#include "rows_kernel.cuh"

CKB_NORM_FORWARD(ckb::f32, f32)
