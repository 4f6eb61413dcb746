// Shared by the depthwise passes (depthwise.cpp: forward and backward data; depthwise_weights.cpp:
// the weight pass): the channel-block loads/stores, the gather geometry, the input row
// pointers and their requests ahead, the walk over output lines. The design and its
// measurements are in depthwise.cpp's head comment. Internal to those files (an unnamed
// namespace: each keeps its own copy, inlined as before the split).
#pragma once
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/geometry.h"
#include "cpu/simd.h"
#include "kernels.h"

// Builds without AVX-512 pass f32x16 in memory; moot for these file-local helpers.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

// Fast paths hold up to this many taps (accumulators / row pointers) in local arrays.
constexpr int64_t kMaxTaps = 64;
constexpr int64_t kMaxKh = 16;

// Loads/stores of one channel block of n <= 16 floats; Full blocks are plain vector moves,
// the tail block masked (zeros in the lanes >= n).
template <bool Full>
inline f32x16 ld(const float* p, int n) {
  if constexpr (Full) {
    (void)n;
    return load16(p);
  } else {
#if defined(__AVX512F__)
    return (f32x16)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#else
    f32x16 v{};
    std::memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
#endif
  }
}

template <bool Full>
inline void st(float* p, f32x16 v, int n) {
  if constexpr (Full) {
    (void)n;
    store16(p, v);
  } else {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#else
    std::memcpy(p, &v, sizeof(float) * (size_t)n);
#endif
  }
}

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A gather-form pass over single-channel-per-output planes (M == 1): out (oh, ow, c) of one
// image from in (ih, iw, c), out[oy, ox] = bias + sum in[oy*sh - pt + ky*dh,
// ox*sw - pl + kx*dw] * w[ky, kx] (pads may be negative).
struct Gather {
  int64_t ih, iw, oh, ow, c;
  int64_t kh, kw, sh, sw, dh, dw, pt, pl;
  // Output columns [lo, hi) read no padding column.
  int64_t lo, hi;
  // Channels before the first 64-byte line of every input pixel, taken apart by the 3x3
  // tiles (depthwise.cpp gather_pass); 0: none.
  int64_t head = 0;
};

Gather make_gather(int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t c, const Window2d& v,
                   int64_t pt, int64_t pl) {
  Gather q{ih, iw, oh, ow, c, v.kh, v.kw, v.sh, v.sw, v.dh, v.dw, pt, pl, 0, 0, 0};
  // ox*sw - pl >= 0 and ox*sw - pl + (kw-1)*dw <= iw - 1.
  q.lo = std::clamp<int64_t>(floor_div(pl + v.sw - 1, v.sw), 0, ow);
  q.hi = std::clamp<int64_t>(floor_div(iw - 1 - (v.kw - 1) * v.dw + pl, v.sw) + 1, q.lo, ow);
  return q;
}

// Input row pointers of output row oy (one image, input plane `in`). Kernel rows in the
// vertical padding point at `zeros` (a zero row of iw*c floats), so every output row runs
// the same branch-free loop, and a padding tap adds exactly 0 as in the definition.
inline void tap_rows(const Gather& q, const float* in, const float* zeros, int64_t oy,
                     const float** rows) {
  for (int64_t ky = 0; ky < q.kh; ++ky) {
    const int64_t iy = oy * q.sh - q.pt + ky * q.dh;
    rows[ky] = iy >= 0 && iy < q.ih ? in + iy * q.iw * q.c : zeros;
  }
}

// Requests bytes [p, p + bytes) into L1 (Far: into L2 only; see RowPrefetch).
// Always inlined, as RowPrefetch::slice: GCC 12 takes a function whose only effect is
// __builtin_prefetch for one with no effect at all, and deleted the calls to slice from the
// tiles, so the 3x3 forward ran with no request ahead (found in objdump: no prefetch left in
// tiled_row3; adding them back is most of the gain measured at RowPrefetch).
template <bool Far = false>
__attribute__((always_inline)) inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char*)p + off, 0, Far ? 2 : 3);
}

// The input rows of the next output row that the current one does not already use (each
// kh rows of one output row), to be requested ahead. The next output row's new input row
// would otherwise be first touched by the channel-block passes 64 bytes out of every C*4, a
// pattern the hardware prefetchers follow poorly: measured, the forward ran at 17 GB/s
// against 37 GB/s for a copy on one core.
// far: the input comes from memory (it is over the stream threshold, simd.h: larger than
// what stays in cache; gather_pass also sets it for inputs of 4 MiB and more with C >= 64). Then the requests go to L2 only (prefetcht1): each L1 request holds
// one of L1's few miss buffers for a whole memory latency, and a burst of them stalled the
// loads behind it (and inputs in cache are not requested by the tiles at all, tile3_all).
// Measured on the 2-vCPU Zen 4, 1 thread, MobileNet's nine depthwise layers
// + ReLU at batch 64, total ms, one run of alternating processes: no requests (what the
// compiler had left, see prefetch_bytes) 102-106; into L1, one burst per tile 110; into L1,
// a slice per tile and channel block (tile3_all) 74; into L2, per tile 71-77; into L2, per
// block 62; the same two rows ahead instead of one 70. For inputs in cache (batch 1) L2
// requests measured as noise (two runs of the nine layers disagreed in sign), so they keep
// the L1 requests of the block walk (gather_block) and none in the tiles.
struct RowPrefetch {
  const float* rows[kMaxKh];
  int n = 0;
  bool far = false;
  int64_t bytes = 0;  // of one row
  // Requests bytes [bytes * a / total, bytes * b / total) of each row (a slice of the rows
  // per slice of the current row's work keeps a steady trickle of requests).
  __attribute__((always_inline)) void slice(int64_t a, int64_t b, int64_t total) const {
    const int64_t lo = bytes * a / total / 64 * 64, hi = bytes * b / total;
    for (int k = 0; k < n; ++k) {
      if (far) prefetch_bytes<true>((const char*)rows[k] + lo, hi - lo);
      else prefetch_bytes((const char*)rows[k] + lo, hi - lo);
    }
  }
  void all() const { slice(0, 1, 1); }
};

inline RowPrefetch new_rows(const Gather& q, const float* const* cur, const float* const* next,
                            const float* zeros, bool far) {
  RowPrefetch p;
  p.far = far;
  p.bytes = q.iw * q.c * (int64_t)sizeof(float);
  for (int64_t k = 0; k < q.kh; ++k) {
    if (next[k] == zeros || std::find(cur, cur + q.kh, next[k]) != cur + q.kh) continue;
    p.rows[p.n++] = next[k];
  }
  return p;
}

// fn(l, rows, pf) for the lines l in [l0, l1) (line = image * q.oh + output row) in order,
// with rows = that line's kh input row pointers into `in` (n images of q.ih x q.iw x q.c)
// and pf the next line's new input rows, for fn to request while it works (far: see
// RowPrefetch); an fn taking (l, rows) only has them all requested before it runs.
template <typename Fn>
void walk_lines(const Gather& q, const float* in, const float* zeros, int64_t l0, int64_t l1,
                Fn fn, bool far = false) {
  const float* rows[kMaxKh];
  const float* next[kMaxKh];
  const int64_t plane = q.ih * q.iw * q.c;
  if (l0 < l1) tap_rows(q, in + l0 / q.oh * plane, zeros, l0 % q.oh, next);
  for (int64_t l = l0; l < l1; ++l) {
    std::copy(next, next + q.kh, rows);
    RowPrefetch pf;
    if (l + 1 < l1) {
      tap_rows(q, in + (l + 1) / q.oh * plane, zeros, (l + 1) % q.oh, next);
      pf = new_rows(q, rows, next, zeros, far);
    }
    if constexpr (std::is_invocable_v<Fn, int64_t, const float* const*, const RowPrefetch&>) {
      fn(l, (const float* const*)rows, pf);
    } else {
      pf.all();
      fn(l, (const float* const*)rows);
    }
  }
}

bool fast_m1(const ConvGeometry& g) {
  return g.cout_g == 1 && g.win.kh <= kMaxKh && g.win.kh * g.win.kw <= kMaxTaps;
}

Gather forward_gather(const ConvGeometry& g) {
  return make_gather(g.h, g.w, g.oh, g.ow, g.c, g.win, g.win.pt, g.win.pl);
}

// acc[o] += a[o / M] * b[o] over all output channels o < C*M.
inline void tap_fma(int64_t c, int64_t m, const float* a, const float* b, float* acc) {
  if (m == 1) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) acc[i] += a[i] * b[i];
  } else {
    for (int64_t i = 0; i < c; ++i) {
      const float av = a[i];
      for (int64_t j = 0; j < m; ++j) acc[i * m + j] += av * b[i * m + j];
    }
  }
}

}  // namespace

}  // namespace fastconv::cpu::detail
