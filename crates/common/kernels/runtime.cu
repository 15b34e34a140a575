// Runtime helpers every crate's Rust side calls through common (src/gpu.rs, src/roofline.rs):
// error strings, device-side fills, and the streaming roofline that memory-bound cases are
// scored against (and that flushes L2 between timed runs).
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

// ---------------------------------------------------------------------------------------
// The roofline: streams up to kRooflineStreams input and output buffers of any byte sizes
// with 16-byte accesses, element i of every stream in the same loop iteration, as a fused
// element-wise kernel does. Outputs are the XOR of the inputs at the same index (mixed with
// the index, so a write-only roofline writes more than a constant). The XOR of everything
// read is compared with a runtime sentinel and written to `sink` only when equal: the loads
// cannot be optimized away, and nothing else is written. With no outputs it reads only,
// which is how the timer flushes L2 without leaving dirty lines behind.
// ---------------------------------------------------------------------------------------

constexpr int kRooflineStreams = 4;
constexpr int kUnroll = 4;

struct RooflineParams {
  const uint4* in[kRooflineStreams];
  int64_t in_bytes[kRooflineStreams];
  uint4* out[kRooflineStreams];
  int64_t out_bytes[kRooflineStreams];
  int n_in;
  int n_out;
  int64_t steps;  // 16-byte vectors in the longest stream
  uint32_t* sink;
  uint32_t sentinel;
};

__device__ __forceinline__ void xor_into(uint4& acc, const uint4 v) {
  acc.x ^= v.x;
  acc.y ^= v.y;
  acc.z ^= v.z;
  acc.w ^= v.w;
}

__global__ void __launch_bounds__(kThreads) roofline_kernel(const RooflineParams p) {
  const int64_t stride = thread_count();
  uint32_t folded = 0;
  for (int64_t base = thread_index(); base < p.steps; base += stride * kUnroll) {
    uint4 acc[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t i = uint64_t(base + u * stride);
      // Mirrored by index_vector in src/roofline.rs, which the GPU tests check against.
      acc[u] = make_uint4(uint32_t(i), uint32_t(i >> 32), 0x9E3779B9u, 0x7F4A7C15u);
    }
    // Every load of the iteration first, then every store.
#pragma unroll
    for (int k = 0; k < kRooflineStreams; ++k) {
      if (k < p.n_in) {
        const int64_t vectors = p.in_bytes[k] / 16;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t i = base + u * stride;
          if (i < vectors) {
            xor_into(acc[u], p.in[k][i]);
          }
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kRooflineStreams; ++k) {
      if (k < p.n_out) {
        const int64_t vectors = p.out_bytes[k] / 16;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t i = base + u * stride;
          if (i < vectors) {
            p.out[k][i] = acc[u];
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      folded ^= acc[u].x ^ acc[u].y ^ acc[u].z ^ acc[u].w;
    }
  }
  // The last bytes of streams whose size is not a multiple of 16.
  if (blockIdx.x == 0 && threadIdx.x < 16) {
    for (int k = 0; k < p.n_in; ++k) {
      const int64_t at = p.in_bytes[k] / 16 * 16 + threadIdx.x;
      if (at < p.in_bytes[k]) {
        folded ^= reinterpret_cast<const uint8_t*>(p.in[k])[at];
      }
    }
    for (int k = 0; k < p.n_out; ++k) {
      const int64_t at = p.out_bytes[k] / 16 * 16 + threadIdx.x;
      if (at < p.out_bytes[k]) {
        reinterpret_cast<uint8_t*>(p.out[k])[at] = uint8_t(folded);
      }
    }
  }
  if (folded == p.sentinel) {
    *p.sink = folded;
  }
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

extern "C" int ckb_roofline_max_streams() { return kRooflineStreams; }

// Streams n_in inputs and n_out outputs (device addresses, 16-byte aligned, with their sizes
// in bytes). `sink` is a device address of 4 writable bytes.
extern "C" int ckb_roofline(const uint64_t* inputs, const int64_t* input_bytes, int n_in, const uint64_t* outputs,
                            const int64_t* output_bytes, int n_out, uint64_t sink, uint32_t sentinel, int sm_count,
                            cudaStream_t stream) {
  if (n_in < 0 || n_out < 0 || n_in > kRooflineStreams || n_out > kRooflineStreams || sink == 0) {
    return int(cudaErrorInvalidValue);
  }
  RooflineParams p = {};
  p.n_in = n_in;
  p.n_out = n_out;
  p.sink = reinterpret_cast<uint32_t*>(sink);
  p.sentinel = sentinel;
  int64_t steps = 0;
  for (int k = 0; k < n_in; ++k) {
    if (input_bytes[k] < 0 || inputs[k] % 16 != 0) {
      return int(cudaErrorInvalidValue);
    }
    p.in[k] = reinterpret_cast<const uint4*>(inputs[k]);
    p.in_bytes[k] = input_bytes[k];
    steps = input_bytes[k] / 16 > steps ? input_bytes[k] / 16 : steps;
  }
  for (int k = 0; k < n_out; ++k) {
    if (output_bytes[k] < 0 || outputs[k] % 16 != 0) {
      return int(cudaErrorInvalidValue);
    }
    p.out[k] = reinterpret_cast<uint4*>(outputs[k]);
    p.out_bytes[k] = output_bytes[k];
    steps = output_bytes[k] / 16 > steps ? output_bytes[k] / 16 : steps;
  }
  p.steps = steps;
  int grid = 0;
  cudaError_t status = wave_grid(roofline_kernel, (steps + kUnroll - 1) / kUnroll, sm_count, &grid);
  if (status != cudaSuccess) {
    return int(status);
  }
  roofline_kernel<<<grid, kThreads, 0, stream>>>(p);
  return int(cudaGetLastError());
}
