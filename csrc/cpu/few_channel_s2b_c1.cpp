// The 3x3 stride-2 forward with one channel in and out at the avx2 level, straight from the
// rows with in-lane shuffles only (helper B, stop 39).
//
// Why: few_channel_s2_c1_avx2.cpp's forward splits the 17 input columns a vector of 8
// outputs reads from each input row into even / odd / even-one-on registers with
// __builtin_shuffle over two registers (GCC: two vpermps with their index loads and a blend
// each) and a lane-crossing shift with a scalar for the third: about 9 shuffle operations per
// input row against 3 multiply-adds, 5 rows per pair of output vectors, so the shuffle
// ports, not the 18 multiply-adds, set the pace (the sweep had N=256 56x56 at 0.076 of the
// FMA ceiling).
//
// Here the even and odd columns come from one vshufps each (0x88, 0xDD) of the two loads
// a = x[base .. base + 8), b = x[base + 8 .. base + 16), and the even-one-on columns from a
// vshufps of two more loads at base + 2 (loads are cheap, lane-crossing shuffles are not).
// vshufps stays inside 128-bit halves, so all three registers hold the outputs in the order
// 0 1 4 5 2 3 6 7; the multiply-adds do not care, and one vpermpd per output vector puts the
// sums back in order before the store. Columns and rows outside x are zeros (masked loads,
// vmaskmovps, whose masked lanes are not read) multiplied like the reference's zero padding,
// so NaN and inf land where the reference puts them; the weights are vectors in memory
// (memory operands of the multiply-adds: 16 registers). Two output rows per 5 input rows, as
// the kernel it replaces.
#include "cpu/few_channel_s2b.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

namespace {

// The vmaskmovps mask of lanes [lo, hi) of 8, clipped.
inline __m256i lanes8(int64_t lo, int64_t hi) {
  alignas(32) int32_t m[8];
  for (int i = 0; i < 8; ++i) m[i] = i >= lo && i < hi ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

// The loads of the vector of outputs from column ox (base = 2*ox - pl): a, b at base and
// base + 8, a2, b2 at base + 2 and base + 10; full: all four inside the row.
struct Masks {
  __m256i a, b, a2, b2;
  bool full;
};

struct Cols {
  __m256 e, o, n;  // x[base + 2i], x[base + 2i + 1], x[base + 2i + 2], lanes 0 1 4 5 2 3 6 7
};

inline Cols cols(const float* row, int64_t base, const Masks& m) {
  if (!row) return {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const float* p = row + base;  // may lie before the row: the masked lanes are not read
  __m256 a, b, a2, b2;
  if (m.full) {
    a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    a2 = _mm256_loadu_ps(p + 2), b2 = _mm256_loadu_ps(p + 10);
  } else {
    a = _mm256_maskload_ps(p, m.a), b = _mm256_maskload_ps(p + 8, m.b);
    a2 = _mm256_maskload_ps(p + 2, m.a2), b2 = _mm256_maskload_ps(p + 10, m.b2);
  }
  return {_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD),
          _mm256_shuffle_ps(a2, b2, 0x88)};
}

// Up to 8 output columns (one vector, nothing to overlap) and from an x of 8 MiB (the pass
// bound by memory) the kernel above stays: paired, 1 thread, CPU time, N=256, time / its:
// 7x7 1.01, 14x14 0.98-1.03, 16x16 1.03, 112x112 0.99-1.03 (12.8 MB), against 56x56 0.80-0.83,
// 28x28 0.70-0.77, N=32 112x112 0.84-0.87.
constexpr int64_t kMaxInputBytes = int64_t(8) << 20;

}  // namespace

bool s2b_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act) {
  const Window2d& v = g.win;
  if (!(g.groups == 1 && g.c == 1 && g.oc == 1 && v.kh == 3 && v.kw == 3 && v.dh == 1 &&
        v.dw == 1 && v.sh == 2 && v.sw == 2 && v.pt >= 0 && v.pt <= 2 && v.pl >= 0 &&
        v.pl <= 2 && g.n > 0 && g.oh > 0 && g.w > 0 && g.h > 0 && g.ow > 8 &&
        4 * g.n * g.h * g.w <= kMaxInputBytes))
    return false;
  const int64_t pairs = (g.oh + 1) / 2, items = g.n * pairs, W = g.w;
  const int threads =
      items * g.ow * 9 < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
  const __m256 bias = _mm256_set1_ps(b ? b[0] : 0.f);
  alignas(32) float wv[9][8];
  for (int t = 0; t < 9; ++t)
    for (int l = 0; l < 8; ++l) wv[t][l] = w[t];
  // Vectors at ox = 0, 8, ..., the last one ending at OW (overlapping the one before: its
  // first outputs computed twice, the same floats) rather than stored in part through the
  // stack (~9% of the samples at N=256 56x56: 28 columns).
  std::vector<int64_t> xs;
  for (int64_t ox = 0; ox + 8 < g.ow; ox += 8) xs.push_back(ox);
  xs.push_back(g.ow - 8);
  std::vector<Masks> masks;
  for (const int64_t ox : xs) {
    const int64_t base = 2 * ox - v.pl;
    masks.push_back({lanes8(-base, W - base), lanes8(-base - 8, W - base - 8),
                     lanes8(-base - 2, W - base - 2), lanes8(-base - 10, W - base - 10),
                     base >= 0 && base + 18 <= W});
  }
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / pairs, oy = (it % pairs) * 2;
      const bool two = oy + 1 < g.oh;
      const float* rows[5];
      for (int k = 0; k < 5; ++k) {
        const int64_t r = 2 * oy + k - v.pt;
        rows[k] = r >= 0 && r < g.h && (k < 3 || two) ? x + (n * g.h + r) * W : nullptr;
      }
      float* y0 = y + (n * g.oh + oy) * g.ow;
      for (size_t j = 0; j < xs.size(); ++j) {
        const int64_t ox = xs[j], base = 2 * ox - v.pl;
        const Masks& m = masks[j];
        // Row k feeds output row 0 as ky = k (k <= 2) and row 1 as ky = k - 2 (k >= 2); two
        // chains an output row (even / odd k) for the latency.
        __m256 acc0 = bias, acc0b = _mm256_setzero_ps(), acc1 = bias, acc1b = acc0b;
#pragma GCC unroll 5
        for (int k = 0; k < 5; ++k) {
          const Cols q = cols(rows[k], base, m);
          if (k <= 2) {
            __m256& a = k % 2 ? acc0b : acc0;
            a = _mm256_fmadd_ps(q.e, _mm256_load_ps(wv[k * 3]), a);
            a = _mm256_fmadd_ps(q.o, _mm256_load_ps(wv[k * 3 + 1]), a);
            a = _mm256_fmadd_ps(q.n, _mm256_load_ps(wv[k * 3 + 2]), a);
          }
          if (k >= 2) {
            __m256& a = k % 2 ? acc1b : acc1;
            a = _mm256_fmadd_ps(q.e, _mm256_load_ps(wv[(k - 2) * 3]), a);
            a = _mm256_fmadd_ps(q.o, _mm256_load_ps(wv[(k - 2) * 3 + 1]), a);
            a = _mm256_fmadd_ps(q.n, _mm256_load_ps(wv[(k - 2) * 3 + 2]), a);
          }
        }
        // Lanes 0 1 4 5 2 3 6 7 back in order: 64-bit pairs 0 2 1 3.
        const __m256 r0 = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_add_ps(acc0, acc0b)), 0xD8));
        const __m256 r1 = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_add_ps(acc1, acc1b)), 0xD8));
        _mm256_storeu_ps(y0 + ox, r0);
        if (two) _mm256_storeu_ps(y0 + g.ow + ox, r1);
      }
      if (act != Activation::Linear) activation_inplace((1 + two) * g.ow, y0, act);
    }
  });
  return true;
}

#else

bool s2b_c1_forward(const ConvGeometry&, const float*, const float*, const float*, float*,
                    Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
