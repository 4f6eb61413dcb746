// The weight pass of 1x1 convolutions with few channels each side (dw, db from x and dy; groups
// == 1, no pads, any stride): narrow_pointwise.cpp's head comment describes it with the maps
// (work items, the per-pixel dot, the packed 5..8-channel dot, the planar 1..4-channel dot of
// narrow_pointwise_planar.h, the float-then-double partial sums). Split from narrow_pointwise.cpp
// (stop 33) to keep each file readable. Stop 34: 17..32 channels each side in blocks of input
// channels (dot_wide, AVX-512).
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/narrow_pointwise.h"
#include "cpu/narrow_pointwise_common.h"
#include "cpu/narrow_pointwise_planar.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

// dot_pixels below AVX-512 (avx2, baseline: 16 registers of 8 or 4 lanes): the `lanes` (<= 16)
// channels of a dy pixel as NV registers of the level's own width (f32xR) and the input
// channels in blocks of at most 12 / NV accumulator rows (a block a pass over the item's rows,
// which are in L1/L2 after the first). Why: dot_pixels' 16-lane vectors have no register of
// their own there, and with IN x kSets of them (12 at C = 6) GCC kept the accumulators in
// memory (as narrow_pointwise.cpp map_group_native says for the maps). 1 thread, ms
// before/after, paired, avx2 (stop 37, benchmarks/RESULTS.md): 1x1 s2 weight pass N=256 56x56
// C=6 6.50/1.78, N=32 112x112 C=6 3.24/0.81, N=256 28x28 C=16 6.24/2.10.
template <int IB, int NV>
void dot_native_block(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds,
                      int64_t oc, int64_t lanes, int64_t rows, int64_t count, const float* dy_end,
                      int64_t pf, v16* acc) {
  constexpr int W = kRegLanes;
  // With fewer than 8 accumulator registers, S sets over alternating pixels.
  constexpr int S = IB * NV >= 8 ? 1 : IB * NV >= 4 ? 2 : 4;
  f32xR a[S][IB][NV];
#pragma GCC unroll 16
  for (int k = 0; k < S; ++k)
#pragma GCC unroll 16
    for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) a[k][i][v] = f32xR{};
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    const int64_t safe = std::min(count, safe_pixels(dy, oc, dy_end));  // 16 floats loadable
    int64_t p = 0;
    for (; p + S <= safe; p += S)
#pragma GCC unroll 4
      for (int k = 0; k < S; ++k) {
        f32xR dv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) std::memcpy(&dv[v], dy + (p + k) * oc + v * W, sizeof dv[v]);
        const float* xp = x + (p + k) * x_step;
#pragma GCC unroll 16
        for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) a[k][i][v] += xp[i] * dv[v];
      }
    for (; p < count; ++p) {
      const v16 d16 = load_channels(dy + p * oc, lanes, dy_end);
      f32xR dv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) std::memcpy(&dv[v], (const float*)&d16 + v * W, sizeof dv[v]);
      const float* xp = x + p * x_step;
      for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) a[0][i][v] += xp[i] * dv[v];
    }
  }
  for (int i = 0; i < IB; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      f32xR t = a[0][i][v], o;
      for (int k = 1; k < S; ++k) t += a[k][i][v];
      float* lane = (float*)&acc[i] + v * W;
      std::memcpy(&o, lane, sizeof o);
      o += t;
      std::memcpy(lane, &o, sizeof o);
    }
}

// Input channels I0.. of IN in blocks of at most 12 / NV.
template <int IN, int NV, int I0 = 0>
void dot_native(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds, int64_t oc,
                int64_t lanes, int64_t rows, int64_t count, const float* dy_end, int64_t pf,
                v16* acc) {
  constexpr int IB = std::min(std::max(1, 12 / NV), IN - I0);
  dot_native_block<IB, NV>(x + I0, x_step, xs, dy, ds, oc, lanes, rows, count, dy_end,
                           I0 == 0 ? pf : 0, acc + I0);
  if constexpr (I0 + IB < IN)
    dot_native<IN, NV, I0 + IB>(x, x_step, xs, dy, ds, oc, lanes, rows, count, dy_end, pf, acc);
}

// acc[i][o] += sum over rows r < rows and pixels p < count of x[r*xs + p*x_step + i] *
// dy[r*ds + p*oc + o], o < lanes (<= 16; the lanes beyond are don't-care: a pixel's channels
// 16..23 are the pass over dy + 16 with lanes = oc - 16). IN accumulator vectors per set; with few
// input channels the pixels alternate between sets so that consecutive FMAs into one
// accumulator do not wait on each other. Rows inside: output rows of 4..14 pixels (1x1 s2,
// C = 16) paid a call and a flush each.
// Returns whether db[0] got the sum of dy too (db not null, the unit-stride 1 -> 1 streams:
// in the same loop, where channel_sums was a second pass over the item's dy; stop 35).
template <int IN>
bool dot_pixels(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds,
                int64_t oc, int64_t lanes, int64_t rows, int64_t count, const float* dy_end,
                int64_t pf, v16* acc, float* db) {
  constexpr int kSets = IN >= 8 ? 1 : IN >= 4 ? 2 : 4;
  if (IN == 1 && oc == 1 && x_step == 1 && rows == 1 && kVectorRegisters < 32) {
    // The same in the level's own registers (f32xR: 8 lanes at avx2, 4 at the baseline). The
    // 16-lane form's eight sums are 16 ymm at avx2: GCC kept them on the stack, moved through
    // general registers (perf: stores, vpinsrq and reloads around every FMA). 1 thread, ms
    // before/after, paired, avx2 (stop 38, benchmarks/RESULTS.md): 1x1 s1 N=256 56x56 C=1
    // weight pass 0.413/0.178, N=32 112x112 0.199/0.078, N=256 28x28 0.102/0.039.
    constexpr int W = kRegLanes;
    f32xR s[4] = {}, d[4] = {};
    int64_t p = 0;
    for (; p + 4 * W <= count; p += 4 * W)
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const f32xR dv = loadR(dy + p + W * k);
        s[k] += loadR(x + p + W * k) * dv;
        d[k] += dv;
      }
    for (; p + W <= count; p += W) {
      const f32xR dv = loadR(dy + p);
      s[0] += loadR(x + p) * dv;
      d[0] += dv;
    }
    s[0] += s[1] + s[2] + s[3];
    d[0] += d[1] + d[2] + d[3];
    float total = 0.f, dtotal = 0.f;
    for (int l = 0; l < W; ++l) total += s[0][l], dtotal += d[0][l];
    for (; p < count; ++p) total += x[p] * dy[p], dtotal += dy[p];
    acc[0][0] += total;
    if (db) db[0] += dtotal;
    return db != nullptr;
  }
  if (IN == 1 && oc == 1 && x_step == 1 && rows == 1) {  // unit-stride streams: over pixels
    // four sums: one waited on its FMA latency every 16 pixels
    v16 s[4] = {}, d[4] = {};
    int64_t p = 0;
    for (; p + 64 <= count; p += 64)
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const v16 dv = load16(dy + p + 16 * k);
        s[k] += load16(x + p + 16 * k) * dv;
        d[k] += dv;
      }
    for (; p + 16 <= count; p += 16) {
      const v16 dv = load16(dy + p);
      s[0] += load16(x + p) * dv;
      d[0] += dv;
    }
    s[0] += s[1] + s[2] + s[3];
    d[0] += d[1] + d[2] + d[3];
    float total = 0.f, dtotal = 0.f;
    for (int l = 0; l < 16; ++l) total += s[0][l], dtotal += d[0][l];
    for (; p < count; ++p) total += x[p] * dy[p], dtotal += dy[p];
    acc[0][0] += total;
    if (db) db[0] += dtotal;
    return db != nullptr;
  }
  if constexpr (kVectorRegisters < 32) {  // the level's own registers (dot_native)
    constexpr int W = kRegLanes;
    if (lanes <= W)
      dot_native<IN, 1>(x, x_step, xs, dy, ds, oc, lanes, rows, count, dy_end, pf, acc);
    else if (lanes <= 2 * W || W >= 8)
      dot_native<IN, 16 / W >= 2 ? 2 : 1>(x, x_step, xs, dy, ds, oc, lanes, rows, count, dy_end, pf, acc);
    else
      dot_native<IN, 16 / W>(x, x_step, xs, dy, ds, oc, lanes, rows, count, dy_end, pf, acc);
    return false;
  }
  v16 a[kSets][IN];
  for (int k = 0; k < kSets; ++k)
    for (int i = 0; i < IN; ++i) a[k][i] = v16{};
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    // The main loop loads 16 lanes of dy unchecked; the pixels whose load would pass dy_end
    // go through load_channels after it (with its branch in the loop, GCC stored all IN
    // accumulators to the stack at every pixel: the C=16 weight pass ran at half speed).
    const int64_t safe = std::min(count, safe_pixels(dy, oc, dy_end));
    int64_t p = 0;
    for (; p + kSets <= safe; p += kSets) {
#pragma GCC unroll 4
      for (int k = 0; k < kSets; ++k) {
        const v16 dv = load16(dy + (p + k) * oc);
        const float* xs_ = x + (p + k) * x_step;
#pragma GCC unroll 16
        for (int i = 0; i < IN; ++i) a[k][i] += splat16(xs_[i]) * dv;
      }
    }
    for (; p < count; ++p) {
      const v16 dv = load_channels(dy + p * oc, lanes, dy_end);
      const float* xs_ = x + p * x_step;
      for (int i = 0; i < IN; ++i) a[0][i] += splat16(xs_[i]) * dv;
    }
  }
  for (int i = 0; i < IN; ++i) {
    v16 s = a[0][i];
    for (int k = 1; k < kSets; ++k) s += a[k][i];
    acc[i] += s;
  }
  return false;
}

using DotFn = bool (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t,
                       int64_t, int64_t, const float*, int64_t, v16*, float*);

// The weight pass with 4..8 channels each side (IN == OC, AVX-512): P = 16 / OC pixels a
// vector. One load of dy gives pixels p..p+P-1 in lanes [k*OC, (k+1)*OC); for each input
// channel i one two-source permute of x's floats (Packed<C, SW>::index, narrow_pointwise_common.h)
// puts x[p + k][i] in the same lanes, and one FMA per channel adds all P pixels' products: IN
// permutes and IN FMAs per P pixels, where the vector per pixel (dot_pixels) issued IN
// broadcasts and IN FMAs per pixel with OC of 16 lanes used (C=6: 2 pixels, 12 lanes). A row's
// last pixels (and rows whose loads would pass the end of x or dy) go through a zeroed copy of
// their floats: lanes past them are 0 * 0.
// The packed lanes stay in the caller's registers-worth `lanes` (C vectors, lane k*C + o of
// row i: pixel k's x[i] * dy[o]) across calls and are folded into dw's rows at the flush
// (fold_packed), not per call: the fold (C*P*C lane extractions) and the zeroing per call,
// with the accumulators kept in memory around the lambdas of the loop body, were half of a
// 1x1 s2 N=256 14x14 C=6 weight pass (rows of 7 pixels, an item per image; perf, stop 35).
template <int C, int SW>
void dot_packed(const float* x, int64_t xs, const float* dy, int64_t ds, int64_t rows,
                int64_t count, const float* x_end, const float* dy_end, int64_t pf, v16* lanes,
                v16* dlanes) {
  using K = Packed<C, SW>;
  constexpr int P = K::P;
  constexpr int64_t xload = K::XF > 16 ? 32 : 16;
  i32x16 idx[C];
  v16 a[C], b[C], d = dlanes[0], e = v16{};  // d, e: dy's sums (the bias gradient)
#pragma GCC unroll 8
  for (int i = 0; i < C; ++i) {
    idx[i] = K::index(i, std::make_index_sequence<16>());
    a[i] = lanes[i];
    b[i] = v16{};
  }
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    // groups whose loads (32 or 16 floats of x, 16 of dy) stay inside the tensors, and x's
    // inside the row's floats (past them, at stride 2, an input row the conv skips: a line
    // of it per row made N=256 56x56 C=6 2.31 -> 2.55 ms, DRAM-bound)
    const int64_t xroom = std::min(x_end - x, (count - 1) * SW * C + C) - xload;
    const int64_t droom = (dy_end - dy) - 16;
    int64_t whole = count / P * P;
    if (xroom < 0 || droom < 0) whole = 0;
    else whole = std::min({whole, (xroom / (SW * C) + 1) / P * P, (droom / C + 1) / P * P});
    int64_t p = 0;
    for (; p + 2 * P <= whole; p += 2 * P) {  // two groups, two sets of accumulators
      const float* xg = x + p * SW * C;
      const v16 xa = load16(xg), xb = K::XF > 16 ? load16(xg + 16) : xa;
      const v16 xc = load16(xg + P * SW * C), xd = K::XF > 16 ? load16(xg + P * SW * C + 16) : xc;
      const v16 dv = load16(dy + p * C), ev = load16(dy + (p + P) * C);
      d += dv, e += ev;
#pragma GCC unroll 8
      for (int i = 0; i < C; ++i) {
        a[i] += __builtin_shuffle(xa, xb, idx[i]) * dv;
        b[i] += __builtin_shuffle(xc, xd, idx[i]) * ev;
      }
    }
    for (; p < count; p += P) {  // at most a group of whole ones, then masked loads
      const int64_t n = std::min<int64_t>(P, count - p), xn = (n - 1) * SW * C + C;
      const float* xg = x + p * SW * C;
      v16 xa, xb, dv;
      if (p + P <= whole) {
        xa = load16(xg), xb = K::XF > 16 ? load16(xg + 16) : xa, dv = load16(dy + p * C);
      } else {
        xa = load16_prefix(xg, xn), xb = load16_prefix(xg + 16, xn - 16);
        dv = load16_prefix(dy + p * C, n * C);
      }
      d += dv;
#pragma GCC unroll 8
      for (int i = 0; i < C; ++i) a[i] += __builtin_shuffle(xa, xb, idx[i]) * dv;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < C; ++i) lanes[i] = a[i] + b[i];
  dlanes[0] = d + e;
}

// acc[i][o] += the P pixels' lanes of packed row i (dot_packed's `lanes`), db[o] += those
// of dlanes; the lanes zeroed.
void fold_packed(int64_t c, v16* lanes, v16& dlanes, v16* acc, float* db) {
  for (int64_t k = 0; k < 16 / c; ++k)
    for (int64_t o = 0; o < c; ++o) {
      for (int64_t i = 0; i < c; ++i) acc[i][o] += lanes[i][k * c + o];
      db[o] += dlanes[k * c + o];
    }
  for (int64_t i = 0; i < c; ++i) lanes[i] = v16{};
  dlanes = v16{};
}

using PackedFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t,
                          const float*, const float*, int64_t, v16*, v16*);

// The packed kernel for in -> oc channels at stride sw, or nullptr (then the planar registers
// or dot_pixels). Only with 32 vector registers (C index vectors + 2C accumulators). C = 4
// too, ahead of the planar registers (4 pixels a vector, all 16 lanes): 1 thread, ms planar/
// packed, medians of 5 interleaved rounds on Zen 4 (load ~1): s1 N=256 28x28 0.220/0.138, N=32
// 56x56 0.108/0.069, N=32 112x112 0.441/0.282; s2 N=256 56x56 0.551/0.338, N=32 112x112
// 0.230/0.139, N=256 28x28 0.210/0.212. Not C = 2, 3: planar as fast or faster (C=3 s1 N=256
// 28x28 0.180/0.186, N=32 112x112 0.351/0.410; C=2 0.094/0.092).
PackedFn pick_packed(int64_t in, int64_t oc, int64_t sw) {
  if (kVectorRegisters < 32 || in != oc || in < 4 || in > 8 || sw < 1 || sw > 2) return nullptr;
  static constexpr PackedFn t[2][5] = {
      {&dot_packed<4, 1>, &dot_packed<5, 1>, &dot_packed<6, 1>, &dot_packed<7, 1>, &dot_packed<8, 1>},
      {&dot_packed<4, 2>, &dot_packed<5, 2>, &dot_packed<6, 2>, &dot_packed<7, 2>, &dot_packed<8, 2>}};
  return t[sw - 1][in - 4];
}


#if defined(__AVX512F__)
// The weight pass with 17..32 channels each side (AVX-512): a pixel's dy is one 16-lane
// register of channels 0..15 and one of H = 8 or 16 lanes (a masked load: nothing past the
// pixel's oc floats is read, the lanes beyond are zero) for 16..oc-1; the input channels run
// in blocks of B <= 13 (2B accumulators), each block one pass over the item's pixels (the
// second pass reads them from L1/L2). It replaced dot_pixels run twice per pixel, once per
// half of dy in 16 lanes: at 24 channels the second pass's 24 zmm FMAs used 8 lanes each (96
// ymm FMA slots per pixel for 576 multiply-adds, 72 here), and at 25..32 channels the pass
// went to the GEMM (im2col's gather at stride 2, then K = N = 32: see narrow_pointwise_shape).
template <int B, int H>
void dot_wide_block(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds,
                    int64_t oc, int64_t rows, int64_t count, int64_t pf, v16* acc, v16* hi) {
  using Hi = std::conditional_t<H == 8, __m256, __m512>;
  const __mmask16 m = (__mmask16)((1u << (oc - 16)) - 1);
  __m512 a[B];
  Hi h[B];
  // every loop over the accumulators fully unrolled: with the first and last loops rolled GCC
  // kept a[] and h[] in memory and stored all 2B of them at every pixel (perf: 2x slower)
#pragma GCC unroll 16
  for (int i = 0; i < B; ++i) {
    a[i] = _mm512_setzero_ps();
    if constexpr (H == 8) h[i] = _mm256_setzero_ps();
    else h[i] = _mm512_setzero_ps();
  }
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    // the whole row, as the other kernels: its pixels' lines only (prefetch_row, as the
    // forward map) measured even here (1x1 s2 C=24/32 N=256 28x28, N=32 112x112, stop 34)
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    const float* xp = x;
    const float* dp = dy;
    for (int64_t p = 0; p < count; ++p, xp += x_step, dp += oc) {
      const __m512 dl = _mm512_loadu_ps(dp);
      Hi dh;
      if constexpr (H == 8) dh = _mm256_maskz_loadu_ps((__mmask8)m, dp + 16);
      else dh = _mm512_maskz_loadu_ps(m, dp + 16);
#pragma GCC unroll 16
      for (int i = 0; i < B; ++i) {
        a[i] = _mm512_fmadd_ps(_mm512_set1_ps(xp[i]), dl, a[i]);
        if constexpr (H == 8) h[i] = _mm256_fmadd_ps(_mm256_set1_ps(xp[i]), dh, h[i]);
        else h[i] = _mm512_fmadd_ps(_mm512_set1_ps(xp[i]), dh, h[i]);
      }
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < B; ++i) {
    acc[i] += (v16)a[i];
    if constexpr (H == 8) hi[i] += (v16)_mm512_zextps256_ps512(h[i]);
    else hi[i] += (v16)h[i];
  }
}

using WideFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t,
                        int64_t, int64_t, v16*, v16*);

// Input channels in ceil(in / 13) blocks of near-equal size (24: 12 + 12; 32: 11 + 11 + 10).
void dot_wide(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds,
              int64_t in, int64_t oc, int64_t rows, int64_t count, int64_t pf, v16* acc, v16* hi) {
  static constexpr WideFn t[6][2] = {
      {&dot_wide_block<8, 8>, &dot_wide_block<8, 16>},   {&dot_wide_block<9, 8>, &dot_wide_block<9, 16>},
      {&dot_wide_block<10, 8>, &dot_wide_block<10, 16>}, {&dot_wide_block<11, 8>, &dot_wide_block<11, 16>},
      {&dot_wide_block<12, 8>, &dot_wide_block<12, 16>}, {&dot_wide_block<13, 8>, &dot_wide_block<13, 16>}};
  const int64_t blocks = (in + 12) / 13, base = in / blocks, extra = in % blocks;
  for (int64_t j = 0, i0 = 0; j < blocks; ++j) {
    const int64_t b = base + (j < extra);
    t[b - 8][oc > 24](x + i0, x_step, xs, dy, ds, oc, rows, count, j == 0 ? pf : 0, acc + i0, hi + i0);
    i0 += b;
  }
}
#endif

template <size_t... I>
constexpr std::array<DotFn, sizeof...(I)> dot_table(std::index_sequence<I...>) {
  return {&dot_pixels<int(I) + 1>...};
}

// Per pixel up to 16 input channels; above, dot_wide (nullptr).
DotFn pick_dot(int64_t in) {
  static constexpr auto table = dot_table(std::make_index_sequence<kNarrowPointwiseMax>());
  return in <= kNarrowPointwiseMax ? table[in - 1] : nullptr;
}

// sum[o] += the sum of dy[f] over f < n with f % oc == o (dy: whole pixels of oc channels,
// one contiguous run): K = oc / gcd(16, oc) vectors of 16 floats repeat the channel pattern.
// It replaced a 16-lane load per pixel, which took as long as the products (perf, 1x1 C=3
// N=256 28x28 weight pass on Zen 4).
template <int K>
void channel_sums(const float* dy, int64_t n, int64_t oc, float* sum) {
  if constexpr (kVectorRegisters < 32) {
    // Below AVX-512: the 16-lane sums as registers of the level's own width (with v16 GCC
    // moved them through memory and general registers piece by piece: perf, 1x1 s2 N=256
    // 28x28 C=16 weight pass at avx2, a third of the pass's time; as dot_native says).
    constexpr int W = kRegLanes, NV = 16 / W;
    f32xR a[K][NV] = {};
    int64_t f = 0;
    for (; f + 16 * K <= n; f += 16 * K)
#pragma GCC unroll 16
      for (int k = 0; k < K; ++k)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          f32xR d;
          std::memcpy(&d, dy + f + 16 * k + v * W, sizeof d);
          a[k][v] += d;
        }
    alignas(64) float lanes[K * 16];
    std::memcpy(lanes, a, sizeof lanes);
    float s[kWeightsMax] = {};
    int64_t lane_channel = 0;
    for (int l = 0; l < K * 16; ++l) {
      s[lane_channel] += lanes[l];
      if (++lane_channel == oc) lane_channel = 0;
    }
    for (; f < n; ++f) s[f % oc] += dy[f];
    for (int64_t o = 0; o < oc; ++o) sum[o] += s[o];
    return;
  }
  v16 a[K] = {};
  int64_t f = 0;
  for (; f + 16 * K <= n; f += 16 * K)
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) a[k] += load16(dy + f + 16 * k);
  float s[kWeightsMax] = {};
  // (16k + l) % oc stepped, not divided: 48 divisions a call at oc = 3 or 6 were most of the
  // weight pass's own time outside its kernels (perf, 1x1 s1 N=256 28x28 C=3, Zen 4).
  int64_t lane_channel = 0;
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < 16; ++l) {
      s[lane_channel] += a[k][l];
      if (++lane_channel == oc) lane_channel = 0;
    }
  for (; f < n; ++f) s[f % oc] += dy[f];  // f starts at a multiple of 16K, so of oc
  for (int64_t o = 0; o < oc; ++o) sum[o] += s[o];
}

void channel_sums_any(const float* dy, int64_t n, int64_t oc, float* sum) {
  switch (oc / std::gcd<int64_t>(16, oc)) {
    case 1: return channel_sums<1>(dy, n, oc, sum);
    case 2: return channel_sums<2>(dy, n, oc, sum);  // oc = 32
    case 3: return channel_sums<3>(dy, n, oc, sum);
    case 5: return channel_sums<5>(dy, n, oc, sum);
    case 7: return channel_sums<7>(dy, n, oc, sum);
    case 9: return channel_sums<9>(dy, n, oc, sum);
    case 11: return channel_sums<11>(dy, n, oc, sum);
    case 13: return channel_sums<13>(dy, n, oc, sum);
    case 15: return channel_sums<15>(dy, n, oc, sum);
    case 17: return channel_sums<17>(dy, n, oc, sum);
    case 19: return channel_sums<19>(dy, n, oc, sum);
    case 21: return channel_sums<21>(dy, n, oc, sum);
    case 23: return channel_sums<23>(dy, n, oc, sum);
    case 25: return channel_sums<25>(dy, n, oc, sum);
    case 27: return channel_sums<27>(dy, n, oc, sum);
    case 29: return channel_sums<29>(dy, n, oc, sum);
    default: return channel_sums<31>(dy, n, oc, sum);  // else oc / gcd(16, oc) is odd, <= 31
  }
}

}  // namespace

void narrow_pointwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db) {
  const int threads = pass_threads(g);
  constexpr int64_t kRow = 32, kPart = kWeightsMax * kRow + kRow;  // dw rows, then db
  std::vector<double> parts((size_t)(threads * kPart), 0.0);
  const DotFn dot = pick_dot(g.c);
  const int64_t sh = g.win.sh, sw = g.win.sw, in_row = g.w * g.c;
  // 1..4 channels each side at stride 1 or 2: registers of pixels on planar registers
  // (narrow_pointwise_planar.h), the rest pixel by pixel.
  const planar_dot::DotFn planar = planar_dot::pick(g.c, g.oc, sw);
  const PackedFn packed = pick_packed(g.c, g.oc, sw);  // 5..8 channels: P pixels a vector
  // Strided: x's row kAhead rows on is touched as each row starts (see kAhead). 1 thread, ms
  // with/without, 4 interleaved rounds on the loaded Zen 4 (before: the row-per-item pass):
  // 1x1 s2 N=256 56x56 C=6 0.82-1.13/1.20-1.85 (before 1.10-1.55), N=256 112x112 C=3
  // 3.50-3.79/3.72-4.41 (3.64-4.34), N=256 28x28 C=16 0.33-0.36/0.35-0.58 (0.58-0.62).
  const int64_t pf = sh > 1 && in_row >= kPrefetchRow ? in_row : 0;
  // Work items: at stride 1 x and dy are each one pixel stream, so items are runs of kStreamRun
  // pixels (rows of 7..28 pixels paid a call and a flush per row: N=256 28x28 C=3 took 0.63
  // ms where a copy of its bytes takes ~0.16); strided, blocks of about kRun pixels of whole
  // output rows of one image (x's rows then are sh rows apart). Prefetching all of the next
  // block's rows at each block's start instead of a row at a time was no faster, often slower
  // (1 thread, ms with/without, 3 interleaved rounds on the loaded Zen 4: 1x1 s2 N=256 56x56
  // C=3 0.42-0.55/0.32-0.47, N=32 112x112 C=6 0.30-0.32/0.22-0.26).
  constexpr int64_t kRun = 512;
  // Stride 1: items of kStreamRun pixels (a call, a lane sum and the bias sums each; flushed
  // at kFlush). 1 thread, ms 512/2048, paired rounds on the loaded Zen 4 (medians noisy, the
  // minima lower in every case): C=3 N=256 28x28 0.146/0.130 (min 0.145/0.129), N=32 112x112
  // 0.304/0.268, C=6 N=256 28x28 0.370/0.316, C=1 N=256 56x56 0.151/0.139, C=16 N=256 28x28
  // 1.40/1.26; N=32 56x56 C=3 0.078/0.082 (min 0.077/0.070).
  constexpr int64_t kStreamRun = 2048;
  const bool stream = sh == 1 && sw == 1;
  const int64_t pixels = g.n * g.oh * g.ow;
  const int64_t block_rows =
      stream ? 1 : std::max<int64_t>(1, std::min(g.oh, kRun / std::max<int64_t>(g.ow, 1)));
  const int64_t blocks = (g.oh + block_rows - 1) / block_rows;
  const int64_t items = stream ? (pixels + kStreamRun - 1) / kStreamRun : g.n * blocks;
  const float* x_end = x + g.input_size();
  const float* dy_end = dy + g.output_size();
  // Item l: rows of `count` pixels from x0 (rows xs apart) and dy0 (ds apart).
  auto item = [&](int64_t l, const float*& x0, const float*& dy0, int64_t& rows, int64_t& count) {
    if (stream) {
      rows = 1, count = std::min(kStreamRun, pixels - l * kStreamRun);
      x0 = x + l * kStreamRun * g.c, dy0 = dy + l * kStreamRun * g.oc;
    } else {
      const int64_t n = l / blocks, oy0 = (l % blocks) * block_rows;
      rows = std::min(block_rows, g.oh - oy0), count = g.ow;
      x0 = x + (n * g.h + oy0 * sh) * in_row, dy0 = dy + (n * g.oh + oy0) * g.ow * g.oc;
    }
  };
  const int64_t xs = sh * in_row, ds = g.ow * g.oc;
  parallel_region(threads, [&] {
    note_team();
    double* part = parts.data() + omp_get_thread_num() * kPart;
    // Sums in float of the items since the last flush into the double partials (once at
    // least kFlush pixels are in: per item, blocks of 16..28 pixels paid a flush of up to 600
    // doubles each, 1x1 s2 7x7; and per 512-pixel run, the flush and the zeroing were a sixth
    // of a 1x1 s1 C=3 pass, perf): dw rows of output channels 0..15, of 16..23, db.
    constexpr int64_t kFlush = 4 * kRun;
    v16 acc[kWeightsMax], hi[kWeightsMax], pk[8] = {}, pdb = {};  // dot_packed's lanes
    float dbs[kRow];
    int64_t pending = 0;
    auto clear = [&] {
      for (int64_t ci = 0; ci < g.c; ++ci) acc[ci] = hi[ci] = v16{};
      for (int64_t co = 0; co < g.oc; ++co) dbs[co] = 0.f;
      pending = 0;
    };
    auto flush = [&] {
      if (packed) fold_packed(g.c, pk, pdb, acc, dbs);
      const int64_t lo = std::min<int64_t>(g.oc, 16);
      for (int64_t ci = 0; ci < g.c; ++ci) {
        double* row = part + ci * kRow;
        for (int64_t co = 0; co < lo; ++co) row[co] += acc[ci][co];
        for (int64_t co = 16; co < g.oc; ++co) row[co] += hi[ci][co - 16];
      }
      for (int64_t co = 0; co < g.oc; ++co) part[kWeightsMax * kRow + co] += dbs[co];
      clear();
    };
    clear();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < items; ++l) {
      const float *x0, *dy0;
      int64_t rows, count;
      item(l, x0, dy0, rows, count);
      int64_t r = 0;
      bool item_db = true;  // the bias gradient of this item still to sum (channel_sums)
      if (planar && !packed) {  // packed, where compiled, is ahead of planar (C = 4)
        // Rows whose every register, the masked tail's included, reads inside x and dy
        // (all but at most the tensor's last rows); the others by whole registers only.
        const int64_t tail0 = count / planar_dot::L * planar_dot::L;
        auto reads_inside = [&](int64_t row) {
          return x0 + row * xs + (tail0 + planar_dot::L) * sw * g.c <= x_end &&
                 dy0 + row * ds + (tail0 + planar_dot::L) * g.oc <= dy_end;
        };
        int64_t ok = rows;
        while (ok > 0 && !reads_inside(ok - 1)) --ok;
        if (ok > 0) planar(x0, xs, dy0, ds, ok, count, true, pf, kAhead, acc, ok == rows ? dbs : nullptr);
        item_db = ok < rows;  // else summed by planar
        for (r = ok; r < rows; ++r) {
          const float *xr = x0 + r * xs, *dr = dy0 + r * ds;
          // at stride 2 a whole register reads 2L pixels of x: inside the row only
          const int64_t whole = sw == 1 ? count : std::min(count, g.w / 2);
          const int64_t done = planar(xr, 0, dr, 0, 1, whole, false, 0, 0, acc, nullptr);
          dot(xr + done * sw * g.c, sw * g.c, 0, dr + done * g.oc, 0, g.oc, g.oc, 1, count - done,
              dy_end, 0, acc, nullptr);
        }
      } else if (packed) {
        packed(x0, xs, dy0, ds, rows, count, x_end, dy_end, pf, pk, &pdb);
        item_db = false;  // in pdb
      } else if (!dot) {  // 17..32 channels each side (AVX-512 only)
#if defined(__AVX512F__)
        dot_wide(x0, sw * g.c, xs, dy0, ds, g.c, g.oc, rows, count, pf, acc, hi);
#endif
      } else {
        item_db = !dot(x0, sw * g.c, xs, dy0, ds, g.oc, std::min<int64_t>(g.oc, 16), rows, count,
                       dy_end, pf, acc, db ? dbs : nullptr);
        if (g.oc > 16)
          dot(x0, sw * g.c, xs, dy0 + 16, ds, g.oc, g.oc - 16, rows, count, dy_end, 0, hi, nullptr);
      }
      if (db && item_db) channel_sums_any(dy0, rows * count * g.oc, g.oc, dbs);
      pending += rows * count;
      if (pending >= kFlush) flush();
    }
    flush();
  });
  for (int64_t ci = 0; ci < g.c; ++ci)
    for (int64_t co = 0; co < g.oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + ci * kRow + co];
      dw[ci * g.oc + co] = (float)s;
    }
  if (db)
    for (int64_t co = 0; co < g.oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + kWeightsMax * kRow + co];
      db[co] = (float)s;
    }
}

}  // namespace fastconv::cpu::detail
