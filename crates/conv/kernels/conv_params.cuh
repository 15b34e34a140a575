// What every conv2d launcher takes from Rust: device addresses, the problem's sizes (int64,
// so that no index overflows), the fused epilogue and the grid the plan chose.
#pragma once

#include <cstdint>

namespace ckb::conv {

// The epilogue's activation, after the optional bias (mirrored in src/problem.rs).
enum Activation : int32_t { kIdentity = 0, kRelu = 1, kSilu = 2, kGelu = 3 };

// Mirrors `ckb_conv::launch::ConvParams` (#[repr(C)]), field for field.
struct ConvParams {
  const void* x;     // input, N x H x W x C (NHWC, dense)
  const void* w;     // filters, K x R x S x (C / groups) (KRSC, dense)
  const void* bias;  // K values of the input's type, or null
  void* y;           // output, N x P x Q x K (NPQK, dense)
  int64_t n, h, w_in, c;
  int64_t k, r, s;
  int64_t p, q;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t dilation_h, dilation_w;
  int32_t groups;
  int32_t activation;  // Activation
  int32_t grid;        // CTAs of the plan's grid-stride launch
  int32_t threads;     // threads per CTA
};
static_assert(sizeof(ConvParams) == 32 + 9 * 8 + 10 * 4, "layout must match src/launch.rs");

// The activation of the fused epilogue; GELU is the erf form (PyTorch's default).
__device__ inline float activate(float v, int32_t activation) {
  switch (activation) {
    case kRelu: return v > 0.0f ? v : 0.0f;
    case kSilu: return v / (1.0f + __expf(-v));
    case kGelu: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
  }
}

}  // namespace ckb::conv
