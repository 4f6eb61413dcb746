// 3x3 depthwise forward at stride 1 and 2 (M = 1), NHWC, in vectors of the level's register
// width (f32xR: 8 floats at avx2, 4 at the baseline).
//
// Why a kernel of its own: below AVX-512, depthwise.cpp's passes run in 16-channel blocks
// (f32x16: two ymm / four xmm registers). Its stride-2 pass walks one block along the whole
// output row (gather_block): the 9 weight vectors are 18 ymm registers, more than the level
// has, so every tap reloads a spilled weight as well as its input; each input row is re-read
// once per block from L2 (a 112x112x64 row is 28 KB, three rows do not fit L1); relu6 runs as
// a second pass over the row. Its stride-1 tiles (tile3, three accumulators per output, for
// AVX-512's 32 registers) spill likewise. Here a tile of P output columns takes every channel
// block in turn (the loads walk along memory), each block with a kernel row's 3 weights, one
// accumulator per output and one for the kernel row in progress in registers (3 + 2P + 1
// column = 12 of the 16 ymm at P = 4), the activation applied before the store:
//   y[oy, ox] = act(b + sum_{ky, kx} x[S oy - pt + ky, S ox - pl + kx] * w[ky, kx])
// Kernel rows in the vertical padding read a row of zeros (no branch per row); the columns
// whose window reaches the left/right padding run one at a time (row()).
// Paired with main's build in one process (1 thread, Zen 3 EPYC at the avx2 level, forward +
// relu6 as MobileNet's b1 plan calls it, output a pool block out of cache, both load orders;
// RESULTS.md, helper S stop 37): stride 1 112x112x32 0.62-0.64, 56x56x128 0.62-0.66, 28x28x256
// 0.53-0.58, 14x14x512 0.58-0.65, 7x7x1024 0.76-0.78; stride 2 (pads 0, 1, 0, 1) 112x112x64
// 0.74-0.79, 56x56x128 0.84-0.91, 28x28x256 0.69-0.72, 14x14x512 0.63-0.70. Few channels at
// stride 1 (depthwise_narrow.h's rows in f32x16, or the block walk, below AVX-512): 56x56x8
// 0.07, 56x56x24 0.18, 112x112x3 0.10, 112x112x16 0.55. MobileNet b1 predict 0.95.
// Requests for the next rows (into L1 or L2, input or output) measured 1.0-1.17x slower there;
// tiles of P = 2 or 3 columns no better, P = 6 spills (2-3x slower).
// At AVX-512 depthwise.cpp's tiles hold this walk in 32 registers; not routed there (not
// measured on AVX-512 hardware in that session).
#include "cpu/depthwise_reg_tiles.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if !defined(__AVX512F__)
namespace {

using V = f32xR;
constexpr int kR = kRegLanes;

// Output columns per tile: a kernel row's 3 weights, 2 accumulators per output and the column
// being applied stay within the 16 vector registers of avx2 and SSE.
constexpr int kP = 4;

// Loads/stores of one channel block of n <= kR floats; Full blocks are plain vector moves,
// the tail block masked (zeros in the lanes >= n).
template <bool Full>
inline V ldv(const float* p, int n) {
  if constexpr (Full) {
    (void)n;
    return loadR(p);
  } else {
#if defined(__AVX2__)
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (V)_mm256_maskload_ps(p, m);
#else
    V v{};
    std::memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
#endif
  }
}

template <bool Full>
inline void stv(float* p, V v, int n) {
  if constexpr (Full) {
    (void)n;
    storeR(p, v);
  } else {
#if defined(__AVX2__)
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(p, m, (__m256)v);
#else
    std::memcpy(p, &v, sizeof(float) * (size_t)n);
#endif
  }
}

// relu / relu6 in a register; NaN stays NaN: max/min return their second operand when
// either is NaN.
template <Activation A>
inline V act_r(V v) {
  if constexpr (A == Activation::Relu || A == Activation::Relu6) {
#if defined(__AVX__)
    v = (V)_mm256_max_ps(_mm256_setzero_ps(), (__m256)v);
#else
    v = (V)_mm_max_ps(_mm_setzero_ps(), (__m128)v);
#endif
  }
  if constexpr (A == Activation::Relu6) {
#if defined(__AVX__)
    v = (V)_mm256_min_ps(_mm256_set1_ps(6.f), (__m256)v);
#else
    v = (V)_mm_min_ps(_mm_set1_ps(6.f), (__m128)v);
#endif
  }
  return v;
}

struct Geo {
  int64_t ih, iw, oh, ow, c, pt, pl;
  int64_t lo, hi;  // output columns [lo, hi) read no padding column
};

// Output columns [ox, ox + P) of one row, channels [c0, c0 + n), stride S. A tile reads
// (P - 1) S + 3 input columns of each kernel row, each once; column j feeds outputs p with
// kx = j - S p in [0, 3). Checked: columns outside the row read as zeros (stride-1 edges).
template <int S, int P, bool Checked, bool Full, Activation A>
inline void tile(const Geo& q, const float* const* rows, const float* w, const float* bias, int64_t c0,
                 int n, int64_t ox, float* out) {
  constexpr int kCols = (P - 1) * S + 3;
  const int64_t C = q.c, ix0 = S * ox - q.pl;
  V acc[P], part[P];
  const V b = bias ? ldv<Full>(bias + c0, n) : V{};
  for (int p = 0; p < P; ++p) acc[p] = b;
  for (int ky = 0; ky < 3; ++ky) {
    // Kernel row ky's sums apart, then added: (b + row 0) + row 1 + row 2, taps in kx order,
    // as depthwise.cpp's tiles and block walk (and depthwise_narrow.h) form them, so a
    // streamed output (which takes those) has the same bits.
    V* sum = ky == 0 ? acc : part;
    if (ky > 0)
      for (int p = 0; p < P; ++p) part[p] = V{};
    const V wk[3] = {ldv<Full>(w + (3 * ky) * C + c0, n), ldv<Full>(w + (3 * ky + 1) * C + c0, n),
                     ldv<Full>(w + (3 * ky + 2) * C + c0, n)};
    const float* r = rows[ky] + c0 + ix0 * C;
    for (int j = 0; j < kCols; ++j) {
      const V col = !Checked || (ix0 + j >= 0 && ix0 + j < q.iw) ? ldv<Full>(r + j * C, n) : V{};
      for (int p = 0; p < P; ++p) {
        const int kx = j - S * p;
        if (kx >= 0 && kx < 3) sum[p] += col * wk[kx];
      }
    }
    if (ky > 0)
      for (int p = 0; p < P; ++p) acc[p] += part[p];
  }
  for (int p = 0; p < P; ++p) stv<Full>(out + (ox + p) * C + c0, act_r<A>(acc[p]), n);
}

// Columns [ox, ox + P) of one row, every channel block in turn.
template <int S, int P, bool Checked, Activation A>
inline void tile_all(const Geo& q, const float* const* rows, const float* w, const float* bias, int64_t ox,
                     float* out) {
  int64_t c0 = 0;
  for (; c0 + kR <= q.c; c0 += kR) tile<S, P, Checked, true, A>(q, rows, w, bias, c0, kR, ox, out);
  if (c0 < q.c) tile<S, P, Checked, false, A>(q, rows, w, bias, c0, (int)(q.c - c0), ox, out);
}

// Output column ox (its window overlaps the left/right padding) of a stride-2 row, channels
// [c0, c0 + n): one accumulator from the bias, the in-range columns' taps kx by kx, kernel rows
// within, as depthwise.cpp's block walk (gather_block's edge) forms them, which the levels
// below AVX-512 run for a streamed stride-2 output: the same bits either way.
template <bool Full, Activation A>
inline void edge_s2(const Geo& q, const float* const* rows, const float* w, const float* bias, int64_t c0,
                    int n, int64_t ox, float* out) {
  const int64_t C = q.c;
  V acc = bias ? ldv<Full>(bias + c0, n) : V{};
  for (int kx = 0; kx < 3; ++kx) {
    const int64_t ix = 2 * ox - q.pl + kx;
    if (ix < 0 || ix >= q.iw) continue;
    for (int ky = 0; ky < 3; ++ky) acc += ldv<Full>(rows[ky] + ix * C + c0, n) * ldv<Full>(w + (3 * ky + kx) * C + c0, n);
  }
  stv<Full>(out + ox * C + c0, act_r<A>(acc), n);
}

// One output row: the edge columns one at a time (stride 2: edge_s2; stride 1: single-column
// tiles, zeros for the padding, as depthwise.cpp's tiles form them), the interior in tiles of
// kP columns, its last ones single columns.
template <int S, Activation A>
void row(const Geo& q, const float* const* rows, const float* w, const float* bias, float* out) {
  auto edge = [&](int64_t ox) {
    if constexpr (S == 2) {
      int64_t c0 = 0;
      for (; c0 + kR <= q.c; c0 += kR) edge_s2<true, A>(q, rows, w, bias, c0, kR, ox, out);
      if (c0 < q.c) edge_s2<false, A>(q, rows, w, bias, c0, (int)(q.c - c0), ox, out);
    } else {
      tile_all<S, 1, true, A>(q, rows, w, bias, ox, out);
    }
  };
  for (int64_t ox = 0; ox < q.lo; ++ox) edge(ox);
  int64_t ox = q.lo;
  for (; ox + kP <= q.hi; ox += kP) tile_all<S, kP, false, A>(q, rows, w, bias, ox, out);
  for (; ox < q.hi; ++ox) tile_all<S, 1, false, A>(q, rows, w, bias, ox, out);
  for (ox = q.hi; ox < q.ow; ++ox) edge(ox);
}

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

bool depthwise_reg_tiles_applies(const ConvGeometry& g) {
  const Window2d& v = g.win;
  if (!(g.is_depthwise() && g.cout_g == 1 && v.kh == 3 && v.kw == 3 && v.sh == v.sw && (v.sh == 1 || v.sh == 2) &&
        v.dh == 1 && v.dw == 1))
    return false;
  // depthwise.cpp's gather_row takes stride 1, and stride 2 from 64 channels at avx2, into
  // depthwise_regtile.h's tiles, streamed output or not; those sum in another order than this
  // kernel. Leaving them to it keeps a streamed output bit-identical to an unstreamed one
  // (test_depthwise.py's streamed tests), and this kernel keeps the stride-2 cases it alone
  // sped up (C < 64 at avx2, every C at baseline).
  if (v.sh == 1) return false;
#if defined(__AVX2__)
  if (g.c >= 64) return false;
#endif
  if (v.pt < 0 || v.pl < 0 || v.pt > 2 || v.pl > 2 || v.pb > 2 || v.pr > 2) return false;
  // Batch-1 inference sizes: input and output in cache. Larger ones (training batches) keep
  // depthwise.cpp's walk with its row requests and streamed stores (measured there).
  const int64_t in_bytes = g.input_size() * (int64_t)sizeof(float);
  return in_bytes < (int64_t{4} << 20) && !stream_output(g.output_size() * (int64_t)sizeof(float));
}

void depthwise_reg_tiles_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                                 float* y, Activation act) {
  const int64_t s = g.win.sh;
  Geo q{g.h, g.w, g.oh, g.ow, g.c, g.win.pt, g.win.pl, 0, 0};
  // ox*s - pl >= 0 and ox*s - pl + 2 <= iw - 1.
  q.lo = std::clamp<int64_t>(floor_div(q.pl + s - 1, s), 0, q.ow);
  q.hi = std::clamp<int64_t>(floor_div(q.iw - 3 + q.pl, s) + 1, q.lo, q.ow);
  const std::vector<float> zeros((size_t)(q.iw * q.c), 0.f);
  const int64_t lines = g.n * q.oh, row_floats = q.ow * q.c, plane = q.ih * q.iw * q.c;
  const bool in_register = act == Activation::Linear || act == Activation::Relu || act == Activation::Relu6;
  auto run = [&](auto a, int64_t l0, int64_t l1) {
    constexpr Activation A = decltype(a)::value;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t img = l / q.oh, oy = l % q.oh;
      const float* rows[3];
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t iy = s * oy - q.pt + ky;
        rows[ky] = iy >= 0 && iy < q.ih ? x + img * plane + iy * q.iw * q.c : zeros.data();
      }
      float* out = y + l * row_floats;
      if (s == 2) row<2, A>(q, rows, w, b, out);
      else row<1, A>(q, rows, w, b, out);
      if (!in_register) activation_inplace(row_floats, out, act);  // while the row is in L1
    }
  };
  split_lines(g.n, lines, lines * row_floats >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    switch (act) {
      case Activation::Relu: return run(std::integral_constant<Activation, Activation::Relu>(), l0, l1);
      case Activation::Relu6: return run(std::integral_constant<Activation, Activation::Relu6>(), l0, l1);
      default: return run(std::integral_constant<Activation, Activation::Linear>(), l0, l1);
    }
  });
}

#endif  // !__AVX512F__

}  // namespace fastconv::cpu::detail
