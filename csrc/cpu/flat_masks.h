// Lane masks of the flat 3x3 stride-1 kernels (few_channel_flat.cpp, few_channel_planes.cpp):
// an image of H x W pixels walked as one stream of H*W positions, 16 a vector. AVX-512 only.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace fastconv::cpu::detail::flat {

// Lanes i of a vector at q0 whose flat index q0 + i + d lies in [0, hw).
inline __mmask16 range_mask(int64_t q0, int64_t d, int64_t hw) {
  const int64_t a = std::max<int64_t>(0, -d - q0), b = std::min<int64_t>(16, hw - d - q0);
  if (b <= a) return 0;
  return (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

// The columns of lanes 0..15 at an image's start: i mod W (once per call: 16 divisions per
// image were a tenth of a 28x28 forward).
inline __m512i first_columns(int64_t W) {
  alignas(64) int c0[16];
  for (int i = 0; i < 16; ++i) c0[i] = (int)(i % W);
  return _mm512_load_si512(c0);
}

// Lanes of the vector at q0 inside the image.
inline __mmask16 tail_mask(int64_t q0, int64_t hw) {
  return q0 + 16 <= hw ? (__mmask16)0xFFFF
                       : q0 >= hw ? (__mmask16)0 : (__mmask16)((1u << (hw - q0)) - 1);
}

// The column bookkeeping of one image's walk: col holds the column of each lane of the
// current vector (carried from vector to vector: add 16 mod W, subtract W where past the
// row), masks(q0, m) gives tap (ky, kx)'s valid lanes for pads pt, pl in 0..2.
struct Walk {
  int64_t H, W, hw;
  int pt, pl;
  __m512i col, vw, step, lo[3], hi[3];
  Walk(int64_t H_, int64_t W_, int pt_, int pl_, __m512i col0)
      : H(H_), W(W_), hw(H_ * W_), pt(pt_), pl(pl_), col(col0) {
    vw = _mm512_set1_epi32((int)W);
    step = _mm512_set1_epi32((int)(16 % W));
    // kx - pl in -2..2: valid where col + kx - pl in [0, W)
    for (int kx = 0; kx < 3; ++kx) {
      lo[kx] = _mm512_set1_epi32(pl - kx);
      hi[kx] = _mm512_set1_epi32((int)W + pl - kx);
    }
  }
  // Column masks of the current vector: lanes whose column + kx - pl is in [0, W); then on
  // to the next vector.
  inline void columns(__mmask16 (&mc)[3]) {
    for (int kx = 0; kx < 3; ++kx)
      mc[kx] = kx == pl ? (__mmask16)0xFFFF
                        : _mm512_mask_cmplt_epi32_mask(_mm512_cmpge_epi32_mask(col, lo[kx]), col, hi[kx]);
    col = _mm512_add_epi32(col, step);
    col = _mm512_mask_sub_epi32(col, _mm512_cmpge_epi32_mask(col, vw), col, vw);
  }
  // Masks of the vector at q0 (the current column vector), then on to the next vector.
  inline void masks(int64_t q0, __mmask16 (&m)[3][3]) {
    __mmask16 mc[3];
    columns(mc);
    if (q0 >= pt * W && q0 + 16 + (2 - pt) * W <= hw) {
      // every row of the 16 outputs has its rows above and below (the scalar row masks for
      // every vector were half of a 28x28 forward)
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) m[ky][kx] = mc[kx];
    } else {
      for (int ky = 0; ky < 3; ++ky) {
        const __mmask16 r = range_mask(q0, (ky - pt) * W, hw) & range_mask(q0, 0, hw);
        for (int kx = 0; kx < 3; ++kx) m[ky][kx] = (__mmask16)(r & mc[kx]);
      }
    }
  }
};

}  // namespace fastconv::cpu::detail::flat
#endif
