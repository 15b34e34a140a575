// Raw CUDA naive GEMM (no CuTe): one thread per element of C, fp32 accumulation.
//
// C = alpha * A * B + beta * C with A of m x k, B of k x n and C of m x n. Every operand is
// addressed through a (row stride, column stride) pair, so row- and column-major storage
// with any leading dimension is one code path. As in BLAS, beta == 0 does not read C, so a
// NaN-poisoned output is fully overwritten. Any m, n, k >= 1 with 64-bit indexing.
// It is slow on purpose: a checker for large fuzzed shapes where the CPU reference is too
// slow, not a performance baseline.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

namespace {

struct Strides {
  int64_t row;
  int64_t col;
};

template <class TIn, class TOut>
__global__ void naive_gemm_kernel(const TIn* __restrict__ a, const TIn* __restrict__ b, TOut* c, int64_t m, int64_t n,
                                  int64_t k, Strides sa, Strides sb, Strides sc, float alpha, float beta) {
  const int64_t row_step = int64_t(gridDim.y) * blockDim.y;
  const int64_t col_step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; i < m; i += row_step) {
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += col_step) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        acc = fmaf(float(a[i * sa.row + p * sa.col]), float(b[p * sb.row + j * sb.col]), acc);
      }
      TOut* out = c + i * sc.row + j * sc.col;
      float result = alpha * acc;
      if (beta != 0.0f) {
        result = fmaf(beta, float(*out), result);
      }
      *out = TOut(result);
    }
  }
}

template <class TIn, class TOut>
int launch_naive_gemm(const void* a, const void* b, void* c, int64_t m, int64_t n, int64_t k, int64_t a_row,
                      int64_t a_col, int64_t b_row, int64_t b_col, int64_t c_row, int64_t c_col, float alpha,
                      float beta, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return int(cudaErrorInvalidValue);
  }
  const dim3 block(16, 16);
  // Grid-stride loops cover what the grid limits leave out.
  const int64_t blocks_x = (n + block.x - 1) / block.x;
  const int64_t blocks_y = (m + block.y - 1) / block.y;
  const dim3 grid(unsigned(blocks_x < 65535 * 1024 ? blocks_x : 65535 * 1024),
                  unsigned(blocks_y < 65535 ? blocks_y : 65535));
  naive_gemm_kernel<TIn, TOut><<<grid, block, 0, stream>>>(
      static_cast<const TIn*>(a), static_cast<const TIn*>(b), static_cast<TOut*>(c), m, n, k, Strides{a_row, a_col},
      Strides{b_row, b_col}, Strides{c_row, c_col}, alpha, beta);
  return int(cudaGetLastError());
}

}  // namespace

#define CKB_NAIVE_GEMM(in_name, in_t, out_name, out_t)                                                            \
  extern "C" int ckb_naive_gemm_##in_name##_##out_name(                                                           \
      const void* a, const void* b, void* c, int64_t m, int64_t n, int64_t k, int64_t a_row, int64_t a_col,      \
      int64_t b_row, int64_t b_col, int64_t c_row, int64_t c_col, float alpha, float beta, cudaStream_t stream) { \
    return launch_naive_gemm<in_t, out_t>(a, b, c, m, n, k, a_row, a_col, b_row, b_col, c_row, c_col, alpha,     \
                                          beta, stream);                                                          \
  }

#define CKB_NAIVE_GEMM_ALL_OUTPUTS(in_name, in_t) \
  CKB_NAIVE_GEMM(in_name, in_t, f32, float)       \
  CKB_NAIVE_GEMM(in_name, in_t, f16, __half)      \
  CKB_NAIVE_GEMM(in_name, in_t, bf16, __nv_bfloat16)

CKB_NAIVE_GEMM_ALL_OUTPUTS(f32, float)
CKB_NAIVE_GEMM_ALL_OUTPUTS(f16, __half)
CKB_NAIVE_GEMM_ALL_OUTPUTS(bf16, __nv_bfloat16)
