// The direct convolution for every input type and the outputs each takes.
#include "direct_conv.cuh"

CKB_CONV_DIRECT(ckb::bf16, ckb::bf16, bf16, bf16)
CKB_CONV_DIRECT(ckb::bf16, ckb::f32, bf16, f32)
CKB_CONV_DIRECT(ckb::f16, ckb::f16, f16, f16)
CKB_CONV_DIRECT(ckb::f16, ckb::f32, f16, f32)
CKB_CONV_DIRECT(ckb::f32, ckb::f32, f32, f32)
