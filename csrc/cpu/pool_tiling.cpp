// Pooling backward where the windows tile the input (kh == sh, kw == sw, no padding): every
// dx cell lies in at most one window, so dx is written once, row after row, straight from
// its window's dy (and, for max, the saved winner): dx[oy*kh + a, ox*kw + b] = dy[oy, ox]
// where the winner is cell a*kw + b (max), or dy[oy, ox] / (kh*kw) (average), and zero in the
// rows and columns past the last window. pool2d.cpp's general backward gathers, for each dx
// cell, over the windows that may cover it and zeroes dx first: a 2x2 max-pool backward of
// (1, 112, 112, 64) took 0.32 ms there (13 GB/s of compulsory traffic; 1 thread, Zen 4).
// Vectors run over channels (16 at a time, as the level's registers), so C must be >= 16;
// fewer channels keep pool2d.cpp's row-tiled kernels.
#include "cpu/pool_tiling.h"

#include <algorithm>
#include <cstring>

#include "common/pool_index.h"
#include "cpu/pool_tasks.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

typedef int32_t i32xR __attribute__((vector_size(4 * kRegLanes)));
constexpr int kPieces = (int)kLanes / kRegLanes;

// The kLanes channels of one dx cell: dy where the window's winner is cell t, else 0.
inline void max_cell16(const float* dy, const i32xR* arg, int32_t t, float* out) {
  for (int p = 0; p < kPieces; ++p) {
    f32xR v = loadR(dy + p * kRegLanes);
    opaque(v);  // a register select, not a masked load (simd.h load16_plain)
    storeR(out + p * kRegLanes, arg[p] == t ? v : f32xR{});
  }
}

// Channels [c0, c1) of dx row `iy` = oy*kh + a of image `img`; c1 - c0 >= kLanes.
template <bool kMax>
void tile_row(const PoolGeometry& g, const float* dyr, const uint8_t* argr, float scale, int64_t a,
              int64_t c0, int64_t c1, float* dxr) {
  const int64_t C = g.c, kw = g.win.kw;
  for (int64_t ox = 0; ox < g.ow; ++ox) {
    const float* d = dyr + ox * C;
    float* out = dxr + ox * kw * C;
    for (int64_t c = c0; c < c1; c += kLanes) {
      const int64_t cc = std::min(c, c1 - kLanes);  // the last block overlaps the one before
      if constexpr (kMax) {
        i32xR arg[kPieces];
        const i32x16 a16 = widen16(argr + ox * C + cc);
        std::memcpy(arg, &a16, sizeof arg);
        for (int64_t b = 0; b < kw; ++b) max_cell16(d + cc, arg, (int32_t)(a * kw + b), out + b * C + cc);
      } else {
        for (int p = 0; p < kPieces; ++p) {
          const f32xR v = loadR(d + cc + p * kRegLanes) * scale;
          for (int64_t b = 0; b < kw; ++b) storeR(out + b * C + cc + p * kRegLanes, v);
        }
      }
    }
  }
  for (int64_t ix = g.ow * kw; ix < g.w; ++ix)  // columns no window reaches
    std::memset(dxr + ix * C + c0, 0, sizeof(float) * (size_t)(c1 - c0));
}

template <bool kMax>
void backward_tiles(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  const int64_t C = g.c, kh = g.win.kh;
  // Every window is whole, so each divides by kh*kw, as pool_inv_count gives it.
  const float scale = pool_inv_count({0, kh}, {0, g.win.kw});
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* dxr = dx + (img * g.h + iy) * g.w * C;
      const int64_t oy = iy / kh;
      if (oy >= g.oh) {  // rows no window reaches
        for (int64_t ix = 0; ix < g.w; ++ix) std::memset(dxr + ix * C + c0, 0, sizeof(float) * (size_t)(c1 - c0));
        continue;
      }
      const int64_t o = (img * g.oh + oy) * g.ow * C;
      tile_row<kMax>(g, dy + o, kMax ? arg + o : nullptr, scale, iy - oy * kh, c0, c1, dxr);
    }
  });
}

}  // namespace

bool pool_windows_tile(const PoolGeometry& g) {
  const Window2d& w = g.win;
  return g.c >= kLanes && w.kh == w.sh && w.kw == w.sw && w.pt == 0 && w.pb == 0 && w.pl == 0 &&
         w.pr == 0 && w.dh == 1 && w.dw == 1 && g.oh * w.kh <= g.h && g.ow * w.kw <= g.w &&
         w.kh * w.kw <= 255;
}

void max_backward_argmax_tiles(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  backward_tiles<true>(g, dy, arg, dx);
}

void avg_backward_tiles(const PoolGeometry& g, const float* dy, float* dx) {
  backward_tiles<false>(g, dy, nullptr, dx);
}

}  // namespace fastconv::cpu::detail
