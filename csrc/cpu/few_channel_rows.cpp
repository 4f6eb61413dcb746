// 3x3 convolutions with C = 1..4 channels in and out, stride 1 or 2, NHWC rows as the vector.
//
// Why: the direct path (direct_conv.cpp) packs input rows into planar phase rows and writes
// its planar results back to NHWC one float at a time. With 9 to 36 multiply-adds per output
// value those copies are the work: a 3x3 C=1 forward (N=256 112x112) ran at 0.12 of copy
// speed, C=3 cases at 0.2-0.35 of the FMA ceiling (benchmarks/sweep_2026-12-06_zen5_after.md).
//
// The flat-row formulation: output float f = ox*C + co of one output row. Kernel column kx
// and input channel ci read the input row, split into SW pixel phases (phase kx % SW, pixel
// ox + kx / SW), at float f + o with o = (kx / SW)*C + (ci - co): a fixed offset per
// (phase, o) for all lanes, with a weight VECTOR whose lane i holds w[ky, kx, ci, co] for the
// (kx, ci) that o means for lane i's channel co = i % C (0 where it means none). So a row is
// plain unaligned loads times weight vectors, 4C - 1 of them per kernel row at stride 1
// (C = 3: 11 FMAs where 9 taps x 3 channels are due, 0.82 of the lanes useful). A vector
// covers S = 16 floats, or 15 for C = 3 (5 whole pixels, so every vector starts at channel 0
// and one weight table serves all of them). The input rows are copied (stride 1) or split
// into pixel phases (stride 2) with zero margins for the padding; the output is stored whole.
//
//   forward          y row = sum over ky, (phase, o) of packed x row [f + o] * W[ky, phase, o]
//   backward data    the forward on dy with the kernel flipped and in/out channels swapped,
//                    pads 2 - p; at stride 2 on dy zero-stuffed in columns (a row packed with
//                    every other pixel zero) and rows (odd rows skipped): half the column
//                    FMAs multiply zeros, and the FMAs were never the cost here.
//   backward weights per (ky, phase, o) one lane vector summing packed x [f + o] * dy[f]
//                    over the pixels; lane i of it belongs to one (kx, ci, co) or to none
//                    (dropped). Per-thread partials, summed in double in thread order.
//
// A zero weight lane still multiplies a neighbouring input (0 * inf is NaN where the
// reference has a number), so a call whose x (forward, weights), dy (backward data) or
// weights hold a non-finite value returns false and the direct path recomputes it; the check
// runs on rows as they are packed (fused into the stride-1 copy, one vector pass from L1 at
// stride 2).
//
// Where it runs: stride 2 (phase split and NHWC writes were the direct path's cost) for the
// backward passes of C = 2..4 (the forward and C = 1 moved to few_channel_s2_planes.cpp, faster
// there), stride 1 only for C = 1 (and C = 2's weight pass): at C >= 2 the direct path's
// planar kernel wastes no lane while this one's FMAs each need their own unaligned load. The
// rule and its measurements are at few_channel_rows_shape.
#include "cpu/few_channel_rows.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

constexpr int L = kRegLanes;  // one register of the level (simd.h)
typedef f32xR vec;

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }

// Floats a vector covers: the lanes, less the ones that would split a pixel (C = 3).
constexpr int step_of(int C) { return L - L % C; }
// The last pixel offset kx / SW of phase ph's kernel columns (kx = ph, ph + SW, ... <= 2).
constexpr int last_q(int sw, int ph) { return (sw == 1 ? 2 : 2 - ph) / sw; }
// Offsets o of phase ph: -(C - 1) .. last_q*C + C - 1.
constexpr int offsets_in(int C, int sw, int ph) { return last_q(sw, ph) * C + 2 * C - 1; }
constexpr int taps_per_ky(int C, int sw) {
  return sw == 1 ? offsets_in(C, 1, 0) : offsets_in(C, 2, 0) + offsets_in(C, 2, 1);
}
// Vectors per step of the row kernels: accumulators that leave registers for the C = 1
// weights (9) and the operands.
constexpr int vectors_per_step(int C) {
  return kVectorRegisters >= 32 ? (C == 1 ? 8 : 4) : (C == 1 ? 4 : 2);
}
constexpr int64_t kMargin = L;  // zeros before each packed row's column 0 (>= C - 1 needed)

// As direct_conv.cpp: below this many multiply-adds a pass runs on the calling thread; packed
// rows of one work item within kPackFloats floats (64 KiB).
constexpr int64_t kParallelWork = 1 << 21;
constexpr int64_t kPackFloats = 1 << 14;

int threads_for(int64_t macs) {
  return macs < kParallelWork ? 1 : std::max(1, get_num_threads());
}
int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// 0 if p[0, n) is all finite, else NaN: exponent bits or-ed (a float add chain here, 4 cycles
// a float, was a fifth of a 14x14 C=1 forward).
inline float scalar_check(const float* p, int64_t n) {
  uint32_t all_ones = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    all_ones |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return all_ones ? __builtin_nanf("") : 0.f;
}

// chk += v - v over p[0, n): its lanes stay 0 while every value is finite, a lane turns NaN at
// an infinity or a NaN. Summed across lanes once per thread (a horizontal sum per row, 16
// dependent adds, was a third of a 28x28 C=1 forward).
// (chk is summed in a local: the caller's chk lives in memory, and a load-add-store of it per
// vector, a store-forwarding chain, was three quarters of the row packing at avx2.)
inline void finite_check(const float* p, int64_t n, vec& chk) {
  vec c = chk;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const vec v = load(p + i);
    c += v - v;
  }
  if (i < n) {
    if (n >= L) {
      const vec v = load(p + n - L);  // the last L floats again
      c += v - v;
    } else {
      c[0] += scalar_check(p, n);
    }
  }
  chk = c;
}
inline bool finite_lanes(vec chk) {
  float s = 0.f;
  for (int k = 0; k < L; ++k) s += chk[k];
  return s == 0.f;
}
bool all_finite(const float* p, int64_t n) {
  vec chk{};
  finite_check(p, n, chk);
  return finite_lanes(chk);
}

// The weight vectors, 3 x taps_per_ky(C, SW), in the kernels' order (ky, phase, o); w is
// HWIO 3x3xCxC. For lane i < S (channel co = i % C) and offset o: (kx / SW)*C + ci = o + co.
template <int C, int SW>
std::vector<vec> weight_table(const float* w) {
  constexpr int S = step_of(C), NT = taps_per_ky(C, SW);
  std::vector<vec> t(3 * NT);
  for (int ky = 0; ky < 3; ++ky) {
    int k = 0;
    for (int ph = 0; ph < SW; ++ph)
      for (int oi = 0; oi < offsets_in(C, SW, ph); ++oi, ++k) {
        vec v{};
        for (int i = 0; i < S; ++i) {
          const int co = i % C, q = oi - (C - 1) + co;
          if (q < 0) continue;
          const int kx = q / C * SW + ph, ci = q % C;
          if (kx <= 2) v[i] = w[((ky * 3 + kx) * C + ci) * C + co];
        }
        t[ky * NT + k] = v;
      }
  }
  return t;
}

// The inverse map for the weight pass: adds each lane of vacc (laid out as weight_table's,
// then one vector of bias-gradient lanes) to its dw entry, or drops it.
template <int C, int SW>
void add_lanes(const vec* vacc, double* out) {
  constexpr int S = step_of(C), NT = taps_per_ky(C, SW);
  for (int ky = 0; ky < 3; ++ky) {
    int k = 0;
    for (int ph = 0; ph < SW; ++ph)
      for (int oi = 0; oi < offsets_in(C, SW, ph); ++oi, ++k)
        for (int i = 0; i < S; ++i) {
          const int co = i % C, q = oi - (C - 1) + co;
          if (q < 0) continue;
          const int kx = q / C * SW + ph, ci = q % C;
          if (kx <= 2) out[((ky * 3 + kx) * C + ci) * C + co] += vacc[ky * NT + k][i];
        }
  }
  for (int i = 0; i < S; ++i) out[9 * C * C + i % C] += vacc[3 * NT][i];
}

// dst[0, n) = src[0, n), with finite_check's chk on the way (rows shorter than a vector: a
// scalar chain, at most L - 1 adds).
// (chk summed in a local, as in finite_check.)
inline void copy_checked(const float* src, float* dst, int64_t n, vec& chk) {
  vec c = chk;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const vec v = load(src + i);
    c += v - v;
    store(dst + i, v);
  }
  if (i < n) {
    if (n >= L) {  // the last L floats again, overlapping
      const vec v = load(src + n - L);
      c += v - v;
      store(dst + n - L, v);
    } else {
      std::memcpy(dst, src, sizeof(float) * n);
      c[0] += scalar_check(src, n);
    }
  }
  chk = c;
}

// Pixel phase ph of a stride-2 row: dst[k*C + ci] = src[2k*C + ci] for k < count. When C
// divides the lanes, L output floats are one two-source permute of 2L input floats (the
// scalar copy was most of a 3x3 stride-2 C=1 pass); the source is read only up to its last
// pixel used. (No finiteness check in here: a per-float check is a dependent chain.)
template <int C>
void split_phase(const float* src, float* dst, int64_t count) {
  int64_t k = 0;
  if constexpr (L % C == 0) {
    typedef int32_t ivec __attribute__((vector_size(4 * L)));
    ivec mask;
    for (int i = 0; i < L; ++i) mask[i] = 2 * C * (i / C) + i % C;
    constexpr int64_t P = L / C;  // pixels per output vector
    // The 2L floats read end at pixel 2k + 2P - 1; the row is known to reach pixel
    // 2*count - 2 only, hence k + P < count.
    for (; k + P < count; k += P)
      store(dst + k * C, __builtin_shuffle(load(src + 2 * k * C), load(src + 2 * k * C + L), mask));
  }
  for (; k < count; ++k)
#pragma GCC unroll 4
    for (int ci = 0; ci < C; ++ci) dst[k * C + ci] = src[2 * k * C + ci];
}

// One input row (w pixels) into SW phase rows of plen floats: phase ph's column j (at dst +
// ph*plen + kMargin + j*C) is padded column j*SW + ph, input pixel j*SW + ph - pl; STUFFED
// (SW 1): padded column p is pixel (p - pl) / 2 when p - pl is even. Only the pixels are
// written: every other float of a row slot is the same zero for every row (the buffers are
// zeroed once; three memsets per row were a fifth of a 28x28 C=1 forward). Adds the row to
// chk (finite_check).
template <int C, int SW, bool STUFFED>
void pack_row(const float* src, int64_t w, int64_t pl, int64_t plen, float* dst, vec& chk) {
  const int64_t cols = (plen - kMargin) / C;  // pixels a phase row holds
  if (STUFFED) {
    float* d = dst + kMargin;
    for (int64_t ix = 0; ix < w && pl + 2 * ix < cols; ++ix)
#pragma GCC unroll 4
      for (int ci = 0; ci < C; ++ci) {
        const float v = src[ix * C + ci];
        d[(pl + 2 * ix) * C + ci] = v;
      }
    finite_check(src, w * C, chk);
    return;
  }
  for (int ph = 0; ph < SW; ++ph) {
    float* d = dst + ph * plen + kMargin;
    const int64_t j0 = std::min(cols, std::max<int64_t>(0, (pl - ph + SW - 1) / SW));
    const int64_t ix0 = j0 * SW + ph - pl;
    const int64_t count =
        ix0 < w ? std::max<int64_t>(0, std::min((w - ix0 + SW - 1) / SW, cols - j0)) : 0;
    if (SW == 1) copy_checked(src + ix0 * C, d + j0 * C, count * C, chk);
    else split_phase<C>(src + ix0 * C, d + j0 * C, count);
  }
  if (SW == 2) finite_check(src, w * C, chk);
}

// acc[o % K][j] += packed[r + o + j*S] * W[o] for phase PH's offsets (r already at
// f - (C - 1)), unrolled over the offsets by the index sequence. K partial sums per vector:
// with 2 FMA pipes of 4 cycles latency 8 independent chains keep them busy (one chain of 33
// FMAs per vector made a C=3 row tail latency-bound, 4x slower than its FMA count).
template <int C, int NV, int K, size_t... O>
inline void phase_taps(vec (&acc)[K][NV], const float* r, const vec* wk, std::index_sequence<O...>) {
  constexpr int S = step_of(C);
  auto tap = [&](int oi) {
    const vec wv = wk[oi];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[oi % K][j] += load(r + oi + j * S) * wv;
  };
  (tap((int)O), ...);
}
template <int C, int SW, int PH, int NV, int K>
inline void phase_taps(vec (&acc)[K][NV], const float* r, const vec* wk) {
  phase_taps<C, NV, K>(acc, r, wk, std::make_index_sequence<offsets_in(C, SW, PH)>());
}

// The first n < L floats of v to p.
inline void store_first(float* p, vec v, int64_t n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#else
  float t[L];
  store(t, v);
  for (int64_t i = 0; i < n; ++i) p[i] = t[i];
#endif
}

// Vectors f, f + S, ..., f + (NV - 1)*S of one output row from rows[ky*SW + ph] (packed
// phase rows at column 0, nullptr: a zero row), the bias included.
template <int C, int SW, int NV, int K>
inline void conv_step(const float* const* rows, const vec* wl, vec bias, int64_t f,
                      vec (&out)[NV]) {
  constexpr int NT = taps_per_ky(C, SW), N0 = offsets_in(C, SW, 0);
  vec acc[K][NV];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < NV; ++j) acc[k][j] = k ? vec{} : bias;
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky) {
    const float* const* rk = rows + ky * SW;
    if (!rk[0]) continue;
    phase_taps<C, SW, 0, NV, K>(acc, rk[0] + f - (C - 1), wl + ky * NT);
    if constexpr (SW == 2)
      phase_taps<C, SW, 1, NV, K>(acc, rk[1] + f - (C - 1), wl + ky * NT + N0);
  }
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    out[j] = acc[0][j];
    for (int k = 1; k < K; ++k) out[j] += acc[k][j];
  }
}

// Vectors a step in the row body, with K chains each, and in the row's tail (two vectors,
// four chains each, the second maybe past the row: packed rows have room for it).
constexpr int kTailVectors = 2;
template <int NV>
constexpr int chains() { return NV >= 8 ? 1 : 8 / NV; }

// One output row of nf = OW*C floats. The stores: whole vectors while they end inside the
// row (with S = 15 each writes one float of the next vector's, which that one rewrites),
// then only the row's floats.
template <int C, int SW, int NV>
void conv_row(const float* const* rows, const vec* W, vec bias, float* out, int64_t nf) {
  constexpr int S = step_of(C), NT = taps_per_ky(C, SW);
  // For C = 1 a local copy of the 9 weight vectors, so they can stay in registers across the
  // row (the stores to `out` may alias W as far as the compiler knows); wider tables are read
  // from L1 by the FMAs.
  vec local[C == 1 ? 3 * NT : 1];
  const vec* wl = W;
  if constexpr (C == 1) {
    for (int k = 0; k < 3 * NT; ++k) local[k] = W[k];
    wl = local;
  }
  int64_t f = 0;
  for (; f + (NV - 1) * S + L <= nf; f += NV * S) {
    vec acc[NV];
    conv_step<C, SW, NV, chains<NV>()>(rows, wl, bias, f, acc);
    for (int j = 0; j < NV; ++j) store(out + f + j * S, acc[j]);
  }
  for (; f < nf; f += kTailVectors * S) {
    vec acc[kTailVectors];
    conv_step<C, SW, kTailVectors, chains<kTailVectors>()>(rows, wl, bias, f, acc);
    for (int j = 0; j < kTailVectors && f + j * S < nf; ++j) {
      if (f + j * S + L <= nf) store(out + f + j * S, acc[j]);
      else store_first(out + f + j * S, acc[j], nf - f - j * S);
    }
  }
}

// A forward-shaped pass: output rows oh x ow from input rows ih x iw (for STUFFED, dy's, seen
// zero-stuffed to 2*ih - 1 x 2*iw - 1), window pads pt, pl.
struct RowsGeom {
  int64_t n, ih, iw, oh, ow, pt, pl;
};

// Work items: blocks of R output rows of one image, their input rows packed once.
struct Items {
  int64_t rows, per_image, count;
  Items(int64_t n, int64_t oh, int64_t fit, int threads) {
    const int64_t spread = threads > 1 ? std::max<int64_t>(1, n * oh / (4 * threads)) : oh;
    rows = std::max<int64_t>(1, std::min({fit, oh, spread}));
    per_image = (oh + rows - 1) / rows;
    count = n * per_image;
  }
};

template <int C, int SW, bool STUFFED>
bool run_rows(const RowsGeom& rg, const float* x, const std::vector<vec>& W, vec bias, float* y,
              Activation act, int threads) {
  constexpr int NV = vectors_per_step(C);
  constexpr int64_t sh = STUFFED ? 1 : SW;
  const int64_t nf = rg.ow * C;
  const int64_t plen = kMargin + round_up(nf + kTailVectors * L + 3 * C, L), prow = SW * plen;
  const int64_t vh = STUFFED ? 2 * rg.ih - 1 : rg.ih;  // input rows as the window sees them
  const int64_t fit = std::max<int64_t>(1, (kPackFloats / prow - 3) / sh + 1);
  const Items items(rg.n, rg.oh, fit, threads);
  const int64_t in_rows = (items.rows - 1) * sh + 3;
  std::atomic<bool> bad{false};
  ExceptionCaptor errors;  // the buffer may not fit in memory (a very wide row)
  parallel_region(threads, [&] {
    note_team();
    std::vector<float> buf;
    std::vector<const float*> ptrs;
    vec chk{};
    errors.run([&] {
      buf.assign((size_t)(in_rows * prow), 0.f);  // zeroed once: pack_row writes only pixels
      ptrs.resize((size_t)(in_rows * SW));
    });
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < items.count; ++i) {
      if (errors.failed() || bad.load(std::memory_order_relaxed)) continue;
      const int64_t n = i / items.per_image, oy0 = (i % items.per_image) * items.rows;
      const int64_t oy1 = std::min(rg.oh, oy0 + items.rows), iy0 = oy0 * sh - rg.pt;
      for (int64_t k = 0; k < (oy1 - oy0 - 1) * sh + 3; ++k) {
        const int64_t q = iy0 + k;
        const float* src = nullptr;
        if (q >= 0 && q < vh && (!STUFFED || q % 2 == 0))
          src = x + (n * rg.ih + (STUFFED ? q / 2 : q)) * rg.iw * C;
        for (int ph = 0; ph < SW; ++ph)
          ptrs[k * SW + ph] = src ? buf.data() + k * prow + ph * plen + kMargin : nullptr;
        if (src) pack_row<C, SW, STUFFED>(src, rg.iw, rg.pl, plen, buf.data() + k * prow, chk);
      }
      for (int64_t oy = oy0; oy < oy1; ++oy)
        conv_row<C, SW, NV>(ptrs.data() + (oy - oy0) * sh * SW, W.data(), bias,
                            y + (n * rg.oh + oy) * nf, nf);
      // The activation on this item's rows while they are in cache.
      if (act != Activation::Linear)
        activation_inplace((oy1 - oy0) * nf, y + (n * rg.oh + oy0) * nf, act);
    }
    if (!finite_lanes(chk)) bad.store(true, std::memory_order_relaxed);
  });
  errors.rethrow();
  return !bad.load();
}

template <int C, int SW>
bool forward_c(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
               Activation act) {
  constexpr int S = step_of(C);
  const std::vector<vec> W = weight_table<C, SW>(w);
  vec bias{};
  if (b)
    for (int i = 0; i < S; ++i) bias[i] = b[i % C];
  const RowsGeom rg{g.n, g.h, g.w, g.oh, g.ow, g.win.pt, g.win.pl};
  return run_rows<C, SW, false>(rg, x, W, bias, y, act, threads_for(g.n * g.oh * g.ow * 9 * C * C));
}

template <int C, int SW>
bool backward_data_c(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  // dx is the stride-1 forward of dy (zero-stuffed at stride 2) with the kernel flipped and
  // in/out channels swapped: wt[ky, kx, co, ci] = w[2 - ky, 2 - kx, ci, co], pads 2 - p.
  std::vector<float> wt(9 * C * C);
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx)
      for (int ci = 0; ci < C; ++ci)
        for (int co = 0; co < C; ++co)
          wt[((ky * 3 + kx) * C + co) * C + ci] = w[(((2 - ky) * 3 + 2 - kx) * C + ci) * C + co];
  const std::vector<vec> W = weight_table<C, 1>(wt.data());
  const RowsGeom rg{g.n, g.oh, g.ow, g.h, g.w, 2 - g.win.pt, 2 - g.win.pl};
  const int threads = threads_for(g.n * g.oh * g.ow * 9 * C * C);
  return run_rows<C, 1, SW == 2>(rg, dy, W, vec{}, dx, Activation::Linear, threads);
}

// acc[o] += packed[r + o] * d for phase PH's offsets (r already at f - (C - 1)).
template <size_t... O>
inline void dw_taps(vec* acc, const float* r, vec d, std::index_sequence<O...>) {
  ((acc[O] += load(r + O) * d), ...);
}
template <int C, int SW, int PH>
inline void dw_phase(vec* acc, const float* r, vec d) {
  dw_taps(acc, r, d, std::make_index_sequence<offsets_in(C, SW, PH)>());
}

// vacc[ky*NT + t] += lane sums over `lines` output rows of one work item: rows[(l*SW + ky)*SW
// + ph] the packed x rows (a zero row for padding), dyp + l*dlen the dy row (nb vectors, zero
// past the row). KG kernel rows at once where their KG*NT accumulators fit the registers
// (C = 1: all 9 taps; one kernel row's 3 chains of one FMA per dy vector were
// latency-bound).
template <int C, int SW>
void dw_lines(const float* const* rows, int64_t lines, const float* dyp, int64_t dlen,
              int64_t nb, vec* vacc) {
  constexpr int S = step_of(C), NT = taps_per_ky(C, SW), N0 = offsets_in(C, SW, 0);
  constexpr int KG = 3 * NT + 2 <= kVectorRegisters ? 3 : 1;
  for (int ky0 = 0; ky0 < 3; ky0 += KG) {
    vec acc[KG * NT];
#pragma GCC unroll 32
    for (int t = 0; t < KG * NT; ++t) acc[t] = vec{};
    for (int64_t l = 0; l < lines; ++l) {
      const float* r[KG][SW];
      for (int k = 0; k < KG; ++k)
        for (int ph = 0; ph < SW; ++ph) r[k][ph] = rows[(l * SW + ky0 + k) * SW + ph] - (C - 1);
      const float* dl = dyp + l * dlen;
      for (int64_t b = 0; b < nb; ++b) {
        const vec d = load(dl + b * S);
#pragma GCC unroll 3
        for (int k = 0; k < KG; ++k) {
          dw_phase<C, SW, 0>(acc + k * NT, r[k][0] + b * S, d);
          if constexpr (SW == 2) dw_phase<C, SW, 1>(acc + k * NT + N0, r[k][1] + b * S, d);
        }
      }
    }
#pragma GCC unroll 32
    for (int t = 0; t < KG * NT; ++t) vacc[ky0 * NT + t] += acc[t];
  }
}

template <int C, int SW>
bool backward_weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                        float* db) {
  constexpr int S = step_of(C), NT = taps_per_ky(C, SW);
  const int64_t nf = g.ow * C, nb = (nf + S - 1) / S, dlen = nb * S + L;
  const int64_t plen = kMargin + round_up(nb * S + L + 3 * C, L), prow = SW * plen;
  const int64_t fit = std::max<int64_t>(1, (kPackFloats / prow - 3) / SW + 1);
  const int threads = threads_for(g.n * g.oh * g.ow * 9 * C * C);
  const Items items(g.n, g.oh, std::max<int64_t>(1, std::min(fit, kPackFloats / dlen)), threads);
  const int64_t in_rows = (items.rows - 1) * SW + 3, psize = 9 * C * C + C;
  std::vector<double> part((size_t)(threads * psize), 0.0);
  int used = 1;
  std::atomic<bool> bad{false};
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    std::vector<float> buf, dbuf;
    std::vector<const float*> ptrs;
    std::vector<vec> vacc;
    vec chk{};
    errors.run([&] {
      buf.assign((size_t)((in_rows + 1) * prow), 0.f);  // + a zero row for the padding
      dbuf.resize((size_t)(items.rows * dlen));
      ptrs.resize((size_t)(in_rows * SW));
      vacc.assign(3 * NT + 1, vec{});
    });
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items.count; ++i) {
      if (errors.failed() || bad.load(std::memory_order_relaxed)) continue;
      const int64_t n = i / items.per_image, oy0 = (i % items.per_image) * items.rows;
      const int64_t lines = std::min(g.oh, oy0 + items.rows) - oy0, iy0 = oy0 * SW - g.win.pt;
      for (int64_t k = 0; k < (lines - 1) * SW + 3; ++k) {
        const int64_t iy = iy0 + k;
        const float* src = iy >= 0 && iy < g.h ? x + (n * g.h + iy) * g.w * C : nullptr;
        for (int ph = 0; ph < SW; ++ph)
          ptrs[k * SW + ph] = buf.data() + (src ? k : in_rows) * prow + ph * plen + kMargin;
        if (src) pack_row<C, SW, false>(src, g.w, g.win.pl, plen, buf.data() + k * prow, chk);
      }
      vec vdb = vacc[3 * NT];
      for (int64_t l = 0; l < lines; ++l) {
        float* d = dbuf.data() + l * dlen;
        std::memcpy(d, dy + ((n * g.oh + oy0 + l) * g.ow) * C, sizeof(float) * nf);
        std::memset(d + nf, 0, sizeof(float) * (dlen - nf));
        for (int64_t b = 0; b < nb; ++b) vdb += load(d + b * S);
      }
      vacc[3 * NT] = vdb;
      dw_lines<C, SW>(ptrs.data(), lines, dbuf.data(), dlen, nb, vacc.data());
    }
    if (!finite_lanes(chk)) bad.store(true, std::memory_order_relaxed);
    if (!errors.failed()) add_lanes<C, SW>(vacc.data(), part.data() + t * psize);
  });
  errors.rethrow();
  if (bad.load()) return false;
  for (int64_t k = 0; k < psize; ++k) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * psize + k];
    if (k < 9 * C * C) dw[k] = (float)s;
    else if (db) db[k - 9 * C * C] = (float)s;
  }
  return true;
}

// One call per (C, stride) the rule below admits for the pass.
#define FASTCONV_FEW_ROWS_CASE(C, SW, fn, ...) \
  case C * 2 + SW - 1:                         \
    return fn<C, SW>(__VA_ARGS__);

}  // namespace

// The rule, from 1-thread timings against the direct path (bench_sweep.py --families "conv
// 3x3" --all-cases, CPU clock, before/after builds, Emerald Rapids at load 0.2-2; C = 2 and 4
// from the same passes timed alone; ms direct/here, N=256 unless noted):
//                     forward              backward data        backward weights
//   C=1 s2 56x56      0.627/0.375          0.796/0.284          0.594/0.407
//   C=1 s2 112x112    1.598/1.181          2.823/1.165          1.659/1.244
//   C=3 s2 28x28      0.514/0.498          0.503/0.454          0.602/0.462
//   C=3 s2 56x56      1.941/1.554          1.604/1.509          2.021/1.664
//   C=3 s2 112x112    7.442/7.248          5.830/6.923          7.580/10.546
//   C=2 s2 28x28      0.576/0.262          0.442/0.252          0.442/0.268
//   C=4 s2 28x28      0.964/0.818          0.922/0.909          1.064/0.843
//   C=4 s2 N=32 112   0.940/1.117          1.012/1.594          1.258/1.284
//   C=1 s1 112x112    2.352/2.148          2.455/1.988          2.921/2.276
//   C=1 s1 56x56      0.649/0.590          0.586/0.608          0.670/0.656
//   C=1 s1 28x28      0.166/0.148          0.146/0.133          0.175/0.216
//   C=1 s1 14x14      0.074/0.086          0.070/0.084          0.080/0.088
//   C=2 s1 56x56      1.752/2.122          1.582/1.761          2.370/1.892
//   C=3 s1 56x56      2.547/3.857          2.529/3.831          3.551/4.913
// At stride 2 the direct path's phase split and planar-to-NHWC writes cost most; at stride 1
// its planar kernel wastes no lane while this one's 4C - 1 weight vectors per kernel row
// (each FMA with its own unaligned load) lose from C = 2 on, and short C = 1 rows lose to the
// per-row costs; rows of 112 x 3 floats and more lose at stride 2 too (C = 3 and 4, except
// C = 3's forward). Hence the rule below.
bool few_channel_rows_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && g.c >= 1 && g.c <= 4 && v.kh == 3 &&
                        v.kw == 3 && v.dh == 1 && v.dw == 1 && v.sh == v.sw &&
                        (v.sh == 1 || v.sh == 2) && v.pt >= 0 && v.pt <= 2 && v.pl >= 0 &&
                        v.pl <= 2 && g.n > 0 && g.oh > 0 && g.ow > 0 && g.h > 0 && g.w > 0;
  if (!eligible) return false;
  // Stride 2: the forward and C = 1 run on few_channel_s2_planes.cpp (faster in paired
  // timings there); those shapes are no longer dispatched here.
  if (v.sh == 2)
    return g.c >= 2 && pass != ConvPass::Forward && (g.c == 2 || g.w <= 64);
  if (g.c == 1) return g.w >= (pass == ConvPass::BackwardWeights ? 64 : 28);
  return g.c == 2 && pass == ConvPass::BackwardWeights;
}

bool few_channel_rows_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act) {
  if (!all_finite(w, 9 * g.c * g.c)) return false;
  switch (g.c * 2 + g.win.sh - 1) {
    FASTCONV_FEW_ROWS_CASE(1, 1, forward_c, g, x, w, b, y, act)
    default: return false;
  }
}

bool few_channel_rows_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx) {
  if (!all_finite(w, 9 * g.c * g.c)) return false;
  switch (g.c * 2 + g.win.sh - 1) {
    FASTCONV_FEW_ROWS_CASE(1, 1, backward_data_c, g, dy, w, dx)
    FASTCONV_FEW_ROWS_CASE(2, 2, backward_data_c, g, dy, w, dx)
    FASTCONV_FEW_ROWS_CASE(3, 2, backward_data_c, g, dy, w, dx)
    FASTCONV_FEW_ROWS_CASE(4, 2, backward_data_c, g, dy, w, dx)
    default: return false;
  }
}

bool few_channel_rows_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db) {
  switch (g.c * 2 + g.win.sh - 1) {
    FASTCONV_FEW_ROWS_CASE(1, 1, backward_weights_c, g, dy, x, dw, db)
    FASTCONV_FEW_ROWS_CASE(2, 1, backward_weights_c, g, dy, x, dw, db)
    FASTCONV_FEW_ROWS_CASE(2, 2, backward_weights_c, g, dy, x, dw, db)
    FASTCONV_FEW_ROWS_CASE(3, 2, backward_weights_c, g, dy, x, dw, db)
    FASTCONV_FEW_ROWS_CASE(4, 2, backward_weights_c, g, dy, x, dw, db)
    default: return false;
  }
}

}  // namespace fastconv::cpu::detail
