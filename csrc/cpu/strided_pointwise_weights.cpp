// Weight pass of a strided 1x1 conv (groups == 1, no pads, stride > 1 on either axis) with
// 17..32 channels each side, NHWC / HWIO, AVX-512 only (issue 18 item 3, helper W, stop 36):
//   dw[ci, co] = sum over output pixels p of x[pixel p reads, ci] * dy[p, co],  db = sum dy.
//
// Why: on the narrow per-pixel kernels (narrow_pointwise_weights.cpp dot_wide, Cin in blocks
// of <= 13 channels, rows of whole images as items) 1x1 s2 N=32 112x112 C=24 took 4.17 ms in
// the sweep for 116 MFLOP (roofline 0.28, the family's threshold 0.35).
// Here the input channels run in kBlocks blocks of NB <= 12 (Cin 17..24: two, 25..32: three),
// each a register tile of NB x Cout accumulators (a zmm and a ymm, or two zmm, per input
// channel: at most 24) over a sub-block of kSub pixels: per pixel dy's two vectors are loaded
// once and NB broadcasts of x multiply them. The blocks of one sub-block read the same x lines
// and dy rows from L1. A work item's sums are in float (kItemPixels pixels), then added to
// the thread's double partials, which are summed in thread order at the end: deterministic
// for a given thread count. x's pixels are prefetched kAheadPixels ahead (common header).
#include "cpu/strided_pointwise.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/strided_pointwise_common.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using namespace strided_pointwise;

constexpr int kMaxBlock = 12;         // input channels a register tile
constexpr int64_t kSub = 64;          // pixels a sub-block (x lines and dy rows stay in L1)
constexpr int64_t kItemPixels = 16 * kSub;
constexpr int64_t kRow = 32;          // floats a row of the accumulator buffers

// acc[j * kRow + o] += sum_p x_p[j] * dy[p * oc + o] for j < NB (x_p = xp[p] + ci0), and
// dbacc[o] += sum_p dy[p * oc + o] where dbacc is given.
template <class H, int NB>
void dot_block(const float* const* xp, int64_t np, int64_t ci0, const float* dy, int64_t oc,
               __mmask16 hi_mask, float* acc, float* dbacc, const float* const* pf, int64_t pf_last) {
  __m512 lo[NB];
  typename H::V hi[NB];
#pragma GCC unroll 12
  for (int j = 0; j < NB; ++j) lo[j] = _mm512_loadu_ps(acc + j * kRow), hi[j] = H::loadu(acc + j * kRow + 16);
  __m512 db0 = _mm512_setzero_ps();
  typename H::V db1 = H::zero();
  for (int64_t p = 0; p < np; ++p) {
    const float* xq = xp[p] + ci0;
    asm("" : "+r"(xq));  // one base register for the NB broadcasts (else GCC ran out of them)
    if (pf) __builtin_prefetch(pf[p], 0, 2), __builtin_prefetch(pf[p] + pf_last, 0, 2);
    const __m512 d0 = _mm512_loadu_ps(dy + p * oc);
    const typename H::V d1 = H::load_prefix(dy + p * oc + 16, hi_mask);
    if (dbacc) db0 = _mm512_add_ps(db0, d0), db1 = H::add(db1, d1);
#pragma GCC unroll 12
    for (int j = 0; j < NB; ++j) {
      const __m512 xv = _mm512_set1_ps(xq[j]);
      lo[j] = _mm512_fmadd_ps(xv, d0, lo[j]);
      hi[j] = H::fma(H::part(xv), d1, hi[j]);
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < NB; ++j) _mm512_storeu_ps(acc + j * kRow, lo[j]), H::storeu(acc + j * kRow + 16, hi[j]);
  if (dbacc) {
    _mm512_storeu_ps(dbacc, _mm512_add_ps(_mm512_loadu_ps(dbacc), db0));
    H::storeu(dbacc + 16, H::add(H::loadu(dbacc + 16), db1));
  }
}

using BlockFn = void (*)(const float* const*, int64_t, int64_t, const float*, int64_t, __mmask16,
                         float*, float*, const float* const*, int64_t);

template <class H>
BlockFn pick_block(int nb) {
  switch (nb) {
    case 12: return &dot_block<H, 12>;
    case 11: return &dot_block<H, 11>;
    case 10: return &dot_block<H, 10>;
    case 9: return &dot_block<H, 9>;
    default: return &dot_block<H, 8>;  // Cin 17 and 25 (blocks of 9 + 8, 9 + 8 + 8)
  }
}

template <class H>
void weights(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  const int64_t c = g.c, oc = g.oc;
  const int64_t step = g.win.sw * c, row_step = g.win.sh * g.w * c;
  const __mmask16 hi_mask = (__mmask16)((1u << (oc - 16)) - 1);
  // Blocks of input channels: as even as possible (17 -> 9 + 8, 24 -> 12 + 12, 32 -> 11 + 11 + 10).
  const int blocks = (int)((c + kMaxBlock - 1) / kMaxBlock);
  int64_t first[4] = {};
  BlockFn fn[3];
  for (int k = 0; k < blocks; ++k) {
    first[k + 1] = first[k] + (c - first[k]) / (blocks - k);
    fn[k] = pick_block<H>((int)(first[k + 1] - first[k]));
  }
  const int64_t pixels = g.n * g.oh * g.ow, items = (pixels + kItemPixels - 1) / kItemPixels;
  const int threads = pixels * c * oc < kParallelMacs ? 1 : std::max(1, get_num_threads());
  constexpr int64_t kPart = (kMaxChannels + 1) * kRow;  // dw rows, then db
  std::vector<double> parts((size_t)(threads * kPart), 0.0);
  parallel_region(threads, [&] {
    note_team();
    double* part = parts.data() + omp_get_thread_num() * kPart;
    alignas(64) float acc[kPart];
    const float* xp[kSub];
    const float* pf[kSub];  // the pixels kAheadPixels on (x's last pixel past the end)
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t p0 = it * kItemPixels, count = std::min(kItemPixels, pixels - p0);
      std::memset(acc, 0, sizeof acc);
      Cursor cur(g, x, p0), pre = cur;  // pre: kAheadPixels on, within x
      const int64_t ahead = std::min(kAheadPixels, pixels - 1 - p0);
      for (int64_t q = 0; q < ahead; ++q) pre.next(g, row_step);
      int64_t left = pixels - p0 - ahead;  // pixels from pre's on
      for (int64_t q = 0; q < count; q += kSub) {
        const int64_t np = std::min(kSub, count - q);
        for (int64_t r = 0; r < np; ++r) {
          xp[r] = cur.at(step);
          cur.next(g, row_step);
          pf[r] = pre.at(step);
          if (left > 1) pre.next(g, row_step), --left;
        }
        const float* dyq = dy + (p0 + q) * oc;
        for (int k = 0; k < blocks; ++k)
          fn[k](xp, np, first[k], dyq, oc, hi_mask, acc + first[k] * kRow,
                db && k == 0 ? acc + kMaxChannels * kRow : nullptr, k == 0 ? pf : nullptr, c - 1);
      }
      for (int64_t i = 0; i < kPart; ++i) part[i] += acc[i];
    }
  });
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t co = 0; co < oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + ci * kRow + co];
      dw[ci * oc + co] = (float)s;
    }
  if (db)
    for (int64_t co = 0; co < oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + kMaxChannels * kRow + co];
      db[co] = (float)s;
    }
}

}  // namespace

bool strided_pointwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                        float* dw, float* db) {
  if (!strided_pointwise_shape(g, ConvPass::BackwardWeights)) return false;
  if (g.oc <= 24)
    weights<Hi8>(g, dy, x, dw, db);
  else
    weights<Hi16>(g, dy, x, dw, db);
  return true;
}

#else

bool strided_pointwise_backward_weights(const ConvGeometry&, const float*, const float*, float*,
                                        float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
