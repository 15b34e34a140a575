// CUB DeviceSegmentedReduce over the rows of a row-major matrix behind a C ABI: the
// vendor baseline for row sums in crates/reduce.
//
// ckb_cub_row_sum_<in>_<out>(in, out, rows, cols, ld, ...) writes out[i] = sum of the
// `cols` elements starting at in[i * ld]. Row offsets come from a counting iterator, so no
// offset buffer is read. Sums accumulate in float (DeviceSegmentedReduce::Sum for f32,
// Reduce with plus<float> for f16/bf16, as in cub_reduce.cu). Offsets are 32-bit when the
// matrix allows it, as a user would choose, and 64-bit otherwise.
#include "cub_common.cuh"
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <climits>

namespace {

// Offset of row `row` plus `shift`: begin offsets use shift 0, end offsets shift = cols.
template <class Offset>
struct RowOffset {
  Offset stride;
  Offset shift;
  __host__ __device__ Offset operator()(Offset row) const { return row * stride + shift; }
};

template <class Offset, class In, class Out>
cudaError_t segmented_sum(void* temp, size_t& bytes, const In* in, Out* out, int64_t rows, int64_t cols, int64_t ld,
                          cudaStream_t stream) {
  auto rows_iter = thrust::make_counting_iterator<Offset>(0);
  auto begin = thrust::make_transform_iterator(rows_iter, RowOffset<Offset>{Offset(ld), Offset(0)});
  auto end = thrust::make_transform_iterator(rows_iter, RowOffset<Offset>{Offset(ld), Offset(cols)});
  if constexpr (std::is_same_v<In, float> && std::is_same_v<Out, float>) {
    return cub::DeviceSegmentedReduce::Sum(temp, bytes, in, out, rows, begin, end, stream);
  } else {
    return cub::DeviceSegmentedReduce::Reduce(temp, bytes, in, out, rows, begin, end, ckb_cub::FloatPlus{}, 0.0f,
                                              stream);
  }
}

template <class In, class Out>
int row_sum(const void* in, void* out, int64_t rows, int64_t cols, int64_t ld, void* temp, size_t* temp_bytes,
            cudaStream_t stream) {
  if (rows < 0 || cols < 0 || ld < cols) {
    return int(cudaErrorInvalidValue);
  }
  // The largest end offset is (rows - 1) * ld + cols <= rows * ld.
  const bool fits_int = rows == 0 || ld <= INT_MAX / rows;
  return ckb_cub::query_or_run(temp, temp_bytes, [&](void* t, size_t& bytes) {
    const In* d_in = static_cast<const In*>(in);
    Out* d_out = static_cast<Out*>(out);
    return fits_int ? segmented_sum<int>(t, bytes, d_in, d_out, rows, cols, ld, stream)
                    : segmented_sum<int64_t>(t, bytes, d_in, d_out, rows, cols, ld, stream);
  });
}

}  // namespace

#define CKB_CUB_ROW_SUM(name, in_t, out_t)                                                               \
  extern "C" int name(const void* in, void* out, int64_t rows, int64_t cols, int64_t ld, void* temp,     \
                      size_t* temp_bytes, cudaStream_t s) {                                              \
    return row_sum<in_t, out_t>(in, out, rows, cols, ld, temp, temp_bytes, s);                          \
  }

CKB_CUB_ROW_SUM(ckb_cub_row_sum_f32_f32, float, float)
CKB_CUB_ROW_SUM(ckb_cub_row_sum_f16_f32, __half, float)
CKB_CUB_ROW_SUM(ckb_cub_row_sum_bf16_f32, __nv_bfloat16, float)
CKB_CUB_ROW_SUM(ckb_cub_row_sum_f16_f16, __half, __half)
CKB_CUB_ROW_SUM(ckb_cub_row_sum_bf16_bf16, __nv_bfloat16, __nv_bfloat16)
