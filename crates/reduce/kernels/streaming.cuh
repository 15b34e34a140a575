// Pieces shared by the streaming (memory-bound) kernels of this crate: element types, the
// 16-byte pack a thread moves per access, and the int64 launch arithmetic.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include <cute/tensor.hpp>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>

namespace ckb {

// Element types as the kernels see them; the Rust side passes raw device addresses.
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

// 16-byte global accesses as explicit PTX vectors. CuTe's auto-vectorizing copy recasts to
// uint128_t too, but NVVM may split a store of computed floats into two 8-byte halves that
// ptxas cannot always merge back (seen on the leftover-pack path); these cannot be split.
struct GmemLoad128 {
  CUTE_DEVICE static void copy(cute::uint128_t const& gmem, cute::uint128_t& reg) {
    uint4& r = reinterpret_cast<uint4&>(reg);
    asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(&gmem));
  }
};
struct GmemStore128 {
  CUTE_DEVICE static void copy(cute::uint128_t const& reg, cute::uint128_t& gmem) {
    uint4 const& r = reinterpret_cast<uint4 const&>(reg);
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(&gmem), "r"(r.x), "r"(r.y), "r"(r.z), "r"(r.w)
                 : "memory");
  }
};

// Copies src to dst as 16-byte vectors with `VecOp`. Both tensors must have the same shape,
// be contiguous in runs of 16 bytes, and start 16-byte aligned (the caller's invariant).
template <class VecOp, class Src, class Dst>
CUTE_DEVICE void copy_vectors(Src const& src, Dst&& dst) {
  static_assert(cute::is_static<decltype(cute::shape(src))>::value, "vector copies are for static pack shapes");
  cute::Tensor src_v = cute::recast<cute::uint128_t>(src);  // (VECTORS,...)
  cute::Tensor dst_v = cute::recast<cute::uint128_t>(dst);  // (VECTORS,...)
  static_assert(decltype(cute::size(src_v))::value == decltype(cute::size(dst_v))::value, "same vector count");
  CUTE_UNROLL
  for (int i = 0; i < cute::size(dst_v); ++i) {
    VecOp::copy(src_v(i), dst_v(i));
  }
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a kernel that needs `threads_needed` threads of `block_threads` each, capped
// at `grid_limit` blocks (the kernels loop, so any cap >= 1 is correct).
inline unsigned grid_for(int64_t threads_needed, int block_threads, int64_t grid_limit) {
  int64_t blocks = ceil_div(threads_needed > 0 ? threads_needed : 1, block_threads);
  int64_t cap = grid_limit < 1 ? 1 : grid_limit;
  cap = cap < int64_t(INT32_MAX) ? cap : int64_t(INT32_MAX);
  return unsigned(blocks < cap ? blocks : cap);
}

}  // namespace ckb
