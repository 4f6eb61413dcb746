// The depthwise weight pass (dW, db), M == 1 fast path and the generic loops; the forward and
// backward data passes are in depthwise.cpp (whose head comment has the design), the helpers
// both use in depthwise_gather.h.
//   per row and block, KH*KW (+1 for db) register accumulators over the row's pixels (over
//   groups of rows on small images, C <= 32; over pairs of rows for 3x3 stride 1 otherwise,
//   weights_pair), added into per-thread float partials flushed to double ones, which
//   are summed in thread order (deterministic for a given thread count).
// Below AVX-512 the 3x3 blocks run in the level's own registers (depthwise_weights_regs.h).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu/depthwise_flat.h"
#include "cpu/depthwise_flat8.h"
#include "cpu/depthwise_gather.h"
#include "cpu/depthwise_weights_regs.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

// Backward weights, M == 1, `k` output rows (rows[j]: row j's kh input row pointers, dyrows[j]
// its dy row), channels [c0, c0 + n): part[tap*cpad + c] += sum over the rows' pixels of
// dy * x at the tap, dbpart[c] += sum of dy (cpad = C rounded up to a multiple of 16, so
// every block adds whole vectors). The sums stay in registers over the k rows: on 7-pixel
// rows adding them to part after every row cost 30 memory operations a row against 70 FMAs.
template <int K, bool Full>
void weights_block(const Gather& q, const float* const (*rows)[kMaxKh], const float* const* dyrows, int k,
                   int64_t c0, int n, int64_t cpad, float* part, float* dbpart) {
  const int64_t kh = K ? K : q.kh, kw = K ? K : q.kw, C = q.c;
  const int64_t xs = q.sw * C, ts = q.dw * C;
  f32x16 acc[K ? K * K : kMaxTaps];
  for (int64_t i = 0; i < kh * kw; ++i) acc[i] = f32x16{};
  f32x16 s{};
  const int64_t base = c0 - q.pl * C;
  for (int j = 0; j < k; ++j) {
    const float* const* r = rows[j];
    const float* dyrow = dyrows[j];
    int64_t ox = q.lo;
    if constexpr (K == 3) {
      if (q.sw == 1 && q.dw == 1 && ox < q.hi) {  // sliding 3-column window, as in gather_block
        f32x16 a0[3], a1[3];
        for (int ky = 0; ky < 3; ++ky) {
          a0[ky] = ld<Full>(r[ky] + base + ox * C, n);
          a1[ky] = ld<Full>(r[ky] + base + (ox + 1) * C, n);
        }
        for (; ox < q.hi; ++ox) {
          const f32x16 d = ld<Full>(dyrow + ox * C + c0, n);
          s += d;
          for (int ky = 0; ky < 3; ++ky) {
            const f32x16 a2 = ld<Full>(r[ky] + base + (ox + 2) * C, n);
            acc[3 * ky] += d * a0[ky];
            acc[3 * ky + 1] += d * a1[ky];
            acc[3 * ky + 2] += d * a2;
            a0[ky] = a1[ky];
            a1[ky] = a2;
          }
        }
      }
    }
    for (; ox < q.hi; ++ox) {
      const f32x16 d = ld<Full>(dyrow + ox * C + c0, n);
      s += d;
      for (int64_t ky = 0; ky < kh; ++ky) {
        const float* p = r[ky] + (base + ox * xs);
        for (int64_t kx = 0; kx < kw; ++kx) acc[ky * kw + kx] += d * ld<Full>(p + kx * ts, n);
      }
    }
    auto edge = [&](int64_t ox) {
      const f32x16 d = ld<Full>(dyrow + ox * C + c0, n);
      s += d;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t ix = ox * q.sw - q.pl + kx * q.dw;
        if (ix < 0 || ix >= q.iw) continue;
        for (int64_t ky = 0; ky < kh; ++ky)
          acc[ky * kw + kx] += d * ld<Full>(r[ky] + ix * C + c0, n);
      }
    };
    for (int64_t ox = 0; ox < q.lo; ++ox) edge(ox);
    for (int64_t ox = q.hi; ox < q.ow; ++ox) edge(ox);
  }
  // Lanes >= n hold zeros (masked loads), so whole vectors are added to the padded rows.
  for (int64_t i = 0; i < kh * kw; ++i) store16(part + i * cpad + c0, load16(part + i * cpad + c0) + acc[i]);
  if (dbpart) store16(dbpart + c0, load16(dbpart + c0) + s);
}

// weights_block for two consecutive output rows of one image (3x3, stride and dilation 1):
// x4 their four input rows (x4[ky + j] is row j's tap row ky), dya / dyb their dy rows. Each
// input row is loaded once for both rows (4 loads a pixel for 18 FMAs, not 3 for 9), and the
// sums are added to part once per pair. N=32 7x7x512, where every load comes from L2 (a
// row's 3 input rows and dy are 56 KB), the weight pass took twice the data pass's time.
// Weight pass ms, 1 thread, CPU time, medians of 40 calls alternating the two builds in one
// process (load 4.3), rows alone -> pairs: N=32 7x7x512 0.86 -> 0.57, N=1 28x28x512
// 0.36 -> 0.23, N=1 56x56x512 1.78 -> 1.54, N=1 112x112x96 0.43 -> 0.35, N=256 7x7x96
// 0.65 -> 0.57, N=32 7x7x256 0.198 -> 0.168, N=32 56x56x48 4.23 -> 3.61; and on rows of 16
// pixels and more with C = 16..32: N=1 112x112x32 0.147 -> 0.113, N=32 28x28x24
// 0.36 -> 0.20, N=32 56x56x16 0.76 -> 0.71.
template <bool Full>
void weights_pair(const Gather& q, const float* const* x4, const float* dya, const float* dyb,
                  int64_t c0, int n, int64_t cpad, float* part, float* dbpart, const RowPrefetch& pf,
                  int64_t blk, int64_t blocks) {
  const int64_t C = q.c, base = c0 - q.pl * C;
  // This block's slice of the rows in pf (none when pf.n == 0), a line of each row per pixel
  // in the loop (spread among the FMAs; requested in one burst they stalled the loads), the
  // rest of the slice after it.
  const int64_t pf_lo = pf.bytes * blk / blocks / 64 * 64, pf_hi = pf.bytes * (blk + 1) / blocks;
  int64_t pf_at = pf_lo;
  f32x16 acc[9];
  for (auto& a : acc) a = f32x16{};
  f32x16 s{};
  int64_t ox = q.lo;
  if (ox < q.hi) {
    f32x16 a0[4], a1[4];
    for (int r = 0; r < 4; ++r) {
      a0[r] = ld<Full>(x4[r] + base + ox * C, n);
      a1[r] = ld<Full>(x4[r] + base + (ox + 1) * C, n);
    }
    for (; ox < q.hi; ++ox) {
      const f32x16 da = ld<Full>(dya + ox * C + c0, n), db = ld<Full>(dyb + ox * C + c0, n);
      s += da + db;
      f32x16 a2[4];
      for (int r = 0; r < 4; ++r) a2[r] = ld<Full>(x4[r] + base + (ox + 2) * C, n);
      if (pf_at < pf_hi) {
        for (int k = 0; k < pf.n; ++k) __builtin_prefetch((const char*)pf.rows[k] + pf_at, 0, 2);
        pf_at += 64;
      }
      for (int ky = 0; ky < 3; ++ky) {
        acc[3 * ky] += da * a0[ky] + db * a0[ky + 1];
        acc[3 * ky + 1] += da * a1[ky] + db * a1[ky + 1];
        acc[3 * ky + 2] += da * a2[ky] + db * a2[ky + 1];
      }
      for (int r = 0; r < 4; ++r) a0[r] = a1[r], a1[r] = a2[r];
    }
  }
  auto edge = [&](int64_t ox, const float* const* r, const float* dyrow) {
    const f32x16 d = ld<Full>(dyrow + ox * C + c0, n);
    s += d;
    for (int64_t kx = 0; kx < 3; ++kx) {
      const int64_t ix = ox - q.pl + kx;
      if (ix < 0 || ix >= q.iw) continue;
      for (int64_t ky = 0; ky < 3; ++ky) acc[ky * 3 + kx] += d * ld<Full>(r[ky] + ix * C + c0, n);
    }
  };
  for (int64_t e = 0; e < q.ow; ++e) {
    if (e == q.lo) e = std::max(q.lo, q.hi);
    if (e >= q.ow) break;
    edge(e, x4, dya);
    edge(e, x4 + 1, dyb);
  }
  for (int k = 0; k < pf.n && pf_at < pf_hi; ++k) prefetch_bytes<true>((const char*)pf.rows[k] + pf_at, pf_hi - pf_at);
  for (int i = 0; i < 9; ++i) store16(part + i * cpad + c0, load16(part + i * cpad + c0) + acc[i]);
  if (dbpart) store16(dbpart + c0, load16(dbpart + c0) + s);
}

// pf: the next pair's new input and dy rows, into L2 (see depthwise_backward_weights), block b
// of `blocks` requesting slice b of each row.
void weights_pairs(const Gather& q, const float* const* x4, const float* dya, const float* dyb,
                   int64_t cpad, float* part, float* dbpart, const RowPrefetch& pf) {
#if !defined(__AVX512F__)
  // Below AVX-512: in the level's own registers (depthwise_weights_regs.h).
  {
    const int64_t blocks = (q.c + kRegLanes - 1) / kRegLanes;
    int64_t c0 = 0, b = 0;
    for (; c0 + kRegLanes <= q.c; c0 += kRegLanes)
      weights_pair_regs<true>(q, x4, dya, dyb, c0, kRegLanes, cpad, part, dbpart, pf, b++, blocks);
    if (c0 < q.c) weights_pair_regs<false>(q, x4, dya, dyb, c0, (int)(q.c - c0), cpad, part, dbpart, pf, b++, blocks);
    return;
  }
#endif
  const int64_t blocks = (q.head > 0) + (q.c - q.head + kLanes - 1) / kLanes;
  int64_t c0 = 0, b = 0;
  if (q.head > 0) weights_pair<false>(q, x4, dya, dyb, 0, (int)q.head, cpad, part, dbpart, pf, b++, blocks), c0 = q.head;
  for (; c0 + kLanes <= q.c; c0 += kLanes)
    weights_pair<true>(q, x4, dya, dyb, c0, kLanes, cpad, part, dbpart, pf, b++, blocks);
  if (c0 < q.c) weights_pair<false>(q, x4, dya, dyb, c0, (int)(q.c - c0), cpad, part, dbpart, pf, b++, blocks);
}

template <int K>
void weights_rows(const Gather& q, const float* const (*rows)[kMaxKh], const float* const* dyrows, int k,
                  int64_t cpad, float* part, float* dbpart) {
  int64_t c0 = 0;
#if !defined(__AVX512F__)
  if constexpr (K == 3) {  // below AVX-512: in the level's own registers (depthwise_weights_regs.h)
    for (; c0 + kRegLanes <= q.c; c0 += kRegLanes)
      weights_block3_regs<true>(q, rows, dyrows, k, c0, kRegLanes, cpad, part, dbpart);
    if (c0 < q.c) weights_block3_regs<false>(q, rows, dyrows, k, c0, (int)(q.c - c0), cpad, part, dbpart);
    return;
  }
#endif
  if (q.head > 0) weights_block<K, false>(q, rows, dyrows, k, 0, (int)q.head, cpad, part, dbpart), c0 = q.head;
  for (; c0 + kLanes <= q.c; c0 += kLanes)
    weights_block<K, true>(q, rows, dyrows, k, c0, kLanes, cpad, part, dbpart);
  if (c0 < q.c) weights_block<K, false>(q, rows, dyrows, k, c0, (int)(q.c - c0), cpad, part, dbpart);
}

// Per-thread partials of dW (and db after it) for lines [l0, l1) of the generic path.
void generic_weights_lines(const ConvGeometry& g, const float* dy, const float* x, int64_t l0,
                           int64_t l1, float* pw, float* pb) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc;
  for (int64_t l = l0; l < l1; ++l) {
    const int64_t n = l / g.oh, oy = l % g.oh;
    const float* dyl = dy + l * g.ow * oc;
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const float* d = dyl + ox * oc;
#pragma omp simd
      for (int64_t o = 0; o < oc; ++o) pb[o] += d[o];
    }
    for (int64_t ky = 0; ky < v.kh; ++ky) {
      const int64_t iy = oy * v.sh - v.pt + ky * v.dh;
      if (iy < 0 || iy >= g.h) continue;
      const float* xrow = x + (n * g.h + iy) * g.w * g.c;
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
          if (ix < 0 || ix >= g.w) continue;
          tap_fma(g.c, m, xrow + ix * g.c, dyl + ox * oc, pw + (ky * v.kw + kx) * oc);
        }
    }
  }
}

}  // namespace

void depthwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db) {
  if (depthwise_flat_applies(g)) return depthwise_flat_backward_weights(g, dy, x, dw, db);
  // avx2, C <= 8 'same': the flat rows in 8-lane vectors (depthwise_flat8.cpp).
  if (depthwise_flat8_weights_applies(g)) return depthwise_flat8_backward_weights(g, dy, x, dw, db);
  const int64_t oc = g.oc, wsize = g.weight_size(), lines = g.n * g.oh;
  const bool fast = fast_m1(g);
  Gather q = forward_gather(g);
  // AVX-512, C >= 256 a multiple of 16, rows of 14 pixels and more, x and dy at the same
  // place off a 64-byte line (NumPy's large arrays start 16 bytes past one): the channels up
  // to the line first, masked (Gather::head, as the tiles of depthwise.cpp), so every other
  // block's loads are whole lines (here no store splits: the sums stay in registers); the
  // partial rows get 16 floats more for the last block, which then ends past C. Paired
  // (ab_two_builds.py dww, 1 thread, CPU time), after / before: N=1 56x56x256 0.85, 0.87,
  // 0.96; N=1 56x56x512 0.73, 0.88; N=32 14x14x256 0.93, 0.92; N=32 14x14x512 0.95; N=32
  // 28x28x256 0.82; N=1 28x28x512 0.98, 0.99; N=1 112x112x256 1.07, 0.82; N=1 112x112x512
  // 0.99; but 7-pixel rows 1.02-1.07 in all four runs (N=32 7x7x512, N=256 7x7x256: the
  // extra block's edges, set-up and flush against 7 pixels), hence the 14.
#if defined(__AVX512F__)
  const uintptr_t mis = (uintptr_t)x & 63;
  if (fast && g.c >= 256 && g.c % kLanes == 0 && q.ow >= 14 && ((uintptr_t)dy & 63) == mis && (mis & 3) == 0)
    q.head = (int64_t)((64 - mis) & 63) / 4;
#endif
  // Per-thread partial sums (dW then db), reduced in thread order afterwards: no atomics,
  // and the result is the same on every run with the same thread count. The fast path
  // keeps them in double, (taps + 1) rows of cpad channels.
  const int64_t taps = g.win.kh * g.win.kw,
                cpad = (g.c + kLanes - 1) / kLanes * kLanes + (q.head > 0 ? kLanes : 0);
  const int64_t stride = fast ? (taps + 1) * cpad : wsize + oc;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part(fast ? (size_t)(max_threads * stride) : 0, 0.0);
  std::vector<float> fpart(fast ? 0 : (size_t)(max_threads * stride), 0.f);
  const std::vector<float> zeros(fast ? (size_t)(g.w * g.c) : 0, 0.f);
  int used = 1;
  ExceptionCaptor errors;  // scratch() may grow
#pragma omp parallel if (g.output_size() >= kParallelGrain)
  {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
    if (fast) errors.run([&] {
      // Rows add into float partials (whole vectors), folded into the thread's double
      // totals every kFlushLines lines: the float error stays that of a short sum.
      constexpr int64_t kFlushLines = 16;
      float* fw = scratch(stride);
      std::fill(fw, fw + stride, 0.f);
      double* total = part.data() + t * stride;
      auto flush = [&] {
        for (int64_t i = 0; i < stride; ++i) total[i] += fw[i];
        std::fill(fw, fw + stride, 0.f);
      };
      float* fb = db ? fw + taps * cpad : nullptr;
      const bool k3 = g.win.kh == 3 && g.win.kw == 3;
      const int64_t row_bytes = g.ow * oc * (int64_t)sizeof(float);
      // Rows per call of weights_rows: up to 64 pixels' worth (7x7 images: 9 rows, within the
      // kFlushLines of the float partials) on rows under 16 pixels with C <= 32, else one
      // (walk_lines requests each next row ahead; 3x3 s1 rows in pairs). Weight pass ms,
      // 1 thread, medians of 4 alternating processes: N=256 7x7x16 0.082 -> 0.067, but 7x7x64 0.28 -> 0.34 and
      // 7x7x512 (N=32) 0.58 -> 1.08: a block's pass over 9 rows steps C*4 bytes a pixel
      // through a few of L1's sets, and the rows evicted each other.
      const int64_t group = q.ow >= 16 || q.c > 32 ? 1 : std::min<int64_t>(kFlushLines, 64 / q.ow);
      if (group == 1) {
        // 3x3 stride 1: consecutive output rows in pairs (weights_pair) where the second's
        // input rows continue the first's; a row whose next does not (another image's
        // first, the thread's last) alone.
        const bool pairs = k3 && q.sw == 1 && q.dw == 1 && q.sh == 1 && q.dh == 1;
        const float* held[1][kMaxKh];  // the row waiting for its pair (held_dy != nullptr)
        const float* held_dy = nullptr;
        int64_t since = 0;  // lines in the float partials
        auto single = [&](const float* const (*r)[kMaxKh], const float* dyrow) {
          if (since + 1 > kFlushLines) flush(), since = 0;
          ++since;
          if (k3) weights_rows<3>(q, r, &dyrow, 1, cpad, fw, fb);
          else weights_rows<0>(q, r, &dyrow, 1, cpad, fw, fb);
        };
        // Rows in pairs: the next pair's two new input rows and two dy rows are requested
        // into L2 while the pair runs, a slice of each row per channel block and in the
        // block's loop one line of each row per pixel (weights_pair's pf), instead of the next
        // line's rows into L1 in one burst before each line. A block walks 64 bytes out of
        // every C*4 of six rows, a pattern the hardware prefetchers follow poorly: perf put
        // most of weights_pair's samples on the loads of the new rows (dy's most). Weight pass
        // ms, 1 thread, CPU time, paired in one process (ab_two_builds.py dww, load 9-11),
        // burst -> a burst of slice per block (first try) -> a line per pixel: N=1 56x56x512
        // 1.82 -> 1.49, 2.01 -> 1.03 (2.28 -> 1.49 against the burst in the same run), N=32
        // 14x14x512 3.98 -> 2.06 -> 2.13 (4.43 -> 2.34), N=32 28x28x128 3.86 -> 1.94 (4.56 ->
        // 2.11), N=256 14x14x64 3.67 -> 1.54 (3.63 -> 1.39), N=32 56x56x24 2.40 -> 1.33, N=32
        // 56x56x16 0.63 -> 0.37, N=256 7x7x96 1.65 -> 0.91. The burst of slices was 1.08-1.2x
        // slower on inputs of 0.8-3.2 MB (N=1 28x28x512, N=32 7x7x256, N=1 112x112x32, N=32
        // 28x28x32); a line per pixel is not (those and 13 more of 0.1-3.2 MB, two runs,
        // against the burst: 0.72-1.04 but for one run of N=32 7x7x512 at 1.36, its others
        // 0.72-1.01; N=256 7x7x64 0.72 and 0.51, N=1 28x28x256 0.80 and 0.97).
        walk_lines(q, x, zeros.data(), l0, l1, [&](int64_t l, const float* const* rows, const RowPrefetch& pf) {
          const float* dyrow = dy + l * g.ow * oc;
          if (!pairs) {
            pf.all();
            if (l + 1 < l1) prefetch_bytes(dyrow + g.ow * oc, row_bytes);
            const float* r[1][kMaxKh];
            std::copy(rows, rows + q.kh, r[0]);
            return single(r, dyrow);
          }
          if (held_dy && rows[0] == held[0][1] && rows[1] == held[0][2]) {
            const float* x4[4] = {held[0][0], held[0][1], held[0][2], rows[2]};
            if (since + 2 > kFlushLines) flush(), since = 0;
            since += 2;
            RowPrefetch next;  // the next pair's (lines l + 1, l + 2) new rows
            next.far = true;
            next.bytes = std::max(q.iw * q.c, g.ow * oc) * (int64_t)sizeof(float);
            for (int64_t k = 1; k <= 2 && l + k < l1; ++k) {
              const float* r[kMaxKh];
              tap_rows(q, x + (l + k) / q.oh * q.ih * q.iw * q.c, zeros.data(), (l + k) % q.oh, r);
              if (r[2] != zeros.data()) next.rows[next.n++] = r[2];
              next.rows[next.n++] = dyrow + k * g.ow * oc;
            }
            weights_pairs(q, x4, held_dy, dyrow, cpad, fw, fb, next);
            held_dy = nullptr;
            return;
          }
          if (held_dy) single(held, held_dy);
          std::copy(rows, rows + 3, held[0]);
          held_dy = dyrow;
        });
        if (held_dy) single(held, held_dy);
      } else {
        const int64_t plane = q.ih * q.iw * q.c;
        const float* r[kFlushLines][kMaxKh];
        const float* dyrows[kFlushLines];
        int64_t since = 0;  // lines in the float partials
        for (int64_t a = l0; a < l1; a += group) {
          const int k = (int)std::min<int64_t>(group, l1 - a);
          if (since + k > kFlushLines) flush(), since = 0;
          since += k;
          for (int j = 0; j < k; ++j) {
            tap_rows(q, x + (a + j) / q.oh * plane, zeros.data(), (a + j) % q.oh, r[j]);
            dyrows[j] = dy + (a + j) * g.ow * oc;
          }
          if (k3) weights_rows<3>(q, r, dyrows, k, cpad, fw, fb);
          else weights_rows<0>(q, r, dyrows, k, cpad, fw, fb);
        }
      }
      flush();
    });
    else {
      float* pw = fpart.data() + t * stride;
      generic_weights_lines(g, dy, x, l0, l1, pw, pw + wsize);
    }
  }
  errors.rethrow();
  // Sum of the threads' partials of entry i (fast layout: tap i / C, channel i % C).
  auto total = [&](int64_t i) {
    double s = 0.0;
    const int64_t j = fast ? i / g.c * cpad + i % g.c : i;
    for (int t = 0; t < used; ++t) s += fast ? part[t * stride + j] : fpart[t * stride + j];
    return (float)s;
  };
  for (int64_t i = 0; i < wsize; ++i) dw[i] = total(i);
  if (db)
    for (int64_t o = 0; o < oc; ++o) db[o] = total(wsize + o);
}

}  // namespace fastconv::cpu::detail
