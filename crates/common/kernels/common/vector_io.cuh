// 16-byte global and shared accesses as explicit PTX vectors. NVVM may split a store of
// computed floats into two 8-byte halves that ptxas cannot always merge back (seen on
// element-wise leftover packs); an asm vector cannot be split.
#pragma once

#include "common/elements.cuh"

namespace ckb {

// Plain load: the data may have been written earlier in the same launch by this thread.
CUTE_DEVICE void ld_128(void const* gmem, uint4& r) {
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(gmem));
}
// Read-only data read once: kept out of L1, where data that is read again lives.
CUTE_DEVICE void ld_stream_128(void const* gmem, uint4& r) {
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(gmem));
}
// Read-only data read by many threads or rows (per-column parameters): L1 may keep it.
CUTE_DEVICE void ld_cached_128(void const* gmem, uint4& r) {
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(gmem));
}
CUTE_DEVICE void st_128(void* gmem, uint4 const& r) {
  asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(gmem), "r"(r.x), "r"(r.y), "r"(r.z), "r"(r.w)
               : "memory");
}
CUTE_DEVICE void ld_shared_128(void const* smem, uint4& r) {
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "r"(cute::cast_smem_ptr_to_uint(smem)));
}

// The 16 bytes of a register pack as one vector.
template <class Pack>
CUTE_DEVICE uint4& as_vector(Pack&& pack) {
  static_assert(decltype(cute::size(pack))::value * sizeof(typename std::decay_t<Pack>::value_type) == kVectorBytes,
                "a pack is 16 bytes");
  return reinterpret_cast<uint4&>(cute::recast<cute::uint128_t>(pack)(0));
}

// The two directions as copy operations for copy_vectors.
struct GmemLoad128 {
  CUTE_DEVICE static void copy(cute::uint128_t const& gmem, cute::uint128_t& reg) {
    ld_128(&gmem, reinterpret_cast<uint4&>(reg));
  }
};
struct GmemStore128 {
  CUTE_DEVICE static void copy(cute::uint128_t const& reg, cute::uint128_t& gmem) {
    st_128(&gmem, reinterpret_cast<uint4 const&>(reg));
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

}  // namespace ckb
