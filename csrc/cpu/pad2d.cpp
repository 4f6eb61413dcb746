// Zero padding (pad2d.h): output line by output line, each a run of zeros or zeros, x's row
// and zeros, so every output float is written once. numpy's pad (the layer's own call) took
// 0.59 ms for ResNet-50's 112x112x64 at batch 1, against onnxruntime's 0.17 for its Pad.
#include "cpu/pad2d.h"

#include <algorithm>
#include <cstring>

#include "cpu/parallel.h"

namespace fastconv::cpu {

void zero_pad2d(int64_t n, int64_t h, int64_t w, int64_t c, int64_t pt, int64_t pb, int64_t pl,
                int64_t pr, const float* x, float* y) {
  const int64_t oh = pt + h + pb, ow = pl + w + pr, line = ow * c, lines = n * oh;
  auto run = [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      float* out = y + l * line;
      const int64_t img = l / oh, iy = l % oh - pt;
      if (iy < 0 || iy >= h) {
        std::memset(out, 0, sizeof(float) * (size_t)line);
        continue;
      }
      std::memset(out, 0, sizeof(float) * (size_t)(pl * c));
      std::memcpy(out + pl * c, x + (img * h + iy) * w * c, sizeof(float) * (size_t)(w * c));
      std::memset(out + (pl + w) * c, 0, sizeof(float) * (size_t)(pr * c));
    }
  };
  split_lines(n, lines, lines * line >= kParallelGrain, run);
}

}  // namespace fastconv::cpu
