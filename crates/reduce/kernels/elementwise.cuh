// The element-wise family on one skeleton: out[i] = fn(a[i], b(i)), computed in f32 and
// rounded once to the output type.
//
// Work split of one launch over [0, n) (all indices int64):
//   [0, head)                     scalar: until every operand reaches a 16-byte boundary.
//                                 When the operands are misaligned by different amounts no
//                                 such point exists; the host then passes head = n and the
//                                 whole range takes this path (correct, not fast).
//   [head, rest_begin)            full tiles: kThreads x kUnroll packs, no predicates.
//   [rest_begin, tail_begin)      leftover whole packs, one per thread.
//   [tail_begin, n)               scalar: fewer than one pack.
// A pack is 16 bytes of the narrowest operand (streaming.cuh); its loads and stores are CuTe
// copies of 16-byte vectors (copy_vectors), which compile to LDG.E.128 / STG.E.128.
#pragma once

#include "streaming.cuh"

namespace ckb::ew {

using namespace cute;

// How the second operand is read.
enum class Second {
  None,          // unary op
  Stream,        // b[i], same length as a
  RowBroadcast,  // b[i % period]: a row vector over a row-major matrix with `period` columns
};

// --- Ops: f32 in, f32 out -------------------------------------------------------------

struct Add {
  CUTE_HOST_DEVICE float operator()(float a, float b) const { return a + b; }
};
struct Sub {
  CUTE_HOST_DEVICE float operator()(float a, float b) const { return a - b; }
};
struct Mul {
  CUTE_HOST_DEVICE float operator()(float a, float b) const { return a * b; }
};
struct AddRelu {
  // `s < 0 ? 0 : s` rather than fmaxf so that a NaN sum stays NaN, as in PyTorch.
  CUTE_HOST_DEVICE float operator()(float a, float b) const {
    float s = a + b;
    return s < 0.0f ? 0.0f : s;
  }
};
struct Axpy {  // y = alpha * x + y, one rounding in f32
  float alpha;
  CUTE_HOST_DEVICE float operator()(float x, float y) const { return fmaf(alpha, x, y); }
};
struct Scale {
  float alpha;
  CUTE_HOST_DEVICE float operator()(float x, float) const { return alpha * x; }
};
struct Convert {  // the rounding happens in the store to the output type
  CUTE_HOST_DEVICE float operator()(float x, float) const { return x; }
};

// An op bound to its operand types.
template <class Fn_, class TA_, class TB_, class TOut_, Second kSecond_>
struct Op {
  using Fn = Fn_;
  using TA = TA_;
  using TB = TB_;
  using TOut = TOut_;
  static constexpr Second kSecond = kSecond_;
  // Only a streamed second operand takes part in the 16-byte packing.
  static constexpr int kPack =
      kSecond == Second::Stream ? pack_elems<TA, TB, TOut>() : pack_elems<TA, TOut>();
};

template <class Op>
struct Args {
  typename Op::TA const* a;
  typename Op::TB const* b;  // unused for Second::None
  typename Op::TOut* out;    // may alias b (axpy writes y in place): each element is read,
                             // then written, by the same thread
  int64_t n;
  int64_t head;    // elements taking the scalar path first; n for the unaligned fallback
  int64_t period;  // RowBroadcast only, >= 1
  typename Op::Fn fn;
};

template <class Op>
CUTE_DEVICE float second_at(Args<Op> const& args, int64_t i) {
  if constexpr (Op::kSecond == Second::Stream) {
    return float(args.b[i]);
  } else if constexpr (Op::kSecond == Second::RowBroadcast) {
    return float(args.b[i % args.period]);
  } else {
    return 0.0f;
  }
}

// A row-broadcast operand for the packs one thread holds. rB is (PACK,UNROLL); rB(0,u) is
// element first + u * pack_stride of the flattened matrix.
template <class Op, class RB>
CUTE_DEVICE void load_broadcast(Args<Op> const& args, RB& rB, int64_t first, int64_t pack_stride) {
  using TB = typename Op::TB;
  constexpr int kPack = Op::kPack;
  CUTE_UNROLL
  for (int u = 0; u < size<1>(rB); ++u) {
    int64_t col = (first + u * pack_stride) % args.period;
    TB const* row_part = args.b + col;
    bool whole = col + kPack <= args.period && reinterpret_cast<uintptr_t>(row_part) % kVectorBytes == 0;
    if (whole) {
      // The pack lies inside one row: one 16-byte load of the (cache-resident) bias.
      Tensor gPart = make_tensor(make_gmem_ptr(row_part), Layout<Shape<Int<kPack>>>{});  // (PACK)
      Tensor rPart = rB(_, u);                                                            // (PACK)
      copy_vectors<GmemLoad128>(gPart, rPart);
    } else {
      // The pack wraps past the end of a row (or the row is misaligned): gather.
      CUTE_UNROLL
      for (int k = 0; k < kPack; ++k) {
        rB(k, u) = args.b[col];
        col = (col + 1 == args.period) ? 0 : col + 1;
      }
    }
  }
}

// Loads, computes and stores the packs one thread holds. gA, gB, gOut are (PACK,UNROLL)
// slices of global memory, each 16-byte aligned at every pack; gB is only read when the
// second operand is streamed.
template <class Op, class GA, class GB, class GOut>
CUTE_DEVICE void run_packs(Args<Op> const& args, GA const& gA, GB const& gB, GOut&& gOut, int64_t first,
                           int64_t pack_stride) {
  using TA = typename Op::TA;
  using TB = typename Op::TB;
  using TOut = typename Op::TOut;
  Tensor rA = make_fragment_like<TA>(gA.layout());      // (PACK,UNROLL)
  Tensor rB = make_fragment_like<TB>(gA.layout());      // (PACK,UNROLL)
  Tensor rOut = make_fragment_like<TOut>(gA.layout());  // (PACK,UNROLL)
  // Issue every load before the first use, so kUnroll x operands 16-byte loads are in flight.
  copy_vectors<GmemLoad128>(gA, rA);
  if constexpr (Op::kSecond == Second::Stream) {
    copy_vectors<GmemLoad128>(gB, rB);
  } else if constexpr (Op::kSecond == Second::RowBroadcast) {
    load_broadcast(args, rB, first, pack_stride);
  }
  CUTE_UNROLL
  for (int i = 0; i < size(rOut); ++i) {
    float b = Op::kSecond == Second::None ? 0.0f : float(rB(i));
    rOut(i) = TOut(args.fn(float(rA(i)), b));
  }
  copy_vectors<GmemStore128>(rOut, gOut);
}

template <class Op, int kThreads, int kUnroll>
__global__ void __launch_bounds__(kThreads) elementwise_kernel(Args<Op> const args) {
  constexpr int kPack = Op::kPack;
  constexpr int kTile = kPack * kThreads * kUnroll;  // elements per block and step
  static_assert(kThreads % 32 == 0 && kUnroll >= 1, "whole warps, at least one pack per thread");
  static_assert(kPack * sizeof(typename Op::TOut) % kVectorBytes == 0, "output pack is whole 16-byte vectors");

  const int64_t n = args.n;
  const int64_t head = args.head;
  const int64_t num_tiles = (n - head) / kTile;
  const int64_t rest_begin = head + num_tiles * kTile;
  const int64_t num_rest_packs = (n - rest_begin) / kPack;
  const int64_t tail_begin = rest_begin + num_rest_packs * kPack;
  const int tid = int(threadIdx.x);
  const int64_t thread = int64_t(blockIdx.x) * kThreads + tid;
  const int64_t num_threads = int64_t(gridDim.x) * kThreads;

  // Full tiles. Thread t holds packs t, t + kThreads, ...: each warp access covers 512
  // contiguous bytes of the narrowest operand.
  auto tile_layout = make_layout(make_shape(Int<kPack>{}, Int<kThreads>{}, Int<kUnroll>{}, num_tiles));
  Tensor gA = make_tensor(make_gmem_ptr(args.a + head), tile_layout);      // (PACK,THREADS,UNROLL,TILES)
  Tensor gOut = make_tensor(make_gmem_ptr(args.out + head), tile_layout);  // (PACK,THREADS,UNROLL,TILES)
  // The second operand's view exists only when it is streamed; otherwise gA stands in, unread.
  auto stream_view = [&](auto const& layout) {
    if constexpr (Op::kSecond == Second::Stream) {
      return make_tensor(make_gmem_ptr(args.b + head), layout);
    } else {
      return make_tensor(make_gmem_ptr(args.a + head), layout);
    }
  };
  Tensor gB = stream_view(tile_layout);  // (PACK,THREADS,UNROLL,TILES)
  for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    int64_t first = head + tile * kTile + int64_t(tid) * kPack;
    run_packs(args, gA(_, tid, _, tile), gB(_, tid, _, tile), gOut(_, tid, _, tile), first,
              int64_t(kPack) * kThreads);
  }

  // Leftover whole packs, fewer than one tile.
  auto rest_layout = make_layout(make_shape(Int<kPack>{}, Int<1>{}, num_rest_packs));
  Tensor gA_rest = make_tensor(make_gmem_ptr(args.a + rest_begin), rest_layout);      // (PACK,1,PACKS)
  Tensor gOut_rest = make_tensor(make_gmem_ptr(args.out + rest_begin), rest_layout);  // (PACK,1,PACKS)
  Tensor gB_rest = [&] {
    if constexpr (Op::kSecond == Second::Stream) {
      return make_tensor(make_gmem_ptr(args.b + rest_begin), rest_layout);
    } else {
      return gA_rest;
    }
  }();  // (PACK,1,PACKS)
  for (int64_t p = thread; p < num_rest_packs; p += num_threads) {
    run_packs(args, gA_rest(_, _, p), gB_rest(_, _, p), gOut_rest(_, _, p), rest_begin + p * kPack, kPack);
  }

  // Scalar head and tail.
  auto scalar = [&](int64_t i) {
    args.out[i] = typename Op::TOut(args.fn(float(args.a[i]), second_at(args, i)));
  };
  for (int64_t i = thread; i < head; i += num_threads) {
    scalar(i);
  }
  for (int64_t i = tail_begin + thread; i < n; i += num_threads) {
    scalar(i);
  }
}

// Default tuning: 256 threads, 4 packs in flight per thread and operand (64 B per operand).
constexpr int kThreads = 256;
constexpr int kUnroll = 4;

// grid_limit caps the grid: a large value gives one tile per block (the hardware balances
// blocks), a multiple of the SM count gives a persistent grid-stride loop.
template <class Op>
int launch(Args<Op> args, int64_t grid_limit, cudaStream_t stream) {
  if (args.n <= 0) {
    return int(cudaSuccess);
  }
  args.head = args.head < 0 ? 0 : (args.head > args.n ? args.n : args.head);
  int64_t threads_needed = ceil_div(args.n - args.head, int64_t(Op::kPack) * kUnroll);
  threads_needed = threads_needed > args.head ? threads_needed : args.head;
  unsigned grid = grid_for(threads_needed, kThreads, grid_limit);
  elementwise_kernel<Op, kThreads, kUnroll><<<grid, kThreads, 0, stream>>>(args);
  return int(cudaGetLastError());
}

}  // namespace ckb::ew

// extern "C" launchers: one symbol per op and type, ckb_ew_<op>_<types>.
#define CKB_EW_BINARY(NAME, FN, T, TNAME)                                                              \
  extern "C" int ckb_ew_##NAME##_##TNAME(T const* a, T const* b, T* out, int64_t n, int64_t head,     \
                                         int64_t grid_limit, cudaStream_t stream) {                   \
    using Op = ckb::ew::Op<FN, T, T, T, ckb::ew::Second::Stream>;                                     \
    return ckb::ew::launch(ckb::ew::Args<Op>{a, b, out, n, head, 1, FN{}}, grid_limit, stream);       \
  }

#define CKB_EW_AXPY(T, TNAME)                                                                          \
  extern "C" int ckb_ew_axpy_##TNAME(float alpha, T const* x, T* y, int64_t n, int64_t head,          \
                                     int64_t grid_limit, cudaStream_t stream) {                       \
    using Op = ckb::ew::Op<ckb::ew::Axpy, T, T, T, ckb::ew::Second::Stream>;                          \
    return ckb::ew::launch(ckb::ew::Args<Op>{x, y, y, n, head, 1, ckb::ew::Axpy{alpha}}, grid_limit,  \
                           stream);                                                                   \
  }

#define CKB_EW_SCALE(T, TNAME)                                                                         \
  extern "C" int ckb_ew_scale_##TNAME(float alpha, T const* x, T* out, int64_t n, int64_t head,       \
                                      int64_t grid_limit, cudaStream_t stream) {                      \
    using Op = ckb::ew::Op<ckb::ew::Scale, T, T, T, ckb::ew::Second::None>;                           \
    return ckb::ew::launch(ckb::ew::Args<Op>{x, nullptr, out, n, head, 1, ckb::ew::Scale{alpha}},     \
                           grid_limit, stream);                                                       \
  }

#define CKB_EW_CAST(S, SNAME, D, DNAME)                                                                \
  extern "C" int ckb_ew_cast_##SNAME##_##DNAME(S const* src, D* dst, int64_t n, int64_t head,         \
                                               int64_t grid_limit, cudaStream_t stream) {             \
    using Op = ckb::ew::Op<ckb::ew::Convert, S, S, D, ckb::ew::Second::None>;                         \
    return ckb::ew::launch(ckb::ew::Args<Op>{src, nullptr, dst, n, head, 1, ckb::ew::Convert{}},      \
                           grid_limit, stream);                                                       \
  }

#define CKB_EW_BIAS_ADD(T, TNAME)                                                                      \
  extern "C" int ckb_ew_bias_add_##TNAME(T const* x, T const* bias, T* out, int64_t n, int64_t cols,  \
                                         int64_t head, int64_t grid_limit, cudaStream_t stream) {     \
    using Op = ckb::ew::Op<ckb::ew::Add, T, T, T, ckb::ew::Second::RowBroadcast>;                     \
    return ckb::ew::launch(ckb::ew::Args<Op>{x, bias, out, n, head, cols, ckb::ew::Add{}}, grid_limit, \
                           stream);                                                                   \
  }
