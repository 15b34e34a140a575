// Element-wise ops with one streamed operand (scale, casts) and the row-broadcast bias add.
#include "elementwise.cuh"

using ckb::bf16;
using ckb::f16;
using ckb::f32;

CKB_EW_SCALE(f32, f32)
CKB_EW_SCALE(f16, f16)
CKB_EW_SCALE(bf16, bf16)
CKB_EW_CAST(f32, f32, f16, f16)
CKB_EW_CAST(f32, f32, bf16, bf16)
CKB_EW_CAST(f16, f16, f32, f32)
CKB_EW_CAST(bf16, bf16, f32, f32)
CKB_EW_CAST(f16, f16, bf16, bf16)
CKB_EW_CAST(bf16, bf16, f16, f16)
CKB_EW_BIAS_ADD(f32, f32)
CKB_EW_BIAS_ADD(f16, f16)
CKB_EW_BIAS_ADD(bf16, bf16)
