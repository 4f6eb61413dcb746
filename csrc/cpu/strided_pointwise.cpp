// Forward of a strided 1x1 conv (groups == 1, no pads, stride > 1 on either axis) with 17..32
// channels each side, NHWC / HWIO, AVX-512 only (issue 18 item 3, helper W, stop 36).
//
// Why: with Cin = Cout = 24 or 32 such a conv is a GEMM of K = N = 24..32 over the strided
// pixels of x, too shallow for the blocked GEMM (im2col gathers a col copy first, and the 14
// x 32 tile leaves 8 of 32 lanes empty at N = 24) and, on the per-pixel map
// (narrow_pointwise.cpp map_group: 4 pixels in flight, a broadcast and an FMA per channel)
// the loads of x stalled: perf on 1x1 s2 N=256 28x28 C=24 (2.40 ms in the sweep for 58 MFLOP,
// the sweep's second-worst case) put most of map_pixels<24>'s samples on the FMAs with
// broadcast memory operands, and in cache (N=8) it took 21 ns a pixel where its FMAs need ~10.
//
// Here an output tile is kTile = 6 pixels x Cout (a zmm and, at 17..24 channels, a ymm, else
// a second zmm per pixel: 12 accumulators), built over Cin steps of one weight row (two loads
// from a packed 32-wide copy in L1) and one broadcast of each pixel's input channel. The
// tile's pixels are taken in output order across output rows (a pointer per pixel), so rows
// of 4..56 pixels leave no short tails; only an item's last tile is part-filled (its missing
// pixels repeat the last one and are not stored). x is read in place: each pixel's lines are
// prefetched kAheadPixels pixels before its tile (a strided conv skips rows and pixels, where
// the hardware prefetchers stop at every jump). Bias in the accumulators; the activation on
// each item's y while it is in cache. Tile sizes, 1 thread, paired (stop 36): 8 pixels took
// 0.84-0.98x of 12's time (12 pointers and 24 accumulators: GCC spilled the pointers), 6
// 0.76-1.0x of 8's, 4 0.95-0.99x of 6's at 24 channels but 1.12x at 32.
// The same case after: 2.4-3.0 -> 0.8-1.5 ms (paired, load-dependent; benchmarks/RESULTS.md).
#include "cpu/strided_pointwise.h"

#include <algorithm>
#include <cstring>

#include "cpu/conv_algorithm.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/strided_pointwise_common.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using namespace strided_pointwise;

constexpr int kTile = 6;                       // pixels a tile (see the head comment)
constexpr int64_t kItemPixels = 170 * kTile;  // output pixels a work item (~1000, whole tiles)

// dst[r * oc + o] = bias[o] + sum_k src[r][k] * wp[k * 32 + o] for r < valid, o < oc.
template <class H>
void run_tile(const float* const* src, int64_t cin, const float* wp, const float* bias,
              float* dst, int64_t oc, int valid, __mmask16 hi_mask) {
  const float* s[kTile];
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) s[r] = src[r];
  __m512 lo[kTile];
  typename H::V hi[kTile];
  const __m512 b0 = _mm512_load_ps(bias);
  const typename H::V b1 = H::load(bias + 16);
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) lo[r] = b0, hi[r] = b1;
  for (int64_t k = 0; k < cin; ++k) {
    const __m512 w0 = _mm512_load_ps(wp + k * 32);
    const typename H::V w1 = H::load(wp + k * 32 + 16);
#pragma GCC unroll 8
    for (int r = 0; r < kTile; ++r) {
      const __m512 xv = _mm512_set1_ps(s[r][k]);
      lo[r] = _mm512_fmadd_ps(xv, w0, lo[r]);
      hi[r] = H::fma(H::part(xv), w1, hi[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) {
    if (r >= valid) break;
    _mm512_storeu_ps(dst + r * oc, lo[r]);
    H::store(dst + r * oc + 16, hi[r], hi_mask);
  }
}

template <class H>
void forward(const ConvGeometry& g, const float* x, const float* wp, const float* bias, float* y,
             Activation act) {
  const int64_t c = g.c, oc = g.oc;
  const int64_t step = g.win.sw * c, row_step = g.win.sh * g.w * c;
  const __mmask16 hi_mask = (__mmask16)((1u << (oc - 16)) - 1);
  const int64_t pixels = g.n * g.oh * g.ow, items = (pixels + kItemPixels - 1) / kItemPixels;
  const int threads = pixels * c * oc < kParallelMacs ? 1 : std::max(1, get_num_threads());
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t p0 = it * kItemPixels, count = std::min(kItemPixels, pixels - p0);
      float* const dst = y + p0 * oc;
      Cursor cur(g, x, p0), pre = cur;  // pre: kAheadPixels on, within x
      const int64_t ahead = std::min(kAheadPixels, pixels - 1 - p0);
      for (int64_t q = 0; q < ahead; ++q) pre.next(g, row_step);
      int64_t left = pixels - p0 - ahead;  // pixels from pre's on
      for (int64_t q = 0; q < count; q += kTile) {
        const int valid = (int)std::min<int64_t>(kTile, count - q);
        const float* src[kTile];
        for (int r = 0; r < kTile; ++r) {
          src[r] = cur.at(step);
          if (r + 1 < valid) cur.next(g, row_step);
        }
        cur.next(g, row_step);
        for (int r = 0; r < kTile && left > 0; ++r, --left) {
          const float* p = pre.at(step);
          __builtin_prefetch(p, 0, 2);
          __builtin_prefetch(p + c - 1, 0, 2);
          if (left > 1) pre.next(g, row_step);
        }
        run_tile<H>(src, c, wp, bias, dst + q * oc, oc, valid, hi_mask);
      }
      activation_inplace(count * oc, dst, act);
    }
  });
}

}  // namespace

// Cached x where the narrow kernels (narrow_pointwise*.cpp) stay ahead. 1 thread, ms,
// before (narrow) / after (here), two builds in one process, medians of 9-15 (stop 36):
// forward at batch 1: N=1 112x112 C=24 0.042/0.045, C=32 0.071/0.075, 56x56 C=32 0.0186/0.0188
// (within the +-4% two copies of one build measured; while N=256 7x7 C=32, 1.6 MB,
// 0.122/0.104 and N=32 14x14 C=32 0.049/0.043 gain); weight pass under 8 MiB of x with output
// rows of 7 pixels or more: N=256 14x14 C=24 (4.8 MB) 0.31/0.32 and 0.19/0.21, C=32 (6.4 MB)
// 0.38/0.40-0.42, N=32 28x28 C=24 0.119/0.130, C=32 0.193/0.209, N=1 112x112 C=24
// 0.057/0.062; but rows of 4 gain here (N=256 7x7 C=24 0.091/0.081, C=32 0.133/0.101).
constexpr int64_t kBatch1CachedBytes = int64_t{4} << 20;
constexpr int64_t kWeightsCachedBytes = int64_t{8} << 20;

bool strided_pointwise_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  const int64_t x_bytes = g.input_size() * (int64_t)sizeof(float);
  if (pass == ConvPass::BackwardData) return false;
  if (pass == ConvPass::Forward && g.n == 1 && x_bytes < kBatch1CachedBytes) return false;
  if (pass == ConvPass::BackwardWeights && g.ow >= 7 && x_bytes < kWeightsCachedBytes) return false;
  return algorithm_setting() == Algo::Auto && g.groups == 1 && v.kh == 1 && v.kw == 1 &&
         (v.sh > 1 || v.sw > 1) && !v.pt && !v.pb && !v.pl && !v.pr && g.c >= kMinChannels &&
         g.c <= kMaxChannels && g.oc >= kMinChannels && g.oc <= kMaxChannels;
}

bool strided_pointwise_forward(const ConvGeometry& g, const float* x, const float* w,
                               const float* b, float* y, Activation act) {
  if (!strided_pointwise_shape(g, ConvPass::Forward)) return false;
  // W (Cin x Cout) as rows of 32 floats, zeros past Cout: the tile's two loads a step.
  alignas(64) float wp[kMaxChannels * 32] = {};
  alignas(64) float bias[32] = {};
  for (int64_t ci = 0; ci < g.c; ++ci) std::memcpy(wp + ci * 32, w + ci * g.oc, sizeof(float) * g.oc);
  if (b) std::memcpy(bias, b, sizeof(float) * g.oc);
  if (g.oc <= 24)
    forward<Hi8>(g, x, wp, bias, y, act);
  else
    forward<Hi16>(g, x, wp, bias, y, act);
  return true;
}

#else

bool strided_pointwise_shape(const ConvGeometry&, ConvPass) { return false; }

bool strided_pointwise_forward(const ConvGeometry&, const float*, const float*, const float*,
                               float*, Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
