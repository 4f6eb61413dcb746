// 3x3 stride-2 convolutions with C channels in and out: a block of output rows as one flat
// stream over column-phase planes.
//
// Why: the row kernel (few_channel_rows.cpp) ran these one output row at a time, each row
// of 28 floats (56x56 input, C = 1) two vectors long, and each input row packed into two
// phase rows with a scalar tail; per-row costs were the work. In the sweep on Zen 4
// (sweep_2026-12-06_zen4_final.md) the C = 1 stride-2 passes were 0.11-0.19 of their family's
// median (N=256 56x56 forward 0.467 ms, weights 0.530 ms, for 1.8 M multiply-adds), C = 3
// and 6 0.19-0.5.
//
// Here the padded input xp of a block of R output rows is split into 6*C planes of R + 1
// rows and OW columns (pitch OW): P[a][ci][k][i][j] = xp[2(oy0 + i) + a][2j + k][ci] for row
// parity a = 0, 1 and column k = 0, 1, 2 (k = 2 is plane k = 0 one column on). Then
//   y[oy0 + i][j][co] = sum over (ky, kx, ci) of w[ky][kx][ci][co] * P[ky % 2][ci][kx][i + ky / 2][j],
// the same flat offset (ky / 2)*OW into one plane for every lane of a vector of consecutive
// outputs, across row ends: 9*C loads and 9*C*C multiply-adds per C vectors of outputs, no
// lane wasted, no mask. The planes hold the padding as zeros and only real taps are
// multiplied, so NaN and inf reach exactly the outputs the reference gives them.
//
//   forward          y (block, flat) = b + sum over taps of plane[p + off] * w[tap]: V
//                    vectors x C channels held over the 9*C taps, merged to NHWC in
//                    registers (pixel_transpose.h) and stored whole
//   backward data    by parity, see backward_data_c
//   backward weights (C = 1, 3) dw[tap, ci, co] = sum over the block's p of
//                    plane[tap, ci][p + off] * dy[p, co], dy split to planes; register groups
//                    of (tap, ci) pairs x output channels (dw_group)
//
// A row is split with few_channel_s2.h's pair split, straight from x when the 2*pairs*C
// floats it reads lie inside x (the columns outside the row then zeroed one by one), else
// through a zero-margined copy of the row.
#include "cpu/few_channel_s2_planes.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_c1.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

using stride2::L;
using stride2::load;
using stride2::store;
using stride2::vec;

// As few_channel_rows.cpp: below this many multiply-adds a pass runs on the calling thread;
// the planes of one block within kPackFloats floats (64 KiB, L2-resident).
constexpr int64_t kParallelWork = 1 << 21;
constexpr int64_t kPackFloats = 1 << 14;

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// The first n lanes of p (0 < n < L), the rest 0 (reads nothing past p + n). A masked load
// at AVX-512: the memcpy of a runtime length is a libc call, and the weight pass's 30 of them
// per block tail were a large part of a 28x28 C=3 image's time.
inline vec load_first(const float* p, int64_t n) {
#if defined(__AVX512F__)
  return (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#else
  vec v{};
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
#endif
}

// Blocks of `rows` output rows of one image, their 6*C planes within kPackFloats.
struct Blocks {
  int64_t rows, per_image, count;
  Blocks(const ConvGeometry& g, int threads) {
    const int64_t fit = std::max<int64_t>(1, kPackFloats / (6 * g.c * g.ow) - 1);
    const int64_t spread =
        threads > 1 ? std::max<int64_t>(1, g.n * g.oh / (4 * threads)) : g.oh;
    rows = std::max<int64_t>(1, std::min({fit, g.oh, spread}));
    per_image = (g.oh + rows - 1) / rows;
    count = g.n * per_image;
  }
};

// One thread's 6*C planes (plane (a, ci, k) at ((a*C + ci)*3 + k)*stride_) and row copy.
template <int C>
class Planes {
 public:
  Planes(const ConvGeometry& g, int64_t rows)
      : g_(g), pairs_(round_up(g.ow + 1, L)), stride_((rows + 1) * g.ow + pairs_ + 2 * L) {}

  void allocate() { buf_.assign((size_t)(6 * C * stride_ + 2 * (pairs_ + 1) * C + L), 0.f); }

  // The planes of output rows oy0 .. oy0 + rows - 1 of image img (its h*w*C floats), x the
  // whole tensor [xbeg, xend).
  void pack(const float* img, const float* xbeg, const float* xend, int64_t oy0, int64_t rows) {
    const int64_t ow = g_.ow;
    // In input row order (row 2(oy0 + i) + a): all even rows then all odd rows read x in
    // strides of two rows, and the loads of the split missed: split_pairs was 58% of a C=3
    // N=256 56x56 forward's cycles, 28% on its first load.
    for (int64_t i = 0; i <= rows; ++i)
      for (int a = 0; a < 2 - (i == rows); ++a) {
        const int64_t r = 2 * (oy0 + i) + a - g_.win.pt;
        if (r < 0 || r >= g_.h) {
          for (int ci = 0; ci < C; ++ci)
            for (int k = 0; k < 3; ++k) std::memset(plane(a, ci, k) + i * ow, 0, sizeof(float) * ow);
          continue;
        }
        split_row(img + r * g_.w * C, xbeg, xend, plane(a, 0, 0) + i * ow,
                  plane(a, 0, 1) + i * ow, plane(a, 0, 2) + i * ow);
        if constexpr (!kNextInRegisters)
          for (int ci = 0; ci < C; ++ci) {
            const float* p0 = plane(a, ci, 0) + i * ow;
            float* p2 = plane(a, ci, 2) + i * ow;
            for (int64_t j = 0; j < ow; j += L) store(p2 + j, load(p0 + 1 + j));
          }
      }
  }

  // Tap t = ky*3 + kx, channel ci: the plane float under the block's output p is tap(t, ci)[p].
  const float* tap(int t, int ci) const {
    const int ky = t / 3, kx = t % 3;
    return buf_.data() + (((ky % 2) * C + ci) * 3 + kx) * stride_ + (ky / 2) * g_.ow;
  }

 private:
  float* plane(int a, int ci, int k) { return buf_.data() + ((a * C + ci) * 3 + k) * stride_; }
  float* row_copy() { return buf_.data() + 6 * C * stride_; }

  // p2 from the split's registers up to C = 4; C = 6 copies it in pack() (its split holds 12
  // input registers: with the 6 shifted ones too, its forward took 1.17-1.21 of the time at
  // 14x14 and 28x28, paired).
  static constexpr bool kNextInRegisters = C <= 4;

  // Channel ci's p0[j] = xp[2j], p1[j] = xp[2j + 1], p2[j] = xp[2j + 2] of one padded row
  // (src its first real pixel), at ci*3*stride_ from p0, p1, p2, for j < pairs_ (writing past
  // the row's OW floats into the next row's place, written later). p2 is p0 one column on,
  // made in registers by the split (split_pairs' next). Before: for C = 1 a second split of
  // the row one pair on (a copy from p0 + 1 stalled on store forwarding, 36% of a 56x56 C=1
  // forward's cycles), for C >= 3 that copy (a second split was 1.12-1.17 of the time).
  void split_row(const float* src, const float* xbeg, const float* xend, float* p0, float* p1,
                 float* p2) {
    const int64_t pl = g_.win.pl, w = g_.w, cs = 3 * stride_;
    const float* start = src - pl * C;
    if (start >= xbeg && start + 2 * pairs_ * C <= xend) {
      stride2::split_pairs<C, true, kNextInRegisters>(start, pairs_, p0, p1, cs, p2);
      // Columns of the padding read from x: zero them (columns up to 2*OW are read).
      auto zero = [&](int64_t c) {
        for (int ci = 0; ci < C; ++ci) {
          if (c % 2) {
            p1[ci * cs + c / 2] = 0.f;
          } else {
            p0[ci * cs + c / 2] = 0.f;
            if (kNextInRegisters && c >= 2) p2[ci * cs + c / 2 - 1] = 0.f;
          }
        }
      };
      for (int64_t c = 0; c < pl; ++c) zero(c);
      for (int64_t c = pl + w; c <= 2 * g_.ow; ++c) zero(c);
      return;
    }
    // The copy's other floats stay the zeros allocate() wrote.
    float* t = row_copy();
    std::memcpy(t + pl * C, src, sizeof(float) * C * std::min(w, 2 * pairs_ - pl));
    stride2::split_pairs<C, true, kNextInRegisters>(t, pairs_, p0, p1, cs, p2);
  }

  const ConvGeometry& g_;
  const int64_t pairs_, stride_;
  std::vector<float> buf_;
  const float* next_ = nullptr;  // the next block's input rows [next_, next_end_)
  const float* next_end_ = nullptr;

 public:
  // The input rows block (img, oy0, rows) reads: the block before it prefetches them while it
  // computes (prefetch_over).
  void next_block(const float* img, int64_t oy0, int64_t rows) {
    const int64_t r0 = std::max<int64_t>(0, 2 * oy0 - g_.win.pt);
    const int64_t r1 = std::min(g_.h, 2 * (oy0 + rows) + 1 - g_.win.pt);
    next_ = img + r0 * g_.w * C;
    next_end_ = img + std::max(r0, r1) * g_.w * C;
  }
  // A prefetch of the next block's rows spread over `steps` steps.
  stride2::LinePrefetch<> prefetch_over(int64_t steps) const {
    stride2::LinePrefetch<> pf;
    pf.set(next_, next_end_, steps);
    return pf;
  }

  mutable std::vector<vec> sums;       // the weight pass's lane accumulators
  mutable int64_t pending = 0;         // pixels in them
  mutable std::vector<float> scratch;  // the weight pass's planar dy (one block's)
};

// body(planes, first output pixel, pixels) per block; finish(planes) per thread at the end.
template <int C, typename Body, typename Finish>
void run_blocks(const ConvGeometry& g, const float* x, int threads, bool dynamic, Body&& body,
                Finish&& finish) {
  const Blocks bl(g, threads);
  const int64_t image = g.h * g.w * C;
  const float* xend = x + g.n * image;
  ExceptionCaptor errors;  // the planes may not fit in memory (a very wide row)
  parallel_region(threads, [&] {
    note_team();
    Planes<C> pl(g, bl.rows);
    errors.run([&] { pl.allocate(); });
    auto item = [&](int64_t i) {
      if (errors.failed()) return;
      const int64_t n = i / bl.per_image, oy0 = (i % bl.per_image) * bl.rows;
      const int64_t rows = std::min(g.oh - oy0, bl.rows);
      errors.run([&] {
        if (i + 1 < bl.count) {
          const int64_t oy1 = ((i + 1) % bl.per_image) * bl.rows;
          pl.next_block(x + (i + 1) / bl.per_image * image, oy1, std::min(g.oh - oy1, bl.rows));
        }
        pl.pack(x + n * image, x, xend, oy0, rows);
        body(pl, (n * g.oh + oy0) * g.ow, rows * g.ow);
      });
    };
    if (dynamic) {
#pragma omp for schedule(dynamic)
      for (int64_t i = 0; i < bl.count; ++i) item(i);
    } else {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < bl.count; ++i) item(i);
    }
    errors.run([&] { finish(pl); });
  });
  errors.rethrow();
}

int threads_for(const ConvGeometry& g) {
  return g.n * g.oh * g.ow * 9 * g.c * g.oc < kParallelWork ? 1 : std::max(1, get_num_threads());
}

// Output vectors a step: V*C accumulators over the 9*C taps (C = 1: 4 independent chains of
// 9 multiply-adds, one chain is latency-bound). At 32 registers C = 2, 3 take 4 vectors
// (each weight vector loaded once per 4 output vectors; paired, 1 thread, Zen 4: C=3 N=256
// 56x56 1.547/1.250 ms, C=2 56x56 0.712/0.624); C = 4 keeps 2 (4 were 1.07-1.18 of the
// time), C = 6 too (3 measured 0.86-0.98 in one run, 1.02-1.04 in the next: not kept).
template <int C>
constexpr int vectors_for() {
  return C == 1 ? 4 : kVectorRegisters >= 32 ? (C <= 3 ? 4 : 2) : C <= 3 ? 2 : 1;
}

// V vectors of outputs from block pixel p, stored NHWC at out: bias + the 9*C taps per
// channel (q[t*C + ci]: tap t's plane of channel ci; wv[(t*C + ci)*C + co]: its weight).
template <int C, int V>
inline void forward_vectors(const float* const* q, const vec* wv, const vec* bias, int64_t p,
                            float* out) {
  vec acc[V][C];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v)
#pragma GCC unroll 8
    for (int co = 0; co < C; ++co) acc[v][co] = bias[co];
#pragma GCC unroll 9
  for (int t = 0; t < 9 * C; ++t)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const vec xv = load(q[t] + p + v * L);
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) acc[v][co] += xv * wv[t * C + co];
    }
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    if constexpr (C == 1) {
      store(out + v * L, acc[v][0]);
    } else {
      vec o[C];
      pixel_transpose::merge<C>(acc[v], o);
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j) store(out + v * L * C + j * L, o[j]);
    }
  }
}

template <int C>
void forward_c(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
               Activation act) {
  constexpr int V = vectors_for<C>();
  vec wv[9 * C * C], bias[C];
  for (int k = 0; k < 9 * C * C; ++k) wv[k] = vec{} + w[k];  // HWIO: (t*C + ci)*C + co
  for (int co = 0; co < C; ++co) bias[co] = vec{} + (b ? b[co] : 0.f);
  run_blocks<C>(g, x, threads_for(g), true, [&](Planes<C>& pl, int64_t off, int64_t total) {
    const float* q[9 * C];
    for (int t = 0; t < 9; ++t)
      for (int ci = 0; ci < C; ++ci) q[t * C + ci] = pl.tap(t, ci);
    float* yb = y + off * C;
    int64_t p = 0;
    auto pf = pl.prefetch_over(total / (V * L));
    for (; p + V * L <= total; p += V * L) {
      pf.step();
      forward_vectors<C, V>(q, wv, bias, p, yb + p * C);
    }
    for (; p + L <= total; p += L) forward_vectors<C, 1>(q, wv, bias, p, yb + p * C);
    if (p < total) {
      if (total >= L) {  // the last L pixels again (same values)
        forward_vectors<C, 1>(q, wv, bias, total - L, yb + (total - L) * C);
      } else {  // lanes past the block read the planes' slack; not stored
        float tmp[L * C];
        forward_vectors<C, 1>(q, wv, bias, 0, tmp);
        std::memcpy(yb, tmp, sizeof(float) * total * C);
      }
    }
    if (act != Activation::Linear) activation_inplace(total * C, yb, act);
  }, [](const Planes<C>&) {});
}

}  // namespace

// The rule, from paired 1-thread timings against the kernels before (few_channel_rows.cpp,
// and the direct path for C = 6; benchmarks/bench_pair_s2c.py, CPU time, medians of 5
// alternating rounds, Zen 4 at load 4; ms before/after, 'same' pads, N=256 unless noted):
//                  forward                               backward data  backward weights
//   C=1 56x56      0.614/0.248                           0.618/0.326    0.561/0.298
//   C=1 N=32 112   0.205/0.117                           0.251/0.136    0.169/0.125
//   C=1 7x7        0.068/0.031                           0.049/0.028    0.047/0.032
//   C=2 / 3 / 4 28x28    0.346/0.202 0.733/0.352 0.835/0.510
//   C=2 / 3 / 4 56x56    1.416/1.008 2.630/2.047 3.860/3.695
//   C=2 / 3 / 4 7x7      0.083/0.056 0.103/0.088 0.123/0.096
//   C=6            28x28 1.298/0.914, 14x14 0.479/0.401, 56x56 5.174/6.035, N=32 112 2.378/2.263
//   backward data  C=2 / 3 / 4 56x56    1.191/1.047 2.467/2.350 3.741/2.817
//                  C=2 / 3 / 4 N=32 112 0.475/0.351 0.956/0.610 1.460/1.487
//                  C=2 / 3 / 4 14x14    0.106/0.102 0.219/0.152 0.277/0.208
//                  C=2 / 3 / 4 7x7      0.054/0.052 0.073/0.080 0.084/0.108
// An earlier weight pass over planes for C = 2..4 (tap groups of 9*C*C/3 or C*C accumulators)
// lost to the row kernel at 7..28 columns (C = 3 7x7 0.073/0.106, N=32 112 0.549/0.764).
// The one here (dw_group: 9 pairs x 3 channels, masked tails, p2 from the split's registers)
// takes C = 3 (paired against the row kernel, 1 thread, CPU time, Zen 4 at load 2-4, ms:
// N=256 56x56 1.94/1.20, 28x28 0.485/0.318, N=32 56x56 0.220/0.151, N=32 112x112
// 0.748/0.562); for C = 6 it lost to the direct path (7x7 0.135/0.203, 14x14 0.303/0.816,
// 56x56 4.79/7.24: the 6-channel pair split of x dominated) and C = 2, 4 stay on the rows;
// nor at 7x7 (0.070/0.073). Past 4 M floats of x (N=256 112x112, 38 MB) it lost too
// (7.03/8.12) until the next block's rows were prefetched (Planes::prefetch_over): 8.03/5.69
// against the rows. With the prefetch C = 6 still loses (7x7 0.164/0.410, 56x56 5.98/8.20).
// Backward data for C >= 2 from 14 columns (C = 4 up to 64); it stopped at 4 M floats of dx
// (N=256 112x112 C=3, 38 MB, past the 32 MB L3: 9.031/8.941, 7.351/7.931, 8.058/8.538 in
// three runs) until the next item's dx rows were prefetched: now 8.86/5.60 there (C = 2
// 4.39/3.63, C = 4 N=400 56x56 5.59/4.17). The forward for C = 6 at every width (up to 32 columns
// before; with the prefetch the planes beat the direct path at 56x56 5.19/4.00, N=32 112x112
// 2.41/1.92, N=256 112x112 17.2/15.6): where they were measured to win.
bool s2_planes_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && v.kh == 3 && v.kw == 3 && v.dh == 1 &&
                        v.dw == 1 && v.sh == 2 && v.sw == 2 && v.pt >= 0 && v.pt <= 2 &&
                        v.pl >= 0 && v.pl <= 2 && g.n > 0 && g.oh > 0 && g.ow > 0 && g.h > 0 &&
                        g.w > 0;
  if (!eligible) return false;
  if (pass == ConvPass::BackwardData)
    return g.c == 1 || (g.c <= 4 && g.w >= 14 && (g.c < 4 || g.w <= 64));
  if (pass != ConvPass::Forward)
    return g.c == 1 || (g.c == 3 && g.w >= 14);
  return (g.c >= 1 && g.c <= 4) || g.c == 6;
}

void s2_planes_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act) {
  switch (g.c) {
    case 1: return s2_c1_forward(g, x, w, b, y, act) ? void() : forward_c<1>(g, x, w, b, y, act);
    case 2: return forward_c<2>(g, x, w, b, y, act);
    case 3: return forward_c<3>(g, x, w, b, y, act);
    case 4: return forward_c<4>(g, x, w, b, y, act);
    case 6: return forward_c<6>(g, x, w, b, y, act);
  }
}

namespace {

// The first n floats of v to p (0 < n < L): a masked store at AVX-512.
inline void store_first(float* p, vec v, int64_t n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#else
  std::memcpy(p, &v, sizeof(float) * n);
#endif
}

// dst[j*2C + b*C + ci] = (b ? odd : even)[ci*cs + j] for j < pairs (a multiple of L), cut at
// the first `count` floats of dst: the 2C planar rows of a pixel pair's channels back to NHWC,
// whole registers (the pair masks for C = 1, pixel_transpose::merge of 2C "channels" above),
// the last one stored in part. Into the dx row itself where no left pad is cropped: through a
// staging row and memcpy, the copy's loads straddled the stores just made (no store
// forwarding), 13% of a C=3 28x28 backward data pass in perf.
template <int C>
void merge_parities(const float* even, const float* odd, int64_t cs, int64_t pairs, float* dst,
                    int64_t count) {
  for (int64_t j = 0; j < pairs && 2 * C * j < count; j += L) {
    vec planar[2 * C], nhwc[2 * C];
#pragma GCC unroll 8
    for (int ci = 0; ci < C; ++ci) {
      planar[ci] = load(even + ci * cs + j);
      planar[C + ci] = load(odd + ci * cs + j);
    }
    if constexpr (C == 1) {
      nhwc[0] = __builtin_shuffle(planar[0], planar[1], stride2::mlo);
      nhwc[1] = __builtin_shuffle(planar[0], planar[1], stride2::mhi);
    } else {
      pixel_transpose::merge<2 * C>(planar, nhwc);
    }
#pragma GCC unroll 8
    for (int k = 0; k < 2 * C; ++k) {
      const int64_t off = 2 * C * j + k * L;
      if (off + L <= count) store(dst + off, nhwc[k]);
      else if (off < count) store_first(dst + off, nhwc[k], count - off);
    }
  }
}

// Backward data, by parity (sub-pixel): padded dx pixel (2i + a, 2j + b) gets the taps with
// ky % 2 == a, kx % 2 == b from dy[i - ky / 2][j - kx / 2]: 4, 2, 2 or 1 of them, the 9 taps
// once per 2x2 quad of pixels. A block of plane rows i0 .. i0 + rows - 1 copies dy rows
// i0 - 1 .. i0 + rows - 1, split to C planes, at pitch P = OW + 1, a zero column before each
// row (it is dy's column -1 and, the next row's, column OW; zero rows outside dy), so every
// tap is the same flat offset into the copy D: the four parity planes of each channel come
// from 4*C loads (D[q], D[q + 1], D[q + P], D[q + P + 1]) and 9*C*C multiply-adds per
// vector, then each dx row is its 2C planes interleaved (merge_parities), cropped by the
// left pad.
template <int C>
void backward_data_c(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t P = g.ow + 1, pt = g.win.pt, pl = g.win.pl;
  const int64_t I = (g.h - 1 + pt) / 2 + 1;                   // plane rows of the padded dx
  const int64_t pairs = round_up((pl + g.w + 1) / 2, L);      // merged columns >= pl + W
  const int threads = threads_for(g);
  const int64_t spread = threads > 1 ? std::max<int64_t>(1, g.n * I / (4 * threads)) : I;
  const int64_t R = std::max<int64_t>(1, std::min({kPackFloats / (5 * C * P) - 2, I, spread}));
  const int64_t per_image = (I + R - 1) / R, dsize = (R + 2) * P + 2 * L;
  const int64_t psize = R * P + pairs + 2 * L;
  vec wv[9 * C * C];  // [t][ci][co]
  for (int k = 0; k < 9 * C * C; ++k) wv[k] = vec{} + w[k];
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    std::vector<float> buf;
    errors.run([&] { buf.assign((size_t)(C * dsize + 4 * C * psize + 2 * C * pairs + L), 0.f); });
    float* D = buf.data();  // channel co at co*dsize
    float* E[2] = {D + C * dsize, D + C * dsize + C * psize};  // channel ci at ci*psize
    float* O[2] = {D + C * dsize + 2 * C * psize, D + C * dsize + 3 * C * psize};
    float* merged = D + C * dsize + 4 * C * psize;
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < g.n * per_image; ++it) {
      if (errors.failed()) continue;
      const int64_t n = it / per_image, i0 = (it % per_image) * R;
      const int64_t rows = std::min(I - i0, R);
      for (int64_t r = 0; r <= rows; ++r) {  // D row r: dy row i0 - 1 + r
        const int64_t oy = i0 - 1 + r;
        if (oy < 0 || oy >= g.oh) {
          for (int co = 0; co < C; ++co) std::memset(D + co * dsize + r * P, 0, sizeof(float) * P);
          continue;
        }
        const float* src = dy + (n * g.oh + oy) * g.ow * C;
        float* dst = D + r * P + 1;
        if constexpr (C == 1) {
          std::memcpy(dst, src, sizeof(float) * g.ow);
        } else {
          int64_t k = pixel_transpose::split_rows<C>(src, g.ow, dst, dsize);
          for (; k < g.ow; ++k)
            for (int co = 0; co < C; ++co) dst[co * dsize + k] = src[k * C + co];
        }
      }
      // The next item's dx rows, prefetched for writing while this one computes, a few lines
      // a vector: the merge's stores missed (paired, 1 thread, CPU time, Zen 4 at load 4.5,
      // ms: N=256 56x56 C=3 1.90/1.48, 28x28 0.405/0.413, N=32 112x112 0.599/0.567).
      stride2::LinePrefetch<true> pf;
      if (it + 1 < g.n * per_image) {
        const int64_t n1 = (it + 1) / per_image, j0 = ((it + 1) % per_image) * R;
        const int64_t r0 = std::max<int64_t>(0, 2 * j0 - pt);
        const int64_t r1 = std::min(g.h, 2 * std::min(I, j0 + R) - pt);
        pf.set(dx + (n1 * g.h + r0) * g.w * C, dx + (n1 * g.h + r1) * g.w * C, rows * P / L);
      }
      // Whole vectors past rows*P: the planes' slack, never merged.
      for (int64_t q = 0; q < rows * P; q += L) {
        pf.step();
        vec d00[C], d01[C], d10[C], d11[C];
#pragma GCC unroll 8
        for (int co = 0; co < C; ++co) {
          const float* d = D + co * dsize + q;
          d00[co] = load(d), d01[co] = load(d + 1), d10[co] = load(d + P), d11[co] = load(d + P + 1);
        }
#pragma GCC unroll 8
        for (int ci = 0; ci < C; ++ci) {
          vec e0{}, o0{}, e1{}, o1{};
          const vec* k = wv + ci * C;  // tap t, channel co: k[t*C*C + co]
#pragma GCC unroll 8
          for (int co = 0; co < C; ++co) {
            e0 += k[0 * C * C + co] * d11[co] + k[2 * C * C + co] * d10[co] +
                  k[6 * C * C + co] * d01[co] + k[8 * C * C + co] * d00[co];
            o0 += k[1 * C * C + co] * d11[co] + k[7 * C * C + co] * d01[co];
            e1 += k[3 * C * C + co] * d11[co] + k[5 * C * C + co] * d10[co];
            o1 += k[4 * C * C + co] * d11[co];
          }
          store(E[0] + ci * psize + q, e0);
          store(O[0] + ci * psize + q, o0);
          store(E[1] + ci * psize + q, e1);
          store(O[1] + ci * psize + q, o1);
        }
      }
      for (int64_t i = i0; i < i0 + rows; ++i)
        for (int a = 0; a < 2; ++a) {
          const int64_t iy = 2 * i + a - pt;
          if (iy < 0 || iy >= g.h) continue;
          const int64_t q = (i - i0) * P;
          float* row = dx + (n * g.h + iy) * g.w * C;
          if (pl == 0) {  // straight into the row
            merge_parities<C>(E[a] + q, O[a] + q, psize, pairs, row, g.w * C);
          } else {
            merge_parities<C>(E[a] + q, O[a] + q, psize, pairs, merged, 2 * pairs * C);
            std::memcpy(row, merged + pl * C, sizeof(float) * g.w * C);
          }
        }
    }
  });
  errors.rethrow();
}

}  // namespace

bool s2_planes_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (!all_finite(w, 9 * g.c * g.c)) return false;
  switch (g.c) {
    case 1: return s2_c1_backward_data(g, dy, w, dx) || (backward_data_c<1>(g, dy, w, dx), true);
    case 2: return backward_data_c<2>(g, dy, w, dx), true;
    case 3: return backward_data_c<3>(g, dy, w, dx), true;
    case 4: return backward_data_c<4>(g, dy, w, dx), true;
  }
  return false;
}

namespace {

inline double lane_sum(vec v) {
  double s = 0.0;
  for (int k = 0; k < L; ++k) s += v[k];
  return s;
}

// Register blocking of the weight pass: B output channels (dy planes) times A consecutive
// (tap, ci) pairs (index t*C + ci, planes q[]) held as A*B accumulators over a block's pixels,
// A + B loads per A*B multiply-adds: C = 3 takes 9 pairs x 3 channels (27 of 32 zmm, 12 loads
// per 27 multiply-adds); one channel at a time (27 pairs, 28 loads per 27) ran into the load
// ports. At 16 registers (avx2, baseline) at most 12 accumulators.
template <int C>
constexpr int dw_pairs() {  // the largest divisor of 9*C that fits: equal groups, no tail
  int a = (kVectorRegisters >= 32 ? 27 : 12) / C;
  while (9 * C % a) --a;
  return a;
}

// sums[a*C + b] += sum over the block's p of q[a][p] * d[b][p] (a < A, b < B), and, with DB,
// sums[9*C*C + b] += sum of d[b][p] (one channel: the bias sum in the same stream). The
// block's last partial vector is loaded with its lanes past the block zeroed in both
// factors (a plane's could be inf).
template <int C, int A, int B, bool DB, typename Prefetch>
void dw_group(const float* const* q, const float* const* d, int64_t total, vec* sums,
              Prefetch&& prefetch) {
  vec acc[A][B], adb[B];
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[a][b] = sums[a * C + b];
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) adb[b] = DB ? sums[9 * C * C + b] : vec{};
  auto step = [&](int64_t p, auto&& ld) {
    vec dv[B];
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) dv[b] = ld(d[b] + p);
#pragma GCC unroll 32
    for (int a = 0; a < A; ++a) {
      const vec xv = ld(q[a] + p);
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[a][b] += xv * dv[b];
    }
    if constexpr (DB)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) adb[b] += dv[b];
  };
  int64_t p = 0;
  for (; p + L <= total; p += L) {
    prefetch();
    step(p, [](const float* s) { return load(s); });
  }
  if (p < total) step(p, [n = total - p](const float* s) { return load_first(s, n); });
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) sums[a * C + b] = acc[a][b];
  if constexpr (DB)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) sums[9 * C * C + b] = adb[b];
}

// sums[9*C*C + b] += sum of d[b][p] over the block (the bias gradient where dw_group has no
// registers left for it).
inline void db_sums(const float* d, int64_t plane, int64_t total, int64_t c, vec* sums) {
  for (int64_t b = 0; b < c; ++b) {
    vec s = sums[b];
    int64_t p = 0;
    for (; p + L <= total; p += L) s += load(d + b * plane + p);
    if (p < total) s += load_first(d + b * plane + p, total - p);
    sums[b] = s;
  }
}

// The weight gradient: per block, dw_group over every (channel block, pair group); for C > 1
// the block's dy pixels (contiguous in NHWC) are first split into C planar rows
// (pixel_transpose::split_rows). The lanes are summed in float over a thread's blocks up to
// kFlushPixels pixels (4096 terms a lane), then into its doubles (C = 1: 10 lane sums per
// block were a fifth of a 7x7 image); the threads' doubles are added in thread order (static
// schedule: deterministic for a fixed thread count).
template <int C>
void backward_weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                        float* db) {
  constexpr int64_t kFlushPixels = int64_t(1) << 16;
  constexpr int B = C, A = dw_pairs<C>(), K = 9 * C * C + C;
  constexpr bool fold_db = A * B + 2 * B + 1 <= kVectorRegisters;
  const int threads = threads_for(g);
  std::vector<double> part((size_t)threads * K, 0.0);  // a thread without blocks adds 0
  auto flush = [&](const Planes<C>& pl) {
    double* mine = part.data() + omp_get_thread_num() * K;
    for (int k = 0; k < K && pl.pending; ++k) mine[k] += lane_sum(pl.sums[k]), pl.sums[k] = vec{};
    pl.pending = 0;
  };
  run_blocks<C>(g, x, threads, false, [&](Planes<C>& pl, int64_t off, int64_t total) {
    const int64_t plane = round_up(total, L);
    if (pl.sums.size() < (size_t)K) pl.sums.assign(K, vec{});
    const float* dp[C];
    if constexpr (C == 1) {
      dp[0] = dy + off;
    } else {  // bounded by the block: C * (rows*OW rounded up to L) floats
      if (pl.scratch.size() < (size_t)(C * plane)) pl.scratch.resize((size_t)(C * plane));
      float* s = pl.scratch.data();
      const float* src = dy + off * C;
      for (int64_t k = pixel_transpose::split_rows<C>(src, total, s, plane); k < total; ++k)
        for (int co = 0; co < C; ++co) s[co * plane + k] = src[k * C + co];
      for (int co = 0; co < C; ++co) dp[co] = s + co * plane;
    }
    const float* q[9 * C];
    for (int t = 0; t < 9; ++t)
      for (int ci = 0; ci < C; ++ci) q[t * C + ci] = pl.tap(t, ci);
    vec* sums = pl.sums.data();
    auto pf = pl.prefetch_over(9 * C / A * (C / B) * (total / L));
    auto prefetch = [&] { pf.step(); };
    for (int b0 = 0; b0 < C; b0 += B) {
      dw_group<C, A, B, fold_db>(q, dp + b0, total, sums + b0, prefetch);
      for (int a0 = A; a0 < 9 * C; a0 += A)
        dw_group<C, A, B, false>(q + a0, dp + b0, total, sums + a0 * C + b0, prefetch);
    }
    if constexpr (!fold_db) db_sums(dp[0], plane, total, C, sums + 9 * C * C);
    pl.pending += total;
    if (pl.pending >= kFlushPixels) flush(pl);
  }, flush);
  for (int k = 0; k < K; ++k) {
    double s = 0.0;
    for (int t = 0; t < threads; ++t) s += part[t * K + k];
    if (k < 9 * C * C) dw[k] = (float)s;
    else if (db) db[k - 9 * C * C] = (float)s;
  }
}

}  // namespace

void s2_planes_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db) {
  switch (g.c) {
    case 1:
      if (!s2_c1_backward_weights(g, dy, x, dw, db)) backward_weights_c<1>(g, dy, x, dw, db);
      return;
    case 3: return backward_weights_c<3>(g, dy, x, dw, db);
  }
}

}  // namespace fastconv::cpu::detail
