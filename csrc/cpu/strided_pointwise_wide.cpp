// Forward and backward data of a strided 1x1 conv (groups == 1, no pads, stride > 1 on either
// axis) with 33..64 channels each side (the forward from 17 or 25: kForwardMin), NHWC / HWIO,
// at the avx2 level (16 ymm; issue 18 item
// 3, helper Y, stop 37).
//
// Why: these shapes ran on the GEMM (im2col's gather of the strided pixels, then a product of
// K = N = 48 or 64; the backward data a product into a dcol and its scatter, with dx zeroed
// first). At avx2, 1 thread, 1x1 s2 N=256 14x14 C=48 took 2.1-2.3 ms forward and 2.4 ms
// backward data for 58 MFLOP (0.29-0.39 of the sgemm ceiling; C=64 backward data 3.8-4.0 ms
// for 103 MFLOP): a product this shallow spends its time packing A and B and on the short
// rows (7 pixels an output row at 14x14), not on FMAs.
//
// Here, as strided_pointwise.cpp does for 17..32 channels at AVX-512, an output tile is kTile
// pixels x a chunk of up to 32 output channels (kTile x 4 ymm accumulators), built over Cin
// steps of one weight row (the FMAs read it from a packed copy in L1) and one broadcast of each
// pixel's input channel. The tile's pixels are taken in output order across rows and images (a
// pointer a pixel), so rows of 4..56 pixels leave no short tails. The forward reads x in place
// (each pixel's lines prefetched kAheadPixels pixels ahead) with the bias in the accumulators.
// The backward data maps dy's pixels (read in order) with W^T onto their dx pixels and writes
// the zeros of the pixels and rows the stride skips right after them: dx is written once, in
// order, with no zero pass first. AVX-512 keeps its paths (not measured here: the host of stop
// 37 ran avx2 only); the baseline keeps the GEMM.
#include <algorithm>
#include <cstring>

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/conv_algorithm.h"
#include "cpu/parallel.h"
#include "cpu/strided_pointwise.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

namespace {

// Channels each side. The forward from 25 (there the GEMM ran C=32: 1 thread, ms before/after,
// paired, stop 37: N=256 14x14 0.89/0.53, N=32 56x56 2.02/1.05, N=1 112x112 0.21/0.14, N=256
// 7x7 0.26/0.17, N=256 28x28 C=28 4.81/2.48), and from 17 with >= 8 MiB of x (there the per-
// pixel map ran it: N=256 28x28 C=24 1.94/1.47, N=256 56x56 7.12/5.10, N=32 112x112 3.08/2.58,
// C=17 1.83/1.52; but in cache the map stays ahead: N=256 14x14 C=24 0.25/0.28, N=1 112x112
// 0.049/0.062). The backward data from 33 (at 25..32 the map was even: N=256 28x28 C=28
// 2.96/2.83, N=32 56x56 C=32 1.80/1.70, N=256 14x14 C=32 0.86/0.97).
constexpr int64_t kWideMax = 64;
constexpr int64_t kForwardMin = 25, kForwardLargeMin = 17, kBackwardDataMin = 33;
constexpr int64_t kForwardLargeBytes = int64_t{8} << 20;
constexpr int kTile = 3;                           // pixels a tile
constexpr int kChunk = 4;                          // ymm of output channels a pass (32)
constexpr int64_t kItemPixels = 256 * kTile;       // pixels a work item (whole tiles)
constexpr int64_t kAheadPixels = 48;               // x's pixels prefetched this far ahead
constexpr int64_t kParallelMacs = 1 << 21;         // as conv2d.cpp: below, one thread

// Output pixel (n, oy, ox) and its place in a tensor of x's geometry: pixels in y's order.
struct Cursor {
  int64_t off, n, oy, ox;  // off: floats from the tensor's start to the pixel
  Cursor(const ConvGeometry& g, int64_t p) : n(p / (g.oh * g.ow)), oy(p / g.ow % g.oh), ox(p % g.ow) {
    off = ((n * g.h + oy * g.win.sh) * g.w + ox * g.win.sw) * g.c;
  }
  void next(const ConvGeometry& g) {
    if (++ox < g.ow) return void(off += g.win.sw * g.c);
    off -= (g.ow - 1) * g.win.sw * g.c, ox = 0;
    if (++oy < g.oh) return void(off += g.win.sh * g.w * g.c);
    off += (g.h - (g.oh - 1) * g.win.sh) * g.w * g.c, oy = 0, ++n;  // the next image (H may be odd)
  }
};

// out[r][c0 + ..] = bias[c0 + ..] + sum_k src[r][k] * wp[k * rs + c0 + ..] for r < valid: NC
// ymm of output channels (`n` floats, the last vector masked by `tail`). The accumulators are
// locals of this function, stored once at the end: held in an array passed between inlined
// helpers, GCC stored all 12 to the stack at every k (perf: the stores were half the loop).
template <int NC>
[[gnu::noinline]] void tile_chunk(const float* const* src, int64_t cin, const float* wp, int64_t rs,
                                  const float* bias, float* const* out, int valid, int64_t n,
                                  __m256i tail) {
  const float* s0 = src[0];
  const float* s1 = src[1];
  const float* s2 = src[2];
  __m256 a0[NC], a1[NC], a2[NC];
#pragma GCC unroll 4
  for (int v = 0; v < NC; ++v) a0[v] = a1[v] = a2[v] = _mm256_loadu_ps(bias + v * 8);
  for (int64_t k = 0; k < cin; ++k, wp += rs) {
    const __m256 x0 = _mm256_broadcast_ss(s0 + k), x1 = _mm256_broadcast_ss(s1 + k),
                 x2 = _mm256_broadcast_ss(s2 + k);
#pragma GCC unroll 4
    for (int v = 0; v < NC; ++v) {
      const __m256 w = _mm256_loadu_ps(wp + v * 8);
      a0[v] = _mm256_fmadd_ps(x0, w, a0[v]);
      a1[v] = _mm256_fmadd_ps(x1, w, a1[v]);
      a2[v] = _mm256_fmadd_ps(x2, w, a2[v]);
    }
  }
  auto store = [&](float* p, int v, __m256 a) {
    if ((v + 1) * 8 <= n)
      _mm256_storeu_ps(p + v * 8, a);
    else if (v * 8 < n)
      _mm256_maskstore_ps(p + v * 8, tail, a);
  };
#pragma GCC unroll 4
  for (int v = 0; v < NC; ++v) {
    store(out[0], v, a0[v]);
    if (valid > 1) store(out[1], v, a1[v]);
    if (valid > 2) store(out[2], v, a2[v]);
  }
}

// Weights as rows of rs = ceil(cols / 8) * 8 floats, zeros past cols (w_{k, o} = w[k * ks + o *
// os]), and the bias likewise (zero without one).
struct Packed {
  alignas(32) float w[kWideMax * kWideMax];
  alignas(32) float bias[kWideMax];
  int64_t rs;
};
void pack(const float* w, int64_t rows, int64_t cols, int64_t ks, int64_t os, const float* b, Packed& p) {
  std::memset(&p, 0, sizeof p);
  p.rs = (cols + 7) / 8 * 8;
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t o = 0; o < cols; ++o) p.w[k * p.rs + o] = w[k * ks + o * os];
  if (b) std::memcpy(p.bias, b, sizeof(float) * cols);
}

__m256i tail_mask(int64_t cols) {
  const int n = (int)(cols % 8 == 0 ? 8 : cols % 8);
  alignas(32) int32_t m[8];
  for (int i = 0; i < 8; ++i) m[i] = i < n ? -1 : 0;
  return _mm256_load_si256((const __m256i*)m);
}

// The outputs of one tile: out[r] gets `cols` floats for r < valid; chunks of 32, then 8..24.
void tile_outputs(const float* const* src, int64_t cin, const Packed& pk, int64_t cols,
                  float* const* out, int valid, __m256i tail) {
  for (int64_t c0 = 0; c0 < cols; c0 += 8 * kChunk) {
    const int64_t n = std::min<int64_t>(8 * kChunk, cols - c0);
    const float* wp = pk.w + c0;
    const float* bias = pk.bias + c0;
    float* o[kTile];
    for (int r = 0; r < kTile; ++r) o[r] = out[r] + c0;
    switch ((n + 7) / 8) {
      case 4: tile_chunk<4>(src, cin, wp, pk.rs, bias, o, valid, n, tail); break;
      case 3: tile_chunk<3>(src, cin, wp, pk.rs, bias, o, valid, n, tail); break;
      case 2: tile_chunk<2>(src, cin, wp, pk.rs, bias, o, valid, n, tail); break;
      default: tile_chunk<1>(src, cin, wp, pk.rs, bias, o, valid, n, tail); break;
    }
  }
}

void forward(const ConvGeometry& g, const float* x, const Packed& pk, float* y, Activation act) {
  const int64_t c = g.c, oc = g.oc;
  const __m256i tail = tail_mask(oc);
  const int64_t pixels = g.n * g.oh * g.ow, items = (pixels + kItemPixels - 1) / kItemPixels;
  const int threads = pixels * c * oc < kParallelMacs ? 1 : std::max(1, get_num_threads());
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t p0 = it * kItemPixels, count = std::min(kItemPixels, pixels - p0);
      float* const dst = y + p0 * oc;
      Cursor cur(g, p0), pre = cur;  // pre: kAheadPixels on, within x
      int64_t left = pixels - p0 - 1;  // pixels after pre's
      for (int64_t q = 0; q < kAheadPixels && left > 0; ++q, --left) pre.next(g);
      for (int64_t q = 0; q < count; q += kTile) {
        const int valid = (int)std::min<int64_t>(kTile, count - q);
        const float* src[kTile];
        float* out[kTile];
        for (int r = 0; r < kTile; ++r) {
          src[r] = x + cur.off, out[r] = dst + (q + r) * oc;
          if (r + 1 < valid) cur.next(g);
        }
        cur.next(g);
        for (int r = 0; r < kTile; ++r) {
          const float* p = x + pre.off;
          for (int64_t f = 0; f < c; f += 16) __builtin_prefetch(p + f, 0, 2);
          __builtin_prefetch(p + c - 1, 0, 2);
          if (left > 0) pre.next(g), --left;
        }
        tile_outputs(src, c, pk, oc, out, valid, tail);
      }
      activation_inplace(count * oc, dst, act);
    }
  });
}

void backward_data(const ConvGeometry& g, const float* dy, const Packed& pk, float* dx) {
  const int64_t c = g.c, oc = g.oc, sh = g.win.sh, sw = g.win.sw, row_floats = g.w * c;
  const __m256i tail = tail_mask(c);
  const int64_t pixels = g.n * g.oh * g.ow, items = (pixels + kItemPixels - 1) / kItemPixels;
  const int threads = pixels * c * oc < kParallelMacs ? 1 : std::max(1, get_num_threads());
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t p0 = it * kItemPixels, count = std::min(kItemPixels, pixels - p0);
      Cursor cur(g, p0);  // dx's pixel of each dy pixel (dx has x's geometry)
      for (int64_t q = 0; q < count; q += kTile) {
        const int valid = (int)std::min<int64_t>(kTile, count - q);
        const float* src[kTile];
        float* out[kTile];
        int64_t ox[kTile], oy[kTile];
        for (int r = 0; r < kTile; ++r) {
          src[r] = dy + (p0 + q + std::min(r, valid - 1)) * oc;  // past valid: repeats, not stored
          if (r >= valid) {  // not stored
            out[r] = out[0];
            continue;
          }
          out[r] = dx + cur.off, ox[r] = cur.ox, oy[r] = cur.oy;
          cur.next(g);
        }
        tile_outputs(src, oc, pk, c, out, valid, tail);
        for (int r = 0; r < valid; ++r) {
          // The columns after this one up to the next on the grid (the row's end after the
          // last), then, after a row's last pixel, the rows up to the next grid row (the
          // image's end after the last): they get no gradient.
          const bool row_end = ox[r] + 1 == g.ow;
          const int64_t cols = (row_end ? g.w - ox[r] * sw : sw) - 1;
          if (cols > 0) std::memset(out[r] + c, 0, sizeof(float) * cols * c);
          if (row_end) {
            const int64_t rows = (oy[r] + 1 == g.oh ? g.h - oy[r] * sh : sh) - 1;
            // out[r] + (cols + 1) * c: the next row's start
            if (rows > 0) std::memset(out[r] + (cols + 1) * c, 0, sizeof(float) * rows * row_floats);
          }
        }
      }
    }
  });
}

}  // namespace

bool strided_pointwise_wide_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  if (pass == ConvPass::BackwardWeights) return false;
  const bool large = g.input_size() * (int64_t)sizeof(float) >= kForwardLargeBytes;
  const int64_t min = pass == ConvPass::Forward ? (large ? kForwardLargeMin : kForwardMin) : kBackwardDataMin;
  return algorithm_setting() == Algo::Auto && g.groups == 1 && v.kh == 1 && v.kw == 1 &&
         (v.sh > 1 || v.sw > 1) && !v.pt && !v.pb && !v.pl && !v.pr && g.c >= min &&
         g.c <= kWideMax && g.oc >= min && g.oc <= kWideMax;
}

bool strided_pointwise_wide_forward(const ConvGeometry& g, const float* x, const float* w,
                                    const float* b, float* y, Activation act) {
  if (!strided_pointwise_wide_shape(g, ConvPass::Forward)) return false;
  Packed pk;  // W (Cin x Cout)
  pack(w, g.c, g.oc, g.oc, 1, b, pk);
  forward(g, x, pk, y, act);
  return true;
}

bool strided_pointwise_wide_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                          float* dx) {
  if (!strided_pointwise_wide_shape(g, ConvPass::BackwardData)) return false;
  Packed pk;  // W^T (Cout x Cin)
  pack(w, g.oc, g.c, 1, g.oc, nullptr, pk);
  backward_data(g, dy, pk, dx);
  return true;
}

#else

bool strided_pointwise_wide_shape(const ConvGeometry&, ConvPass) { return false; }

bool strided_pointwise_wide_forward(const ConvGeometry&, const float*, const float*, const float*,
                                    float*, Activation) {
  return false;
}

bool strided_pointwise_wide_backward_data(const ConvGeometry&, const float*, const float*, float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
