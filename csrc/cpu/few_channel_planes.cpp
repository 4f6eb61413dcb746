// 3x3 stride-1 same-size convs with C = 2..8 channels in and out, each image as C flat planes.
//
// Why: the direct path (direct_conv.cpp) runs these on planar rows, 16 output columns a
// vector: a 7x7 image fills 7 of 16 lanes (and 8 rows computed for 7), 14x14 14 of 16, the
// wider rows 7/8 (28 -> 32, 56 -> 64); every row is packed with zero margins and written back
// on its own. The sweep on Zen 4 (sgemm ceiling 98.6 GFLOP/s) had the C=3 forward at 0.16
// (7x7), 0.35 (14x14) and 0.44-0.54 (28..112) of the roofline where its family's median is
// 1.11, C=6 7x7 at 0.33.
//
// Here an image is one stream (few_channel_flat.cpp does this for C = 1): its C*H*W NHWC
// floats are split into C planes of H*W floats by register permutes (pixel_transpose.h: the
// image is contiguous, so no row ends), output position q (row q / W, column q % W) of plane
// co reads plane ci at q + (ky - pt)*W + (kx - pl) for tap (ky, kx), a fixed offset for every
// lane, with the lane masks of flat_masks.h (masked-off lanes read nothing: no padding, no
// 0 * inf). NV vectors of 16 positions x C output channels are held in registers over all
// 9*C taps (one masked load per tap and vector, one weight broadcast per tap and channel
// feeding NV FMAs), then merged back to NHWC in registers and stored whole.
//
//   forward          y[q, co] = b[co] + sum over (ky, kx, ci) of x_ci[q + off] * w[ky, kx, ci, co]
//   backward data    the forward on dy with the kernel flipped and ci, co swapped, pads 2 - p
// Small images (7x7, 14x14) run several to a stream (stream_conv, the weight pass likewise),
// so that a vector's lanes are not left idle at every image's end.
#include "cpu/few_channel_planes.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "cpu/flat_masks.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)
namespace {

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
// Floats of one image's planes (a thread's workspace): 512 KiB, past it the direct path.
constexpr int64_t kMaxPlaneFloats = int64_t(1) << 17;

int threads_for(const ConvGeometry& g) {
  return g.n * g.h * g.w * 9 * g.c * g.oc < kParallelWork ? 1 : std::max(1, get_num_threads());
}

// Vectors of 16 positions per register block: NV*C accumulators (8..16 for C = 2..4, 15 and
// 18 for C = 5, 6, 14 and 16 for C = 7, 8) + NV inputs + a broadcast within 32 zmm. The more
// vectors, the more FMAs per weight broadcast. 1 thread, CPU-time medians of 3 rounds on the
// loaded Zen 4, ms NV = 2/3/4 (forward): C=6 N=32 14x14 0.062/0.057/0.057, N=256 7x7
// 0.114/0.104/0.105, N=256 28x28 1.57-1.64/1.52-1.57/2.0-2.35 (24 accumulators: spills);
// C=4 N=256 14x14 0.204/0.217/0.190.
constexpr int vectors_for(int C) { return C <= 4 ? 4 : C <= 6 ? 3 : 2; }

// planes[ci*hw + q] = img[q*C + ci]: whole registers by permutes, the tail one float at a time.
template <int C>
void split_image(const float* img, int64_t hw, float* planes) {
  int64_t q = pixel_transpose::split_rows<C>(img, hw, planes, hw);
  for (; q < hw; ++q)
    for (int ci = 0; ci < C; ++ci) planes[ci * hw + q] = img[q * C + ci];
}

// acc[v][co] += the 9*C taps of the NV vectors at q0 of planes `len` floats apart (kernel
// column outermost). masks(ky, kx, mk) gives mk[v], the valid lanes of tap (ky, kx) in vector
// v. The image walk passes only m[v][0][kx] where every vector's rows above and below are in
// the image, so that NV masks live per kernel column (with all 9*NV of them live GCC moved
// masks between the stack and the mask registers for every load; a third of a 14x14 C=3
// forward); the stream of images reads them from its table.
// ROWS = false: the masks depend on kx alone (read once per kernel column, as before the
// stream's table).
template <int C, int NV, bool ROWS, typename TapMasks>
inline void accumulate(const float* planes, int64_t len, int64_t q0, int64_t W, int pt, int pl,
                       TapMasks&& masks, const float* w, __m512 (&acc)[NV][C]) {
#pragma GCC unroll 3
  for (int kx = 0; kx < 3; ++kx) {
    __mmask16 mk[NV];
    if (!ROWS) masks(0, kx, mk);
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky) {
      if (ROWS) masks(ky, kx, mk);
      const float* src = planes + q0 + (ky - pt) * W + (kx - pl);
      const float* wt = w + (ky * 3 + kx) * C * C;
#pragma GCC unroll 8
      for (int ci = 0; ci < C; ++ci) {
        __m512 xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) xv[v] = _mm512_maskz_loadu_ps(mk[v], src + ci * len + 16 * v);
#pragma GCC unroll 8
        for (int co = 0; co < C; ++co) {
          const __m512 wv = _mm512_set1_ps(wt[ci * C + co]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[v][co] = _mm512_fmadd_ps(xv[v], wv, acc[v][co]);
        }
      }
    }
  }
}

// acc[v][co] = b[co] (0 without a bias).
template <int C, int NV>
inline void init_bias(const float* b, __m512 (&acc)[NV][C]) {
#pragma GCC unroll 8
  for (int co = 0; co < C; ++co) {
    const __m512 bv = b ? _mm512_set1_ps(b[co]) : _mm512_setzero_ps();
    for (int v = 0; v < NV; ++v) acc[v][co] = bv;
  }
}

// The NV vectors at q0 merged back to NHWC (C channels) and stored at out + q0*C, the
// positions from len on left alone.
template <int C, int NV>
inline void store_block(const __m512 (&acc)[NV][C], int64_t q0, int64_t len, float* out) {
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const int64_t q = q0 + 16 * v;
    if (q >= len) break;
    pixel_transpose::vec pl_[C], px[C];
    for (int co = 0; co < C; ++co) std::memcpy(&pl_[co], &acc[v][co], sizeof(__m512));
    pixel_transpose::merge<C>(pl_, px);
    if (q + 16 <= len) {
      for (int co = 0; co < C; ++co) pixel_transpose::store(out + q * C + co * 16, px[co]);
    } else {  // the last pixels
      float tmp[16 * C];
      for (int co = 0; co < C; ++co) pixel_transpose::store(tmp + co * 16, px[co]);
      std::memcpy(out + q * C, tmp, sizeof(float) * (len - q) * C);
    }
  }
}

// One image: out (NHWC, C channels) = bias + 3x3 conv of the planes with HWIO weights w
// (3x3xCxC), pads pt, pl.
template <int C>
void image_conv(const float* planes, float* out, int64_t H, int64_t W, int pt, int pl,
                const float* w, const float* b, const int* col0, const float* next) {
  constexpr int NV = vectors_for(C);
  const int64_t hw = H * W;
  flat::Walk walk(H, W, pt, pl, _mm512_loadu_si512(col0));
  for (int64_t q0 = 0; q0 < hw; q0 += 16 * NV) {
    __mmask16 m[NV][3][3];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) walk.masks(q0 + 16 * v, m[v]);  // zero past the image
    __m512 acc[NV][C];
    init_bias<C, NV>(b, acc);
    // The next image's NHWC floats, as many lines as this block's (it is split after this
    // one: images past the caches were read at DRAM latency in the split).
    if (next)
      for (int k = 0; k < NV * C && q0 * C + 16 * k < hw * C; ++k)
        _mm_prefetch((const char*)(next + q0 * C + 16 * k), _MM_HINT_T0);
    if (q0 >= pt * W && q0 + 16 * NV + (2 - pt) * W <= hw)
      accumulate<C, NV, false>(planes, hw, q0, W, pt, pl, [&](int, int kx, __mmask16 (&mk)[NV]) {
        for (int v = 0; v < NV; ++v) mk[v] = m[v][0][kx];
      }, w, acc);
    else
      accumulate<C, NV, true>(planes, hw, q0, W, pt, pl, [&](int ky, int kx, __mmask16 (&mk)[NV]) {
        for (int v = 0; v < NV; ++v) mk[v] = m[v][ky][kx];
      }, w, acc);
    store_block<C, NV>(acc, q0, hw, out);
  }
}

// ---- small images as one stream ----
//
// A 14x14 image is 12.25 vectors of 16 positions, a 7x7 one 3.06: walked image by image in
// blocks of 16*NV positions, a C=3 14x14 image took 256 lanes of work for 196 positions, a
// C=6 7x7 one 64 for 49. Here a group of images is split into C planes of all its positions
// (NHWC images are consecutive, so the split and the merged output are one run each) and
// walked as one stream; a tap reaching into the neighbouring image is masked like the padding.
// The lane masks repeat every lcm(H*W, 16) positions (one table per call) and each group's
// stream starts at the table's start. Only where an image by itself would leave at least
// 1/kStreamMinWaste of its block's lanes idle: the table's masks cost more than the walk's
// (C=3 N=32 28x28, 49 whole vectors, forward 0.063 -> 0.071 ms streamed).
constexpr int64_t kStreamMaxHW = 1024;  // images up to 32x32 (a table of 1024 vectors at most)
constexpr int64_t kStreamMinWaste = 10;
// Planes of a forward group within L1 (C=6 28x28 N=256 in groups of 3920 positions, 94 KiB
// of planes: 1.59 -> 1.85 ms; C=6 N=32 14x14 0.061 -> 0.066).
constexpr int64_t kStreamBytes = 48 << 10;

struct StreamTable {
  int64_t period = 0;  // vectors of 16 positions before the masks repeat; 0: no stream
  std::vector<__mmask16> m;  // 9 a vector (tap ky*3 + kx), period + kTableExtra vectors
};
constexpr int kTableExtra = 4;  // a block of NV <= 4 vectors starting in the period's last one

// The table for H x W images with pads pt, pl where walking blocks of `block` positions image
// by image wastes enough lanes.
StreamTable stream_table(int64_t H, int64_t W, int pt, int pl, int64_t block) {
  StreamTable t;
  const int64_t hw = H * W;
  if (hw > kStreamMaxHW || ((hw + block - 1) / block * block - hw) * kStreamMinWaste < hw) return t;
  int64_t period_pos = hw;
  while (period_pos % 16) period_pos += hw;  // lcm(hw, 16) <= 16 * 1024
  t.period = period_pos / 16;
  // built position by position with the row and column carried (the divisions per position
  // and tap were a tenth of a C=6 N=32 14x14 forward)
  t.m.assign((size_t)(9 * (t.period + kTableExtra)), 0);
  int64_t row = 0, col = 0;
  for (int64_t v = 0; v < t.period + kTableExtra; ++v) {
    unsigned rows[3] = {0, 0, 0}, cols[3] = {0, 0, 0};  // lanes whose tap row / column is inside
    for (int lane = 0; lane < 16; ++lane) {
      for (int k = 0; k < 3; ++k) {
        if (row + k - pt >= 0 && row + k - pt < H) rows[k] |= 1u << lane;
        if (col + k - pl >= 0 && col + k - pl < W) cols[k] |= 1u << lane;
      }
      if (++col == W) {
        col = 0;
        if (++row == H) row = 0;
      }
    }
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) t.m[9 * v + ky * 3 + kx] = (__mmask16)(rows[ky] & cols[kx]);
  }
  return t;
}

// The stream of `len` positions (whole images) of the planes (len floats apart) into out
// (NHWC); the next group's NHWC floats (next_floats of them at next) are prefetched.
template <int C>
void stream_conv(const float* planes, int64_t len, float* out, int64_t W, int pt, int pl,
                 const float* w, const float* b, const StreamTable& st, const float* next,
                 int64_t next_floats) {
  constexpr int NV = vectors_for(C);
  static_assert(NV <= kTableExtra, "the table's extra vectors cover a block");
  int64_t v0 = 0;  // the table vector of the block's first
  for (int64_t q0 = 0; q0 < len; q0 += 16 * NV, v0 += NV) {
    if (v0 >= st.period) v0 -= st.period;
    const __mmask16* mt = st.m.data() + 9 * v0;
    __m512 acc[NV][C];
    init_bias<C, NV>(b, acc);
    for (int k = 0; k < NV * C && q0 * C + 16 * k < next_floats; ++k)
      _mm_prefetch((const char*)(next + q0 * C + 16 * k), _MM_HINT_T0);
    if (q0 + 16 * NV <= len) {
      accumulate<C, NV, true>(planes, len, q0, W, pt, pl, [&](int ky, int kx, __mmask16 (&mk)[NV]) {
        for (int v = 0; v < NV; ++v) mk[v] = mt[9 * v + ky * 3 + kx];
      }, w, acc);
    } else {  // the stream's last block: lanes from len on read nothing
      __mmask16 tail[NV];
      for (int v = 0; v < NV; ++v) tail[v] = flat::tail_mask(q0 + 16 * v, len);
      accumulate<C, NV, true>(planes, len, q0, W, pt, pl, [&](int ky, int kx, __mmask16 (&mk)[NV]) {
        for (int v = 0; v < NV; ++v) mk[v] = (__mmask16)(mt[9 * v + ky * 3 + kx] & tail[v]);
      }, w, acc);
    }
    store_block<C, NV>(acc, q0, len, out);
  }
}

using ImageConvFn = void (*)(const float*, float*, int64_t, int64_t, int, int, const float*,
                             const float*, const int*, const float*);
using StreamConvFn = void (*)(const float*, int64_t, float*, int64_t, int, int, const float*,
                              const float*, const StreamTable&, const float*, int64_t);
using SplitFn = void (*)(const float*, int64_t, float*);

template <size_t... I>
constexpr std::array<ImageConvFn, sizeof...(I)> conv_table(std::index_sequence<I...>) {
  return {&image_conv<int(I) + 2>...};
}
template <size_t... I>
constexpr std::array<StreamConvFn, sizeof...(I)> stream_conv_table(std::index_sequence<I...>) {
  return {&stream_conv<int(I) + 2>...};
}
template <size_t... I>
constexpr std::array<SplitFn, sizeof...(I)> split_table(std::index_sequence<I...>) {
  return {&split_image<int(I) + 2>...};
}

// Every image of src (NHWC, C channels) through image_conv (or in groups through stream_conv)
// with weights w into dst.
void run_images(const ConvGeometry& g, const float* src, const float* w, const float* b,
                float* dst, int pt, int pl, Activation act) {
  static constexpr auto convs = conv_table(std::make_index_sequence<7>());
  static constexpr auto streams = stream_conv_table(std::make_index_sequence<7>());
  static constexpr auto splits = split_table(std::make_index_sequence<7>());
  const int64_t C = g.c, hw = g.h * g.w;
  const ImageConvFn conv = convs[C - 2];
  const StreamConvFn stream = streams[C - 2];
  const SplitFn split = splits[C - 2];
  const StreamTable st = stream_table(g.h, g.w, pt, pl, 16 * vectors_for((int)C));
  // a group: one image, or the images of the stream whose planes fit kStreamBytes; with
  // several threads at least 4 groups a thread where the batch allows (as the weight pass),
  // so that the threads' shares stay even
  const int threads = threads_for(g);
  int64_t group = st.period ? std::max<int64_t>(1, std::min(g.n, kStreamBytes / (4 * C * hw))) : 1;
  if (threads > 1) group = std::max<int64_t>(1, std::min(group, (g.n + 4 * threads - 1) / (4 * threads)));
  const int64_t groups = (g.n + group - 1) / group;
  int col0[16];  // the columns of an image's first 16 positions
  for (int i = 0; i < 16; ++i) col0[i] = (int)(i % g.w);
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    std::unique_ptr<float[]> planes;  // not zeroed: every lane read is split in first
    errors.run([&] { planes.reset(new float[(size_t)(C * hw * group)]); });
#pragma omp for schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) {
      if (errors.failed()) continue;
      const int64_t n0 = gi * group, len = std::min(group, g.n - n0) * hw;
      split(src + n0 * hw * C, len, planes.get());
      // the next group is this thread's next (static schedule)
      const float* next = n0 + group < g.n ? src + (n0 + group) * hw * C : nullptr;
      if (st.period)
        stream(planes.get(), len, dst + n0 * hw * C, g.w, pt, pl, w, b, st, next,
               next ? std::min(group, g.n - n0 - group) * hw * C : 0);
      else
        conv(planes.get(), dst + n0 * hw * C, g.h, g.w, pt, pl, w, b, col0, next);
      if (act != Activation::Linear) activation_inplace(len * C, dst + n0 * hw * C, act);
    }
  });
  errors.rethrow();
}

// ---- the weight pass ----

// Input channels per tile of the weight pass: a tile is one kernel row ky, its 3 columns and
// CIB input channels, against all C output channels: 3*CIB*C accumulators + C dy vectors + an
// input vector within 32 zmm (C = 3: 27 + 3 + 1). C = 8 would need 24 + 8 + 1 (not taken).
constexpr int ci_block(int C) { return C == 2 || C == 3 ? C : C == 4 ? 2 : 1; }

// acc[kx][cb][co] += sum over the positions q of one image of
//   x_{c0 + cb}[q + (ky - pt)*W + kx - pl] * dy_co[q]   (masked: taps outside the image add 0)
// masks: per vector the 9 taps' lanes, then the lanes inside the image (computed once per
// call: the walk per vector and tile was most of a C=6 7x7 pass).
// Prefetch: one cache line of each of two NHWC streams (x at pf.x, dy at pf.d) per vector,
// while pf.x < pf.end (the caller's next group; see weights_pass).
struct Prefetch {
  const float *x = nullptr, *d = nullptr, *end = nullptr;
};
// Over the nseg segments of a group (seg floats apart, each C planes of len positions, len
// floats apart: an image each, or the whole group as one stream) in one call: a call per image
// (its accumulators copied in and out) cost as much as a 7x7 image's 4 vectors. masks0: 10 a
// vector (the 9 taps, then the lanes inside the image), repeating every `period` vectors; the
// lanes of a segment's last vector from len on are masked here.
// DB: also dbacc += dy_dbco (one channel's bias gradient in each of the first C tiles' passes:
// one more register, which every tile has; a pass of its own over the dy planes after the
// tiles, which read them from L2 again, was 4-7% of a C=3 or C=6 pass, perf). 1 thread, CPU
// time, both builds alternated in one process, 2 rounds on the loaded Zen 4, ms before/after:
// C=3 N=256 14x14 0.139/0.125, 0.154/0.143; C=3 N=32 28x28 0.062/0.058, 0.073/0.068; C=6 N=32
// 14x14 0.072/0.069, 0.077/0.075; C=3 N=256 56x56 2.35/2.20, 2.46/2.32.
template <int C, bool DB>
void tile_pass(const float* xp0, const float* dp0, int64_t nseg, int64_t seg, int64_t len,
               int64_t W, int pt, int pl, const __mmask16* masks0, int64_t period, int ky, int c0,
               __m512 (&acc_io)[3][ci_block(C)][C], int dbco, __m512& dbacc_io, Prefetch& pf) {
  constexpr int CIB = ci_block(C);
  __m512 acc[3][CIB][C];  // a local copy, so that GCC keeps it in registers
#pragma GCC unroll 32
  for (int k = 0; k < 3 * CIB * C; ++k) (&acc[0][0][0])[k] = (&acc_io[0][0][0])[k];
  __m512 dbacc = dbacc_io;
  const float *pfx = pf.x, *pfd = pf.d;
  const __mmask16* mend = masks0 + 10 * period;
  for (int64_t b = 0; b < nseg; ++b) {
    const float* src = xp0 + b * seg + (ky - pt) * W - pl + c0 * len;
    const float* dp = dp0 + b * seg;
    const __mmask16* masks = masks0;
    auto step = [&](int64_t q0, __mmask16 mx0, __mmask16 mx1, __mmask16 mx2, __mmask16 tail) {
      if (pfx < pf.end) {
        _mm_prefetch((const char*)pfx, _MM_HINT_T1);
        _mm_prefetch((const char*)pfd, _MM_HINT_T1);
        pfx += 16, pfd += 16;
      }
      const __mmask16 mx[3] = {mx0, mx1, mx2};
      __m512 dv[C];
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) dv[co] = _mm512_maskz_loadu_ps(tail, dp + co * len + q0);
      if (DB) dbacc = _mm512_add_ps(dbacc, _mm512_maskz_loadu_ps(tail, dp + dbco * len + q0));
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 4
        for (int cb = 0; cb < CIB; ++cb) {
          const __m512 xv = _mm512_maskz_loadu_ps(mx[kx], src + q0 + kx + cb * len);
#pragma GCC unroll 8
          for (int co = 0; co < C; ++co)
            acc[kx][cb][co] = _mm512_fmadd_ps(xv, dv[co], acc[kx][cb][co]);
        }
    };
    const __mmask16* mk = masks + ky * 3;
    int64_t q0 = 0;
    for (; q0 + 16 <= len; q0 += 16) {
      step(q0, mk[0], mk[1], mk[2], masks[9]);
      masks += 10;
      if (masks == mend) masks = masks0;
      mk = masks + ky * 3;
    }
    if (q0 < len) {
      const __mmask16 t = flat::tail_mask(q0, len);
      step(q0, (__mmask16)(mk[0] & t), (__mmask16)(mk[1] & t), (__mmask16)(mk[2] & t),
           (__mmask16)(masks[9] & t));
    }
  }
#pragma GCC unroll 32
  for (int k = 0; k < 3 * CIB * C; ++k) (&acc_io[0][0][0])[k] = (&acc[0][0][0])[k];
  dbacc_io = dbacc;
  pf.x = pfx, pf.d = pfd;
}

inline double lane_sum(__m512 v) {  // in double: the lanes hold sums of many products
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

// Images in groups of about kGroupPositions positions (7x7: 83 images), planes of x and dy
// split once per group; each tile's accumulators stay in registers over the whole group and
// are summed into the thread's double partials once per group (a float lane then sums at
// most 256 products). Per-thread partials summed in double in thread order (the same bits
// for a fixed thread count).
constexpr int64_t kGroupPositions = 4096;

template <int C>
void weights_pass(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  constexpr int CIB = ci_block(C);
  const int64_t hw = g.h * g.w, img = C * hw;
  const int pt = (int)g.win.pt, pl = (int)g.win.pl;
  // The images of a group as one stream where stream_table gives one (small images: every
  // lane of a vector at work), else image by image with the masks of one image.
  const StreamTable st = stream_table(g.h, g.w, pt, pl, 16);
  const bool stream = st.period > 0;
  const int64_t period = stream ? st.period : (hw + 15) / 16;
  std::vector<__mmask16> masks((size_t)(period * 10));
  if (stream) {
    for (int64_t v = 0; v < period; ++v) {
      std::copy_n(st.m.data() + 9 * v, 9, masks.data() + 10 * v);
      masks[10 * v + 9] = (__mmask16)0xFFFF;
    }
  } else {
    alignas(64) int col0[16];
    for (int i = 0; i < 16; ++i) col0[i] = (int)(i % g.w);
    flat::Walk walk(g.h, g.w, pt, pl, _mm512_load_si512(col0));
    for (int64_t q0 = 0, k = 0; q0 < hw; q0 += 16, k += 10) {
      __mmask16 m[3][3];
      walk.masks(q0, m);
      for (int t = 0; t < 9; ++t) masks[k + t] = m[t / 3][t % 3];
      masks[k + 9] = flat::tail_mask(q0, hw);
    }
  }
  const int threads = threads_for(g);
  const int64_t group = std::max<int64_t>(
      1, std::min(kGroupPositions / hw, (g.n + 4 * threads - 1) / (4 * threads)));
  const int64_t groups = (g.n + group - 1) / group;
  constexpr int64_t kSums = 9 * C * C + C;  // dw (HWIO), then db
  std::vector<double> part((size_t)(threads * kSums), 0.0);
  int used = 1;
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    std::unique_ptr<float[]> xb, dbuf;  // not zeroed (a 7x7 C=6 pass's zeroing: 5 us)
    errors.run([&] {
      xb.reset(new float[(size_t)(group * img)]);
      dbuf.reset(new float[(size_t)(group * img)]);
    });
    double* sums = part.data() + t * kSums;
#pragma omp for schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) {
      if (errors.failed()) continue;
      const int64_t n0 = gi * group, nimg = std::min(group, g.n - n0);
      // segments: one stream of nimg * hw positions, or an image each
      const int64_t nseg = stream ? 1 : nimg, len = stream ? nimg * hw : hw;
      for (int64_t b = 0; b < nseg; ++b) {
        split_image<C>(x + (n0 + b) * img, len, xb.get() + b * img);
        split_image<C>(dy + (n0 + b) * img, len, dbuf.get() + b * img);
      }
      // The next group's x and dy (this thread's next: static schedule) are fetched into L2
      // during this group's tiles, a line of each per vector: the split of a group read
      // them at L3/DRAM latency (perf, C=3 N=256 56x56: 40% of the pass in the split loops).
      Prefetch pf;
      if (gi + 1 < groups) {
        const int64_t next = std::min(group, g.n - n0 - nimg);
        pf.x = x + (n0 + nimg) * img;
        pf.end = pf.x + next * img;
        pf.d = dy + (n0 + nimg) * img;
      }
      for (int ky = 0, tile = 0; ky < 3; ++ky)
        for (int c0 = 0; c0 < C; c0 += CIB, ++tile) {
          __m512 acc[3][CIB][C];
          for (int kx = 0; kx < 3; ++kx)
            for (int cb = 0; cb < CIB; ++cb)
              for (int co = 0; co < C; ++co) acc[kx][cb][co] = _mm512_setzero_ps();
          // 3*C/CIB >= C tiles: tile t < C sums db[t]
          __m512 dbacc = _mm512_setzero_ps();
          if (db && tile < C) {
            tile_pass<C, true>(xb.get(), dbuf.get(), nseg, img, len, g.w, pt, pl, masks.data(),
                               period, ky, c0, acc, tile, dbacc, pf);
            sums[9 * C * C + tile] += lane_sum(dbacc);
          } else {
            tile_pass<C, false>(xb.get(), dbuf.get(), nseg, img, len, g.w, pt, pl,
                                masks.data(), period, ky, c0, acc, 0, dbacc, pf);
          }
          for (int kx = 0; kx < 3; ++kx)
            for (int cb = 0; cb < CIB; ++cb)
              for (int co = 0; co < C; ++co)
                sums[((ky * 3 + kx) * C + c0 + cb) * C + co] += lane_sum(acc[kx][cb][co]);
        }
    }
  });
  errors.rethrow();
  for (int64_t k = 0; k < kSums; ++k) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * kSums + k];
    if (k < 9 * C * C) dw[k] = (float)s;
    else if (db) db[k - 9 * C * C] = (float)s;
  }
}

using WeightsFn = void (*)(const ConvGeometry&, const float*, const float*, float*, float*);
template <size_t... I>
constexpr std::array<WeightsFn, sizeof...(I)> weights_table(std::index_sequence<I...>) {
  return {&weights_pass<int(I) + 2>...};
}

}  // namespace
#endif

// The rule: every same-size 3x3 stride-1 conv with C = 2..8 in and out at AVX-512 whose image
// fits kMaxPlaneFloats, but the weight pass of C = 8 (no tile fits the registers). C = 6's
// weight pass was on par with the direct path's tap_dot until the prefetch of the next group
// and the tiles over a group's images in one call; with the prefetch, 1 thread, ms
// direct/here, 4 interleaved rounds on the loaded Zen 4: N=256 56x56 10.3-11.6/7.0-8.2, N=32
// 112x112 4.8-5.5/3.7-4.4, N=32 28x28 0.25-0.32/0.22-0.26, N=32 14x14 0.077-0.10/0.075-0.087,
// N=256 7x7 0.187-0.212/0.185-0.271; with both, 5 rounds: N=256 7x7 0.176-0.219/0.151-0.177,
// N=32 7x7 0.026-0.032/0.023-0.027, N=256 10x10 0.338-0.399/0.252-0.274. 1-thread
// CPU-time medians of 2-3 interleaved rounds against the previous build (direct path; Zen 4,
// load 7-10), ms before/here:
//                     forward        backward data  backward weights
//   C=3 N=256 7x7     0.096/0.044    0.094/0.053    0.080/0.048
//   C=3 N=256 14x14   0.204/0.151    0.205/0.191    0.244/0.148
//   C=3 N=256 28x28   0.634/0.466                   0.741/0.565
//   C=3 N=256 56x56   2.88/2.13      2.96/2.03      3.48/3.21
//   C=3 N=32 112x112  1.38/0.93      1.44/1.23      1.72/1.47
//   C=6 N=256 7x7     0.255/0.140    0.250/0.126    0.194/0.199
//   C=6 N=256 14x14   0.552/0.455                   0.622/0.609
//   C=6 N=256 28x28   2.43/1.98                     2.51/2.48
//   C=2 N=256 14x14                                 0.170/0.077 (rows kernel before)
//   C=4 N=256 14x14   0.322/0.224                   0.337/0.247
//   C=5, 7 N=256 14x14 0.454/0.340, 0.707/0.611     0.480/0.374, 0.845/0.745
//   C=8 N=256 14x14   0.870/0.817    0.834/0.816
// The weight pass also not for images past one group with N < 8 (one image a group, the mask
// table and the planes not amortised): C=3 112x112 N=1 0.035/0.040, N=2 0.072/0.073, N=4
// 0.143/0.144, N=32 1.67/1.39.
bool few_channel_planes_shape(const ConvGeometry& g, ConvPass pass) {
#if defined(__AVX512F__)
  const Window2d& v = g.win;
  if (pass == ConvPass::BackwardWeights &&
      (g.c > 7 || (g.h * g.w > kGroupPositions && g.n < 8)))
    return false;
  return g.groups == 1 && g.c == g.oc && g.c >= 2 && g.c <= 8 && v.kh == 3 && v.kw == 3 &&
         v.dh == 1 && v.dw == 1 && v.sh == 1 && v.sw == 1 && v.pt >= 0 && v.pt <= 2 &&
         v.pl >= 0 && v.pl <= 2 && g.oh == g.h && g.ow == g.w && g.n > 0 && g.h > 0 &&
         g.w > 0 && g.c * g.h * g.w <= kMaxPlaneFloats;
#else
  (void)g;
  (void)pass;
  return false;
#endif
}

void few_channel_planes_forward(const ConvGeometry& g, const float* x, const float* w,
                                const float* b, float* y, Activation act) {
#if defined(__AVX512F__)
  run_images(g, x, w, b, y, (int)g.win.pt, (int)g.win.pl, act);
#else
  (void)g, (void)x, (void)w, (void)b, (void)y, (void)act;
#endif
}

void few_channel_planes_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                      float* dx) {
#if defined(__AVX512F__)
  // dx[iy, ix, ci] = sum dy[iy - ky + pt, ix - kx + pl, co] w[ky, kx, ci, co]: the forward
  // with k'[a, b, co, ci] = w[2 - a, 2 - b, ci, co] and pads 2 - p.
  const int64_t C = g.c;
  std::vector<float> k((size_t)(9 * C * C));
  for (int64_t t = 0; t < 9; ++t)
    for (int64_t ci = 0; ci < C; ++ci)
      for (int64_t co = 0; co < C; ++co) k[(t * C + co) * C + ci] = w[((8 - t) * C + ci) * C + co];
  run_images(g, dy, k.data(), nullptr, dx, 2 - (int)g.win.pt, 2 - (int)g.win.pl,
             Activation::Linear);
#else
  (void)g, (void)dy, (void)w, (void)dx;
#endif
}

void few_channel_planes_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                         float* dw, float* db) {
#if defined(__AVX512F__)
  static constexpr auto table = weights_table(std::make_index_sequence<6>());
  table[g.c - 2](g, dy, x, dw, db);
#else
  (void)g, (void)dy, (void)x, (void)dw, (void)db;
#endif
}

}  // namespace fastconv::cpu::detail

