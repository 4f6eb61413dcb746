// The forward and backward data of 3x3 stride-1 'same' convs with C = 3 or 6 channels in and
// out, at the avx2 level (8-lane ymm, 16 registers).
//
// Why: at avx2 these ran on direct_conv.cpp's planar tap blocks (16 pixels of one row and
// CB output channels a call, each tap's weights broadcast and its offset and weight pointer
// loaded from a table), at 0.22-0.43 of the sgemm roofline on an AVX2-only EPYC (Zen 3,
// sweep_2026-12-07i_zen3.md: N=256 56x56 C=3 forward 3.6 ms, backward data 3.9 ms).
//
// Here, as in few_channel_weights8.cpp, a work item (a block of output rows of one image, or
// whole small images with one zero row between two) deinterleaves its input rows into C
// planes of rows of P = W + 2 floats: column ix at float 1 + ix, zeros at 0 and W + 1 (the
// padding columns; rows under 14 pixels: P = W + 1, the zero at 0 also the row before's
// right padding), zero rows for the padding rows. Output float q of a plane (row q / P)
// then reads input float q + ky*P + kx for tap (ky, kx) across the whole item, one flat
// stream: per 3 vectors of 8 outputs and 3 output channels, 9 accumulators, 3 input loads
// and 3 weight broadcasts a tap, 9 FMAs. The lanes a row's slot has past its W outputs
// compute garbage that is never written back; every output lane reads only its window's
// floats and zeros, so the padding is exactly the reference's zeros (non-finite inputs land where the
// reference puts them; a non-finite weight would meet padding zeros, so such calls return
// false). The planes go back to NHWC through pixel_transpose::merge.
//
//   forward          y = b + the conv of x
//   backward data    the forward on dy with the kernel flipped and in/out channels swapped
#include "cpu/few_channel_fwd8.h"

#if defined(__AVX2__) && !defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/plane_items8.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

constexpr int L = kRegLanes;
static_assert(L == 8, "ymm");
typedef f32xR vec;
using pixel_transpose::load;
using pixel_transpose::store;

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
// One item's input and output planes: within L1's 32 KiB.
constexpr int64_t kItemFloats = 6144;
constexpr int CB = 3, NV = 3;  // output channels and vectors a register block

// Pixels [ix, ix + 8) of an NHWC row into C planes pitch apart.
template <int C>
inline void split8(const float* src, int64_t ix, float* dst, int64_t pitch) {
  vec pl[C];
  pixel_transpose::load_split<C>(src + ix * C, pl);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) store(dst + c * pitch + ix, pl[c]);
}
// One NHWC row of W pixels into the planes (floats [0, W) of each; the last partial vector as
// the last 8 pixels again). A row under 8 pixels: where 8 pixels from src stay inside the
// input (`room`), split straight from src, then floats [W, 8) of each plane zeroed: they are
// this row's right padding and the next row's left padding (and data floats the next row,
// split after this one, rewrites); else through a zeroed copy. Rows go in increasing order.
// (7x7 C=3: the copy's memcpy and the tmp round trip were 28% of the pass, perf.)
template <int C>
void to_planes(const float* src, int64_t W, float* dst, int64_t pitch, bool room) {
  if (W < L) {
    if (room) {  // the lanes past the row zeroed in registers (a memset call a row was 4% of 7x7 C=3)
      vec pl[C];
      pixel_transpose::load_split<C>(src, pl);
      const vec keep = (vec)_mm256_castsi256_ps(
          _mm256_cmpgt_epi32(_mm256_set1_epi32((int)W), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) store(dst + c * pitch, (vec)_mm256_and_ps((__m256)pl[c], (__m256)keep));
      return;
    }
    float tmp[L * C] = {};
    std::memcpy(tmp, src, sizeof(float) * W * C);
    split8<C>(tmp, 0, dst, pitch);
    return;
  }
  int64_t ix = 0;
  for (; ix + L <= W; ix += L) split8<C>(src, ix, dst, pitch);
  if (ix < W) split8<C>(src, W - L, dst, pitch);
}
// The inverse: floats [0, W) of the planes into one NHWC row. A row under 8 pixels stores 8
// where `room` (the pixels past the row belong to the item's next rows, written after it).
template <int C>
void from_planes(const float* src, int64_t pitch, int64_t W, float* dst, bool room) {
  auto block = [&](int64_t ix, float* d) {
    vec pl[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) pl[c] = load(src + c * pitch + ix);
    pixel_transpose::merge_store<C>(d, pl);
  };
  if (W < L) {
    if (room) return block(0, dst);
    float tmp[L * C];
    block(0, tmp);
    std::memcpy(dst, tmp, sizeof(float) * W * C);
    return;
  }
  int64_t ix = 0;
  for (; ix + L <= W; ix += L) block(ix, dst + ix * C);
  if (ix < W) block(W - L, dst + (W - L) * C);
}

// Output planes yp (YS apart) floats [0, nq) = bias + the 3x3 conv of the input planes xp
// (XS apart, rows P floats): wt HWIO 3x3xCxC. nq a multiple of NV*L.
template <int C>
void item_conv(const float* xp, int64_t XS, const float* wt, const float* bias, float* yp,
               int64_t YS, int64_t P, int64_t nq) {
  static_assert(C % CB == 0, "whole blocks");
  for (int c0 = 0; c0 < C; c0 += CB)
    for (int64_t q = 0; q < nq; q += NV * L) {
      vec acc[CB][NV];
#pragma GCC unroll 4
      for (int c = 0; c < CB; ++c) {
        const vec b = vec{} + (bias ? bias[c0 + c] : 0.f);
        for (int j = 0; j < NV; ++j) acc[c][j] = b;
      }
      // The input channels as a loop (not unrolled): unrolled, their 3C row offsets were
      // hoisted out of the loop and reloaded from the stack, a scalar load a kernel row.
#pragma GCC unroll 1
      for (int ci = 0; ci < C; ++ci)
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ++ky) {
          const float* xr = xp + ci * XS + ky * P + q;
#pragma GCC unroll 3
          for (int kx = 0; kx < 3; ++kx) {
            vec xv[NV];
            for (int j = 0; j < NV; ++j) xv[j] = load(xr + kx + j * L);
            const float* w = wt + ((ky * 3 + kx) * C + ci) * C + c0;
            for (int c = 0; c < CB; ++c) {
              // vbroadcastss from memory (vec{} + w[c] was a scalar add of +0, then a shuffle)
              const vec wc = (vec)_mm256_broadcast_ss(w + c);
              for (int j = 0; j < NV; ++j) acc[c][j] += xv[j] * wc;
            }
          }
        }
#pragma GCC unroll 4
      for (int c = 0; c < CB; ++c)
        for (int j = 0; j < NV; ++j) store(yp + (c0 + c) * YS + q + j * L, acc[c][j]);
    }
}

// The forward-shaped pass: out (N x H x W x C) = bias + the conv of in (same shape), 'same'.
template <int C>
void run(const ConvGeometry& g, const float* in, const float* wt, const float* bias,
         float* out, Activation act) {
  // Rows under 14 pixels: P = W + 1 floats, the one zero column between two rows being the
  // right padding of the first and the left padding of the second (output float q reads
  // q + ky*P + kx: column W - 1's kx = 2 tap lands on the next row's float 0). W + 2 (a
  // zero column each side) costs 1 / (W + 1) more lanes: paired, W + 1 / W + 2 (stop 39,
  // helper C, N=256): 7x7 C=3 forward 0.93-0.98, backward data 0.82-0.96, C=6 0.90 / 0.91;
  // at 14x14 0.93-1.08 (noise), 56x56 C=3 1.02-1.04: wider rows keep W + 2.
  const int64_t H = g.h, W = g.w, P = W < 14 ? W + 1 : W + 2;
  const PlaneItems items(g.n, H, P, C, kItemFloats);
  // Slack: the last block of NV vectors runs past the rows; its x reads stay inside.
  const int64_t YS = items.rows_max * P + NV * L, XS = (items.rows_max + 2) * P + NV * L + 2 * L;
  const int threads =
      g.n * H * W * 9 * C * C < kParallelWork ? 1 : std::max(1, get_num_threads());
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    std::vector<float> xbuf, ybuf;
    errors.run([&] {
      xbuf.assign((size_t)(C * XS), 0.f);  // zeroed once: the margins are never written
      ybuf.assign((size_t)(C * YS), 0.f);
    });
    auto x_row = [&](int64_t r, int64_t n, int64_t iy) {
      float* dst = xbuf.data() + r * P + 1;
      if (iy < 0 || iy >= H) {
        // under 8 floats: 8 zeros (the floats past the row are padding or rewritten after)
        if (W < L)
          for (int c = 0; c < C; ++c) store(dst + c * XS, vec{});
        else
          for (int c = 0; c < C; ++c) std::memset(dst + c * XS, 0, sizeof(float) * W);
        return;
      }
      // 8 pixels from the row's start inside the input
      const bool room = (g.n * H - (n * H + iy)) * W >= L;
      to_planes<C>(in + (n * H + iy) * W * C, W, dst, XS, room);
    };
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items.count; ++i) {
      if (errors.failed()) continue;
      const PlaneItem it = items[i];
      const int64_t n0 = it.n0, images = it.images, oy0 = it.oy0, lines = it.lines, rows = it.rows();
      for (int64_t m = 0; m < images; ++m) {
        const int64_t b = m * (lines + 1);
        if (m == 0) x_row(0, n0, oy0 - 1);
        for (int64_t l = 0; l < lines; ++l) x_row(b + 1 + l, n0 + m, oy0 + l);
        x_row(b + lines + 1, n0 + m, oy0 + lines);  // the next image's top padding too
      }
      const int64_t nq = (rows * P + NV * L - 1) / (NV * L) * (NV * L);
      item_conv<C>(xbuf.data(), XS, wt, bias, ybuf.data(), YS, P, nq);
      for (int64_t m = 0; m < images; ++m) {
        float* y0 = out + ((n0 + m) * H + oy0) * W * C;
        for (int64_t l = 0; l < lines; ++l)  // 8 pixels where the item has them from the row's start
          from_planes<C>(ybuf.data() + (m * (lines + 1) + l) * P, YS, W, y0 + l * W * C,
                         ((images - m) * lines - l) * W >= L);
      }
      // The activation on this item's rows while they are in cache.
      if (act != Activation::Linear)
        activation_inplace(images * lines * W * C, out + (n0 * H + oy0) * W * C, act);
    }
  });
  errors.rethrow();
}

bool finite_weights(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(w[i] - w[i] == 0.f)) return false;
  return true;
}

}  // namespace

// The rule: 3x3, stride 1, dilation 1, 'same' (pads 1), groups 1, C = 3 or 6 in and out;
// from 14 columns, and the C = 3 forward under them too. Paired against the direct path (1
// thread, CPU time, Zen 3 avx2, N=256; benchmarks/RESULTS.md, helper F, stop 38): forward
// C=3 7x7 0.87, 14x14 0.71, 56x56 0.77; C=6 7x7 0.98 (left to the direct path), 14x14 0.88,
// 56x56 0.80; backward data C=3 7x7 1.04 (left), 14x14 0.72, 56x56 0.75; C=6 7x7 1.04
// (left), 28x28 0.85. Rows under 8 columns for every pass since they are split and merged in
// place (stop 39, helper C, against the direct path, N=256: backward data 7x7 C=3 0.74, C=6
// 0.92, 5x5 C=3 0.67, 4x4 C=6 0.80; forward 7x7 C=6 0.87, 4x4 C=6 0.86).
bool few_channel_fwd8_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  if (pass == ConvPass::BackwardWeights) return false;
  const bool wide = g.w >= 14 || g.w < L || (g.c == 3 && pass == ConvPass::Forward);
  return wide && g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 && v.kw == 3 &&
         v.sh == 1 && v.sw == 1 && v.dh == 1 && v.dw == 1 && v.pt == 1 && v.pb == 1 &&
         v.pl == 1 && v.pr == 1 && g.n > 0 && g.h > 0 && g.w > 0 && g.oh == g.h &&
         g.ow == g.w;
}

bool few_channel_fwd8_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act) {
  if (!few_channel_fwd8_shape(g, ConvPass::Forward) || !finite_weights(w, 9 * g.c * g.c))
    return false;
  if (g.c == 3) run<3>(g, x, w, b, y, act);
  else run<6>(g, x, w, b, y, act);
  return true;
}

bool few_channel_fwd8_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx) {
  const int64_t C = g.c;
  if (!few_channel_fwd8_shape(g, ConvPass::BackwardData) || !finite_weights(w, 9 * C * C))
    return false;
  // wt[ky, kx, co, ci] = w[2 - ky, 2 - kx, ci, co]: the forward on dy, pads 2 - 1 = 1.
  std::vector<float> wt((size_t)(9 * C * C));
  for (int64_t ky = 0; ky < 3; ++ky)
    for (int64_t kx = 0; kx < 3; ++kx)
      for (int64_t ci = 0; ci < C; ++ci)
        for (int64_t co = 0; co < C; ++co)
          wt[((ky * 3 + kx) * C + co) * C + ci] = w[(((2 - ky) * 3 + 2 - kx) * C + ci) * C + co];
  if (C == 3) run<3>(g, dy, wt.data(), nullptr, dx, Activation::Linear);
  else run<6>(g, dy, wt.data(), nullptr, dx, Activation::Linear);
  return true;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool few_channel_fwd8_shape(const ConvGeometry&, ConvPass) { return false; }
bool few_channel_fwd8_forward(const ConvGeometry&, const float*, const float*, const float*,
                              float*, Activation) {
  return false;
}
bool few_channel_fwd8_backward_data(const ConvGeometry&, const float*, const float*, float*) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
