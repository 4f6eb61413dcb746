// 3x3 stride-1 convs with C = 1 in and out and an output of the input's size: the forward
// and backward data by bands of 4 output rows (band_conv below) from 9 columns, narrower
// images and the weight pass as one flat stream of H*W floats.
//
// Why: the row kernel (few_channel_rows.cpp) packs each input row with zero margins and runs
// a 28-float row as two vectors, so at 7-28 columns its per-row costs (packing, pointer
// set-up, the row's tail) were the work: a 28x28 C=1 forward (N=256) took 0.26 ms, 0.09 of
// what the copy ceiling allows, 0.10 of its family's median (sweep_2026-12-06_intel_after.md).
//
// Here output float q of an image (row q / W, column q % W) reads input float
// q + (ky - pt)*W + (kx - pl) for tap (ky, kx): the same offset for every lane of a vector of
// 16 consecutive outputs, across row ends. A tap is valid where the column q % W + kx - pl
// is inside [0, W) (then the flat index is inside the image exactly when the row is); the
// loads are masked to the valid lanes (masked-off lanes read nothing, so no fault past the
// tensor and no 0 * inf from the padding: non-finite values reach exactly the outputs the
// reference gives them). The column of each lane is carried from vector to vector (add
// 16 mod W, subtract W where past the row); the row masks are scalar bit ranges, needed only
// in the first and last vectors of an image. No copy of x, dy, y or dx is made.
//
//   forward          y[q]  = b + sum over taps of x[q + off] * w[ky, kx]
//   backward data    the forward on dy with the kernel flipped, pads 2 - p
//   backward weights dw[ky, kx] = sum over q of x[q + off] * dy[q]: 9 lane accumulators,
//                    flushed to double per image; per-thread partials summed in double in
//                    thread order (the same bits for a fixed thread count).
// Masked loads and stores need AVX-512's mask registers; below it the shape test says no.
#include "cpu/few_channel_flat.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

#include "cpu/flat_masks.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)
namespace {

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
constexpr int64_t kMaskTable = int64_t(1) << 16;  // positions: a table of 72 KiB at most

int threads_for(const ConvGeometry& g) {
  return g.n * g.h * g.w * 9 < kParallelWork ? 1 : std::max(1, get_num_threads());
}

using flat::first_columns;
using flat::tail_mask;

// Walks the vectors of one H x W image: calls body(q0, m[3][3]) with the masks of the 9
// taps (tap (ky, kx) valid lanes), pads pt, pl in 0..2.
template <typename Body>
inline void walk_image(int64_t H, int64_t W, int pt, int pl, __m512i col, Body&& body) {
  flat::Walk walk(H, W, pt, pl, col);
  for (int64_t q0 = 0; q0 < walk.hw; q0 += 16) {
    __mmask16 m[3][3];
    walk.masks(q0, m);
    body(q0, m);
  }
}

// out (one image) = bias + the 3x3 conv of in with kernel k[9] (row-major ky, kx), pads pt, pl.
void plane_conv(const float* in, float* out, int64_t H, int64_t W, int pt, int pl,
                const float* k, float bias, __m512i col0) {
  __m512 kv[9];
  for (int t = 0; t < 9; ++t) kv[t] = _mm512_set1_ps(k[t]);
  const __m512 vb = _mm512_set1_ps(bias);
  const int64_t hw = H * W;
  walk_image(H, W, pt, pl, col0, [&](int64_t q0, const __mmask16 (&m)[3][3]) {
    __m512 acc[3];
    for (int ky = 0; ky < 3; ++ky) {
      const float* r = in + q0 + (ky - pt) * W - pl;
      __m512 a = ky == 0 ? vb : _mm512_setzero_ps();
      for (int kx = 0; kx < 3; ++kx)
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m[ky][kx], r + kx), kv[ky * 3 + kx], a);
      acc[ky] = a;
    }
    const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), acc[2]);
    _mm512_mask_storeu_ps(out + q0, tail_mask(q0, hw), s);
  });
}

// ---- bands of rows (images of kBandMinWidth columns or more) ----
//
// plane_conv loads each input vector once per tap: 9 masked loads, 9 FMAs and the walk's mask
// arithmetic per 16 outputs. Here kBandRows output rows are computed together, a vector of 16
// columns at a time: input row t of the band feeds output rows t - 2..t, so each of its 3
// column-shifted loads feeds up to 3 FMAs (18 loads for 36 FMAs at 4 rows) and the column
// masks are one small table per call. A row of W columns takes ceil(W / 16) vectors (9..15
// and 17..31 columns leave lanes idle, which the flat stream does not). 1 thread, CPU-time
// medians, ms flat stream/bands, 3 interleaved rounds on the loaded Zen 4, N=256: W=7
// 0.017/0.018, 9 0.021-0.034/0.020, 10 0.022-0.035/0.021, 12 0.025-0.034/0.023, 14 0.035/0.026,
// 20 0.054/0.050, 28 0.105/0.066; 64x40x40 0.051/0.034.
constexpr int kBandRows = 4;
constexpr int64_t kBandMinWidth = 9;
// Tensors of at least kFarBytes (past the caches, with the other jobs of a shared machine):
// each vector of a band prefetches its rows kAheadBands bands on into L2, and the output is
// written by streaming stores where the rows allow (W a multiple of 16, a 64-byte aligned
// output), where a plain store first reads its line. 1 thread, CPU-time medians, N=256
// 112x112 (12.8 MB each way), loaded Zen 4: plain stores 1.21-1.26 ms, streamed 0.81-0.97;
// then prefetch 1/2/4 bands ahead (4 rounds) 0.82-0.98/0.77-0.85/0.77-0.85, backward data
// 0.78-0.92 without, 0.67-0.69 4 ahead. Cached sizes lose a little to either: N=32
// 112x112 (1.6 MB) 0.092 plain/0.101 streamed; N=256 28x28 0.065/0.067 with the prefetch.
constexpr int64_t kFarBytes = int64_t(8) << 20;
constexpr int kAheadBands = 4;

// Per vector i of a row (columns 16i..16i+15): the valid lanes of the 3 kernel columns, then
// the lanes inside the row (the store mask).
std::vector<__mmask16> band_masks(int64_t W, int pl) {
  const int64_t nv = (W + 15) / 16;
  std::vector<__mmask16> m((size_t)(4 * nv));
  for (int64_t i = 0; i < nv; ++i) {
    const __mmask16 row = flat::range_mask(16 * i, 0, W);
    for (int kx = 0; kx < 3; ++kx)
      m[4 * i + kx] = (__mmask16)(row & flat::range_mask(16 * i, kx - pl, W));
    m[4 * i + 3] = row;
  }
  return m;
}

// Output rows r0..r0+R-1 of one image (in: the image's first float - pl; out: its first
// float): acc[j] = bias + the taps of input rows r0 - pt + t, t = j..j+2, each loaded once per
// kernel column. CLIP: the band's input rows reach outside the image. NT: streaming stores
// (every vector whole and aligned). far: prefetch (a prefetch past the tensor never faults).
template <int R, bool CLIP, bool NT>
void band(const float* in, float* out, int64_t H, int64_t W, int64_t r0, int pt,
          const __m512 (&kv)[9], __m512 vb, const __mmask16* masks, int64_t nv, bool far) {
  const int64_t top = r0 - pt;  // the input row of t = 0
  for (int64_t i = 0; i < nv; ++i, masks += 4) {
    const float* src = in + top * W + 16 * i;
    if (far) {  // the rows this band's vector will add kAheadBands bands on, into L2
#pragma GCC unroll 8
      for (int j = 0; j < R; ++j)
        _mm_prefetch((const char*)(src + (kAheadBands * R + 2 + j) * W), _MM_HINT_T1);
    }
    __m512 acc[R];
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) acc[j] = vb;
#pragma GCC unroll 10
    for (int t = 0; t < R + 2; ++t) {
      // rows outside the image load nothing (zeros: a non-finite weight still makes the
      // reference's NaN, as the padding's zeros do there)
      const bool outside = CLIP && (top + t < 0 || top + t >= H);
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx) {
        const __m512 xv =
            _mm512_maskz_loadu_ps(outside ? (__mmask16)0 : masks[kx], src + t * W + kx);
#pragma GCC unroll 3
        for (int ky = 2; ky >= 0; --ky) {
          const int j = t - ky;
          if (j >= 0 && j < R) acc[j] = _mm512_fmadd_ps(xv, kv[ky * 3 + kx], acc[j]);
        }
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      float* o = out + (r0 + j) * W + 16 * i;
      if (NT)
        _mm512_stream_ps(o, acc[j]);
      else
        _mm512_mask_storeu_ps(o, masks[3], acc[j]);
    }
  }
}

template <int R, bool NT>
inline void band_any(const float* in, float* out, int64_t H, int64_t W, int64_t r0, int pt,
                     const __m512 (&kv)[9], __m512 vb, const __mmask16* masks, int64_t nv,
                     bool far) {
  if (r0 - pt >= 0 && r0 - pt + R + 2 <= H)
    band<R, false, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far);
  else
    band<R, true, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far);
}

// The same contract as plane_conv; NT: streaming stores (W % 16 == 0, out 64-byte aligned).
template <bool NT>
void band_conv(const float* in, float* out, int64_t H, int64_t W, int pt, int pl, const float* k,
               float bias, const __mmask16* masks, bool far) {
  __m512 kv[9];
  for (int t = 0; t < 9; ++t) kv[t] = _mm512_set1_ps(k[t]);
  const __m512 vb = _mm512_set1_ps(bias);
  const int64_t nv = (W + 15) / 16;
  in -= pl;
  int64_t r0 = 0;
  for (; r0 + kBandRows <= H; r0 += kBandRows)
    band_any<kBandRows, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far);
  switch (H - r0) {
    case 1: band<1, true, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far); break;
    case 2: band<2, true, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far); break;
    case 3: band<3, true, NT>(in, out, H, W, r0, pt, kv, vb, masks, nv, far); break;
    default: break;
  }
}

// How a call runs its images: by bands (masks: band_masks) where the rows are wide enough,
// else the flat stream; prefetch and streamed stores per kFarBytes.
struct ImagePlan {
  std::vector<__mmask16> masks;
  __m512i col0;
  bool far = false, nt = false;
  ImagePlan(const ConvGeometry& g, int pl, const float* out, bool act) : col0(first_columns(g.w)) {
    if (g.w < kBandMinWidth) return;
    masks = band_masks(g.w, pl);
    far = g.n * g.h * g.w * (int64_t)sizeof(float) >= kFarBytes;
    // (an activation runs over each image after its conv: not from memory)
    nt = far && !act && g.w % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0;
  }
  void run(const float* in, float* out, int64_t H, int64_t W, int pt, int pl, const float* k,
           float bias) const {
    if (masks.empty())
      plane_conv(in, out, H, W, pt, pl, k, bias, col0);
    else if (nt)
      band_conv<true>(in, out, H, W, pt, pl, k, bias, masks.data(), far);
    else
      band_conv<false>(in, out, H, W, pt, pl, k, bias, masks.data(), far);
  }
};

// ---- the weight pass ----
//
// dw[ky, kx] = sum over q of x[q + (ky - pt)*W + kx - pl] * dy[q], or, with s = q + (ky - pt)*W
// (the same column, so the same column test),
//   dw[ky, kx] = sum over s of x[s + kx - pl] * dy[s - (ky - pt)*W]:
// per vector of 16 positions s, 3 loads of x (one per kernel column) and 3 of dy (one per
// kernel row) feed the 9 FMAs, where the form per q loaded x once per tap (10 loads for 9
// FMAs: with the lane masks, its loads, not the FMAs, bound it; 0.36 of the sgemm roofline).
// A product is taken where the tap is valid: s inside the image with column + kx - pl inside
// the row (x's mask), and dy's index inside the image (dy's mask); the rest load nothing.
constexpr int64_t kMaskChunk = 256;  // vectors of masks per chunk above kMaskTable (3 KiB)
constexpr int64_t kFlushPositions = 4096;  // float lanes: at most ~256 products between flushes

struct StreamMasks {
  __mmask16 x[3], d[3];  // per kernel column (x), per kernel row (dy)
};

// The masks of `count` vectors from vector v0 on; the walk is at vector v0.
inline void stream_masks(flat::Walk& walk, int64_t v0, int64_t count, StreamMasks* out) {
  for (int64_t v = 0; v < count; ++v) {
    const int64_t s0 = (v0 + v) * 16;
    __mmask16 mc[3];
    walk.columns(mc);
    const __mmask16 tail = tail_mask(s0, walk.hw);
    for (int k = 0; k < 3; ++k) {
      out[v].x[k] = (__mmask16)(mc[k] & tail);
      out[v].d[k] = flat::range_mask(s0, -(k - walk.pt) * walk.W, walk.hw);
    }
  }
}

// acc[ky*3 + kx] += x[s + kx - pl] * dy[s - (ky - PT)*W] and acc[9] += dy[s] over the vectors
// v0 <= v < v1 of one image (s = 16v + lane; m: their masks); with pfx, a line of pfx and of
// pfd per vector is prefetched into L2 (the next image). 1 thread, ms without/into L1/into
// L2, 3 interleaved rounds on the loaded Zen 4: N=256 112x112 1.11-1.18/1.05-1.67/0.85-1.06,
// N=256 56x56 0.20-0.26/0.21-0.24/0.21-0.26, N=256 28x28 0.059-0.065/0.060-0.064/0.060-0.066.
template <int PT>
void stream_dot(const float* xi, const float* di, int64_t W, int pl, int64_t v0, int64_t v1,
                const StreamMasks* m, const float* pfx, const float* pfd, __m512 (&acc)[10]) {
  const float* xs = xi - pl;
  const float* ds[3] = {di + PT * W, di + (PT - 1) * W, di + (PT - 2) * W};
  __m512 a[10];  // a local copy, so that GCC keeps it in registers (the copies unrolled)
#pragma GCC unroll 10
  for (int k = 0; k < 10; ++k) a[k] = acc[k];
  for (int64_t v = v0; v < v1; ++v, ++m) {
    const int64_t s0 = 16 * v;
    if (pfx) {
      _mm_prefetch((const char*)(pfx + s0), _MM_HINT_T1);
      _mm_prefetch((const char*)(pfd + s0), _MM_HINT_T1);
    }
    __m512 xv[3], dv[3];
#pragma GCC unroll 3
    for (int k = 0; k < 3; ++k) {
      xv[k] = _mm512_maskz_loadu_ps(m->x[k], xs + s0 + k);
      dv[k] = _mm512_maskz_loadu_ps(m->d[k], ds[k] + s0);
    }
#pragma GCC unroll 9
    for (int k = 0; k < 9; ++k) a[k] = _mm512_fmadd_ps(xv[k % 3], dv[k / 3], a[k]);
    a[9] = _mm512_add_ps(a[9], dv[PT]);  // dy[s] itself: row PT's shift is 0
  }
#pragma GCC unroll 10
  for (int k = 0; k < 10; ++k) acc[k] = a[k];
}
using StreamDotFn = void (*)(const float*, const float*, int64_t, int, int64_t, int64_t,
                             const StreamMasks*, const float*, const float*, __m512 (&)[10]);

}  // namespace
#endif

// The rule: every same-size 3x3 stride-1 C=1 conv at AVX-512. 1-thread CPU-time medians of
// 3 interleaved rounds against the previous build (rows kernel from 28 columns, direct path
// below; Emerald Rapids, load 0.5-3), ms before/here:
//                     forward        backward data  backward weights
//   N=256 7x7         0.034/0.012    0.035/0.012    0.031/0.014
//   N=256 14x14       0.066/0.026    0.065/0.030    0.060/0.029
//   N=256 28x28       0.160/0.089    0.150/0.087    0.167/0.089
//   N=256 56x56       0.578/0.367    0.587/0.360    0.665/0.367
//   N=32 112x112      0.263/0.180    0.283/0.171    0.312/0.190
bool few_channel_flat_shape(const ConvGeometry& g, ConvPass pass) {
#if defined(__AVX512F__)
  (void)pass;
  const Window2d& v = g.win;
  return g.groups == 1 && g.c == 1 && g.oc == 1 && v.kh == 3 && v.kw == 3 && v.dh == 1 &&
         v.dw == 1 && v.sh == 1 && v.sw == 1 && v.pt >= 0 && v.pt <= 2 && v.pl >= 0 &&
         v.pl <= 2 && g.oh == g.h && g.ow == g.w && g.n > 0 && g.h > 0 && g.w > 0 &&
         g.h * g.w < (int64_t(1) << 30);
#else
  (void)g;
  (void)pass;
  return false;
#endif
}

void few_channel_flat_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act) {
#if defined(__AVX512F__)
  const int64_t hw = g.h * g.w;
  const float bias = b ? b[0] : 0.f;
  const ImagePlan plan(g, (int)g.win.pl, y, act != Activation::Linear);
  parallel_region(threads_for(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      plan.run(x + n * hw, y + n * hw, g.h, g.w, (int)g.win.pt, (int)g.win.pl, w, bias);
      if (act != Activation::Linear) activation_inplace(hw, y + n * hw, act);
    }
    if (plan.nt) _mm_sfence();  // the streamed stores in order before the region ends
  });
#else
  (void)g, (void)x, (void)w, (void)b, (void)y, (void)act;
#endif
}

void few_channel_flat_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx) {
#if defined(__AVX512F__)
  // dx[iy, ix] = sum dy[iy - ky + pt, ix - kx + pl] w[ky, kx]: the forward with the kernel
  // flipped (k'[a, b] = w[2 - a, 2 - b]) and pads 2 - p.
  float k[9];
  for (int t = 0; t < 9; ++t) k[t] = w[8 - t];
  const int64_t hw = g.h * g.w;
  const int pl = 2 - (int)g.win.pl;
  const ImagePlan plan(g, pl, dx, false);
  parallel_region(threads_for(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      plan.run(dy + n * hw, dx + n * hw, g.h, g.w, 2 - (int)g.win.pt, pl, k, 0.f);
    if (plan.nt) _mm_sfence();
  });
#else
  (void)g, (void)dy, (void)w, (void)dx;
#endif
}

void few_channel_flat_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db) {
#if defined(__AVX512F__)
  const int64_t hw = g.h * g.w, W = g.w, nvec = (hw + 15) / 16;
  const int pt = (int)g.win.pt, pl = (int)g.win.pl;
  const __m512i col0 = first_columns(W);
  const int threads = threads_for(g);
  constexpr int kSums = 10;  // 9 taps, the bias
  // Every vector's masks, computed once per call for images up to kMaskTable positions;
  // larger images compute them per image in chunks of kMaskChunk vectors.
  std::vector<StreamMasks> table;
  if (hw <= kMaskTable) {
    table.resize((size_t)nvec);
    flat::Walk walk(g.h, W, pt, pl, col0);
    stream_masks(walk, 0, nvec, table.data());
  }
  const StreamDotFn dot = pt == 0 ? &stream_dot<0> : pt == 1 ? &stream_dot<1> : &stream_dot<2>;
  std::vector<double> part((size_t)(threads * kSums), 0.0);
  int used = 1;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    __m512d dacc[kSums][2];
    for (int s = 0; s < kSums; ++s) dacc[s][0] = dacc[s][1] = _mm512_setzero_pd();
    StreamMasks chunk[kMaskChunk];
    // Float sums into double once at least kFlushPositions positions are in (a float lane
    // sum over a whole batch, 200k products for N=256 28x28, would lose digits; a flush per
    // image was a sixth of a 28x28 pass, perf).
    __m512 acc[kSums];
    for (int s = 0; s < kSums; ++s) acc[s] = _mm512_setzero_ps();
    int64_t pending = 0;
    auto flush = [&] {
      for (int s = 0; s < kSums; ++s) {
        dacc[s][0] = _mm512_add_pd(dacc[s][0], _mm512_cvtps_pd(_mm512_castps512_ps256(acc[s])));
        dacc[s][1] = _mm512_add_pd(
            dacc[s][1], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[s]), 1))));
        acc[s] = _mm512_setzero_ps();
      }
      pending = 0;
    };
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) {
      const float* xi = x + n * hw;
      const float* di = dy + n * hw;
      // the next image (this thread's next: static schedule) is fetched a line a vector
      const bool last = n + 1 == g.n;
      if (!table.empty()) {
        dot(xi, di, W, pl, 0, nvec, table.data(), last ? nullptr : xi + hw,
            last ? nullptr : di + hw, acc);
      } else {
        flat::Walk walk(g.h, W, pt, pl, col0);
        for (int64_t v0 = 0; v0 < nvec; v0 += kMaskChunk) {
          const int64_t v1 = std::min(nvec, v0 + kMaskChunk);
          stream_masks(walk, v0, v1 - v0, chunk);
          dot(xi, di, W, pl, v0, v1, chunk, nullptr, nullptr, acc);
        }
      }
      pending += hw;
      if (pending >= kFlushPositions) flush();
    }
    flush();
    for (int s = 0; s < kSums; ++s)
      part[t * kSums + s] = _mm512_reduce_add_pd(_mm512_add_pd(dacc[s][0], dacc[s][1]));
  });
  for (int s = 0; s < kSums; ++s) {
    double sum = 0.0;
    for (int tt = 0; tt < used; ++tt) sum += part[tt * kSums + s];
    if (s < 9) dw[s] = (float)sum;
    else if (db) db[0] = (float)sum;
  }
#else
  (void)g, (void)dy, (void)x, (void)dw, (void)db;
#endif
}

}  // namespace fastconv::cpu::detail
