// 3x3 stride-1 'same' depthwise convolution with C < 16 channels: depthwise.cpp runs vectors
// over channels, so C = 3 filled 3 lanes of 16. Forward / backward data, ms, 1 thread, Zen 4:
// N=256 28x28x3 1.19 / 1.14 -> 0.51 / 0.43, N=32 112x112x3 2.04 / 1.97 -> 0.79 / 0.81,
// N=256 28x28x6 1.22 / 1.15 -> 0.80 / 0.76. The weight pass the same way: backward (data +
// weights) N=256 28x28x3 2.4 -> 1.0, N=32 112x112x3 4.4 -> 2.3, N=256 28x28x6 3.0 -> 1.8. Here a vector is 16 consecutive floats of the flat output
// row (pixels x channels): tap (ky, kx) reads the input row oy + ky - 1 shifted by (kx - 1)*C
// floats, and its weights are a vector whose lane l holds w[tap, (e0 + l) % C], one of
// C / gcd(16, C) patterns. Edges: a tap's lanes that fall outside the input row, and rows in
// the vertical padding, read zeros and are multiplied like the rest, as in the oracle and
// depthwise.cpp (0 * an inf weight is NaN there too).
#include "cpu/depthwise_flat.h"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)
namespace {

constexpr int kTaps = 9;

// The input rows oy - 1, oy, oy + 1 of line (img, oy), null in the vertical padding.
inline void tap_rows(const float* in, int64_t img, int64_t oy, int64_t H, int64_t L, const float* (&rows)[3]) {
  for (int ky = 0; ky < 3; ++ky) {
    const int64_t iy = oy + ky - 1;
    rows[ky] = iy >= 0 && iy < H ? in + (img * H + iy) * L : nullptr;
  }
}

// 16 floats of a tap: its row's floats [off, off + 16) in `lanes` (row_lanes), zeros in the
// others (the horizontal padding) and everywhere for a row in the vertical padding (null).
inline __mmask16 row_lanes(int64_t off, int64_t L) {  // lanes whose float lies in [0, L)
  const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(kLanes, L - off);
  return hi <= lo ? (__mmask16)0 : (__mmask16)((0xFFFFu >> (kLanes - hi)) & (0xFFFFu << lo));
}
inline __m512 tap_load(const float* row, int64_t off, __mmask16 lanes) {
  if (!row) return _mm512_setzero_ps();
  return lanes == 0xFFFF ? _mm512_loadu_ps(row + off) : _mm512_maskz_loadu_ps(lanes, row + off);
}

void flat_pass(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out) {
  const int64_t C = g.c, H = g.h, L = g.w * g.c;
  const int patterns = (int)(C / std::gcd<int64_t>(kLanes, C));
  // Lane l of pattern p serves channel (16 p + l) % C: the vector at e0 = 16 j uses p = j % patterns.
  std::vector<float> wv((size_t)patterns * (kTaps + 1) * kLanes);
  for (int p = 0; p < patterns; ++p)
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t c = (p * kLanes + l) % C;
      for (int t = 0; t < kTaps; ++t) wv[(p * (kTaps + 1) + t) * kLanes + l] = w[t * C + c];
      wv[(p * (kTaps + 1) + kTaps) * kLanes + l] = b ? b[c] : 0.f;
    }
  const int64_t lines = g.n * H;
  parallel_region((lines * L >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t line = 0; line < lines; ++line) {
      const int64_t img = line / H, oy = line % H;
      float* y = out + line * L;
      const float* rows[3];
      tap_rows(in, img, oy, H, L, rows);
      for (int64_t e0 = 0, j = 0; e0 < L; e0 += kLanes, ++j) {
        const float* pw = wv.data() + (j % patterns) * (kTaps + 1) * kLanes;
        const __mmask16 live = (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kLanes, L - e0)));
        __m512 acc = _mm512_loadu_ps(pw + kTaps * kLanes);
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t off = e0 + (kx - 1) * C;  // first input float of lane 0
          const __mmask16 lanes = row_lanes(off, L);
          for (int ky = 0; ky < 3; ++ky)
            acc = _mm512_fmadd_ps(tap_load(rows[ky], off, lanes), _mm512_loadu_ps(pw + (ky * 3 + kx) * kLanes), acc);
        }
        _mm512_mask_storeu_ps(y + e0, live, acc);
      }
    }
  });
}

// dw[tap, c] = sum over pixels of dy[p, c] * x[p + tap, c] (the padding's zeros included)
// and db[c] = sum dy[p, c], on the same flat rows: per line and pattern, float register sums
// for each tap over the row's vectors of that pattern, folded into the thread's double totals every
// kFlushLines lines; the threads' totals are added in thread order (deterministic for a
// thread count), then each pattern lane goes to its channel.
void flat_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  const int64_t C = g.c, H = g.h, L = g.w * g.c, lines = g.n * H;
  const int patterns = (int)(C / std::gcd<int64_t>(kLanes, C));
  constexpr int kSums = kTaps + 1;  // + db
  constexpr int64_t kFlushLines = 16;
  const int64_t stride = (int64_t)patterns * kSums * kLanes;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)(max_threads * stride), 0.0);
  int used = 1;
#pragma omp parallel if (lines * L >= kParallelGrain)
  {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
    double* total = part.data() + t * stride;
    std::vector<float> fsum((size_t)stride, 0.f);
    auto flush = [&] {
      for (int64_t i = 0; i < stride; ++i) total[i] += fsum[(size_t)i];
      std::fill(fsum.begin(), fsum.end(), 0.f);
    };
    for (int64_t line = l0; line < l1; ++line) {
      const int64_t img = line / H, oy = line % H;
      const float* d = dy + line * L;
      const float* rows[3];
      tap_rows(x, img, oy, H, L, rows);
      // One pattern at a time, its kSums sums in registers (all patterns' at once would be
      // 30 registers for C = 3, 6, and through memory they doubled the pass's time).
      for (int p = 0; p < patterns; ++p) {
        __m512 acc[kSums];
        for (auto& v : acc) v = _mm512_setzero_ps();
        for (int64_t e0 = p * kLanes; e0 < L; e0 += patterns * kLanes) {
          const __mmask16 live = (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kLanes, L - e0)));
          const __m512 dv = _mm512_maskz_loadu_ps(live, d + e0);  // lanes past the row: 0
          // the padding's zeros are multiplied too (dy = inf there gives NaN, as the oracle)
          for (int kx = 0; kx < 3; ++kx) {
            const int64_t off = e0 + (kx - 1) * C;
            const __mmask16 lanes = row_lanes(off, L);
            for (int ky = 0; ky < 3; ++ky)
              acc[ky * 3 + kx] = _mm512_fmadd_ps(dv, tap_load(rows[ky], off, lanes), acc[ky * 3 + kx]);
          }
          acc[kTaps] = _mm512_add_ps(acc[kTaps], dv);
        }
        float* f = fsum.data() + p * kSums * kLanes;
        for (int k = 0; k < kSums; ++k) _mm512_storeu_ps(f + k * kLanes, _mm512_add_ps(_mm512_loadu_ps(f + k * kLanes), acc[k]));
      }
      if ((line - l0) % kFlushLines == kFlushLines - 1) flush();
    }
    flush();
  }
  std::vector<double> sum((size_t)(kSums * C), 0.0);
  for (int t = 0; t < used; ++t)
    for (int p = 0; p < patterns; ++p)
      for (int s2 = 0; s2 < kSums; ++s2)
        for (int64_t l = 0; l < kLanes; ++l)
          sum[(size_t)(s2 * C + (p * kLanes + l) % C)] += part[(size_t)(t * stride + (p * kSums + s2) * kLanes + l)];
  for (int64_t i = 0; i < kTaps * C; ++i) dw[i] = (float)sum[(size_t)i];
  if (db)
    for (int64_t c = 0; c < C; ++c) db[c] = (float)sum[(size_t)(kTaps * C + c)];
}

}  // namespace

bool depthwise_flat_applies(const ConvGeometry& g) {
  const Window2d& v = g.win;
  return g.is_depthwise() && g.cout_g == 1 && g.c < kLanes && v.kh == 3 && v.kw == 3 && v.sh == 1 &&
         v.sw == 1 && v.dh == 1 && v.dw == 1 && v.pt == 1 && v.pb == 1 && v.pl == 1 && v.pr == 1 &&
         g.oh == g.h && g.ow == g.w;
}

void depthwise_flat_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                            float* y, Activation act) {
  flat_pass(g, x, w, b, y);
  if (act != Activation::Linear) activation_inplace_parallel(g.output_size(), y, act);
}

void depthwise_flat_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db) {
  flat_weights(g, dy, x, dw, db);
}

#else

bool depthwise_flat_applies(const ConvGeometry&) { return false; }
void depthwise_flat_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {}
void depthwise_flat_forward(const ConvGeometry&, const float*, const float*, const float*, float*, Activation) {}

#endif

}  // namespace fastconv::cpu::detail
