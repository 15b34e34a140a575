// Runtime helpers every crate's Rust side calls through common (src/gpu.rs): error strings
// and device-side fills.
//
// Every launcher takes the stream and the device's SM count, returns a cudaError_t as int,
// and sizes its grid to one full wave: SMs times resident blocks per SM, each thread looping
// over what remains.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

extern "C" const char* ckb_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

namespace {

constexpr int kThreads = 256;

// Blocks for `items` work items of one thread each, at most one full wave of `kernel`.
template <class Kernel>
cudaError_t wave_grid(Kernel kernel, int64_t items, int sm_count, int* grid) {
  int per_sm = 0;
  cudaError_t status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  if (status != cudaSuccess) {
    return status;
  }
  const int64_t wanted = (items + kThreads - 1) / kThreads;
  const int64_t wave = int64_t(per_sm > 0 ? per_sm : 1) * (sm_count > 0 ? sm_count : 1);
  *grid = int(wanted < 1 ? 1 : (wanted < wave ? wanted : wave));
  return cudaSuccess;
}

__device__ __forceinline__ int64_t thread_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t thread_count() { return int64_t(gridDim.x) * blockDim.x; }

// ---------------------------------------------------------------------------------------
// Fills. 1-, 2- and 4-byte constants are driver memsets (see Gpu::fill_constant); 8-byte
// ones come here.
// ---------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) fill_u64_kernel(uint64_t* out, int64_t n, uint64_t bits) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    out[i] = bits;
  }
}

// SplitMix64's output function (Steele, Lea and Flood 2014; the finalizer of
// java.util.SplittableRandom): a bijection of 64-bit words that passes BigCrush when applied
// to a Weyl sequence.
__host__ __device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A standard normal for element `i` of the stream `key`: SplitMix64 at position i (so the
// value depends on (seed, i) only, not on the length or the launch shape), its two 32-bit
// halves as uniforms, and the cosine branch of Box-Muller. u1 lies in (0, 1], so the log is
// finite; |z| is at most sqrt(-2 ln 2^-32) = 6.66.
__device__ __forceinline__ float normal_at(uint64_t key, int64_t i) {
  const uint64_t bits = splitmix64(key + (uint64_t(i) + 1) * 0x9E3779B97F4A7C15ull);
  const float u1 = (float(uint32_t(bits >> 32)) + 1.0f) * 0x1p-32f;
  const float u2 = float(uint32_t(bits)) * 0x1p-32f;
  return sqrtf(-2.0f * logf(fminf(u1, 1.0f))) * cospif(2.0f * u2);
}

// Rounded as Element::from_f64 rounds on the host: to nearest (even) for floats, half away
// from zero for integers.
__device__ __forceinline__ void store(float* out, float v) { *out = v; }
__device__ __forceinline__ void store(__half* out, float v) { *out = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* out, float v) { *out = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store(__nv_fp8_e4m3* out, float v) { *out = __nv_fp8_e4m3(v); }
__device__ __forceinline__ void store(__nv_fp8_e5m2* out, float v) { *out = __nv_fp8_e5m2(v); }
__device__ __forceinline__ void store(long long* out, float v) { *out = llroundf(v); }

template <class T>
__global__ void __launch_bounds__(kThreads) fill_normal_kernel(T* out, int64_t n, uint64_t key) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    store(out + i, normal_at(key, i));
  }
}

template <class T>
int launch_fill_normal(void* out, int64_t n, uint64_t seed, int sm_count, cudaStream_t stream) {
  if (n <= 0) {
    return n == 0 ? int(cudaSuccess) : int(cudaErrorInvalidValue);
  }
  int grid = 0;
  cudaError_t status = wave_grid(fill_normal_kernel<T>, n, sm_count, &grid);
  if (status != cudaSuccess) {
    return int(status);
  }
  // The seed goes through the mixer once, so nearby seeds start far apart on the sequence.
  const uint64_t key = splitmix64(seed ^ 0x5851F42D4C957F2Dull);
  fill_normal_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<T*>(out), n, key);
  return int(cudaGetLastError());
}

}  // namespace

extern "C" int ckb_fill_u64(void* out, int64_t n, uint64_t bits, int sm_count, cudaStream_t stream) {
  if (n <= 0) {
    return n == 0 ? int(cudaSuccess) : int(cudaErrorInvalidValue);
  }
  int grid = 0;
  cudaError_t status = wave_grid(fill_u64_kernel, n, sm_count, &grid);
  if (status != cudaSuccess) {
    return int(status);
  }
  fill_u64_kernel<<<grid, kThreads, 0, stream>>>(static_cast<uint64_t*>(out), n, bits);
  return int(cudaGetLastError());
}

#define CKB_FILL_NORMAL(name, type)                                                                         \
  extern "C" int ckb_fill_normal_##name(void* out, int64_t n, uint64_t seed, int sm_count, cudaStream_t s) { \
    return launch_fill_normal<type>(out, n, seed, sm_count, s);                                             \
  }
CKB_FILL_NORMAL(f32, float)
CKB_FILL_NORMAL(f16, __half)
CKB_FILL_NORMAL(bf16, __nv_bfloat16)
CKB_FILL_NORMAL(e4m3, __nv_fp8_e4m3)
CKB_FILL_NORMAL(e5m2, __nv_fp8_e5m2)
CKB_FILL_NORMAL(i64, long long)
#undef CKB_FILL_NORMAL
