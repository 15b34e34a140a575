// The row operations, as policies for the skeleton in rows_kernel.cuh. Each names its
// element type, how its per-row statistics combine (row_stats.cuh), and a per-thread state
// `Thread<N, A, W, kHold>` holding its share of a row (N packs of W elements, laid out by
// access pattern A) in registers:
//   begin(p, m)                 once per kernel (backward: gamma, zeroed column sums;
//                               kHold: forward parameters)
//   load(p, row, load)          fill its fragments through the skeleton's loader
//   stats(p, row, m)            this thread's partial statistics
//   apply(p, row, m, s, lead)   write the row's outputs from the whole row's statistics,
//                               as the op's static finish(p, s) made them (once a row)
//   store_columns(p, slot, m, accumulate)   backward only: this thread's column sums
// W is the pack's elements: the 16-byte pack P, or fewer for lanes of short rows (forward
// ops; backward ones take P). kHold: the skeleton maps every row to begin's columns (warp
// rows), so that forward per-column parameters are loaded once, in begin, not every row.
// Math is fp32 whatever the element type; divisions and square roots take the fast
// approximate forms (2 ulp), which keeps IEEE slow paths (and their stack) out of the kernels.
#pragma once

#include "row_stats.cuh"

namespace ckb::norm {

// --- Parameters, mirrored by `RowParams` in src/launch.rs --------------------------------

enum RowLayout : int32_t { kWarpPerRow = 0, kCtaPerRow = 1 };
// kSplit is what the host asks for; the launcher runs it as kSplitStats then kSplitApply.
enum Mode : int32_t { kWhole = 0, kCluster = 1, kSplit = 2, kSplitStats = 3, kSplitApply = 4 };
enum Flags : int32_t { kVectorized = 1, kLogSoftmax = 2 };

struct RowParams {
  void const* x;        // T: rows x cols, `in_stride` apart (softmax backward: y)
  void const* dy;       // T: like x: dy (backward), the residual (fused add forward), else null
  void const* gamma;    // T: cols (layernorm, rmsnorm)
  void const* beta;     // T: cols (layernorm forward)
  void* out;            // T: rows x cols, `out_stride` apart (forward y, backward dx)
  float* mean;          // rows: written by layernorm forward unless null (inference), read by its backward
  float* rstd;          // rows: likewise, layernorm and rmsnorm
  float* row_partials;  // split rows: rows x parts x 4 floats of partial statistics
  float* col_partials;  // backward column sums: arrays x slots x cols
  void* dgamma;         // T: cols (backward)
  void* dbeta;          // T: cols (layernorm backward)
  void* sum_out;        // T: like out: h = x + residual (fused add forward), else null
  void const* addend;   // T: like x: added to dx (backward of a fused add: h's own gradient), or null
  int64_t rows;
  int64_t in_stride;    // elements between rows of x, dy and addend
  int64_t out_stride;   // elements between rows of out and sum_out
  int32_t cols;
  int32_t packs;        // 16-byte packs per thread and row operand (warp: N; staged: its part's, whole chunks)
  int32_t threads;      // per CTA
  int32_t parts;        // CTAs per row: 1, the cluster size, or the split count
  int32_t slots;        // gridDim.y
  int32_t layout;       // RowLayout
  int32_t mode;         // Mode
  int32_t flags;        // Flags
  float eps;
  int32_t stages;       // staged kernel: rows its shared-memory ring holds (1 unless vectorized); warp: 1
  int32_t smem_limit;   // dynamic shared memory the staged kernels were allowed (StagedQuery::smem_limit)
  int32_t lanes;        // warp layout: lanes per row (32; forward rows of one pack a lane: 1 to 16)
  int32_t width;        // elements of a lane's pack: the 16-byte pack's, or (a lane per row) the row's
  int32_t reserved;
};
static_assert(sizeof(RowParams) == 184, "layout shared with src/launch.rs");

// Register budget of a warp-per-row lane: row elements it holds per operand (f32: 8 / 4
// packs, halves 4 / 2). Forward ops hold one operand; backward ops two, plus gamma and
// column sums.
constexpr int kForwardElems = 32;
constexpr int kBackwardElems = 16;
// The staged kernel holds a row part in shared memory and takes it through registers this
// many elements per operand at a time (a chunk): few enough registers for several CTAs per
// SM, whatever the part's length.
constexpr int kChunkElems = 16;

// Stats of split rows are stored with a 16-byte stride whatever K is.
constexpr int kPartialFloats = 4;

// The row operands, as ops name them to the loader the skeleton hands to Thread::load:
// load(input, fragment (PACK,N), fill) fills the fragment with the thread's share of the row.
// The second operand is dy in backward ops, the residual in fused add forward ops.
enum Input : int { kX = 0, kDy = 1, kResidual = 1 };

CUTE_DEVICE void const* input_base(RowParams const& p, int input) { return input == kX ? p.x : p.dy; }

template <class T>
CUTE_DEVICE T const* in_row(void const* base, RowParams const& p, int64_t row) {
  return static_cast<T const*>(base) + row * p.in_stride;
}
template <class T>
CUTE_DEVICE T* out_row(RowParams const& p, int64_t row) {
  return static_cast<T*>(p.out) + row * p.out_stride;
}
template <class T>
CUTE_DEVICE T* sum_row(RowParams const& p, int64_t row) {
  return static_cast<T*>(p.sum_out) + row * p.out_stride;
}

// Calls f(j, k) for every element (PACK,N) of a thread's share. Elements past the end of
// the row hold the fill value of their load; ops pick fills their statistics ignore.
template <int P, int N, class F>
CUTE_DEVICE void for_each_elem(F&& f) {
  CUTE_UNROLL
  for (int j = 0; j < N; ++j) {
    CUTE_UNROLL
    for (int k = 0; k < P; ++k) {
      f(j, k);
    }
  }
}

// Writes the thread's share of an output row: `fill(j, o)` computes pack j into o (PACK).
template <int N, class T, int P, Access A, bool I, class Fill>
CUTE_DEVICE void store_row(T* out, PackMap<P, A, I> const& m, Fill&& fill) {
  CUTE_UNROLL
  for (int j = 0; j < N; ++j) {
    Tensor o = make_tensor<T>(Shape<Int<P>>{});  // (PACK)
    fill(j, o);
    store_pack(out, m, j, o);
  }
}

// Fused add forward ops: x += residual, rounded to T (the h a separate add would store, so
// that the norm of h is the norm of what is written), through the skeleton's loader.
template <bool kAdd, class T, class Frag, class Load>
CUTE_DEVICE void load_sum(Load&& load, Frag& x) {
  load(kX, x, T(0.0f));
  if constexpr (kAdd) {
    Frag r;  // (PACK,N)
    load(kResidual, r, T(0.0f));
    CUTE_UNROLL
    for (int i = 0; i < size(x); ++i) {
      x(i) = T(float(x(i)) + float(r(i)));
    }
  }
}

// Fused add forward ops: writes the thread's share of h (held in x) to sum_out.
template <bool kAdd, int N, class T, int P, Access A, bool I, class Frag>
CUTE_DEVICE void store_sum(RowParams const& p, int64_t row, PackMap<P, A, I> const& m, Frag const& x) {
  if constexpr (kAdd) {
    store_row<N>(sum_row<T>(p, row), m, [&](int j, auto& o) { copy(x(_, j), o); });
  }
}

// Per-column parameters (gamma, beta) are loaded this many elements per operand at a time,
// ahead of the math and stores that use them: one memory round trip per group, where loading
// each pack beside its store would wait out one per pack.
constexpr int kParamGroupElems = 16;

// store_row for ops reading per-column parameters: `load(j, i)` loads pack j's parameters
// into group slot i (0 <= i < G), `fill(j, i, o)` then computes pack j into o (PACK).
template <int N, int G, class T, int P, Access A, bool I, class Load, class Fill>
CUTE_DEVICE void store_row_grouped(T* out, PackMap<P, A, I> const& m, Load&& load, Fill&& fill) {
  static_assert(N % G == 0, "whole groups");
  CUTE_UNROLL
  for (int j0 = 0; j0 < N; j0 += G) {
    CUTE_UNROLL
    for (int i = 0; i < G; ++i) {
      load(j0 + i, i);
    }
    CUTE_UNROLL
    for (int i = 0; i < G; ++i) {
      Tensor o = make_tensor<T>(Shape<Int<P>>{});  // (PACK)
      fill(j0 + i, i, o);
      store_pack(out, m, j0 + i, o);
    }
  }
}

// What every op declares: element type, combining rule, register budget, row operands
// (1: x; 2: x and dy) and column sums (dgamma, dbeta).
template <class T, class C, bool kFwd, int kIn, int kColumns, int kParams = 0>
struct OpTraits {
  using Element = T;
  using Combine = C;
  static constexpr int P = kPackElems<T>;
  static constexpr int kMaxPacks = (kFwd ? kForwardElems : kBackwardElems) / P;
  static constexpr int kChunkPacks = kChunkElems / P;
  // Parameter packs per group (store_row_grouped) for a thread share of N packs of W. Rows
  // read element by element (backward, unaligned warp rows) take one pack: their per-element
  // addresses and predicates leave no registers for more.
  template <int N, Access A, int W = P>
  static constexpr int kParamPacks = A != Access::kVector ? 1
                                     : N < kParamGroupElems / W                         ? N
                                                                                        : kParamGroupElems / W;
  static constexpr bool kForward = kFwd;
  static constexpr int kInputs = kIn;
  // Per-column parameter arrays of the forward op (gamma, beta).
  static constexpr int kParamArrays = kParams;
  // Whether a warp lane holding N packs of W elements also holds their parameters (kHold):
  // up to 32 elements of them; more spilled layernorm's halves at 4 packs a lane.
  template <int N, int W = P>
  static constexpr bool kHoldsParams = kParams * N * W <= kForwardElems;
  static constexpr int kColumnArrays = kColumns;
  // The row's reduced statistics as apply takes them: once a row, where the staged kernel
  // applies a row chunk by chunk.
  template <int K>
  CUTE_DEVICE static Stat<K> finish(RowParams const&, Stat<K> s) {
    return s;
  }
};

// --- Forward ------------------------------------------------------------------------------

// softmax(x) = exp(x - max) / sum, log_softmax(x) = x - max - log(sum). -inf entries give
// exactly 0 (-inf); a row of only -inf (max = -inf, sum = 0) gives NaN everywhere, as does a
// row holding NaN or +inf: the conventions of src/reference.rs.
template <class T>
struct SoftmaxForward : OpTraits<T, MaxSumCombine, true, 1, 0> {
  using OpTraits<T, MaxSumCombine, true, 1, 0>::P;

  // (max, sum) to (max, scale): log(sum) for log_softmax, else 1 / sum.
  CUTE_DEVICE static Stat<2> finish(RowParams const& p, Stat<2> s) {
    return {{s.v[0], p.flags & kLogSoftmax ? logf(s.v[1]) : __fdividef(1.0f, s.v[1])}};
  }

  template <int N, Access A, int W = P, bool kHold = false>
  struct Thread {
    using Map = PackMap<W, A>;
    RowFrag<T, N, W> x;  // (PACK,N)

    CUTE_DEVICE void begin(RowParams const&, Map const&) {}

    template <class Load>
    CUTE_DEVICE void load(RowParams const&, int64_t, Load&& load) {
      load(kX, x, T(-INFINITY));  // -inf past the row: adds exp(-inf) = 0
    }

    template <class M>
    CUTE_DEVICE Stat<2> stats(RowParams const&, int64_t, M const&) const {
      float max = -INFINITY;
      for_each_elem<W, N>([&](int j, int k) { max = fmaxf(max, widen<A>(x, k, j)); });
      // About a finite max, -inf entries (and fills) add exp(-inf) = 0 with no test; a
      // max of -inf (no finite entry) takes 0 for the same.
      const float about = max == -INFINITY ? 0.0f : max;
      float sum = 0.0f;
      for_each_elem<W, N>([&](int j, int k) { sum += exp_fast(widen<A>(x, k, j) - about); });
      return {{max, sum}};
    }

    // s: finish's (max, scale).
    template <class M>
    CUTE_DEVICE void apply(RowParams const& p, int64_t row, M const& m, Stat<2> s, bool) const {
      const float max = s.v[0], scale = s.v[1];
      const bool log = p.flags & kLogSoftmax;
      store_row<N>(out_row<T>(p, row), m, [&](int j, auto& o) {
        CUTE_UNROLL
        for (int k = 0; k < W; ++k) {
          const float shifted = widen<A>(x, k, j) - max;
          o(k) = T(log ? shifted - scale : exp_fast(shifted) * scale);
        }
      });
    }
  };
};

// y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(biased var + eps); saves mean and
// rstd where their pointers are not null (the inference form passes null). kAdd: the fused
// form, x = x + residual first, written to sum_out (load_sum).
// Statistics are shifted sums (ShiftedSumsCombine) about the first element of lane 0 of the
// warp (already in a register: one shuffle, no global load on the row's critical path).
template <class T, bool kAdd = false>
struct LayerNormForward : OpTraits<T, ShiftedSumsCombine, true, kAdd ? 2 : 1, 0, 2> {
  using OpTraits<T, ShiftedSumsCombine, true, kAdd ? 2 : 1, 0, 2>::P;

  template <int N, Access A, int W = P, bool kHold = false>
  struct Thread {
    using Map = PackMap<W, A>;
    RowFrag<T, N, W> x;            // (PACK,N)
    RowFrag<T, N, W> gamma, beta;  // (PACK,N): kHold only

    CUTE_DEVICE void begin(RowParams const& p, Map const& m) {
      if constexpr (kHold) {
        load_packs<Cache::kKeep>(static_cast<T const*>(p.gamma), m, gamma);
        load_packs<Cache::kKeep>(static_cast<T const*>(p.beta), m, beta);
      }
    }

    template <class Load>
    CUTE_DEVICE void load(RowParams const&, int64_t, Load&& load) {
      load_sum<kAdd, T>(load, x);
    }

    // Every lane of the warp calls it (the shift is a shuffle). The first lane of the
    // row's lane group (the warp, or fewer lanes for short rows) holds the first column of
    // the group's share in pack 0: element 0, or (kShifted packs starting before the row)
    // the row's first column. It is inside the row unless the whole group is past it (then
    // n = 0 everywhere and the shift is never used).
    template <class M>
    CUTE_DEVICE Stat<4> stats(RowParams const&, int64_t, M const& m) const {
      float first = float(x(0, 0));
      if constexpr (A == Access::kShifted && !M::kInsideRow) {
        const int k0 = max(0, -m.col(0, 0));
        CUTE_UNROLL
        for (int k = 1; k < W; ++k) {
          first = k == k0 ? float(x(k, 0)) : first;  // constant indices: x stays in registers
        }
      }
      const float shift = __shfl_sync(0xffffffffu, first, 0, m.group < 32 ? m.group : 32);
      float n = 0.0f, sum = 0.0f, sq = 0.0f;
      CUTE_UNROLL
      for (int j = 0; j < N; ++j) {
        if (m.all_valid(j)) {  // no per-element predicates but at the row's ends
          CUTE_UNROLL
          for (int k = 0; k < W; ++k) {
            const float d = widen<A>(x, k, j) - shift;
            sum += d;
            sq = fmaf(d, d, sq);
          }
          n += float(W);
        } else {
          CUTE_UNROLL
          for (int k = 0; k < W; ++k) {
            const bool valid = m.valid(j, k);
            const float d = valid ? widen<A>(x, k, j) - shift : 0.0f;
            n += valid ? 1.0f : 0.0f;
            sum += d;
            sq = fmaf(d, d, sq);
          }
        }
      }
      return {{n, sum, sq, shift}};
    }

    template <class M>
    CUTE_DEVICE void apply(RowParams const& p, int64_t row, M const& m, Stat<4> s, bool lead) const {
      const float inv_n = __fdividef(1.0f, s.v[0]);
      const float mean_d = s.v[1] * inv_n;
      const float shift = s.v[3], mean = shift + mean_d;
      const float rstd = rsqrtf(fmaxf(fmaf(-mean_d, mean_d, s.v[2] * inv_n), 0.0f) + p.eps);
      if (lead && p.mean != nullptr) {
        p.mean[row] = mean;
      }
      if (lead && p.rstd != nullptr) {
        p.rstd[row] = rstd;
      }
      store_sum<kAdd, N, T>(p, row, m, x);
      // About the shift: x - shift is exact for x near it, where x - mean would carry mean's
      // rounding (a large mean and a small spread).
      auto y = [&](int j, int k, float g, float b) {
        return T(fmaf((widen<A>(x, k, j) - shift - mean_d) * rstd, g, b));
      };
      if constexpr (kHold) {
        store_row<N>(out_row<T>(p, row), m, [&](int j, auto& o) {
          CUTE_UNROLL
          for (int k = 0; k < W; ++k) {
            o(k) = y(j, k, float(gamma(k, j)), float(beta(k, j)));
          }
        });
      } else {
        constexpr int G = LayerNormForward::template kParamPacks<N, A, W>;
        RowFrag<T, G, W> g, b;  // (PACK,G)
        store_row_grouped<N, G>(
            out_row<T>(p, row), m,
            [&](int j, int i) {
              load_pack<Cache::kKeep>(static_cast<T const*>(p.gamma), m, j, g(_, i), T(0.0f));
              load_pack<Cache::kKeep>(static_cast<T const*>(p.beta), m, j, b(_, i), T(0.0f));
            },
            [&](int j, int i, auto& o) {
              CUTE_UNROLL
              for (int k = 0; k < W; ++k) {
                o(k) = y(j, k, widen<A>(g, k, i), widen<A>(b, k, i));
              }
            });
      }
    }
  };
};

// y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + eps); saves rstd unless its pointer is
// null (the inference form). kAdd: the fused form, as LayerNormForward's.
template <class T, bool kAdd = false>
struct RmsNormForward : OpTraits<T, SumCombine<1>, true, kAdd ? 2 : 1, 0, 1> {
  using OpTraits<T, SumCombine<1>, true, kAdd ? 2 : 1, 0, 1>::P;

  template <int N, Access A, int W = P, bool kHold = false>
  struct Thread {
    using Map = PackMap<W, A>;
    RowFrag<T, N, W> x;      // (PACK,N)
    RowFrag<T, N, W> gamma;  // (PACK,N): kHold only

    CUTE_DEVICE void begin(RowParams const& p, Map const& m) {
      if constexpr (kHold) {
        load_packs<Cache::kKeep>(static_cast<T const*>(p.gamma), m, gamma);
      }
    }

    template <class Load>
    CUTE_DEVICE void load(RowParams const&, int64_t, Load&& load) {
      load_sum<kAdd, T>(load, x);
    }

    template <class M>
    CUTE_DEVICE Stat<1> stats(RowParams const&, int64_t, M const&) const {
      float sum_sq = 0.0f;  // zero fill: adds 0
      for_each_elem<W, N>([&](int j, int k) {
        const float v = widen<A>(x, k, j);
        sum_sq += v * v;
      });
      return {{sum_sq}};
    }

    template <class M>
    CUTE_DEVICE void apply(RowParams const& p, int64_t row, M const& m, Stat<1> s, bool lead) const {
      const float rstd = rsqrtf(__fdividef(s.v[0], float(p.cols)) + p.eps);
      if (lead && p.rstd != nullptr) {
        p.rstd[row] = rstd;
      }
      store_sum<kAdd, N, T>(p, row, m, x);
      auto y = [&](int j, int k, float g) { return T(widen<A>(x, k, j) * rstd * g); };
      if constexpr (kHold) {
        store_row<N>(out_row<T>(p, row), m, [&](int j, auto& o) {
          CUTE_UNROLL
          for (int k = 0; k < W; ++k) {
            o(k) = y(j, k, float(gamma(k, j)));
          }
        });
      } else {
        constexpr int G = RmsNormForward::template kParamPacks<N, A, W>;
        RowFrag<T, G, W> g;  // (PACK,G)
        store_row_grouped<N, G>(
            out_row<T>(p, row), m,
            [&](int j, int i) { load_pack<Cache::kKeep>(static_cast<T const*>(p.gamma), m, j, g(_, i), T(0.0f)); },
            [&](int j, int i, auto& o) {
              CUTE_UNROLL
              for (int k = 0; k < W; ++k) {
                o(k) = y(j, k, widen<A>(g, k, i));
              }
            });
      }
    }
  };
};

// --- Backward -----------------------------------------------------------------------------

// dx = y * (dy - sum(dy * y)), from the forward output y (in p.x) and dy.
template <class T>
struct SoftmaxBackward : OpTraits<T, SumCombine<1>, false, 2, 0> {
  using OpTraits<T, SumCombine<1>, false, 2, 0>::P;

  template <int N, Access A, int W = P, bool kHold = false>
  struct Thread {
    static_assert(W == P, "backward rows take 16-byte packs");
    using Map = PackMap<P, A>;
    RowFrag<T, N> y;   // (PACK,N)
    RowFrag<T, N> dy;  // (PACK,N)

    CUTE_DEVICE void begin(RowParams const&, Map const&) {}

    template <class Load>
    CUTE_DEVICE void load(RowParams const&, int64_t, Load&& load) {
      load(kX, y, T(0.0f));
      load(kDy, dy, T(0.0f));
    }

    template <class M>
    CUTE_DEVICE Stat<1> stats(RowParams const&, int64_t, M const&) const {
      float dot = 0.0f;  // zero fill: adds 0
      for_each_elem<P, N>([&](int j, int k) { dot += float(dy(k, j)) * float(y(k, j)); });
      return {{dot}};
    }

    template <class M>
    CUTE_DEVICE void apply(RowParams const& p, int64_t row, M const& m, Stat<1> s, bool) const {
      store_row<N>(out_row<T>(p, row), m, [&](int j, auto& o) {
        CUTE_UNROLL
        for (int k = 0; k < P; ++k) {
          o(k) = T(float(y(k, j)) * (float(dy(k, j)) - s.v[0]));
        }
      });
    }
  };
};

// Per-thread column sums of the norm backward passes, kept in registers across the rows a
// thread visits and written once per CTA: (PACK,N) per array.
template <int P, int N, Access A, int kArrays>
struct ColumnSums {
  decltype(make_tensor<float>(Shape<Int<P>, Int<N>, Int<kArrays>>{})) acc;  // (PACK,N,ARRAYS)

  CUTE_DEVICE void zero() { clear(acc); }

  // Into col_partials[a][slot][col]; `accumulate` adds to what an earlier warp of the CTA wrote.
  CUTE_DEVICE void store(RowParams const& p, int slot, PackMap<P, A> const& m, bool accumulate) const {
    Tensor gSums = make_tensor(make_gmem_ptr(p.col_partials),
                               make_layout(make_shape(int64_t(p.cols), int64_t(p.slots), Int<kArrays>{}),
                                           make_stride(Int<1>{}, int64_t(p.cols), int64_t(p.slots) * p.cols)));  // (COLS,SLOTS,ARRAYS)
    for_each_elem<P, N>([&](int j, int k) {
      if (m.valid(j, k)) {
        CUTE_UNROLL
        for (int a = 0; a < kArrays; ++a) {
          float& dst = gSums(m.col(j, k), slot, a);
          dst = accumulate ? dst + acc(k, j, a) : acc(k, j, a);
        }
      }
    });
  }
};

// LayerNorm (kCentered) and RMSNorm backward, from the saved statistics. With
// xhat = (x - mean) * rstd (RMSNorm: mean = 0) and g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (RMSNorm: no mean(g) term),
//   dgamma += dy * xhat, dbeta += dy (LayerNorm only).
// RMSNorm's usual form rstd * (g - x * rstd^2 * mean(g * x)) is the same expression.
// Behind a fused add (h = x + residual normalized), dx += addend, h's own gradient: then dx
// is the gradient of x and of the residual alike.
template <class T, bool kCentered>
struct NormBackward : OpTraits<T, SumCombine<kCentered ? 2 : 1>, false, 2, kCentered ? 2 : 1> {
  using Base = OpTraits<T, SumCombine<kCentered ? 2 : 1>, false, 2, kCentered ? 2 : 1>;
  using Base::P;
  static constexpr int K = Base::Combine::kStats;

  template <int N, Access A, int W = P, bool kHold = false>
  struct Thread {
    static_assert(W == P, "backward rows take 16-byte packs");
    using Map = PackMap<P, A>;
    RowFrag<T, N> x;      // (PACK,N)
    RowFrag<T, N> dy;     // (PACK,N)
    RowFrag<T, N> gamma;  // (PACK,N): the same columns on every row
    ColumnSums<P, N, A, Base::kColumnArrays> sums;
    float mean = 0.0f, rstd;

    CUTE_DEVICE float xhat(int j, int k) const { return (float(x(k, j)) - mean) * rstd; }
    // Rounded product, never contracted into an fma: mean(g) cancels g in dx, which on short
    // rows (one element: dx = 0) leaves only the two roundings' difference, times rstd.
    CUTE_DEVICE float g(int j, int k) const { return __fmul_rn(float(dy(k, j)), float(gamma(k, j))); }

    CUTE_DEVICE void begin(RowParams const& p, Map const& m) {
      load_packs<Cache::kKeep>(static_cast<T const*>(p.gamma), m, gamma);
      sums.zero();
    }

    template <class Load>
    CUTE_DEVICE void load(RowParams const& p, int64_t row, Load&& load) {
      load(kX, x, T(0.0f));
      load(kDy, dy, T(0.0f));
      if constexpr (kCentered) {
        mean = p.mean[row];
      }
      rstd = p.rstd[row];
    }

    // (sum(g * xhat)[, sum(g)]); zero fill: g = 0 adds 0.
    template <class M>
    CUTE_DEVICE Stat<K> stats(RowParams const&, int64_t, M const&) const {
      Stat<K> s = Base::Combine::identity();
      for_each_elem<P, N>([&](int j, int k) {
        s.v[0] += g(j, k) * xhat(j, k);
        if constexpr (kCentered) {
          s.v[1] += g(j, k);
        }
      });
      return s;
    }

    template <class M>
    CUTE_DEVICE void apply(RowParams const& p, int64_t row, M const& m, Stat<K> s, bool) {
      const float inv_n = __fdividef(1.0f, float(p.cols));
      const float mean_g_xhat = s.v[0] * inv_n;
      const float mean_g = kCentered ? s.v[K - 1] * inv_n : 0.0f;
      T const* addend = p.addend != nullptr ? in_row<T>(p.addend, p, row) : nullptr;
      store_row<N>(out_row<T>(p, row), m, [&](int j, auto& o) {
        Tensor a = make_tensor<T>(Shape<Int<P>>{});  // (PACK)
        if (addend != nullptr) {
          load_pack<Cache::kStream>(addend, m, j, a, T(0.0f));
        } else {
          fill(a, T(0.0f));
        }
        CUTE_UNROLL
        for (int k = 0; k < P; ++k) {
          o(k) = T(fmaf(rstd, g(j, k) - mean_g - xhat(j, k) * mean_g_xhat, float(a(k))));
        }
      });
      // Past the row, dy = 0: the sums there stay 0 and are never stored.
      for_each_elem<P, N>([&](int j, int k) {
        sums.acc(k, j, 0) += float(dy(k, j)) * xhat(j, k);
        if constexpr (kCentered) {
          sums.acc(k, j, 1) += float(dy(k, j));
        }
      });
    }

    CUTE_DEVICE void store_columns(RowParams const& p, int slot, Map const& m, bool accumulate) const {
      sums.store(p, slot, m, accumulate);
    }
  };
};

template <class T>
using LayerNormBackward = NormBackward<T, true>;
template <class T>
using RmsNormBackward = NormBackward<T, false>;
template <class T>
using AddLayerNormForward = LayerNormForward<T, true>;
template <class T>
using AddRmsNormForward = RmsNormForward<T, true>;

}  // namespace ckb::norm
