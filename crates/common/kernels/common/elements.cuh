// Element types as kernels see them, and the 16-byte pack a thread moves per access. Shared
// by every crate's CUDA through ckb-common's `links` export (`#include "common/elements.cuh"`).
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include <cute/tensor.hpp>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>

namespace ckb {

// The Rust side passes raw device addresses; these are the types behind them.
using f32 = float;
using f16 = cutlass::half_t;
using bf16 = cutlass::bfloat16_t;

// One memory transaction per thread and access: 16 bytes (LDG.E.128 / STG.E.128).
constexpr int kVectorBytes = 16;

// Elements in a pack: the count that makes the narrowest operand exactly one 16-byte vector.
// Wider operands then move two or four vectors per pack (an f32 -> bf16 cast reads 32 bytes
// and writes 16 per pack), so every operand stays 16-byte aligned at every pack boundary.
template <class... Ts>
constexpr int pack_elems() {
  constexpr int narrowest = cute::min(int(sizeof(Ts))...);
  static_assert(kVectorBytes % narrowest == 0, "element size must divide 16 bytes");
  return kVectorBytes / narrowest;
}

// Elements of T in one 16-byte pack: 4 for f32, 8 for f16 and bf16.
template <class T>
constexpr int kPackElems = pack_elems<T>();

}  // namespace ckb
