// The max-pool forward over tiling windows (pool_tiling.cpp's forward: kh == sh, kw == sw, no
// padding) from 16 channels at AVX-512: cell by cell. Each window cell's channel run is read
// whole, in memory order, into the running max and argmax kept in the output pixel itself
// (a few L1-resident lines), instead of each block of 64 channels walking all the window's
// cells (max_window16, pool_windows.h). That walk read the kh*kw cells at once, each
// advancing 256 bytes per block: at C = 512 the two 2 KB cells of a window row were read
// interleaved, 256 bytes of one then of the other, which the hardware prefetchers followed
// badly. 2x2 with the argmax, 1 thread, CPU time, 5 rounds of alternating processes, ms
// (walk -> cells): (32, 14, 14, 512) 1.33 -> 0.56, (1, 112, 112, 512) 2.76 -> 1.09,
// (1, 56, 56, 256) 0.090 -> 0.067, (256, 7, 7, 128) 0.171 -> 0.138, (32, 28, 28, 64) 0.199 ->
// 0.172, (256, 14, 14, 24) 0.241 -> 0.223, (32, 112, 112, 16) 1.65 -> 1.66. The average
// pool keeps the walk: its sum stays in a register there, and the cell order's load and store
// of the running sum per cell cost more than they saved below 512 channels ((32, 28, 28, 64)
// 0.121 -> 0.169 ms, (32, 14, 14, 512) 0.50 -> 0.41). The same cells in the same order with the
// same comparisons, so the same floats and argmax as the walk.
#include "cpu/pool_tiling.h"

#include <cstdint>

#include "cpu/pool_tasks.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
namespace {

// kFar: software prefetch of the next output row's cells (the kh input rows below), as
// forward_rows16; with the cell order it paid at up to 64 channels from memory (2x2, ms,
// without -> with it, one process alternating the two call by call: (32, 56, 56, 16) 0.598
// -> 0.445, (256, 28, 28, 32) 2.65 -> 2.21, (256, 28, 28, 64) 4.12 -> 3.63), not from 128
// ((1, 112, 112, 128) 0.165 -> 0.225, (32, 28, 28, 512) 3.09 -> 4.34: the hardware
// prefetchers follow those long runs).
template <bool kFar>
void forward_cells(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  const PoolGeometry geo = g;
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    // sizes and pointers in locals of the body: the vector stores below may alias anything
    // the closure or g holds, which the compiler would otherwise reload after each of them
    const int64_t c = geo.c, w = geo.w, oh = geo.oh, ow = geo.ow, ky = geo.win.kh, kx = geo.win.kw;
    const int64_t nc = c1 - c0, full = nc / kLanes * kLanes, row = w * c;
    const __mmask16 tail = (__mmask16)((1u << (nc - full)) - 1u);
    const float* xi = x + img * geo.h * row + c0;
    float* ys = y;
    uint8_t* as = arg;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t o = ((img * oh + oy) * ow + ox) * c + c0;
        float* out = ys + o;
        uint8_t* at = as ? as + o : nullptr;
        const float* window = xi + oy * ky * row + ox * kx * c;
        for (int64_t a = 0; a < ky; ++a) {
          const float* src = window + a * row;
          if (kFar && oy + 1 < oh)
            for (int64_t k = 0; k < kx * nc * (int64_t)sizeof(float); k += 64)
              _mm_prefetch((const char*)(src + ky * row) + k, _MM_HINT_T0);
          for (int64_t b = 0; b < kx; ++b, src += c) {
            const int64_t t = a * kx + b;
            if (t == 0) {  // the first cell: the running max, and its position 0
              for (int64_t k = 0; k < full; k += kLanes) {
                _mm512_storeu_ps(out + k, _mm512_loadu_ps(src + k));
                if (at) _mm_storeu_si128((__m128i*)(at + k), _mm_setzero_si128());
              }
              continue;
            }
            const __m128i tv = _mm_set1_epi8((char)t);
            for (int64_t k = 0; k < full; k += kLanes) {
              const __m512 v = _mm512_loadu_ps(src + k), best = _mm512_loadu_ps(out + k);
              // pool_beats: v > best, or v is NaN (first maximum, last NaN)
              const __mmask16 win = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
              // whole-vector stores, which the next cell's loads take from the store queue
              _mm512_storeu_ps(out + k, _mm512_mask_mov_ps(best, win, v));
              if (at)
                _mm_storeu_si128((__m128i*)(at + k),
                                 _mm_mask_mov_epi8(_mm_loadu_si128((const __m128i*)(at + k)), win, tv));
            }
          }
        }
        if (full < nc) {  // the last nc % 16 channels: in registers over the window, masked
          __m512 best = _mm512_setzero_ps();
          __m512i which = _mm512_setzero_si512();
          for (int64_t a = 0; a < ky; ++a)
            for (int64_t b = 0; b < kx; ++b) {
              const __m512 v = _mm512_maskz_loadu_ps(tail, window + a * row + b * c + full);
              const __mmask16 win = (a == 0 && b == 0) ? tail
                                    : (__mmask16)(_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                                  _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
              best = _mm512_mask_mov_ps(best, win, v);
              which = _mm512_mask_mov_epi32(which, win, _mm512_set1_epi32((int32_t)(a * kx + b)));
            }
          _mm512_mask_storeu_ps(out + full, tail, best);
          if (at) _mm512_mask_cvtepi32_storeu_epi8(at + full, tail, which);
        }
      }
  });
}

}  // namespace

void max_forward_cells(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  // from memory (4 MiB or more of input, as forward's kFar) at up to 64 channels
  const bool far = g.c <= 64 && g.n * g.h * g.w * g.c * (int64_t)sizeof(float) >= ((int64_t)4 << 20);
  if (far) return forward_cells<true>(g, x, y, arg);
  forward_cells<false>(g, x, y, arg);
}
#endif

}  // namespace fastconv::cpu::detail
