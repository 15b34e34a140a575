// Runtime helpers every crate's Rust side calls through common.
#include <cuda_runtime.h>

extern "C" const char* ckb_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
