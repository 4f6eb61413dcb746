// Depthwise 3x3, stride 1, undilated, few channels (AVX-512, narrow_applies): one output
// row as each channel block's sliding window along the row (depthwise.cpp's gather_pass
// calls narrow_row3 for these; its head comment has the pass as a whole).
//
// Why: at 16..32 channels a pixel is one or two vectors and the images are small (the
// sweep's N=256 14x14 / 7x7, N=32 28x28), so the tiles of tiled_row3 spent their time
// around the FMAs: perf of N=256 14x14x16 forward, before: tile3 (4 columns) 16%, the
// checked tiles of the row's ends (4 and 2 columns) 13%, tiled_row3's loop (tile switch,
// the next output row's requests) 7%, walk_lines 10%, of the kernel's ~45%. Here a block's
// 9 weights stay in registers for the whole row, each output column loads the one new
// input column of each kernel row (3 loads, 9 FMAs, 1 store), and the padding columns are
// zero vectors: no checked tile, no tile switch.
// The 8 channels left over at C = 24 (any C % 16 in 1..8) run in 8-lane (ymm) vectors: a
// masked 16-lane block costs the FMA slots of a full one (a zmm FMA is two ymm FMAs on
// Zen 4's 256-bit datapath), so the ymm tail does C = 24 in 3/4 of the FMA time.
// Sums are formed as in tile3 (one accumulator per kernel row, bias in the first, taps in
// kx order, then (r0 + r1) + r2), so both paths give the same bits (checked against main's
// build at C = 16, 20, 24, 32, 48, and in tests/test_depthwise_narrow.py against the tiles).
// Paired in one process against main's tiles (ab_two_builds.py, 1 thread, CPU time, 3 runs,
// load 8-9), forward ms: N=256 14x14x16 0.65 -> 0.42, x24 1.34 -> 0.90, N=32 28x28x32 0.57
// -> 0.49, N=256 7x7x32 0.29 -> 0.14, x16 0.18 -> 0.07; the backward data alike (RESULTS.md,
// helper Z stop 36). Tried: requesting the next line's new input row (into L1, one row
// ahead; into L2, two ahead): 1.02-1.09x and 1.0-1.2x slower.

#pragma once
#include "cpu/act_register.h"
#include "cpu/depthwise_gather.h"

namespace fastconv::cpu::detail {

namespace {

#if defined(__AVX512F__)
// Which rows come here (gather_pass): C <= 32, and C <= 64 with rows of up to 4096 floats
// (16 KB: the three input rows a block walks stay in L1 while the next block walks them).
// Paired in one process against the tiles (ab_two_builds.py, 1 thread, CPU time, two runs,
// load ~7), forward: N=256 7x7x48 0.69, N=32 14x14x48 0.57, N=1 56x56x48 0.61, N=256
// 14x14x48 0.93 / 0.97, N=256 7x7x64 0.81, N=32 14x14x64 0.78, N=1 56x56x64 0.77, N=1
// 28x28x64 0.60; but N=1 112x112x48 1.11 / 1.49 and 112x112x64 1.03 / 1.19 (rows of 5376
// and 7168 floats: each block re-reads the three rows from L2). At C <= 32 the 112-wide rows
// gain too (N=1 112x112x32 0.79, x24 0.68, x16 0.50).
constexpr int64_t kNarrowMaxC = 64, kNarrowAlwaysC = 32, kNarrowRowFloats = 4096;
inline bool narrow_applies(int64_t c, int64_t iw) {
  return c <= kNarrowAlwaysC || (c <= kNarrowMaxC && iw * c <= kNarrowRowFloats);
}
// 'same' 3x3 with C < 16 (depthwise_flat.cpp's pass: vectors along the flat row, S = 16 / C
// * C floats a step) comes here from C = 6 when the pass is not streamed (gather_pass):
// 6..8 channels in one 8-lane vector do the same FMA work per float as the flat steps (6 of
// 8 lanes against 12 of 16) with a third of the loads and no edge masks. Paired in one
// process, flat -> here, forward: N=32 28x28 C=4 1.13, C=5 0.90, C=6 0.55, C=7 0.63, C=8
// 0.63, C=9 0.50, C=12 0.62, C=15 0.75; N=256 14x14 C=4 1.35, C=5 1.17, C=6 0.63, C=8 0.78,
// C=12 0.86; N=1 112x112x6 0.68, N=32 56x56x6 0.85; backward data N=32 28x28x6 0.55, N=256
// 14x14x6 0.68, N=256 7x7x6 0.88, but C = 3 1.34-1.63 (3 of 8 lanes).
constexpr int64_t kNarrowOverFlatC = 6;
inline bool narrow_over_flat(int64_t c, int64_t bytes) { return c >= kNarrowOverFlatC && !stream_output(bytes); }

typedef float f32x8 __attribute__((vector_size(32)));

// Loads / stores / activation of n lanes of an L-lane vector (L = 16 or 8): Full (n = 16)
// plain, else masked (zeros in the other lanes).
template <int L>
struct NarrowLanes;

template <>
struct NarrowLanes<16> {
  using V = f32x16;
  template <bool Full>
  static V ld(const float* p, int n) { return detail::ld<Full>(p, n); }
  template <bool Full>
  static void st(float* p, V v, int n) { detail::st<Full>(p, v, n); }
  template <Activation A>
  static V act(V v) { return act16<A>(v); }
};

template <>
struct NarrowLanes<8> {
  using V = f32x8;
  template <bool>
  static V ld(const float* p, int n) { return (V)_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p); }
  template <bool>
  static void st(float* p, V v, int n) { _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), (__m256)v); }
  template <Activation A>
  static V act(V v) {
    if constexpr (A == Activation::Relu || A == Activation::Relu6) v = (V)_mm256_max_ps(_mm256_setzero_ps(), (__m256)v);
    if constexpr (A == Activation::Relu6) v = (V)_mm256_min_ps(_mm256_set1_ps(6.f), (__m256)v);
    return v;
  }
};

// Channels [c0, c0 + n) (n <= L) of one output row: out[ox] = act(b + sum_ky,kx
// rows[ky][ox - pl + kx] * w[ky, kx]), input columns outside [0, iw) reading as zero.
template <int L, bool Full, Activation A>
inline void narrow_block_row(const Gather& q, const float* const* rows, const float* w,
                             const float* bias, int64_t c0, int n, float* out) {
  using T = NarrowLanes<L>;
  using V = typename T::V;
  const int64_t C = q.c, iw = q.iw, ow = q.ow, pl = q.pl;
  V wv[9];
  for (int i = 0; i < 9; ++i) wv[i] = T::template ld<Full>(w + i * C + c0, n);
  const V b = bias ? T::template ld<Full>(bias + c0, n) : V{};
  const float* r0 = rows[0] + c0;
  const float* r1 = rows[1] + c0;
  const float* r2 = rows[2] + c0;
  auto colc = [&](const float* r, int64_t ix) { return ix >= 0 && ix < iw ? T::template ld<Full>(r + ix * C, n) : V{}; };
  // The window: input columns ox - pl, ox - pl + 1 of each kernel row.
  V a0[3] = {colc(r0, -pl), colc(r1, -pl), colc(r2, -pl)};
  V a1[3] = {colc(r0, 1 - pl), colc(r1, 1 - pl), colc(r2, 1 - pl)};
  auto step = [&](int64_t ox, const V (&a2)[3]) {
    V acc[3] = {b, V{}, V{}};
    for (int ky = 0; ky < 3; ++ky) {
      acc[ky] += a0[ky] * wv[3 * ky];
      acc[ky] += a1[ky] * wv[3 * ky + 1];
      acc[ky] += a2[ky] * wv[3 * ky + 2];
      a0[ky] = a1[ky];
      a1[ky] = a2[ky];
    }
    T::template st<Full>(out + ox * C + c0, T::template act<A>(acc[0] + acc[1] + acc[2]), n);
  };
  // Output columns whose new input column (ox - pl + 2) lies in [0, iw): [oa, ob); before
  // them it lies left of the row, after them right of it (the padding: zero vectors).
  const int64_t oa = std::clamp<int64_t>(pl - 2, 0, ow), ob = std::clamp<int64_t>(iw + pl - 2, oa, ow);
  const V pad[3] = {V{}, V{}, V{}};
  int64_t ox = 0;
  for (; ox < oa; ++ox) step(ox, pad);
  for (; ox < ob; ++ox) {
    const int64_t o = (ox - pl + 2) * C;
    const V a2[3] = {T::template ld<Full>(r0 + o, n), T::template ld<Full>(r1 + o, n), T::template ld<Full>(r2 + o, n)};
    step(ox, a2);
  }
  for (; ox < ow; ++ox) step(ox, pad);
}

// One output row, all channels: 16-lane blocks, then the rest in 8-lane vectors (<= 8
// channels) or one masked 16-lane block.
template <Activation A>
void narrow_row3(const Gather& q, const float* const* rows, const float* w, const float* bias,
                 float* out) {
  int64_t c0 = 0;
  for (; c0 + 16 <= q.c; c0 += 16) narrow_block_row<16, true, A>(q, rows, w, bias, c0, 16, out);
  const int rest = (int)(q.c - c0);
  if (rest > 8) narrow_block_row<16, false, A>(q, rows, w, bias, c0, rest, out);
  else if (rest > 0) narrow_block_row<8, false, A>(q, rows, w, bias, c0, rest, out);
}

// Output lines [l0, l1) (line = image * q.oh + output row) of `in` (n images of q.ih x q.iw
// x q.c) into out, then done(l) on each line. The lines' input rows are found by stepping
// (image, row) along, not by walk_lines: its per-line set-up (row pointers from a division,
// the next line's rows and their requests) was 10% of the samples at 14x14x16 (above), on
// rows of 14 vectors; inputs in cache need no requests.
template <Activation A, typename Done>
void narrow_lines(const Gather& q, const float* in, const float* zeros, const float* w,
                  const float* bias, int64_t l0, int64_t l1, float* out, Done done) {
  const int64_t row = q.iw * q.c, plane = q.ih * row, out_row = q.ow * q.c;
  int64_t img = l0 / q.oh, oy = l0 % q.oh;
  for (int64_t l = l0; l < l1; ++l) {
    const float* rows[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int64_t iy = oy - q.pt + ky;
      rows[ky] = iy >= 0 && iy < q.ih ? in + img * plane + iy * row : zeros;
    }
    narrow_row3<A>(q, rows, w, bias, out + l * out_row);
    done(l);
    if (++oy == q.oh) oy = 0, ++img;
  }
}
#else
// Below AVX-512 the tiles serve every C (gather_pass).
inline bool narrow_applies(int64_t, int64_t) { return false; }
inline bool narrow_over_flat(int64_t, int64_t) { return false; }
template <Activation A, typename Done>
void narrow_lines(const Gather&, const float*, const float*, const float*, const float*, int64_t,
                  int64_t, float*, Done) {}
#endif

}  // namespace

}  // namespace fastconv::cpu::detail
