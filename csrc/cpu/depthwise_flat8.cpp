// 3x3 stride-1 'same' depthwise convolution with few channels (C <= 8) at the avx2 level:
// vectors of 8 consecutive floats of the flat NHWC row (pixels x channels), as
// depthwise_flat.cpp does in 16-float vectors at AVX-512 (its head comment has the scheme).
// conv2d.cpp also sends the plain 3x3 'same' conv of one channel in and out here (groups 1:
// the same arithmetic), where its direct kernel would run.
//
// Why: below AVX-512 these shapes ran depthwise.cpp's channel-block tiles, whose vectors span
// channels: C = 3 filled 3 lanes of a register, so most FMAs multiplied zeros, and each pixel
// paid a tile's loads and stores for 3 floats. They were the sweep's worst depthwise cases
// (sweep_2026-12-07i_zen3.md: N=256 56x56x3 forward at 0.053 of its roofline, the whole
// sweep's lowest; 21 few-channel cases under half the family median). Here a vector steps
// S = 8 / C * C floats (C = 3: 6, C = 6: 6, C = 5: 5, C = 7: 7, C = 1, 2, 4, 8: 8), so lane l
// always serves channel l % C: the nine tap vectors and the bias stay in 10 of the 16 ymm
// registers, and an output vector is 9 loads + 9 FMAs + 1 store.
// Tap (ky, kx) of the vector at float e0 reads input row oy + ky - 1 at e0 + (kx - 1) * C.
// Edges: only the vectors whose taps reach past a row end load through a lane mask (zeros
// outside the row); rows in the vertical padding read a zero row. The padding's zeros are
// multiplied like the rest, as in the oracle (0 * an inf weight is NaN there too).
// Sums: one accumulator per kernel row (bias in the first, taps in kx order), then
// (a0 + a1) + a2, as depthwise_flat.cpp.
// The weight pass steps the same S floats: one lane pattern, the 9 tap sums and the db sum in
// 10 registers over a line, flushed to the thread's double totals every 16 lines.
// Paired against main's build in one process (1 thread, CPU time, Zen 3 at avx2; RESULTS.md,
// helper D stop 38), after / before: forward N=256 56x56x3 0.16, N=32 112x112x3 0.15-0.18,
// N=256 28x28x6 0.23, N=256 28x28x1 0.60 (the one-channel conv), x8 0.52; backward data
// alike; weight pass 0.28-0.48 at C = 3, 0.52-0.96 at C = 6 (N=32 56x56x6 0.82 and 0.96 in
// two runs), 0.36-0.67 at C = 1.
// Tried and dropped: the image stream of depthwise_flat.cpp for rows of 8 to 64 floats (inner
// vectors' side taps zeroed by an AND): 1.06-1.9x slower than the row pairs below; row pairs
// in the weight pass (12 x loads for 18 FMAs): 1.03-2.3x slower (14 registers live, spills).
#include "cpu/depthwise_flat8.h"

#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>
#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)
namespace {

constexpr int kTaps = 9;
constexpr int64_t kL8 = 8;  // lanes of a ymm register

// Channels the flat8 passes take (the others keep depthwise.cpp's tiles): see depthwise_flat8_applies.
constexpr int64_t kFlat8MaxC = 8;

constexpr int64_t kPairMaxRow = 64;

inline int64_t step8(int64_t C) { return kL8 / C * C; }

// Lanes whose float off + l lies in [0, L) (all ones), else 0.
inline __m256i row_mask(int64_t off, int64_t L) {
  const __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)off));
  return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(_mm256_set1_epi32((int)L), idx));
}
// Lanes l < n.
inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The nine tap vectors and the bias (b may be null) of S-float steps: lane l < S serves
// channel l % C, lanes >= S hold 0.
inline void step_table8(int64_t C, int64_t S, const float* w, const float* b, float (&tv)[kTaps + 1][kL8]) {
  for (int64_t l = 0; l < kL8; ++l) {
    for (int t = 0; t < kTaps; ++t) tv[t][l] = l < S ? w[t * C + l % C] : 0.f;
    tv[kTaps][l] = l < S && b ? b[l % C] : 0.f;
  }
}

template <Activation A>
inline __m256 act8(__m256 v) {
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

// R (1 or 2) consecutive output rows of one image: input rows r[0 .. R + 2), outputs y[0 .. R).
// Two rows at once load each of the 4 input rows' vectors once for both rows that read it
// (12 loads for 18 FMAs instead of 18): each output's sums stay those of one row alone
// (one chain per kernel row, taps in kx order), so the bits do not depend on the pairing.
template <int R, Activation A>
inline void flat8_rows(const float* const* r, float* const* y, int64_t C, int64_t L, int64_t S,
                       const __m256 (&wv)[kTaps], __m256 bias, __m256i tail) {
  auto vec = [&](int64_t e0, auto edge) {
    constexpr bool kEdge = decltype(edge)::value;
    __m256 a[R][3];
    for (int o = 0; o < R; ++o) a[o][0] = bias, a[o][1] = a[o][2] = _mm256_setzero_ps();
    for (int kx = 0; kx < 3; ++kx) {
      const int64_t off = e0 + (kx - 1) * C;
      __m256i m;
      if constexpr (kEdge) m = row_mask(off, L);
      for (int iy = 0; iy < R + 2; ++iy) {
        const __m256 v = kEdge ? _mm256_maskload_ps(r[iy] + off, m) : _mm256_loadu_ps(r[iy] + off);
        for (int o = 0; o < R; ++o)
          if (iy - o >= 0 && iy - o < 3) a[o][iy - o] = _mm256_fmadd_ps(v, wv[(iy - o) * 3 + kx], a[o][iy - o]);
      }
    }
    for (int o = 0; o < R; ++o) {
      const __m256 v = act8<A>(_mm256_add_ps(_mm256_add_ps(a[o][0], a[o][1]), a[o][2]));
      // lanes >= S are rewritten by the next vector; the row's last one stores its own lanes
      // only (never into the next row, which another thread may own)
      if (e0 + kL8 <= L) _mm256_storeu_ps(y[o] + e0, v);
      else _mm256_maskstore_ps(y[o] + e0, tail, v);
    }
  };
  int64_t e0 = 0;
  for (; e0 < L && e0 < C; e0 += S) vec(e0, std::true_type());  // reaches left of the row
  for (; e0 + kL8 + C <= L; e0 += S) vec(e0, std::false_type());
  for (; e0 < L; e0 += S) vec(e0, std::true_type());  // reaches right of the row
}

// Lines [l0, l1) (line = image * H + row) of the forward, with `pairs` two rows of one image
// at a time where both are in the range; A applied before the store.
template <Activation A>
void flat8_lines(const ConvGeometry& g, const float* in, const float* zero, const float (&tv)[kTaps + 1][kL8],
                 float* out, int64_t l0, int64_t l1, bool pairs) {
  // The sizes and pointers as locals (depthwise_flat.cpp's body_locals: read through
  // references, every store made GCC reload them in the vector loop).
  const int64_t C = g.c, H = g.h, L = g.w * g.c, S = step8(C);
  const float* const src = in;
  float* const dst = out;
  __m256 wv[kTaps];
  for (int t = 0; t < kTaps; ++t) wv[t] = _mm256_loadu_ps(tv[t]);
  const __m256 bias = _mm256_loadu_ps(tv[kTaps]);
  const __m256i tail = first_lanes(L % S == 0 ? S : L % S);
  int64_t img = l0 / H, oy = l0 % H;
  for (int64_t line = l0; line < l1;) {
    const int rows = pairs && line + 1 < l1 && oy + 1 < H ? 2 : 1;
    const float* r[4];
    for (int k = 0; k < rows + 2; ++k) {
      const int64_t iy = oy + k - 1;
      r[k] = iy >= 0 && iy < H ? src + (img * H + iy) * L : zero;
    }
    float* const y[2] = {dst + line * L, dst + (line + 1) * L};
    if (rows == 2) flat8_rows<2, A>(r, y, C, L, S, wv, bias, tail);
    else flat8_rows<1, A>(r, y, C, L, S, wv, bias, tail);
    line += rows, oy += rows;
    if (oy == H) oy = 0, ++img;
  }
}

void flat8_pass(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out,
                Activation act) {
  const int64_t C = g.c, L = g.w * g.c, lines = g.n * g.h;
  alignas(32) float tv[kTaps + 1][kL8];
  step_table8(C, step8(C), w, b, tv);
  const std::vector<float> zeros((size_t)L, 0.f);
  // Row pairs (flat8_rows) for inputs up to kPairMaxBytes: paired in one process against
  // single rows (1 thread, CPU time, forward / backward data): N=256 14x14x3 0.89 / 0.87,
  // N=256 7x7x6 0.84 / 0.87, N=256 28x28x1 0.86 / 0.93, N=256 28x28x3 (2.4 MB) 0.96 / 0.96;
  // but from memory 1.3-1.7x slower: N=256 56x56x3 1.46 / 1.39, N=256 28x28x6 1.68 / 1.33,
  // N=32 112x112x3 1.42 / 1.31 (six row streams at once instead of four).
  const bool pairs = g.w * g.c <= kPairMaxRow;
  const bool fused = act == Activation::Linear || act == Activation::Relu || act == Activation::Relu6;
  split_lines(g.n, lines, lines * L >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    switch (act) {
      case Activation::Relu: return flat8_lines<Activation::Relu>(g, in, zeros.data(), tv, out, l0, l1, pairs);
      case Activation::Relu6: return flat8_lines<Activation::Relu6>(g, in, zeros.data(), tv, out, l0, l1, pairs);
      default: return flat8_lines<Activation::Linear>(g, in, zeros.data(), tv, out, l0, l1, pairs);
    }
  });
  if (!fused) activation_inplace_parallel(g.output_size(), out, act);
}

// dw[tap, c] = sum over pixels of dy[p, c] * x[p + tap, c] (the padding's zeros included),
// db[c] = sum dy[p, c]: S-float steps, lane l serving channel l % C (lanes >= S: dy read as 0).
void flat8_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  constexpr int kSums = kTaps + 1;  // + db
  constexpr int64_t kFlushLines = 16;
  const int64_t lines = g.n * g.h, stride = kSums * kL8;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)(max_threads * stride), 0.0);
  int used = 1;
  const std::vector<float> zeros((size_t)(g.w * g.c), 0.f);  // the rows in the vertical padding
#pragma omp parallel if (lines * g.w * g.c >= kParallelGrain)
  {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
    // The sizes and pointers as locals of the region (body_locals).
    const int64_t C = g.c, H = g.h, L = g.w * g.c, S = step8(C);
    const float* const dy_ = dy;
    const float* const x_ = x;
    const float* const zero = zeros.data();
    double* const total = part.data() + t * stride;
    const __m256i live = first_lanes(S);
    const __m256 livef = _mm256_castsi256_ps(live);
    int64_t img = l0 / H, oy = l0 % H;
    // Blocks of kFlushLines lines, the sums in registers over a block (declared in the block,
    // added to the totals after it, so GCC keeps them in registers).
    for (int64_t line = l0; line < l1;) {
      __m256 acc[kSums];
      for (auto& v : acc) v = _mm256_setzero_ps();
      for (const int64_t stop = std::min(l1, line + kFlushLines); line < stop; ++line) {
        const float* d = dy_ + line * L;
        const float* r[3];
        for (int ky = 0; ky < 3; ++ky) {
          const int64_t iy = oy + ky - 1;
          r[ky] = iy >= 0 && iy < H ? x_ + (img * H + iy) * L : zero;
        }
        for (int64_t e0 = 0; e0 < L; e0 += S) {
          if (e0 >= C && e0 + kL8 + C <= L) {  // every tap inside the row: plain loads
            const __m256 dv = _mm256_and_ps(_mm256_loadu_ps(d + e0), livef);
            for (int kx = 0; kx < 3; ++kx)
              for (int ky = 0; ky < 3; ++ky)
                acc[ky * 3 + kx] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(r[ky] + e0 + (kx - 1) * C), acc[ky * 3 + kx]);
            acc[kTaps] = _mm256_add_ps(acc[kTaps], dv);
          } else {
            const __m256 dv = _mm256_maskload_ps(d + e0, _mm256_and_si256(live, first_lanes(L - e0)));
            for (int kx = 0; kx < 3; ++kx) {
              const int64_t off = e0 + (kx - 1) * C;
              const __m256i m = row_mask(off, L);
              for (int ky = 0; ky < 3; ++ky)
                acc[ky * 3 + kx] = _mm256_fmadd_ps(dv, _mm256_maskload_ps(r[ky] + off, m), acc[ky * 3 + kx]);
            }
            acc[kTaps] = _mm256_add_ps(acc[kTaps], dv);
          }
        }
        if (++oy == H) oy = 0, ++img;
      }
      for (int k = 0; k < kSums; ++k) {
        double* tk = total + k * kL8;
        _mm256_storeu_pd(tk, _mm256_add_pd(_mm256_loadu_pd(tk), _mm256_cvtps_pd(_mm256_castps256_ps128(acc[k]))));
        _mm256_storeu_pd(tk + 4, _mm256_add_pd(_mm256_loadu_pd(tk + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(acc[k], 1))));
      }
    }
  }
  // The threads' totals in thread order (deterministic for a thread count), each lane to its channel.
  const int64_t C = g.c, S = step8(C);
  std::vector<double> sum((size_t)(kSums * C), 0.0);
  for (int t = 0; t < used; ++t)
    for (int s2 = 0; s2 < kSums; ++s2)
      for (int64_t l = 0; l < S; ++l) sum[(size_t)(s2 * C + l % C)] += part[(size_t)(t * stride + s2 * kL8 + l)];
  for (int64_t i = 0; i < kTaps * C; ++i) dw[i] = (float)sum[(size_t)i];
  if (db)
    for (int64_t c = 0; c < C; ++c) db[c] = (float)sum[(size_t)(kTaps * C + c)];
}

// 3x3 stride-1 'same' with one kernel per channel: depthwise (M = 1), or a plain conv of one
// channel in and out (groups 1: the same arithmetic, w of 9 floats).
bool flat8_geometry(const ConvGeometry& g) {
  const Window2d& v = g.win;
  const bool one_channel = g.groups == 1 && g.c == 1 && g.oc == 1;
  return (g.is_depthwise() || one_channel) && g.cout_g == 1 && g.c >= 1 && v.kh == 3 && v.kw == 3 && v.sh == 1 && v.sw == 1 &&
         v.dh == 1 && v.dw == 1 && v.pt == 1 && v.pb == 1 && v.pl == 1 && v.pr == 1 && g.oh == g.h &&
         g.ow == g.w && g.w * g.c < (int64_t(1) << 30);
}

}  // namespace

bool depthwise_flat8_applies(const ConvGeometry& g) { return flat8_geometry(g) && g.c <= kFlat8MaxC; }
bool depthwise_flat8_weights_applies(const ConvGeometry& g) { return flat8_geometry(g) && g.c <= kFlat8MaxC; }

void depthwise_flat8_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                             Activation act) {
  flat8_pass(g, x, w, b, y, act);
}

void depthwise_flat8_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  // dx[iy] = sum_ky dy[iy + 1 - ky] * w[ky]: the forward over dy with the taps flipped (the
  // mirrored pads of 'same' 3x3 are 1 again), as depthwise.cpp's backward data.
  float flipped[kTaps * kFlat8MaxC];  // c <= kFlat8MaxC (depthwise_flat8_applies): no heap per call
  for (int t = 0; t < kTaps; ++t) std::copy(w + t * g.c, w + (t + 1) * g.c, flipped + (kTaps - 1 - t) * g.c);
  flat8_pass(g, dy, flipped, nullptr, dx, Activation::Linear);
}

void depthwise_flat8_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                      float* db) {
  flat8_weights(g, dy, x, dw, db);
}

#else

bool depthwise_flat8_applies(const ConvGeometry&) { return false; }
bool depthwise_flat8_weights_applies(const ConvGeometry&) { return false; }
void depthwise_flat8_forward(const ConvGeometry&, const float*, const float*, const float*, float*, Activation) {}
void depthwise_flat8_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {}
void depthwise_flat8_backward_data(const ConvGeometry&, const float*, const float*, float*) {}

#endif

}  // namespace fastconv::cpu::detail
