// 3x3 stride-2 forward from 1..4 channels to 32 (stem_conv.h), NHWC.
//
// Why: MobileNet's conv1 (224x224x3 -> 112x112x32, 'same', bias + ReLU) ran on the direct
// path's tap_block (direct_conv.cpp), vectorised along the output row with the input packed
// into planes and one accumulator per output channel: 37.5 ms at batch 64 on one Zen 4
// thread (~37 GFLOP/s) against onnxruntime's 21.2. Here the vector runs over the 32 output
// channels instead (two registers per pixel, HWIO weights are 32 contiguous floats per tap),
// a tile of kPixels output pixels keeps 2 * kPixels accumulators across all 27 (9 * C) taps,
// each tap loads its two weight vectors once for the tile and multiplies them by one
// broadcast input value per pixel, read straight from the NHWC row (no packing). The result
// is written NHWC whole 128-byte pixels at a time: with large outputs, when y is 64-byte
// aligned, by non-temporal stores from the registers (no read-for-ownership of the 102 MB
// batch-64 output).
// Columns whose window reaches the left/right padding take a 1-pixel tile over a zero-padded
// copy of their 3x3xC window; rows in the vertical padding read a row of zeros.
#include "cpu/stem_conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/act_register.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

// AVX-512, and avx2 (with FMA) in tiles of 3 pixels (kPixels below).
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define FASTCONV_STEM_TILES 1
#endif

bool stem_conv_shape(const ConvGeometry& g, ConvPass pass) {
#if defined(FASTCONV_STEM_TILES)
  const Window2d& v = g.win;
  return pass == ConvPass::Forward && g.groups == 1 && g.c >= 1 && g.c <= 4 && g.oc == 32 &&
         v.kh == 3 && v.kw == 3 && v.sh == 2 && v.sw == 2 && v.dh == 1 && v.dw == 1 &&
         v.pt >= 0 && v.pt <= 2 && v.pl >= 0 && v.pl <= 2 && g.n > 0 && g.oh > 0 && g.ow > 0 &&
         g.h > 0 && g.w > 0;
#else
  (void)g, (void)pass;
  return false;
#endif
}

#if defined(FASTCONV_STEM_TILES)

namespace {

constexpr int kOut = 32;    // output channels: two vectors per pixel
#if defined(__AVX512F__)
constexpr int kPixels = 8;  // pixels per tile: 16 accumulators
#else
// avx2 (issue 18 item 4, helper I, stop 38): 3 pixels are 12 ymm accumulators (tile below).
// MobileNet's conv1 had run on direct_conv.cpp's path.
constexpr int kPixels = 3;
#endif

// Output pixels [0, P) of a tile: r[ky] points at the tile's first input column (its first
// tap) in kernel row ky; out at the tile's first output pixel.
#if defined(__AVX512F__)
template <int C, int P, Activation A, bool Stream>
inline void tile(const float* const* r, const float* w, f32x16 b0, f32x16 b1, float* out) {
  f32x16 acc[P][2];
  for (int p = 0; p < P; ++p) acc[p][0] = b0, acc[p][1] = b1;
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx)
      for (int ci = 0; ci < C; ++ci) {
        const float* wt = w + ((ky * 3 + kx) * C + ci) * kOut;
        const f32x16 w0 = load16(wt), w1 = load16(wt + kLanes);
        for (int p = 0; p < P; ++p) {
          const f32x16 xv = (f32x16)_mm512_set1_ps(r[ky][(2 * p + kx) * C + ci]);
          acc[p][0] += xv * w0;
          acc[p][1] += xv * w1;
        }
      }
  for (int p = 0; p < P; ++p)
    for (int h = 0; h < 2; ++h) {
      const f32x16 v = act16<A>(acc[p][h]);
      if constexpr (Stream) _mm512_stream_ps(out + p * kOut + h * kLanes, (__m512)v);
      else store16(out + p * kOut + h * kLanes, v);
    }
}

#else
template <Activation A>
inline __m256 act8(__m256 v) {
  // max/min return their second operand when either is NaN: NaN stays NaN.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

template <Activation A, bool Stream>
inline void put8(float* out, __m256 v) {
  if constexpr (Stream) _mm256_stream_ps(out, act8<A>(v));
  else _mm256_storeu_ps(out, act8<A>(v));
}

// avx2: the same tile in ymm, its accumulators named locals (GCC's f32x16 arrays, two ymm an
// element, ran MobileNet's conv1 9x slower than this). P <= 3: 4 P accumulators, a
// broadcast and the tap's 4 weight vectors (read from L1 as FMA operands where registers run out).
template <int C, int P, Activation A, bool Stream>
inline void tile(const float* const* r, const float* w, f32x16 b0, f32x16 b1, float* out) {
  static_assert(P >= 1 && P <= 3);
  __m256 bias[4];
  std::memcpy(bias, &b0, sizeof b0);
  std::memcpy(bias + 2, &b1, sizeof b1);
  __m256 a00 = bias[0], a01 = bias[1], a02 = bias[2], a03 = bias[3];
  __m256 a10 = bias[0], a11 = bias[1], a12 = bias[2], a13 = bias[3];
  __m256 a20 = bias[0], a21 = bias[1], a22 = bias[2], a23 = bias[3];
  for (int ky = 0; ky < 3; ++ky) {
    const float* row = r[ky];
    for (int kx = 0; kx < 3; ++kx)
      for (int ci = 0; ci < C; ++ci) {
        const float* wt = w + ((ky * 3 + kx) * C + ci) * kOut;
        const __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8);
        const __m256 w2 = _mm256_loadu_ps(wt + 16), w3 = _mm256_loadu_ps(wt + 24);
        __m256 xv = _mm256_broadcast_ss(row + kx * C + ci);
        a00 = _mm256_fmadd_ps(xv, w0, a00), a01 = _mm256_fmadd_ps(xv, w1, a01);
        a02 = _mm256_fmadd_ps(xv, w2, a02), a03 = _mm256_fmadd_ps(xv, w3, a03);
        if constexpr (P > 1) {
          xv = _mm256_broadcast_ss(row + (2 + kx) * C + ci);
          a10 = _mm256_fmadd_ps(xv, w0, a10), a11 = _mm256_fmadd_ps(xv, w1, a11);
          a12 = _mm256_fmadd_ps(xv, w2, a12), a13 = _mm256_fmadd_ps(xv, w3, a13);
        }
        if constexpr (P > 2) {
          xv = _mm256_broadcast_ss(row + (4 + kx) * C + ci);
          a20 = _mm256_fmadd_ps(xv, w0, a20), a21 = _mm256_fmadd_ps(xv, w1, a21);
          a22 = _mm256_fmadd_ps(xv, w2, a22), a23 = _mm256_fmadd_ps(xv, w3, a23);
        }
      }
  }
  put8<A, Stream>(out, a00), put8<A, Stream>(out + 8, a01), put8<A, Stream>(out + 16, a02), put8<A, Stream>(out + 24, a03);
  if constexpr (P > 1) {
    float* o = out + kOut;
    put8<A, Stream>(o, a10), put8<A, Stream>(o + 8, a11), put8<A, Stream>(o + 16, a12), put8<A, Stream>(o + 24, a13);
  }
  if constexpr (P > 2) {
    float* o = out + 2 * kOut;
    put8<A, Stream>(o, a20), put8<A, Stream>(o + 8, a21), put8<A, Stream>(o + 16, a22), put8<A, Stream>(o + 24, a23);
  }
}
#endif

struct Stem {
  const ConvGeometry& g;
  const float *x, *w, *zeros;
  f32x16 b0, b1;
  // Output columns [lo, hi) read no padding column.
  int64_t lo, hi;
};

// One output line l (image l / oh, row l % oh) into yrow.
template <int C, Activation A, bool Stream>
void stem_row(const Stem& s, int64_t l, float* yrow) {
  const ConvGeometry& g = s.g;
  const int64_t n = l / g.oh, oy = l % g.oh, W = g.w;
  const float* rows[3];
  for (int ky = 0; ky < 3; ++ky) {
    const int64_t iy = oy * 2 - g.win.pt + ky;
    rows[ky] = iy >= 0 && iy < g.h ? s.x + ((n * g.h + iy) * W) * C : s.zeros;
  }
  // Columns reaching the padding: a zero-padded copy of the pixel's window.
  auto edge = [&](int64_t ox) {
    float patch[3][3 * C];
    const float* pr[3] = {patch[0], patch[1], patch[2]};
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const int64_t ix = ox * 2 - g.win.pl + kx;
        for (int ci = 0; ci < C; ++ci) patch[ky][kx * C + ci] = ix >= 0 && ix < W ? rows[ky][ix * C + ci] : 0.f;
      }
    tile<C, 1, A, Stream>(pr, s.w, s.b0, s.b1, yrow + ox * kOut);
  };
  auto run = [&](auto pc, int64_t ox) {
    constexpr int P = decltype(pc)::value;
    const int64_t ix0 = ox * 2 - g.win.pl;
    const float* r[3] = {rows[0] + ix0 * C, rows[1] + ix0 * C, rows[2] + ix0 * C};
    tile<C, P, A, Stream>(r, s.w, s.b0, s.b1, yrow + ox * kOut);
  };
  int64_t ox = 0;
  for (; ox < s.lo; ++ox) edge(ox);
  for (; ox + kPixels <= s.hi; ox += kPixels) run(std::integral_constant<int, kPixels>(), ox);
  if constexpr (kPixels > 4)
    if (ox + 4 <= s.hi) run(std::integral_constant<int, 4>(), ox), ox += 4;
  if constexpr (kPixels > 2)
    if (ox + 2 <= s.hi) run(std::integral_constant<int, 2>(), ox), ox += 2;
  if (ox < s.hi) run(std::integral_constant<int, 1>(), ox), ++ox;
  for (; ox < g.ow; ++ox) edge(ox);
}

template <int C, Activation A>
void forward_c(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
               Activation act) {
  const std::vector<float> zeros((size_t)(g.w * C), 0.f);
  Stem s{g, x, w, zeros.data(), f32x16{}, f32x16{}, 0, 0};
  if (b) s.b0 = load16(b), s.b1 = load16(b + kLanes);
  // ox*2 - pl >= 0 and ox*2 - pl + 2 <= w - 1.
  s.lo = std::min<int64_t>((g.win.pl + 1) / 2, g.ow);
  s.hi = std::clamp<int64_t>((g.w - 3 + g.win.pl) / 2 + 1, s.lo, g.ow);
  if (g.w - 3 + g.win.pl < 0) s.hi = s.lo;
  const int64_t lines = g.n * g.oh, row = g.ow * kOut;
  // Whole 128-byte pixels from registers: aligned lines when y is.
  const bool stream = stream_output(g.output_size() * (int64_t)sizeof(float)) &&
                      ((uintptr_t)y & 63) == 0 && (A != Activation::Linear || act == Activation::Linear);
  auto range = [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      if (stream) stem_row<C, A, true>(s, l, y + l * row);
      else stem_row<C, A, false>(s, l, y + l * row);
      // Other activations on the row while it is in L1 (then A is Linear, no streaming).
      if (A == Activation::Linear && act != Activation::Linear) activation_inplace(row, y + l * row, act);
    }
    if (stream) stream_fence();
  };
  split_lines(g.n, lines, g.output_size() >= kParallelGrain, range);
}

template <int C>
void forward_act(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                 Activation act) {
  switch (act) {
    case Activation::Relu: return forward_c<C, Activation::Relu>(g, x, w, b, y, act);
    case Activation::Relu6: return forward_c<C, Activation::Relu6>(g, x, w, b, y, act);
    default: return forward_c<C, Activation::Linear>(g, x, w, b, y, act);
  }
}

}  // namespace

void stem_conv_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act) {
  switch (g.c) {
    case 1: return forward_act<1>(g, x, w, b, y, act);
    case 2: return forward_act<2>(g, x, w, b, y, act);
    case 3: return forward_act<3>(g, x, w, b, y, act);
    default: return forward_act<4>(g, x, w, b, y, act);
  }
}

#else

// Never called: stem_conv_shape is false below avx2.
void stem_conv_forward(const ConvGeometry&, const float*, const float*, const float*, float*,
                       Activation) {}

#endif

}  // namespace fastconv::cpu::detail
