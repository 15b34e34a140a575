// The direct convolution: one thread per output element, any shape (stride, padding,
// dilation, groups, depthwise), fp32 accumulation. It is the variant every valid problem
// can take; the specialized and implicit-GEMM variants are faster where they apply.
//
// Output elements are numbered in NPQK order, K fastest: the threads of a warp share an
// output pixel, so their input reads (one group's channels) are broadcast or, for
// depthwise filters, consecutive channels; each thread walks its filter's taps.
#pragma once

#include <cute/tensor.hpp>

#include "common/elements.cuh"
#include "conv_params.cuh"

namespace ckb::conv {

using namespace cute;

template <class TIn, class TOut>
__global__ void __launch_bounds__(256) direct_conv_kernel(ConvParams const p) {
  static_assert(sizeof(TIn) <= 4 && sizeof(TOut) <= 4, "f32, f16 or bf16 elements");
  const int64_t c_group = p.c / p.groups, k_group = p.k / p.groups;
  Tensor x = make_tensor(make_gmem_ptr(static_cast<TIn const*>(p.x)),
                         make_layout(make_shape(p.n, p.h, p.w_in, p.c), LayoutRight{}));  // (N,H,W,C)
  Tensor w = make_tensor(make_gmem_ptr(static_cast<TIn const*>(p.w)),
                         make_layout(make_shape(p.k, p.r, p.s, c_group), LayoutRight{}));  // (K,R,S,C/G)
  Tensor y = make_tensor(make_gmem_ptr(static_cast<TOut*>(p.y)),
                         make_layout(make_shape(p.n, p.p, p.q, p.k), LayoutRight{}));  // (N,P,Q,K)
  TIn const* bias = static_cast<TIn const*>(p.bias);

  const int64_t total = p.n * p.p * p.q * p.k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % p.k;
    int64_t pixel = i / p.k;
    const int64_t q = pixel % p.q;
    pixel /= p.q;
    const int64_t out_row = pixel % p.p, n = pixel / p.p;
    const int64_t c0 = k / k_group * c_group;  // the group's first input channel
    float acc = 0.0f;
    for (int64_t r = 0; r < p.r; ++r) {
      const int64_t h = out_row * p.stride_h - p.pad_h + r * p.dilation_h;
      if (h < 0 || h >= p.h) continue;  // padding reads zero
      for (int64_t s = 0; s < p.s; ++s) {
        const int64_t col = q * p.stride_w - p.pad_w + s * p.dilation_w;
        if (col < 0 || col >= p.w_in) continue;
        for (int64_t c = 0; c < c_group; ++c) {
          acc = fmaf(float(x(n, h, col, c0 + c)), float(w(k, r, s, c)), acc);
        }
      }
    }
    if (bias != nullptr) acc += float(bias[k]);
    y(n, out_row, q, k) = TOut(activate(acc, p.activation));
  }
}

template <class TIn, class TOut>
int launch_direct(ConvParams const& p, cudaStream_t stream) {
  if (p.grid < 1 || p.threads < 32 || p.threads > 256 || p.threads % 32 != 0) {
    return -1;  // not a plan the kernel runs (src/launch.rs's REFUSED_PLAN)
  }
  direct_conv_kernel<TIn, TOut><<<p.grid, p.threads, 0, stream>>>(p);
  return int(cudaGetLastError());
}

}  // namespace ckb::conv

// extern "C" ckb_conv_direct_<in>_<out>(params, stream) -> cudaError_t or -1 (refused).
#define CKB_CONV_DIRECT(TIN, TOUT, INNAME, OUTNAME)                                                 \
  extern "C" int ckb_conv_direct_##INNAME##_##OUTNAME(ckb::conv::ConvParams const* p, cudaStream_t s) { \
    return ckb::conv::launch_direct<TIN, TOUT>(*p, s);                                              \
  }
