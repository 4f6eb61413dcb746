// 3x3 stride-2 forward with C = 3 or 6 channels in and out at the avx2 level (8-lane ymm),
// on each input row's flat NHWC floats split into its even and odd floats.
//
// Why: at avx2 these forwards ran on the column-phase planes (few_channel_s2_planes.cpp),
// whose pack splits C-channel pixel pairs into planar even / odd / even-one-on rows with
// two-source permutes (pixel_transpose::split, then the phase shuffles; at 8 lanes each a
// vpermps pair and a blend, the masks reloaded from memory) and whose results go back to
// NHWC through merge<C>: perf on an AVX2-only EPYC (N=256 56x56 C=3, 1 thread) put ~48% of
// the kernel's samples in the pack. The AVX-512 kernels that replaced the planes there
// (few_channel_s2_patch_fwd3.cpp, _patch_fwd.cpp) need masked loads and 32 registers.
//
// Here no transpose at all. In one padded input row (flat f = C*col + ci) output pixel ox,
// channel co of that row's ky sums xp[2C*ox + m] * w[ky][m / C][m % C][co] over m < 3C. With
// q = C*ox + co the flat output index, 2C*ox + m = 2(q - co) + m, so for even m = 2k the
// float is E[q + d] and for odd m = 2k + 1 it is O[q + d], d = k - co, where E and O are the
// row's even and odd floats (two vshufps and two vpermpd per 16 floats). A vector of 8
// consecutive flat outputs (any mix of pixels and channels) is then sum over d of
// E[q + d] * WE[d] + O[q + d] * WO[d]: unaligned loads at a fixed offset per d, weight
// vectors whose lane l holds w of (m = 2(d + co) [+ 1], co = (q + l) % C) or 0 where m is
// outside the patch. The pattern repeats every 24 floats (8 pixels at C = 3, 4 at C = 6), so
// three phases of weight vectors. Per output vector 3 * (7 + 6) multiply-adds at C = 3
// (3 * 28 at C = 6): 0.69 (0.64) of the lanes are real taps, against the planes' 9C loads,
// 9C*C broadcasts and the pack and merge per C vectors. The outputs come out in NHWC order
// and are stored as they are; the last vector of a row writes past the row end into the
// next row (rewritten when that row is computed), except the last row of an item, which
// goes through a stack copy.
//
// NaN and inf: the zero-weight lanes multiply the neighbouring pixels' floats by 0, which
// would turn an inf or NaN there into NaN where the reference has none. Each input row's
// floats are checked while they are split (sum of x * 0); an output row that reads a row
// with a non-finite float is computed by a plain loop over its taps instead, zeros
// multiplied for the padding as the reference does. The vector path multiplies the padding's
// zeros by their real weights too, so an inf or NaN weight gives the reference's pattern.
#include "cpu/few_channel_s2_flat_avx2.h"

#if defined(__AVX2__) && !defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

constexpr int L = 8;
typedef float v8 __attribute__((vector_size(32)));

inline v8 ld(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void st(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

// acc += w * p[0..8), one vfmadd231ps with the row load as its memory operand, in program
// order: written as vector arithmetic, GCC reordered the unrolled taps vector by vector
// (all of one accumulator's 39 products first), keeping every weight vector live and
// spilling them to the stack (1.4-2.3x the planes' time).
inline void fma_row(v8& acc, v8 w, const float* p) {
  asm volatile("vfmadd231ps %[m], %[w], %[a]"
               : [a] "+x"(acc)
               : [w] "x"(w), [m] "m"(*(const float(*)[8])p));
}

// The offsets d of the even (nE, from -(C-1) to (3C-1)/2) and odd (nO) floats a flat output
// reads; 24 floats a period of the lanes' channels (three phases of weight vectors).
template <int C>
struct Taps {
  static_assert(24 % C == 0);
  static constexpr int dlo = -(C - 1);
  static constexpr int nE = (3 * C - 1) / 2 + C;
  static constexpr int nO = (3 * C - 2) / 2 + C;
  static constexpr int nT = nE + nO;
  static constexpr int dmax = (3 * C - 1) / 2;
};

// wt[((ky*3 + r)*nT + t)*8 + l]: phase r's weight vector of tap slot t (the even floats'
// offsets first, then the odd ones'), 0 where the lane's channel has no such tap.
template <int C>
std::vector<float> weight_table(const float* w) {
  using T = Taps<C>;
  std::vector<float> wt((size_t)9 * T::nT * L, 0.f);
  for (int ky = 0; ky < 3; ++ky)
    for (int r = 0; r < 3; ++r)
      for (int t = 0; t < T::nT; ++t)
        for (int l = 0; l < L; ++l) {
          const int co = (8 * r + l) % C;
          const int d = T::dlo + (t < T::nE ? t : t - T::nE);
          const int m = 2 * (d + co) + (t < T::nE ? 0 : 1);
          if (m < 0 || m >= 3 * C) continue;
          wt[(size_t)(((ky * 3 + r) * T::nT + t) * L + l)] =
              w[((ky * 3 + m / C) * C + m % C) * C + co];
        }
  return wt;
}

// One thread's rows: a zero-margined staging copy of an input row and the even / odd floats
// of the last three input rows (slot r % 3), OFF floats of margin before index 0.
template <int C>
class FlatRows {
 public:
  static constexpr int64_t OFF = 8;
  FlatRows(const ConvGeometry& g, int64_t fcomp)
      : g_(g), elen_((OFF + fcomp + Taps<C>::dmax + 1 + 7) / 8 * 8) {}
  void allocate() {
    buf_.assign((size_t)(2 * elen_ + 8 * elen_), 0.f);
    // Per 8-float chunk of the padded row: 0 outside x, 1 inside, 2 masked (its lanes in x).
    const int64_t n = C * std::max<int64_t>(0, std::min(g_.w, 2 * g_.ow + 1 - g_.win.pl));
    kind_.assign((size_t)(2 * elen_ / 8), 0);
    masks_.assign((size_t)(2 * elen_ / 8), _mm256_setzero_si256());
    for (int64_t j = 0; j < 2 * elen_ / 8; ++j) {
      const int64_t f0 = 8 * j - 2 * OFF - C * g_.win.pl;
      alignas(32) int32_t m[8];
      int cnt = 0;
      for (int i = 0; i < 8; ++i) cnt += (m[i] = f0 + i >= 0 && f0 + i < n ? -1 : 0) != 0;
      kind_[(size_t)j] = cnt == 0 ? 0 : cnt == 8 ? 1 : 2;
      masks_[(size_t)j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
    }
    reset();
  }
  void reset() { tag_[0] = tag_[1] = tag_[2] = -1; }

  // Input row r (-pt-based padded index 2*oy + ky - pt) of image img: E and O pointers at
  // flat index 0, and whether its floats are all finite.
  bool row(const float* img, int64_t r, const float*& e, const float*& o) {
    if (r < 0 || r >= g_.h) {
      e = zeros() + OFF, o = zeros() + elen_ + OFF;
      return true;
    }
    const int s = (int)(r % 3);
    float* E = slot(s);
    float* O = E + elen_;
    e = E + OFF, o = O + OFF;
    if (tag_[s] == r) return finite_[s];
    tag_[s] = r;
    // Straight from x: chunk j of 8 floats is the padded row's flat floats 8j - 2*OFF ..,
    // whole loads inside the row, masked ones (vmaskmovps loads: the masked lanes are not
    // read) at its ends, zeros outside. Through a staging copy (memcpy, then loads at
    // another alignment) the loads waited on store forwarding: ~15% of a 14x14 forward.
    const float* src = img + r * g_.w * C;
    v8 chk{};
    auto chunk = [&](int64_t j) -> __m256 {
      const int64_t f0 = 8 * j - 2 * OFF - C * g_.win.pl;
      const int kind = kind_[(size_t)j];
      if (kind == 0) return _mm256_setzero_ps();
      const __m256 v = kind == 1 ? _mm256_loadu_ps(src + f0)
                                 : _mm256_maskload_ps(src + f0, masks_[(size_t)j]);
      chk += (v8)v * 0.f;
      return v;
    };
    for (int64_t k = 0; k < elen_; k += L) {
      const __m256 a = chunk(k / 4), b = chunk(k / 4 + 1);
      const __m256 ev = _mm256_shuffle_ps(a, b, 0x88), od = _mm256_shuffle_ps(a, b, 0xdd);
      _mm256_storeu_ps(E + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xd8)));
      _mm256_storeu_ps(O + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xd8)));
    }
    finite_[s] = _mm256_movemask_ps(_mm256_cmp_ps((__m256)chk, (__m256)chk, _CMP_UNORD_Q)) == 0;
    return finite_[s];
  }

 private:
  float* slot(int s) { return buf_.data() + 2 * elen_ + 2 * s * elen_; }
  const float* zeros() const { return buf_.data() + 8 * elen_; }

  const ConvGeometry& g_;
  const int64_t elen_;
  std::vector<float> buf_;  // (unused 2*elen), three slots of E and O, a zero E and O
  std::vector<int> kind_;
  std::vector<__m256i> masks_;
  int64_t tag_[3];
  bool finite_[3];
};

// G blocks of 24 flat outputs from q0 (G*3 vectors): acc = bias + sum over ky and the taps.
// Stores whole vectors that start in the row and end within `avail` floats of its start (the
// item's rows from this one on: past the row they land where later rows are written), the
// part below F of the others through the stack.
template <int C, int G>
__attribute__((noinline)) void step(const float* const (&e)[3], const float* const (&o)[3], const float* wt,
                 const v8 (&bias)[3], int64_t q0, int64_t F, int64_t avail, float* yrow) {
  using T = Taps<C>;
  // K independent chains per vector (one per ky, and per ky and parity for G <= 2): one
  // chain per vector was bound by the multiply-add latency (a 28x28 C=3 forward 1.5-1.8x
  // the planes' time); 12 accumulators at most, with the weight and a row load 14 registers.
  constexpr int K = G >= 3 ? 3 : 6;
  for (int r = 0; r < 3; ++r) {
    if (q0 + 8 * r >= F) break;
    v8 acc[G][K];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 6
      for (int k = 0; k < K; ++k) acc[g][k] = k ? v8{} : bias[r];
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky) {
      const float* wk = wt + (ky * 3 + r) * T::nT * L;
      const float* eq = e[ky] + q0 + 8 * r + T::dlo;
      const float* oq = o[ky] + q0 + 8 * r + T::dlo;
      constexpr int per = K / 3;
#pragma GCC unroll 28
      for (int t = 0; t < T::nE; ++t) {
        const v8 wv = ld(wk + t * L);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) fma_row(acc[g][ky * per], wv, eq + 24 * g + t);
      }
#pragma GCC unroll 28
      for (int t = 0; t < T::nO; ++t) {
        const v8 wv = ld(wk + (T::nE + t) * L);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) fma_row(acc[g][ky * per + per - 1], wv, oq + 24 * g + t);
      }
    }
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 5
      for (int k = 1; k < K; ++k) acc[g][0] += acc[g][k];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const int64_t qs = q0 + 24 * g + 8 * r;
      if (qs < F && qs + L <= avail) {
        st(yrow + qs, acc[g][0]);
      } else if (qs < F) {
        float tmp[L];
        st(tmp, acc[g][0]);
        std::memcpy(yrow + qs, tmp, sizeof(float) * (F - qs));
      }
    }
  }
}

// Output row oy of image n the reference's way (a row that reads a non-finite x float).
template <int C>
void plain_row(const ConvGeometry& g, const float* img, const float* w, const float* b,
               int64_t oy, float* yrow) {
  for (int64_t ox = 0; ox < g.ow; ++ox)
    for (int co = 0; co < C; ++co) {
      float s = b ? b[co] : 0.f;
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t r = 2 * oy + ky - g.win.pt, c = 2 * ox + kx - g.win.pl;
          const bool in = r >= 0 && r < g.h && c >= 0 && c < g.w;
          for (int ci = 0; ci < C; ++ci)
            s += (in ? img[(r * g.w + c) * C + ci] : 0.f) * w[((ky * 3 + kx) * C + ci) * C + co];
        }
      yrow[ox * C + co] = s;
    }
}

template <int C>
void forward_flat(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                  Activation act) {
  const int64_t F = C * g.ow, fcomp = (F + 23) / 24 * 24;
  const int threads =
      g.n * g.oh * g.ow * 9 * C * C < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
  // Items of R output rows: whole images unless there are too few of them for the team.
  const int64_t chunks =
      threads > 1 ? std::clamp<int64_t>((4 * threads + g.n - 1) / g.n, 1, g.oh) : 1;
  const int64_t R = (g.oh + chunks - 1) / chunks, per_image = (g.oh + R - 1) / R;
  const std::vector<float> wt = weight_table<C>(w);
  v8 bias[3];
  for (int r = 0; r < 3; ++r)
    for (int l = 0; l < L; ++l) bias[r][l] = b ? b[(8 * r + l) % C] : 0.f;
  const int64_t image = g.h * g.w * C;
  const bool ahead = 4 * g.n * image >= (int64_t(1) << 20);  // x past L2 (as stride2::LinePrefetch)
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    FlatRows<C> rows(g, fcomp);
    errors.run([&] { rows.allocate(); });
#pragma omp for schedule(static)
    for (int64_t it = 0; it < g.n * per_image; ++it) {
      if (errors.failed()) continue;
      const int64_t n = it / per_image, oy0 = (it % per_image) * R;
      const int64_t oy1 = std::min(g.oh, oy0 + R);
      const float* img = x + n * image;
      rows.reset();
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        float* yrow = y + (n * g.oh + oy) * F;
        const float* e[3];
        const float* o[3];
        bool finite = true;
        for (int ky = 0; ky < 3; ++ky) finite &= rows.row(img, 2 * oy + ky - g.win.pt, e[ky], o[ky]);
        if (!finite) {
          plain_row<C>(g, img, w, b, oy, yrow);
          continue;
        }
        // The two new input rows of output row oy + 2, into L2 while this row computes (the
        // rows' first loads otherwise wait on L3 or DRAM: the hardware prefetcher sees no
        // accesses to them in between).
        if (ahead)
          for (int k = 1; k <= 2; ++k) {
            const int64_t r = 2 * (oy + 2) + k - g.win.pt;
            if (r < 0 || r >= g.h || oy + 2 >= oy1) continue;
            const char* p = (const char*)(img + r * g.w * C);
            for (int64_t off = 0; off < 4 * g.w * C; off += 64) __builtin_prefetch(p + off, 0, 2);
          }
        const int64_t avail = (oy1 - oy) * F;
        int64_t q0 = 0;
        for (; q0 + 96 <= F + 23; q0 += 96) step<C, 4>(e, o, wt.data(), bias, q0, F, avail, yrow);
        switch ((F - q0 + 23) / 24) {
          case 3: step<C, 3>(e, o, wt.data(), bias, q0, F, avail, yrow); break;
          case 2: step<C, 2>(e, o, wt.data(), bias, q0, F, avail, yrow); break;
          case 1: step<C, 1>(e, o, wt.data(), bias, q0, F, avail, yrow); break;
          default: break;
        }
      }
      if (act != Activation::Linear)
        activation_inplace((oy1 - oy0) * F, y + (n * g.oh + oy0) * F, act);
    }
  });
  errors.rethrow();
}

}  // namespace

bool s2_flat_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                     float* y, Activation act) {
  switch (g.c) {
    case 3: return forward_flat<3>(g, x, w, b, y, act), true;
    case 6: return forward_flat<6>(g, x, w, b, y, act), true;
  }
  return false;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool s2_flat_forward(const ConvGeometry&, const float*, const float*, const float*, float*,
                     Activation) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
