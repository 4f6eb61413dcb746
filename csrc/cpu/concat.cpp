// Concatenation along the last (channel) axis, as DenseNet does after every unit. Each output
// row interleaves one short run from each input (C_i floats per pixel), which numpy copies as
// a strided, single-threaded loop at ~1/3 of copy speed; here rows go to the OpenMP threads
// and each output row is written once, left to right (copying one input at a time over a block
// of rows instead wrote every output line once per input: 1.8x slower at widths 64 + 32).
// Runs of 16 floats or more are a memcpy; shorter ones are copied inline, where a memcpy call
// per 4..60 bytes cost more than the copy (width 1 + 1 ran at 1/28 of copy speed).
#include <cstring>

#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {
constexpr int64_t kShortRun = 16;  // floats
}  // namespace

void concat_last(int64_t rows, int64_t parts, const float* const* in, const int64_t* widths,
                 float* out) {
  int64_t total = 0;
  for (int64_t i = 0; i < parts; ++i) total += widths[i];
  parallel_region((rows * total >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = out + r * total;
      for (int64_t i = 0; i < parts; ++i) {
        const int64_t w = widths[i];
        const float* src = in[i] + r * w;
        if (w >= kShortRun)
          std::memcpy(dst, src, sizeof(float) * w);
        else if (w == 1)  // a mask or one feature: no loop set-up at all
          *dst = *src;
        else
          for (int64_t k = 0; k < w; ++k) dst[k] = src[k];
        dst += w;
      }
    }
  });
}

}  // namespace fastconv::cpu
