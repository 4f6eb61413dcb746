// The window walks of the pooling forwards over full channel vectors, shared by the general
// forwards (pool_max.cpp, pool_avg.cpp) and pool_tiling.cpp's forwards of tiling windows:
// max (with the argmax) and mean over one output's window for V * kLanes channels.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/geometry.h"
#include "common/pool_index.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

// Channel vectors of the pooling loops: full blocks of kLanes channels use simd.h vectors,
// the remainder of a channel range (c % 16) the same steps one channel at a time.

// Max over the window of one output for the kLanes channels at xi (already offset to the
// image and first channel). row0/col0: the unclipped window's top-left, so
// (iy - row0) * kw + (ix - col0) is a cell's position in the padded window; it goes to arg
// (when kArg) as uint8. Starts from the first real cell; strict '>' keeps ties on the
// earliest cell in row-major order, padded cells are never visited. A NaN wins over any
// number and no number replaces it (nan_math.h pool_beats): a window holding NaN pools to
// NaN and its argmax is the last NaN cell. (`val > best` alone let a NaN win only as the
// first cell.)
//
// V vectors (V * kLanes channels) are walked together: each one's compare-and-select chain
// is serial, so interleaving V independent chains keeps the core busy and amortises the
// window bookkeeping (V = 4 at C = 64, data in cache: this walk ~10% faster, the backward
// gather in pool_max_backward.cpp 2.4x).
//
// The walk is in vectors of the level's register width (simd.h f32xR: S = 16 / width pieces
// per 16 channels): at avx2 GCC 12 turned this compare-and-select on 16-lane vectors into
// scalar compares and cmovs (LeNet's (256, 10, 10, 16) pool 15x slower than at avx512).
typedef int32_t i32xR __attribute__((vector_size(4 * kRegLanes)));
constexpr int kPieces = (int)kLanes / kRegLanes;

inline f32xR load_piece(const float* p) {
  f32xR v;
  std::memcpy(&v, p, sizeof v);
  opaque(v);  // as load16_plain: the select below stays a register operation
  return v;
}

template <int V, bool kArg>
inline void max_window16(const PoolGeometry& g, const float* xi, AxisRange rows, AxisRange cols,
                         int64_t row0, int64_t col0, float* out, uint8_t* arg) {
  const int64_t C = g.c, kw = g.win.kw;
  constexpr int N = V * kPieces;
  const float* first = xi + (rows.lo * g.w + cols.lo) * C;
  f32xR best[N];
  i32xR which[N];
  for (int v = 0; v < N; ++v) {
    std::memcpy(&best[v], first + v * kRegLanes, sizeof best[v]);
    which[v] = i32xR{} + (int32_t)((rows.lo - row0) * kw + (cols.lo - col0));
  }
  for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
    for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
      const float* cell = xi + (iy * g.w + ix) * C;
      // Materialised once per cell (the empty asm): the selects below are then register
      // blends, not one GPR-to-vector broadcast per channel vector.
      i32xR t = i32xR{} + (int32_t)((iy - row0) * kw + (ix - col0));
      opaque(t);
      for (int v = 0; v < N; ++v) {
        const f32xR val = load_piece(cell + v * kRegLanes);
        const i32xR win = (val > best[v]) | (val != val);  // pool_beats
        best[v] = win ? val : best[v];
        if constexpr (kArg) which[v] = win ? t : which[v];
      }
    }
  for (int v = 0; v < V; ++v) {
    std::memcpy(out + v * kLanes, &best[v * kPieces], sizeof(float) * kLanes);
    if constexpr (kArg) {
      i32x16 w16;
      std::memcpy(&w16, &which[v * kPieces], sizeof w16);
      narrow16(arg + v * kLanes, w16);
    }
  }
}

// Mean over the real cells of one window for V * kLanes channels at xi (offset to the image
// and the block's first channel), summed in row-major order like the CUDA twin.
// In register-wide pieces (f32xR, as max_window16): 16-lane vectors at the avx2 level went
// through the stack (LeNet's (256, 10, 10, 16) pool 5x slower than at avx512).
template <int V>
inline void avg_window16(const PoolGeometry& g, const float* xi, AxisRange rows, AxisRange cols,
                         float scale, float* out) {
  constexpr int N = V * kPieces;
  f32xR acc[N];
  for (int v = 0; v < N; ++v) acc[v] = f32xR{};
  for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
    for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
      const float* cell = xi + (iy * g.w + ix) * g.c;
      for (int v = 0; v < N; ++v) {
        f32xR piece;
        std::memcpy(&piece, cell + v * kRegLanes, sizeof piece);
        acc[v] += piece;
      }
    }
  for (int v = 0; v < N; ++v) {
    const f32xR r = acc[v] * scale;
    std::memcpy(out + v * kRegLanes, &r, sizeof r);
  }
}

}  // namespace fastconv::cpu::detail
