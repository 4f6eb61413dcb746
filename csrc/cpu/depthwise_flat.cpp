// 3x3 stride-1 'same' depthwise convolution with C < 16 channels: depthwise.cpp runs vectors
// over channels, so C = 3 filled 3 lanes of 16. Forward / backward data, ms, 1 thread, Zen 4:
// N=256 28x28x3 1.19 / 1.14 -> 0.51 / 0.43, N=32 112x112x3 2.04 / 1.97 -> 0.79 / 0.81,
// N=256 28x28x6 1.22 / 1.15 -> 0.80 / 0.76. Here a vector is 16 consecutive floats of the flat output
// row (pixels x channels): tap (ky, kx) reads the input row oy + ky - 1 shifted by (kx - 1)*C
// floats, and its weights are a vector whose lane l holds w[tap, (e0 + l) % C], one of
// C / gcd(16, C) patterns. Edges: a tap's lanes that fall outside the input row, and rows in
// the vertical padding, read zeros and are multiplied like the rest, as in the oracle and
// depthwise.cpp (0 * an inf weight is NaN there too).
#include "cpu/depthwise_flat.h"

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
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t iy = oy + ky - 1;
        rows[ky] = iy >= 0 && iy < H ? in + (img * H + iy) * L : nullptr;
      }
      for (int64_t e0 = 0, j = 0; e0 < L; e0 += kLanes, ++j) {
        const float* pw = wv.data() + (j % patterns) * (kTaps + 1) * kLanes;
        const __mmask16 live = (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kLanes, L - e0)));
        __m512 acc = _mm512_loadu_ps(pw + kTaps * kLanes);
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t off = e0 + (kx - 1) * C;  // first input float of lane 0
          // Lanes whose input float lies outside the row [0, L) read the padding: zero.
          const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(kLanes, L - off);
          const bool inside = lo == 0 && hi == kLanes;
          const __mmask16 m = hi <= lo ? (__mmask16)0 : (__mmask16)((0xFFFFu >> (kLanes - hi)) & (0xFFFFu << lo));
          for (int ky = 0; ky < 3; ++ky) {
            const __m512 v = !rows[ky] ? _mm512_setzero_ps()
                             : inside  ? _mm512_loadu_ps(rows[ky] + off)
                                       : _mm512_maskz_loadu_ps(m, rows[ky] + off);
            acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(pw + (ky * 3 + kx) * kLanes), acc);
          }
        }
        _mm512_mask_storeu_ps(y + e0, live, acc);
      }
    }
  });
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

void depthwise_flat_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  // dx[iy, ix] = sum dy[iy + 1 - ky, ix + 1 - kx] * w[ky, kx]: the forward with the taps flipped.
  std::vector<float> flipped((size_t)(kTaps * g.c));
  for (int t = 0; t < kTaps; ++t)
    for (int64_t c = 0; c < g.c; ++c) flipped[(size_t)((kTaps - 1 - t) * g.c + c)] = w[t * g.c + c];
  flat_pass(g, dy, flipped.data(), nullptr, dx);
}

#else

bool depthwise_flat_applies(const ConvGeometry&) { return false; }
void depthwise_flat_forward(const ConvGeometry&, const float*, const float*, const float*, float*, Activation) {}
void depthwise_flat_backward_data(const ConvGeometry&, const float*, const float*, float*) {}

#endif

}  // namespace fastconv::cpu::detail
