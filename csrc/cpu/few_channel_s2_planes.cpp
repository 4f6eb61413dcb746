// 3x3 stride-2 convolutions with C channels in and out: a block of output rows as one flat
// stream over column-phase planes.
//
// Why: the row kernel (few_channel_rows.cpp) ran these one output row at a time, each row
// of 28 floats (56x56 input, C = 1) two vectors long, and each input row packed into two
// phase rows with a scalar tail; per-row costs were the work. In the sweep on Zen 4
// (sweep_2026-12-06_zen4_final.md) the C = 1 stride-2 passes were 0.11-0.19 of their family's
// median (N=256 56x56 forward 0.467 ms, weights 0.530 ms, for 1.8 M multiply-adds), C = 3
// and 6 0.19-0.5.
//
// Here the padded input xp of a block of R output rows is split into 6*C planes of R + 1
// rows and OW columns (pitch OW): P[a][ci][k][i][j] = xp[2(oy0 + i) + a][2j + k][ci] for row
// parity a = 0, 1 and column k = 0, 1, 2 (k = 2 is plane k = 0 one column on). Then
//   y[oy0 + i][j][co] = sum over (ky, kx, ci) of w[ky][kx][ci][co] * P[ky % 2][ci][kx][i + ky / 2][j],
// the same flat offset (ky / 2)*OW into one plane for every lane of a vector of consecutive
// outputs, across row ends: 9*C loads and 9*C*C multiply-adds per C vectors of outputs, no
// lane wasted, no mask. The planes hold the padding as zeros and only real taps are
// multiplied, so NaN and inf reach exactly the outputs the reference gives them.
//
//   forward          y (block, flat) = b + sum over taps of plane[p + off] * w[tap]: V
//                    vectors x C channels held over the 9*C taps, merged to NHWC in
//                    registers (pixel_transpose.h) and stored whole
//   backward data    by parity, see backward_data_c (C = 3 and 6 with 'same' pads at
//                    AVX-512 first to few_channel_s2_data_flat.cpp, straight from dy)
//   backward weights (C = 1, 3) few_channel_s2_weights.cpp, on the same planes
//
// A row is split with few_channel_s2.h's pair split, straight from x when the 2*pairs*C
// floats it reads lie inside x (the columns outside the row then zeroed one by one), else
// through a zero-margined copy of the row.
//
// Prefetch: a block's pack loaded x from L3 or DRAM with nothing in flight (no loads of x
// while the block before computed, so the hardware prefetcher idled): split_pairs was 58% of
// an N=256 56x56 C=3 forward's samples, 28% on its first load. The next block's input rows
// (backward data: the next item's dx rows, for writing) are now prefetched into L2 a few
// lines a vector while a block computes (stride2::LinePrefetch, tensors from 1 MiB). Paired,
// 1 thread, CPU time, Zen 4 at load 5, ms before/after: C=3 N=256 56x56 forward 1.76/1.17,
// data 1.63/1.15, weights 2.05/1.16; N=256 112x112 forward 7.36/5.22; and it moved the
// limits of s2_planes_shape (below). For C = 1 (few_channel_s2_c1.cpp, items of two output
// rows) the same prefetch lost: 1.12-1.33 at N=256 56x56, 0.86-0.92 only at 112x112.
#include "cpu/few_channel_s2_planes.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2_c1.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

using namespace s2blocks;

// Output vectors a step: V*C accumulators over the 9*C taps (C = 1: 4 independent chains of
// 9 multiply-adds, one chain is latency-bound). At 32 registers C = 2, 3 take 4 vectors
// (each weight vector loaded once per 4 output vectors; paired, 1 thread, Zen 4: C=3 N=256
// 56x56 1.547/1.250 ms, C=2 56x56 0.712/0.624); C = 4 keeps 2 (4 were 1.07-1.18 of the
// time), C = 6 too (3 measured 0.86-0.98 in one run, 1.02-1.04 in the next: not kept). With
// the weights broadcast from memory (forward_c) C = 4 at 4 and C = 6 at 3 measured 1.04-1.34
// and 0.99-1.16 of the time again: not kept.
template <int C>
constexpr int vectors_for() {
  return C == 1 ? 4 : kVectorRegisters >= 32 ? (C <= 3 ? 4 : 2) : C <= 3 ? 2 : 1;
}

// V vectors of outputs from block pixel p, stored NHWC at out: bias + the 9*C taps per
// channel (q[t*C + ci]: tap t's plane of channel ci; wv[(t*C + ci)*C + co]: its weight).
template <int C, int V>
inline void forward_vectors(const float* const* q, const float* wv, const vec* bias, int64_t p,
                            float* out) {
  vec acc[V][C];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v)
#pragma GCC unroll 8
    for (int co = 0; co < C; ++co) acc[v][co] = bias[co];
#pragma GCC unroll 9
  for (int t = 0; t < 9 * C; ++t)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const vec xv = load(q[t] + p + v * L);
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) acc[v][co] += xv * (wv[t * C + co] - vec{});
    }
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    if constexpr (C == 1) {
      store(out + v * L, acc[v][0]);
    } else {
      vec o[C];
      pixel_transpose::merge<C>(acc[v], o);
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j) store(out + v * L * C + j * L, o[j]);
    }
  }
}

template <int C>
void forward_c(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
               Activation act) {
  constexpr int V = vectors_for<C>();
  vec bias[C];
  // HWIO: (t*C + ci)*C + co, each weight broadcast from memory where it is used (before: a
  // stack array of 9*C*C broadcast vectors, 5 KB at C = 3; paired, 1 thread, CPU time, Zen 4
  // at load 5: 0.87-1.00 of the time, C=6 N=256 56x56 0.91, C=2 / 4 56x56 0.87 / 0.90).
  const float* wv = w;
  for (int co = 0; co < C; ++co) bias[co] = vec{} + (b ? b[co] : 0.f);
  run_blocks<C>(g, x, threads_for(g), true, [&](Planes<C>& pl, int64_t off, int64_t total) {
    const float* q[9 * C];
    for (int t = 0; t < 9; ++t)
      for (int ci = 0; ci < C; ++ci) q[t * C + ci] = pl.tap(t, ci);
    float* yb = y + off * C;
    int64_t p = 0;
    auto pf = pl.prefetch_over(total / (V * L));
    for (; p + V * L <= total; p += V * L) {
      pf.step();
      forward_vectors<C, V>(q, wv, bias, p, yb + p * C);
    }
    for (; p + L <= total; p += L) forward_vectors<C, 1>(q, wv, bias, p, yb + p * C);
    if (p < total) {
      if (total >= L) {  // the last L pixels again (same values)
        forward_vectors<C, 1>(q, wv, bias, total - L, yb + (total - L) * C);
      } else {  // lanes past the block read the planes' slack; not stored
        float tmp[L * C];
        forward_vectors<C, 1>(q, wv, bias, 0, tmp);
        std::memcpy(yb, tmp, sizeof(float) * total * C);
      }
    }
    if (act != Activation::Linear) activation_inplace(total * C, yb, act);
  }, [](const Planes<C>&) {});
}

}  // namespace

// The rule, from paired 1-thread timings against the kernels before (few_channel_rows.cpp,
// and the direct path for C = 6; benchmarks/bench_pair_s2c.py, CPU time, medians of 5
// alternating rounds, Zen 4 at load 4; ms before/after, 'same' pads, N=256 unless noted):
//                  forward                               backward data  backward weights
//   C=1 56x56      0.614/0.248                           0.618/0.326    0.561/0.298
//   C=1 N=32 112   0.205/0.117                           0.251/0.136    0.169/0.125
//   C=1 7x7        0.068/0.031                           0.049/0.028    0.047/0.032
//   C=2 / 3 / 4 28x28    0.346/0.202 0.733/0.352 0.835/0.510
//   C=2 / 3 / 4 56x56    1.416/1.008 2.630/2.047 3.860/3.695
//   C=2 / 3 / 4 7x7      0.083/0.056 0.103/0.088 0.123/0.096
//   C=6            28x28 1.298/0.914, 14x14 0.479/0.401, 56x56 5.174/6.035, N=32 112 2.378/2.263
//   backward data  C=2 / 3 / 4 56x56    1.191/1.047 2.467/2.350 3.741/2.817
//                  C=2 / 3 / 4 N=32 112 0.475/0.351 0.956/0.610 1.460/1.487
//                  C=2 / 3 / 4 14x14    0.106/0.102 0.219/0.152 0.277/0.208
//                  C=2 / 3 / 4 7x7      0.054/0.052 0.073/0.080 0.084/0.108
// An earlier weight pass over planes for C = 2..4 (tap groups of 9*C*C/3 or C*C accumulators)
// lost to the row kernel at 7..28 columns (C = 3 7x7 0.073/0.106, N=32 112 0.549/0.764).
// The one here (dw_group: 9 pairs x 3 channels, masked tails, p2 from the split's registers)
// takes C = 3 (paired against the row kernel, 1 thread, CPU time, Zen 4 at load 2-4, ms:
// N=256 56x56 1.94/1.20, 28x28 0.485/0.318, N=32 56x56 0.220/0.151, N=32 112x112
// 0.748/0.562); for C = 6 it lost to the direct path (7x7 0.135/0.203, 14x14 0.303/0.816,
// 56x56 4.79/7.24: the 6-channel pair split of x dominated) and C = 2, 4 stay on the rows;
// nor at 7x7 (0.070/0.073). Past 4 M floats of x (N=256 112x112, 38 MB) it lost too
// (7.03/8.12) until the next block's rows were prefetched (Planes::prefetch_over): 8.03/5.69
// against the rows. With the prefetch C = 6 still loses (7x7 0.164/0.410, 56x56 5.98/8.20).
// Backward data for C >= 2 from 14 columns (C = 4 up to 64); it stopped at 4 M floats of dx
// (N=256 112x112 C=3, 38 MB, past the 32 MB L3: 9.031/8.941, 7.351/7.931, 8.058/8.538 in
// three runs) until the next item's dx rows were prefetched: now 8.86/5.60 there (C = 2
// 4.39/3.63, C = 4 N=400 56x56 5.59/4.17). The forward for C = 6 at every width (up to 32 columns
// before; with the prefetch the planes beat the direct path at 56x56 5.19/4.00, N=32 112x112
// 2.41/1.92, N=256 112x112 17.2/15.6): where they were measured to win.
// At AVX-512 the C = 3 weight pass goes on to few_channel_s2_patch.cpp (from the NHWC rows,
// 0.53-0.64 of the time here; the planes stay for avx2 and the baseline).
// Backward data for C = 6 at AVX-512 at every width (its 24 dy vectors and 5 accumulators
// fit 32 registers, the weights broadcast from memory; against the direct path, paired, 1
// thread, CPU time, Zen 4 at load 5, N=256, ms: 7x7 0.162/0.123, 14x14 0.387/0.222, 28x28
// 0.928/0.685, 56x56 3.70/2.82, 112x112 15.2/10.7, N=32 112x112 1.86/1.32). Not at 16
// registers (avx2, baseline: unmeasured, it would spill).
bool s2_planes_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && v.kh == 3 && v.kw == 3 && v.dh == 1 &&
                        v.dw == 1 && v.sh == 2 && v.sw == 2 && v.pt >= 0 && v.pt <= 2 &&
                        v.pl >= 0 && v.pl <= 2 && g.n > 0 && g.oh > 0 && g.ow > 0 && g.h > 0 &&
                        g.w > 0;
  if (!eligible) return false;
  if (pass == ConvPass::BackwardData)
    return g.c == 1 || (g.c <= 4 && g.w >= 14 && (g.c < 4 || g.w <= 64)) ||
           (g.c == 6 && kVectorRegisters >= 32);
  // At 16 registers (avx2, the baseline: dw_group's 4 pairs x 3 channels, not 9 x 3) the C = 3
  // weight pass stays on the row kernel up to 16 columns (paired, 1 thread, AVX2-only EPYC,
  // N=256, ms planes/rows: avx2 14x14 0.216-0.246/0.174-0.182, 17x17 0.306/0.254, 20x20
  // 0.331/0.314, 24x24 0.312/0.493, 28x28 0.501/0.530; baseline 14x14 0.423/0.365, 20x20
  // 0.383/0.515). Its backward data lost on the rows at every width (14x14 1.75, 56x56 1.56
  // of the planes' time at avx2).
  if (pass != ConvPass::Forward)
    return g.c == 1 || (g.c == 3 && g.w >= (kVectorRegisters >= 32 ? 14 : 17));
  return (g.c >= 1 && g.c <= 4) || g.c == 6;
}

void s2_planes_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act) {
  switch (g.c) {
    case 1: return s2_c1_forward(g, x, w, b, y, act) ? void() : forward_c<1>(g, x, w, b, y, act);
    case 2: return forward_c<2>(g, x, w, b, y, act);
    case 3:  // from the rows (few_channel_s2_patch_fwd3.cpp)
      return s2_patch_forward3(g, x, w, b, y, act) ? void() : forward_c<3>(g, x, w, b, y, act);
    case 4: return forward_c<4>(g, x, w, b, y, act);
    case 6:  // under 8 output columns from the rows (few_channel_s2_patch_fwd.cpp)
      return s2_patch_forward(g, x, w, b, y, act) ? void() : forward_c<6>(g, x, w, b, y, act);
  }
}

namespace {

// The first n floats of v to p (0 < n < L): a masked store at AVX-512.
inline void store_first(float* p, vec v, int64_t n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#else
  std::memcpy(p, &v, sizeof(float) * n);
#endif
}

// dst[j*2C + b*C + ci] = (b ? odd : even)[ci*cs + j] for j < pairs (a multiple of L), cut at
// the first `count` floats of dst: the 2C planar rows of a pixel pair's channels back to NHWC
// (merge_pairs), the last register stored in part. Into the dx row itself where no left pad
// is cropped: through a staging row and memcpy, the copy's loads straddled the stores just
// made (no store forwarding), 13% of a C=3 28x28 backward data pass in perf.
template <int C>
void merge_parities(const float* even, const float* odd, int64_t cs, int64_t pairs, float* dst,
                    int64_t count) {
  for (int64_t j = 0; j < pairs && 2 * C * j < count; j += L) {
    vec planar[2 * C], nhwc[2 * C];
#pragma GCC unroll 8
    for (int ci = 0; ci < C; ++ci) {
      planar[ci] = load(even + ci * cs + j);
      planar[C + ci] = load(odd + ci * cs + j);
    }
    stride2::merge_pairs<C>(planar, nhwc, 2 * C * j + C * L < count);
#pragma GCC unroll 8
    for (int k = 0; k < 2 * C; ++k) {
      const int64_t off = 2 * C * j + k * L;
      if (off + L <= count) store(dst + off, nhwc[k]);
      else if (off < count) store_first(dst + off, nhwc[k], count - off);
    }
  }
}

// *p in every lane (x - 0 folds to x, and to a broadcast operand of the multiply-add at
// AVX-512; vec{} + x kept a scalar add of 0 per weight).
inline vec bcast(const float* p) { return *p - vec{}; }

// dst[c*plane + k] = src[k*C + c] for k < n < L, whole registers stored: the lanes from n
// on are zeros (dy's zero columns, or the places of rows written later). Before, one float
// at a time: ~20% of a C=6 N=256 28x28 data pass (14 columns, all in the tail).
template <int C>
inline void split_tail(const float* src, int64_t n, float* dst, int64_t plane) {
  vec in[C], out[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const int64_t cnt = std::min<int64_t>(std::max<int64_t>(n * C - c * L, 0), L);
    in[c] = cnt == L ? load(src + c * L) : cnt > 0 ? load_first(src + c * L, cnt) : vec{};
  }
  pixel_transpose::split<C>(in, out);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) store(dst + c * plane, out[c]);
}

// Backward data, by parity (sub-pixel): padded dx pixel (2i + a, 2j + b) gets the taps with
// ky % 2 == a, kx % 2 == b from dy[i - ky / 2][j - kx / 2]: 4, 2, 2 or 1 of them, the 9 taps
// once per 2x2 quad of pixels. A block of plane rows i0 .. i0 + rows - 1 copies dy rows
// i0 - 1 .. i0 + rows - 1, split to C planes, at pitch P = OW + 1, a zero column before each
// row (it is dy's column -1 and, the next row's, column OW; zero rows outside dy), so every
// tap is the same flat offset into the copy D: the four parity planes of each channel come
// from 4*C loads (D[q], D[q + 1], D[q + P], D[q + P + 1]) and 9*C*C multiply-adds per
// vector, then each dx row is its 2C planes interleaved (merge_parities), cropped by the
// left pad.
template <int C>
void backward_data_c(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t P = g.ow + 1, pt = g.win.pt, pl = g.win.pl;
  const int64_t I = (g.h - 1 + pt) / 2 + 1;                   // plane rows of the padded dx
  const int64_t pairs = round_up((pl + g.w + 1) / 2, L);      // merged columns >= pl + W
  const int threads = threads_for(g);
  const int64_t spread = threads > 1 ? std::max<int64_t>(1, g.n * I / (4 * threads)) : I;
  const int64_t R = std::max<int64_t>(1, std::min({kPackFloats / (5 * C * P) - 2, I, spread}));
  const int64_t per_image = (I + R - 1) / R, dsize = (R + 2) * P + 2 * L;
  const int64_t psize = R * P + pairs + 2 * L;
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    std::vector<float> buf;
    errors.run([&] { buf.assign((size_t)(C * dsize + 4 * C * psize + 2 * C * pairs + L), 0.f); });
    float* D = buf.data();  // channel co at co*dsize
    float* E[2] = {D + C * dsize, D + C * dsize + C * psize};  // channel ci at ci*psize
    float* O[2] = {D + C * dsize + 2 * C * psize, D + C * dsize + 3 * C * psize};
    float* merged = D + C * dsize + 4 * C * psize;
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < g.n * per_image; ++it) {
      if (errors.failed()) continue;
      const int64_t n = it / per_image, i0 = (it % per_image) * R;
      const int64_t rows = std::min(I - i0, R);
      for (int64_t r = 0; r <= rows; ++r) {  // D row r: dy row i0 - 1 + r
        const int64_t oy = i0 - 1 + r;
        if (oy < 0 || oy >= g.oh) {
          for (int co = 0; co < C; ++co) std::memset(D + co * dsize + r * P, 0, sizeof(float) * P);
          continue;
        }
        const float* src = dy + (n * g.oh + oy) * g.ow * C;
        float* dst = D + r * P + 1;
        if constexpr (C == 1) {
          std::memcpy(dst, src, sizeof(float) * g.ow);
        } else {
          const int64_t k = pixel_transpose::split_rows<C>(src, g.ow, dst, dsize);
          if (k < g.ow) split_tail<C>(src + k * C, g.ow - k, dst + k, dsize);
        }
      }
      // The next item's dx rows, prefetched for writing while this one computes, a few lines
      // a vector: the merge's stores missed (paired, 1 thread, CPU time, Zen 4 at load 4.5,
      // ms: N=256 56x56 C=3 1.90/1.48, 28x28 0.405/0.413, N=32 112x112 0.599/0.567).
      stride2::LinePrefetch<true> pf;
      if (it + 1 < g.n * per_image && 4 * g.n * g.h * g.w * C >= stride2::kPrefetchFromBytes) {
        const int64_t n1 = (it + 1) / per_image, j0 = ((it + 1) % per_image) * R;
        const int64_t r0 = std::max<int64_t>(0, 2 * j0 - pt);
        const int64_t r1 = std::min(g.h, 2 * std::min(I, j0 + R) - pt);
        pf.set(dx + (n1 * g.h + r0) * g.w * C, dx + (n1 * g.h + r1) * g.w * C, rows * P / L);
      }
      // Whole vectors past rows*P: the planes' slack, never merged.
      for (int64_t q = 0; q < rows * P; q += L) {
        pf.step();
        vec d00[C], d01[C], d10[C], d11[C];
#pragma GCC unroll 8
        for (int co = 0; co < C; ++co) {
          const float* d = D + co * dsize + q;
          d00[co] = load(d), d01[co] = load(d + 1), d10[co] = load(d + P), d11[co] = load(d + P + 1);
        }
#pragma GCC unroll 8
        for (int ci = 0; ci < C; ++ci) {
          vec e0{}, e0b{}, o0{}, e1{}, o1{};
          const float* k = w + ci * C;  // tap t, channel co: k[t*C*C + co] (HWIO)
          // One multiply-add per product, each weight broadcast from memory (at AVX-512 an
          // operand of the multiply-add: no register, no full-vector load), the 4C products
          // of e0 in two chains. As sums of products GCC multiplied the first of each sum and
          // added the sum in (5 operations per 4 products).
#pragma GCC unroll 8
          for (int co = 0; co < C; ++co) {
            e0 += bcast(k + 0 * C * C + co) * d11[co];
            e0 += bcast(k + 2 * C * C + co) * d10[co];
            e0b += bcast(k + 6 * C * C + co) * d01[co];
            e0b += bcast(k + 8 * C * C + co) * d00[co];
            o0 += bcast(k + 1 * C * C + co) * d11[co];
            o0 += bcast(k + 7 * C * C + co) * d01[co];
            e1 += bcast(k + 3 * C * C + co) * d11[co];
            e1 += bcast(k + 5 * C * C + co) * d10[co];
            o1 += bcast(k + 4 * C * C + co) * d11[co];
          }
          e0 += e0b;
          store(E[0] + ci * psize + q, e0);
          store(O[0] + ci * psize + q, o0);
          store(E[1] + ci * psize + q, e1);
          store(O[1] + ci * psize + q, o1);
        }
      }
      for (int64_t i = i0; i < i0 + rows; ++i)
        for (int a = 0; a < 2; ++a) {
          const int64_t iy = 2 * i + a - pt;
          if (iy < 0 || iy >= g.h) continue;
          const int64_t q = (i - i0) * P;
          float* row = dx + (n * g.h + iy) * g.w * C;
          if (pl == 0) {  // straight into the row
            merge_parities<C>(E[a] + q, O[a] + q, psize, pairs, row, g.w * C);
          } else {
            merge_parities<C>(E[a] + q, O[a] + q, psize, pairs, merged, (pl + g.w) * C);
            std::memcpy(row, merged + pl * C, sizeof(float) * g.w * C);
          }
        }
    }
  });
  errors.rethrow();
}

}  // namespace

bool s2_planes_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (!all_finite(w, 9 * g.c * g.c)) return false;
  switch (g.c) {
    case 1: return s2_c1_backward_data(g, dy, w, dx) || (backward_data_c<1>(g, dy, w, dx), true);
    case 2: return backward_data_c<2>(g, dy, w, dx), true;
    case 3: return s2_data_flat(g, dy, w, dx) || (backward_data_c<3>(g, dy, w, dx), true);
    case 4: return backward_data_c<4>(g, dy, w, dx), true;
    case 6: return s2_data_flat(g, dy, w, dx) || (backward_data_c<6>(g, dy, w, dx), true);
  }
  return false;
}

}  // namespace fastconv::cpu::detail
