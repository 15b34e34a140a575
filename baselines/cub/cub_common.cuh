// Shared by the CUB shim files: the C calling convention every entry point follows.
//
// Each entry point takes device pointers, sizes, a temp-storage pointer with its size in
// bytes, and a stream, and returns a cudaError_t as int. As in CUB, a null `temp` is query
// mode: the bytes needed are written to *temp_bytes and nothing is launched. In run mode
// *temp_bytes is the size of the buffer at `temp`; CUB fails with cudaErrorInvalidValue
// when it is too small.
#pragma once
#include <cub/cub.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

namespace ckb_cub {

// Runs `call(temp, bytes)` (a CUB device-wide algorithm) in query or run mode.
template <class Call>
int query_or_run(void* temp, size_t* temp_bytes, Call call) {
  if (temp_bytes == nullptr) {
    return int(cudaErrorInvalidValue);
  }
  size_t bytes = temp == nullptr ? 0 : *temp_bytes;
  cudaError_t status = call(temp, bytes);
  if (temp == nullptr) {
    *temp_bytes = bytes;
  }
  return int(status);
}

// Accumulating half-precision inputs in float is what our kernels do and what a user of
// CUB would write for a fair comparison; CUB's own Sum would accumulate in the input type.
using FloatPlus = ::cuda::std::plus<float>;

}  // namespace ckb_cub
