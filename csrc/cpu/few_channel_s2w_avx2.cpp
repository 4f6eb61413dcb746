// The weight pass of 3x3 stride-2 convs with C = 3 or 6 channels in and out at the avx2 level
// (8-lane ymm, 16 registers): the shape test and the dispatch to the row kernels,
// few_channel_s2w_rows3_avx2.cpp (C = 3) and few_channel_s2w_rows6_avx2.cpp (C = 6).
//
// Why: at avx2 C = 6 ran on direct_conv.cpp's generic weight pass (the AVX-512 kernel for it,
// few_channel_s2_patch.cpp, needs mask registers), C = 3 on the column-phase planes
// (few_channel_s2_weights.cpp, blocks of rows of ONE image) or, under 17 columns, on
// few_channel_rows.cpp: in the sweep on an AVX2-only EPYC (sweep_2026-12-08_zen3.md) nine of
// these were under half their family's median, N=256 14x14 C=3 the worst case of the whole
// sweep (0.093): at 7x7 and 14x14 a block is one image of 16 or 49 outputs, and the per-block
// costs (36 accumulator groups loaded and stored, the dy split's scalar tail) were the pass.
//
// Tried first (commit cf4fd24, benchmarks/RESULTS.md helper A stop 39): as helper F's
// few_channel_weights8.cpp for stride 1, items of several small images on column-phase planes
// of pitch OW + 1 (x split by even / odd column, 9 ymm accumulators per (ci, ky, 3 output
// channels)): 0.59-0.79 of main's time, but the row kernels beat it at every shape measured
// (C = 3: 0.64-0.99 of its time; C = 6: 7x7 0.46, 14x14 0.61, 28x28 0.82-0.88, 56x56 0.96,
// 112x112 0.86): the split's shuffles and the idle lanes (the zero column, the zero row
// between images) cost more than the row kernels' masked loads at the row ends.
#include "cpu/few_channel_s2w.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

bool s2w_avx2_shape(const ConvGeometry& g) {
  const Window2d& v = g.win;
  return g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 && v.kw == 3 &&
         v.sh == 2 && v.sw == 2 && v.dh == 1 && v.dw == 1 && v.pt >= 0 && v.pt <= 2 &&
         v.pl >= 0 && v.pl <= 2 && g.n > 0 && g.h > 0 && g.w > 0 && g.oh > 0 && g.ow > 0;
}

bool s2w_avx2_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                      float* db) {
  if (!s2w_avx2_shape(g)) return false;
  return g.c == 3 ? s2w_rows3_avx2(g, dy, x, dw, db) : s2w_rows6_avx2(g, dy, x, dw, db);
}

#else

bool s2w_avx2_shape(const ConvGeometry&) { return false; }
bool s2w_avx2_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
