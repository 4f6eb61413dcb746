// 3x3 stride-1 'same' conv of ONE channel in and out (groups 1) at the avx2 level: the batch
// as one flat stream of N*H*W floats, 8 consecutive outputs per ymm vector whatever rows they
// fall on.
//
// Why: depthwise_flat8.cpp (which conv2d.cpp sent these to in stop 38) walks each row of W
// floats on its own: at W = 28 a row is 4 vectors, two of which reach past a row end and load
// all their taps through lane masks, and the last stores through a lane mask (vmaskmovps
// stores are microcoded on Zen 3). N=256 28x28 ran at ~15 cycles per output vector for 9 FMAs
// (sweep_2026-12-08_zen3.md: forward 0.28 of the roofline; backward data, the same pass with
// the taps flipped, 0.18 there in one slow timing).
// Here a vector at flat position p reads its nine taps at p + (ky - 1) * W + (kx - 1) with
// plain loads; the taps of column kx = 0 are summed in one accumulator and those of kx = 2 in
// another, and each is ANDed with the lanes whose pixel has a left / right neighbour (a table
// of W / gcd(W, 8) mask pairs, in the order the stream meets them). A lane at column 0 thus
// reads the previous row's last pixel and drops it: the reference's padding adds 0 * w, the
// same value for a finite w (a non-finite weight: the caller's depthwise_flat8 path, which
// multiplies the zeros). Vectors with a lane in an image's first or last row (or at the ends
// of the range) load every tap through its full mask instead (zeros outside the image); the
// others go in tight runs that end where the mask table wraps.
// Sums per output: (kx = 0 taps, ky order) + (bias, kx = 1 taps) + (kx = 2 taps).
// The weight pass streams the same way: dy ANDed with the two masks for the side columns,
// 9 tap sums + db in 10 registers, flushed to the thread's doubles every kFlushVectors.
// Paired against depthwise_flat8's rows (1 thread, CPU time, Zen 3 at avx2, N=256; RESULTS.md,
// helper C, stop 39): forward 28x28 0.60, 14x14 0.54, 7x7 0.59; backward data 0.45-0.66;
// weights 28x28 0.69, 14x14 0.54.
// Tried and dropped (stop 39): row pairs in the stream (p and p + W sharing 6 of their 12
// loads), with three sums an output (weights spilled, GCC's 17 pointer induction variables
// on the stack) or one chain an output: 1.3-1.9x slower, also with the pointer made opaque;
// the weight pass's interior vectors in tight runs (as the forward's): 0.98-1.03.
#include "cpu/few_channel_s1_c1.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>
#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)
namespace {

constexpr int64_t kL8 = 8;
// Widest rows taken (paired against depthwise_flat8's rows in one process, 1 thread, CPU
// time, N=256, new / old): forward W = 8 0.65, 14 0.53, 21 0.54, 28 0.50, 32 0.90, 36 0.73,
// 40 0.85, 44 0.71; with the interior runs (stop 39, later): 48 0.81-0.83, 56 0.87-0.89,
// 96 0.88, N=32 64x64 0.85, N=32 112x112 0.91-0.93, N=256 112x112 0.93-1.03; backward data
// 48 0.79-0.85, 56 0.89-0.91, 96 0.91, N=32 112x112 0.83-1.02, N=256 112x112 0.87-1.06: from
// 112 (rows a whole number of vectors, few edge vectors) the rows hold their own, so they keep
// those. Weights W = 14 0.57, 21 0.70, 28 0.77, 32 0.98, 36 0.78-0.85, 40 0.98-1.02, 48 1.02.
// Mask table: W / gcd(W, 8) <= 96 entries of 64 bytes.
constexpr int64_t kMaxWForward = 96;
constexpr int64_t kMaxWWeights = 36;
// Vectors summed in float before the weight pass adds its lanes to doubles.
constexpr int64_t kFlushVectors = 128;

bool c1_geometry(const ConvGeometry& g, int64_t max_w) {
  const Window2d& v = g.win;
  return g.groups == 1 && g.c == 1 && g.oc == 1 && v.kh == 3 && v.kw == 3 && v.sh == 1 && v.sw == 1 &&
         v.dh == 1 && v.dw == 1 && v.pt == 1 && v.pb == 1 && v.pl == 1 && v.pr == 1 && g.oh == g.h &&
         g.ow == g.w && g.w >= 4 && g.w <= max_w && g.h >= 2 && g.n * g.h * g.w < (int64_t(1) << 31) - 64;
}

inline __m256i iota8() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
inline __m256i first_lanes(int64_t n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), iota8()); }

// Entry k (16 floats): lanes of the vector at stream position 8k (mod W, the stream starting
// at a row start) whose pixel has a left neighbour, then those with a right neighbour
// (W / gcd(W, 8) <= kMaxWForward entries).
std::vector<float> side_masks(int64_t W) {
  const int64_t n = W / std::gcd(W, kL8);
  std::vector<float> t((size_t)(n * 16));
  const float ones = [] { uint32_t u = ~0u; float f; std::memcpy(&f, &u, 4); return f; }();
  for (int64_t k = 0; k < n; ++k)
    for (int64_t l = 0; l < kL8; ++l) {
      const int64_t ox = (k * kL8 + l) % W;
      t[(size_t)(k * 16 + l)] = ox != 0 ? ones : 0.f;
      t[(size_t)(k * 16 + 8 + l)] = ox != W - 1 ? ones : 0.f;
    }
  return t;
}

// The nine load masks of an edge vector at stream position p (q = p mod H*W): lanes whose tap
// lies in the image (rows and sides) and whose output is below `end`.
struct EdgeMasks {
  __m256i m[9];
};
inline void edge_masks(int64_t p, int64_t q, int64_t W, int64_t HW, int64_t end, const float* side, EdgeMasks& e) {
  __m256i qv = _mm256_add_epi32(_mm256_set1_epi32((int)q), iota8());
  qv = _mm256_sub_epi32(qv, _mm256_and_si256(_mm256_cmpgt_epi32(qv, _mm256_set1_epi32((int)(HW - 1))),
                                             _mm256_set1_epi32((int)HW)));
  const __m256i live = first_lanes(std::min<int64_t>(kL8, end - p));
  const __m256i top = _mm256_and_si256(live, _mm256_cmpgt_epi32(qv, _mm256_set1_epi32((int)(W - 1))));
  const __m256i bot = _mm256_and_si256(live, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(HW - W)), qv));
  const __m256i left = _mm256_castps_si256(_mm256_loadu_ps(side)), right = _mm256_castps_si256(_mm256_loadu_ps(side + 8));
  const __m256i rows[3] = {top, live, bot};
  for (int ky = 0; ky < 3; ++ky) {
    e.m[ky * 3 + 0] = _mm256_and_si256(rows[ky], left);
    e.m[ky * 3 + 1] = rows[ky];
    e.m[ky * 3 + 2] = _mm256_and_si256(rows[ky], right);
  }
}

template <Activation A>
inline __m256 act8(__m256 v) {
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

// Outputs [s, e) of the stream (s at a row start).
template <Activation A>
void forward_range(const float* x, const float* w, float bias, float* y, int64_t s, int64_t e, int64_t W,
                   int64_t HW, const float* side0, const float* side_end) {
  __m256 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm256_set1_ps(w[t]);
  const __m256 bv = _mm256_set1_ps(bias);
  const int64_t lo = W + 1, hi = HW - W - 1 - kL8;  // interior: q in [lo, hi]
  int64_t q = s % HW;
  const float* side = side0;
  for (int64_t p = s; p < e;) {
    if (q >= lo && q <= hi && p + kL8 <= e) {
      // A run of interior vectors (q stays under HW inside it), in stretches that end where
      // the mask table wraps: a tight loop of loads, FMAs and pointer steps (the tests and
      // the q / table bookkeeping a vector were ~17 loads a vector with the spilled bounds).
      int64_t n = std::min((hi - q) / kL8 + 1, (e - p) / kL8);
      q += n * kL8;
      while (n > 0) {
        const int64_t m = std::min<int64_t>(n, (side_end - side) / 16);
        const float* c = x + p;
        float* out = y + p;
        const float* sd = side;
        for (int64_t k = 0; k < m; ++k, c += kL8, out += kL8, sd += 16) {
          __m256 a0, a1, a2;
          a0 = _mm256_mul_ps(_mm256_loadu_ps(c - W - 1), wv[0]);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(c - W), wv[1], bv);
          a2 = _mm256_mul_ps(_mm256_loadu_ps(c - W + 1), wv[2]);
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c - 1), wv[3], a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(c), wv[4], a1);
          a2 = _mm256_fmadd_ps(_mm256_loadu_ps(c + 1), wv[5], a2);
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c + W - 1), wv[6], a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(c + W), wv[7], a1);
          a2 = _mm256_fmadd_ps(_mm256_loadu_ps(c + W + 1), wv[8], a2);
          _mm256_storeu_ps(out, act8<A>(_mm256_add_ps(_mm256_add_ps(_mm256_and_ps(a0, _mm256_loadu_ps(sd)), a1),
                                                      _mm256_and_ps(a2, _mm256_loadu_ps(sd + 8)))));
        }
        p += m * kL8, n -= m;
        side = sd == side_end ? side0 : sd;
      }
      if (q >= HW) q -= HW;
      continue;
    }
    const float* c = x + p;
    __m256 a0, a1, a2;
    {
      EdgeMasks em;
      edge_masks(p, q, W, HW, e, side, em);
      a0 = _mm256_mul_ps(_mm256_maskload_ps(c - W - 1, em.m[0]), wv[0]);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(c - W, em.m[1]), wv[1], bv);
      a2 = _mm256_mul_ps(_mm256_maskload_ps(c - W + 1, em.m[2]), wv[2]);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(c - 1, em.m[3]), wv[3], a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(c, em.m[4]), wv[4], a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(c + 1, em.m[5]), wv[5], a2);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(c + W - 1, em.m[6]), wv[6], a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(c + W, em.m[7]), wv[7], a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(c + W + 1, em.m[8]), wv[8], a2);
    }
    const __m256 v = act8<A>(_mm256_add_ps(_mm256_add_ps(_mm256_and_ps(a0, _mm256_loadu_ps(side)), a1),
                                           _mm256_and_ps(a2, _mm256_loadu_ps(side + 8))));
    if (p + kL8 <= e) _mm256_storeu_ps(y + p, v);
    else _mm256_maskstore_ps(y + p, first_lanes(e - p), v);
    p += kL8;
    q += kL8;
    if (q >= HW) q -= HW;
    side += 16;
    if (side == side_end) side = side0;
  }
}

bool finite9(const float* w) {
  for (int t = 0; t < 9; ++t)
    if (!std::isfinite(w[t])) return false;
  return true;
}

void c1_pass(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out, Activation act) {
  const int64_t W = g.w, HW = g.h * g.w, lines = g.n * g.h;
  const std::vector<float> side = side_masks(W);
  const float* s0 = side.data();
  const float* s1 = s0 + side.size();
  const float bias = b ? b[0] : 0.f;
  const bool fused = act == Activation::Linear || act == Activation::Relu || act == Activation::Relu6;
  split_lines(g.n, lines, lines * W >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    const int64_t s = l0 * W, e = l1 * W;
    switch (act) {
      case Activation::Relu: return forward_range<Activation::Relu>(in, w, bias, out, s, e, W, HW, s0, s1);
      case Activation::Relu6: return forward_range<Activation::Relu6>(in, w, bias, out, s, e, W, HW, s0, s1);
      default: return forward_range<Activation::Linear>(in, w, bias, out, s, e, W, HW, s0, s1);
    }
  });
  if (!fused) activation_inplace_parallel(g.output_size(), out, act);
}

// Weight pass over outputs [s, e): dw[ky*3+kx] += dy[p] * x[p + (ky-1)W + kx-1] (inside the
// image), db += dy[p]; the lane sums added to total[10][8] (doubles).
void weights_range(const float* dy, const float* x, int64_t s, int64_t e, int64_t W, int64_t HW, const float* side0,
                   const float* side_end, double* total) {
  const int64_t lo = W + 1, hi = HW - W - 1 - kL8;
  int64_t q = s % HW;
  const float* side = side0;
  for (int64_t p = s; p < e;) {
    __m256 a[10];
    for (auto& v : a) v = _mm256_setzero_ps();
    for (const int64_t stop = std::min(e, p + kFlushVectors * kL8); p < stop; p += kL8) {
      const float* c = x + p;
      if (q >= lo && q <= hi && p + kL8 <= e) {
        const __m256 d = _mm256_loadu_ps(dy + p);
        const __m256 dl = _mm256_and_ps(d, _mm256_loadu_ps(side));
        const __m256 dr = _mm256_and_ps(d, _mm256_loadu_ps(side + 8));
        a[0] = _mm256_fmadd_ps(dl, _mm256_loadu_ps(c - W - 1), a[0]);
        a[1] = _mm256_fmadd_ps(d, _mm256_loadu_ps(c - W), a[1]);
        a[2] = _mm256_fmadd_ps(dr, _mm256_loadu_ps(c - W + 1), a[2]);
        a[3] = _mm256_fmadd_ps(dl, _mm256_loadu_ps(c - 1), a[3]);
        a[4] = _mm256_fmadd_ps(d, _mm256_loadu_ps(c), a[4]);
        a[5] = _mm256_fmadd_ps(dr, _mm256_loadu_ps(c + 1), a[5]);
        a[6] = _mm256_fmadd_ps(dl, _mm256_loadu_ps(c + W - 1), a[6]);
        a[7] = _mm256_fmadd_ps(d, _mm256_loadu_ps(c + W), a[7]);
        a[8] = _mm256_fmadd_ps(dr, _mm256_loadu_ps(c + W + 1), a[8]);
        a[9] = _mm256_add_ps(a[9], d);
      } else {
        EdgeMasks em;
        edge_masks(p, q, W, HW, e, side, em);
        // dy's lanes past e belong to the next range: read as 0 (em.m[4] is the live lanes)
        const __m256 d = _mm256_maskload_ps(dy + p, em.m[4]);
        const int64_t off[9] = {-W - 1, -W, -W + 1, -1, 0, 1, W - 1, W, W + 1};
        for (int t = 0; t < 9; ++t) a[t] = _mm256_fmadd_ps(d, _mm256_maskload_ps(c + off[t], em.m[t]), a[t]);
        a[9] = _mm256_add_ps(a[9], d);
      }
      q += kL8;
      if (q >= HW) q -= HW;
      side += 16;
      if (side == side_end) side = side0;
    }
    for (int k = 0; k < 10; ++k) {
      double* tk = total + k * kL8;
      _mm256_storeu_pd(tk, _mm256_add_pd(_mm256_loadu_pd(tk), _mm256_cvtps_pd(_mm256_castps256_ps128(a[k]))));
      _mm256_storeu_pd(tk + 4, _mm256_add_pd(_mm256_loadu_pd(tk + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(a[k], 1))));
    }
  }
}

}  // namespace

bool few_channel_s1_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                               Activation act) {
  if (!c1_geometry(g, kMaxWForward) || !finite9(w)) return false;
  c1_pass(g, x, w, b, y, act);
  return true;
}

bool few_channel_s1_c1_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (!c1_geometry(g, kMaxWForward) || !finite9(w)) return false;
  // dx[p] = sum over taps t of dy[p - offset(t)] * w[t]: the forward over dy with w reversed
  float flipped[9];
  for (int t = 0; t < 9; ++t) flipped[t] = w[8 - t];
  c1_pass(g, dy, flipped, nullptr, dx, Activation::Linear);
  return true;
}

bool few_channel_s1_c1_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                        float* db) {
  if (!c1_geometry(g, kMaxWWeights)) return false;
  constexpr int64_t kStride = 10 * kL8;
  const int64_t W = g.w, HW = g.h * g.w, lines = g.n * g.h;
  const std::vector<float> side = side_masks(W);
  const float* s0 = side.data();
  const float* s1 = s0 + side.size();
  std::vector<double> part((size_t)(omp_get_max_threads() * kStride), 0.0);
  int used = 1;
  ExceptionCaptor errors;
  parallel_region(lines * W >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    errors.run([&] {
      const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
      weights_range(dy, x, l0 * W, l1 * W, W, HW, s0, s1, part.data() + t * kStride);
    });
  });
  errors.rethrow();
  // The threads' lane totals in thread order (deterministic for a thread count).
  double sum[10] = {};
  for (int t = 0; t < used; ++t)
    for (int k = 0; k < 10; ++k)
      for (int64_t l = 0; l < kL8; ++l) sum[k] += part[(size_t)(t * kStride + k * kL8 + l)];
  for (int k = 0; k < 9; ++k) dw[k] = (float)sum[k];
  if (db) db[0] = (float)sum[9];
  return true;
}

#else

bool few_channel_s1_c1_forward(const ConvGeometry&, const float*, const float*, const float*, float*, Activation) {
  return false;
}
bool few_channel_s1_c1_backward_data(const ConvGeometry&, const float*, const float*, float*) { return false; }
bool few_channel_s1_c1_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
