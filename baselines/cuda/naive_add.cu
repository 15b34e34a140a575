// Raw CUDA element-wise add: one thread per element, no vectorisation. A floor for phase 1.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cstdint>

template <class T>
__global__ void naive_add_kernel(const T* a, const T* b, T* c, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    c[i] = T(float(a[i]) + float(b[i]));
  }
}

template <class T>
static int launch_naive_add(const T* a, const T* b, T* c, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  int64_t blocks = (n + 255) / 256;
  naive_add_kernel<T><<<unsigned(blocks < 65535 * 16 ? blocks : 65535 * 16), 256, 0, stream>>>(a, b, c, n);
  return int(cudaGetLastError());
}

extern "C" int ckb_naive_add_f32(const float* a, const float* b, float* c, int64_t n, cudaStream_t s) {
  return launch_naive_add(a, b, c, n, s);
}
extern "C" int ckb_naive_add_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int64_t n, cudaStream_t s) {
  return launch_naive_add(a, b, c, n, s);
}
