// Reductions of f32 input: sum, sum of squares, max, min, argmax, argmin (rows, columns, combine).
#include "reduce.cuh"

CKB_REDUCE_ALL_KINDS(ckb::f32, f32)
