// CUB DeviceReduce behind a C ABI: the vendor baseline for full reductions in crates/reduce.
//
// Sums (ckb_cub_sum_<in>_<out>) accumulate in float:
// - f32 -> f32 is cub::DeviceReduce::Sum itself;
// - f16/bf16 -> f32 or the input type is cub::DeviceReduce::Reduce with plus<float> and a
//   float initial value, so CUB accumulates in float and converts once at the end. This is
//   the fair baseline for our f32-accumulating kernels: it reads the same bytes.
// ckb_cub_sum_native_<t> is cub::DeviceReduce::Sum on f16/bf16, which accumulates in the
// input type (CUB's literal semantics: less accurate, kept for reference timing).
// Max/Min write the input type and are exact. ArgMax writes the value and an int64 index;
// the first index wins ties.
#include "cub_common.cuh"

namespace {

template <class In, class Out>
int sum_float_accumulated(const void* in, void* out, int64_t n, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    const In* d_in = static_cast<const In*>(in);
    Out* d_out = static_cast<Out*>(out);
    if constexpr (std::is_same_v<In, float> && std::is_same_v<Out, float>) {
      return cub::DeviceReduce::Sum(t, bytes, d_in, d_out, n, stream);
    } else {
      return cub::DeviceReduce::Reduce(t, bytes, d_in, d_out, n, ckb_cub::FloatPlus{}, 0.0f, stream);
    }
  });
}

template <class T>
int sum_native(const void* in, void* out, int64_t n, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    return cub::DeviceReduce::Sum(t, bytes, static_cast<const T*>(in), static_cast<T*>(out), n, stream);
  });
}

template <class T>
int max(const void* in, void* out, int64_t n, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    return cub::DeviceReduce::Max(t, bytes, static_cast<const T*>(in), static_cast<T*>(out), n, stream);
  });
}

template <class T>
int min(const void* in, void* out, int64_t n, void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    return cub::DeviceReduce::Min(t, bytes, static_cast<const T*>(in), static_cast<T*>(out), n, stream);
  });
}

}  // namespace

#define CKB_CUB_ENTRY(name, call)                                                                       \
  extern "C" int name(const void* in, void* out, int64_t n, void* temp, size_t* temp_bytes, cudaStream_t s) { \
    return call(in, out, n, temp, temp_bytes, s);                                                       \
  }

CKB_CUB_ENTRY(ckb_cub_sum_f32_f32, (sum_float_accumulated<float, float>))
CKB_CUB_ENTRY(ckb_cub_sum_f16_f32, (sum_float_accumulated<__half, float>))
CKB_CUB_ENTRY(ckb_cub_sum_bf16_f32, (sum_float_accumulated<__nv_bfloat16, float>))
CKB_CUB_ENTRY(ckb_cub_sum_f16_f16, (sum_float_accumulated<__half, __half>))
CKB_CUB_ENTRY(ckb_cub_sum_bf16_bf16, (sum_float_accumulated<__nv_bfloat16, __nv_bfloat16>))
CKB_CUB_ENTRY(ckb_cub_sum_native_f16, sum_native<__half>)
CKB_CUB_ENTRY(ckb_cub_sum_native_bf16, sum_native<__nv_bfloat16>)
CKB_CUB_ENTRY(ckb_cub_max_f32, max<float>)
CKB_CUB_ENTRY(ckb_cub_max_f16, max<__half>)
CKB_CUB_ENTRY(ckb_cub_max_bf16, max<__nv_bfloat16>)
CKB_CUB_ENTRY(ckb_cub_min_f32, min<float>)
CKB_CUB_ENTRY(ckb_cub_min_f16, min<__half>)
CKB_CUB_ENTRY(ckb_cub_min_bf16, min<__nv_bfloat16>)

// The maximum value goes to *max_out and its first index to *index_out.
extern "C" int ckb_cub_argmax_f32(const void* in, void* max_out, int64_t* index_out, int64_t n, void* temp,
                                  size_t* temp_bytes, cudaStream_t stream) {
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    return cub::DeviceReduce::ArgMax(t, bytes, static_cast<const float*>(in), static_cast<float*>(max_out), index_out,
                                     n, stream);
  });
}
