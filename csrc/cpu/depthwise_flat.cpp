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

// A vector steps S floats along the row, S = the largest multiple of C up to 16 (C = 3: 15,
// C = 6: 12), so every vector starts at channel 0 and lane l serves channel l % C: one set of
// nine tap vectors, held in registers, where a 16-float step needed C / gcd(16, C) sets (3 for
// C = 3, 6) read from L1 by every FMA. A vector then costs nine input loads and nine FMAs
// instead of eighteen loads, and loads were the limit (Zen 4 takes one 64-byte load a cycle).
// Lanes >= S are computed and stored but rewritten by the next vector (or masked off at the
// row's end).
//
// Each thread copies the input rows its lines need into a ring of padded rows: kPad zeros, the
// row's L floats, kPad + 16 zeros (and one more, all zeros, for the rows in the vertical
// padding). Every tap is then a plain unaligned load at a fixed offset from its row, with no
// mask or branch: the padding's zeros are multiplied like the rest, as in the oracle (0 * an
// inf weight is NaN there too).
constexpr int64_t kPad = kLanes;  // >= C: a tap reaches at most C floats left of its vector

class PaddedRows {
 public:
  PaddedRows(int64_t L) : L_(L), stride_((L + 3 * kPad + kLanes - 1) / kLanes * kLanes) {
    buf_ = scratch((kSlots + 1) * stride_);  // thread-local, bounded: 5 rows of the image
    std::fill(buf_, buf_ + (kSlots + 1) * stride_, 0.f);
  }
  // r = the padded input rows oy - 1, oy, oy + 1 of line (img, oy) of `in` (H rows an
  // image). The next line's new row is copied now, so that its stores are done before that
  // line loads it (a load overlapping a store still in flight waits for it).
  void rows(const float* in, int64_t H, int64_t line, int64_t lines, const float* (&r)[3]) {
    for (int ky = 0; ky < 3; ++ky) r[ky] = row(in, H, line / H, line % H + ky - 1);
    if (line + 1 < lines) row(in, H, (line + 1) / H, (line + 1) % H + 1);
  }

 private:
  static constexpr int kSlots = 4;  // rows oy - 1 .. oy + 2 fall in four different slots
  // The first float of input row iy of image img, padded (the zero row in the padding).
  const float* row(const float* in, int64_t H, int64_t img, int64_t iy) {
    if (iy < 0 || iy >= H) return buf_ + kSlots * stride_ + kPad;
    const int64_t gi = img * H + iy;
    const int s = (int)(gi % kSlots);
    float* r = buf_ + s * stride_ + kPad;
    if (tag_[s] != gi) {
      std::copy(in + gi * L_, in + (gi + 1) * L_, r);
      tag_[s] = gi;
    }
    return r;
  }
  int64_t L_, stride_;
  float* buf_;
  int64_t tag_[kSlots] = {-1, -1, -1, -1};
};

inline __mmask16 first_lanes(int64_t n) { return (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kLanes, n))); }
inline int64_t step_floats(int64_t C) { return kLanes / C * C; }

// Tap t's vector: lane l < S holds w[t, l % C] (lanes >= S: 0).
inline void load_taps(const float* w, int64_t C, __m512 (&wv)[kTaps]) {
  const int64_t S = step_floats(C);
  alignas(64) float lanes[kLanes];
  for (int t = 0; t < kTaps; ++t) {
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] = l < S ? w[t * C + l % C] : 0.f;
    wv[t] = _mm512_load_ps(lanes);
  }
}

void flat_pass(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out) {
  const int64_t C = g.c, H = g.h, L = g.w * g.c, lines = g.n * H, S = step_floats(C);
  split_lines(g.n, lines, lines * L >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    __m512 wv[kTaps];
    load_taps(w, C, wv);
    alignas(64) float bl[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) bl[l] = b ? b[l % C] : 0.f;
    const __m512 bias = _mm512_load_ps(bl);
    PaddedRows pad(L);
    for (int64_t line = l0; line < l1; ++line) {
      float* y = out + line * L;
      const float* r[3];
      pad.rows(in, H, line, lines, r);
      for (int64_t e0 = 0; e0 < L; e0 += S) {
        // one accumulator per kernel row: three chains of three FMAs
        __m512 a0 = bias, a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t off = e0 + (kx - 1) * C;
          a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r[0] + off), wv[kx], a0);
          a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r[1] + off), wv[3 + kx], a1);
          a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r[2] + off), wv[6 + kx], a2);
        }
        const __m512 v = _mm512_add_ps(_mm512_add_ps(a0, a1), a2);
        // lanes [S, 16) land on the next vector's floats, which it rewrites
        if (e0 + kLanes <= L) _mm512_storeu_ps(y + e0, v);
        else _mm512_mask_storeu_ps(y + e0, first_lanes(std::min(S, L - e0)), v);
      }
    }
  });
}

// dw[tap, c] = sum over pixels of dy[p, c] * x[p + tap, c] (the padding's zeros included)
// and db[c] = sum dy[p, c], on the same flat rows and S-float steps: ten lane sums in
// registers over a line's vectors (dy's lanes >= S loaded as 0), added to float sums, which
// are folded into the thread's double totals every kFlushLines lines; the threads' totals are added in thread
// order (deterministic for a thread count), then lane l goes to channel l % C.
void flat_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  const int64_t C = g.c, H = g.h, L = g.w * g.c, lines = g.n * H, S = step_floats(C);
  constexpr int kSums = kTaps + 1;  // + db
  constexpr int64_t kFlushLines = 16;
  constexpr int64_t stride = kSums * kLanes;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)(max_threads * stride), 0.0);
  int used = 1;
  ExceptionCaptor errors;  // scratch() may grow
  parallel_region(lines * L >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    errors.run([&] {
      const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
      double* total = part.data() + t * stride;
      const __mmask16 step = first_lanes(S);
      alignas(64) float fsum[stride] = {};
      PaddedRows pad(L);
      for (int64_t line = l0; line < l1; ++line) {
        const float* d = dy + line * L;
        const float* r[3];
        pad.rows(x, H, line, lines, r);  // before the sums: a call would spill them
        __m512 acc[kSums];
        for (auto& v : acc) v = _mm512_setzero_ps();
        for (int64_t e0 = 0; e0 < L; e0 += S) {
          // lanes >= S and past the row: 0 (dy's next row may hold an inf)
          const __mmask16 m = e0 + kLanes <= L ? step : first_lanes(std::min(S, L - e0));
          const __m512 dv = _mm512_maskz_loadu_ps(m, d + e0);
          for (int kx = 0; kx < 3; ++kx)
            for (int ky = 0; ky < 3; ++ky)
              acc[ky * 3 + kx] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(r[ky] + e0 + (kx - 1) * C), acc[ky * 3 + kx]);
          acc[kTaps] = _mm512_add_ps(acc[kTaps], dv);
        }
        for (int k = 0; k < kSums; ++k)
          _mm512_store_ps(fsum + k * kLanes, _mm512_add_ps(_mm512_load_ps(fsum + k * kLanes), acc[k]));
        if ((line - l0) % kFlushLines == kFlushLines - 1 || line + 1 == l1) {
          for (int64_t i = 0; i < stride; ++i) total[i] += fsum[i];
          std::fill(fsum, fsum + stride, 0.f);
        }
      }
    });
  });
  errors.rethrow();
  std::vector<double> sum((size_t)(kSums * C), 0.0);
  for (int t = 0; t < used; ++t)
    for (int k = 0; k < kSums; ++k)
      for (int64_t l = 0; l < S; ++l) sum[(size_t)(k * C + l % C)] += part[(size_t)(t * stride + k * kLanes + l)];
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
