// Blocks of output rows of a 3x3 stride-2 conv with C channels, packed into column-phase
// planes (one thread's Planes), and the loop over them (run_blocks): shared by the forward
// (few_channel_s2_planes.cpp) and the weight pass (few_channel_s2_weights.cpp); the layout of
// the planes and why are in few_channel_s2_planes.cpp's head comment.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/geometry.h"
#include "cpu/few_channel_s2.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu::detail::s2blocks {


using stride2::L;
using stride2::load;
using stride2::store;
using stride2::vec;

// As few_channel_rows.cpp: below this many multiply-adds a pass runs on the calling thread;
// the planes of one block within kPackFloats floats (64 KiB, L2-resident).
inline constexpr int64_t kParallelWork = 1 << 21;
inline constexpr int64_t kPackFloats = 1 << 14;

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// The first n lanes of p (0 < n < L), the rest 0 (reads nothing past p + n). A masked load
// at AVX-512: the memcpy of a runtime length is a libc call, and the weight pass's 30 of them
// per block tail were a large part of a 28x28 C=3 image's time.
inline vec load_first(const float* p, int64_t n) {
#if defined(__AVX512F__)
  return (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#else
  vec v{};
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
#endif
}

// Blocks of `rows` output rows of one image, their 6*C planes within kPackFloats.
struct Blocks {
  int64_t rows, per_image, count;
  Blocks(const ConvGeometry& g, int threads) {
    const int64_t fit = std::max<int64_t>(1, kPackFloats / (6 * g.c * g.ow) - 1);
    const int64_t spread =
        threads > 1 ? std::max<int64_t>(1, g.n * g.oh / (4 * threads)) : g.oh;
    rows = std::max<int64_t>(1, std::min({fit, g.oh, spread}));
    per_image = (g.oh + rows - 1) / rows;
    count = g.n * per_image;
  }
};

// One thread's 6*C planes (plane (a, ci, k) at ((a*C + ci)*3 + k)*stride_) and row copy.
template <int C>
class Planes {
 public:
  Planes(const ConvGeometry& g, int64_t rows)
      : g_(g), pairs_(round_up(g.ow + 1, L)), stride_((rows + 1) * g.ow + pairs_ + 2 * L) {}

  void allocate() { buf_.assign((size_t)(6 * C * stride_ + 2 * (pairs_ + 1) * C + L), 0.f); }

  // The planes of output rows oy0 .. oy0 + rows - 1 of image img (its h*w*C floats), x the
  // whole tensor [xbeg, xend).
  void pack(const float* img, const float* xbeg, const float* xend, int64_t oy0, int64_t rows) {
    const int64_t ow = g_.ow;
    // Input row order (the even and odd rows interleaved) gained 0.79-0.87 before the
    // prefetch; with it 1.00 at 56x56 C=3 and 1.05 at 7x7, 14x14 (noise): kept as it was.
    for (int a = 0; a < 2; ++a)
      for (int64_t i = 0; i < rows + (a == 0); ++i) {
        const int64_t r = 2 * (oy0 + i) + a - g_.win.pt;
        if (r < 0 || r >= g_.h) {
          for (int ci = 0; ci < C; ++ci)
            for (int k = 0; k < 3; ++k) std::memset(plane(a, ci, k) + i * ow, 0, sizeof(float) * ow);
          continue;
        }
        split_row(img + r * g_.w * C, xbeg, xend, plane(a, 0, 0) + i * ow,
                  plane(a, 0, 1) + i * ow, plane(a, 0, 2) + i * ow);
        if constexpr (!kNextInRegisters)
          for (int ci = 0; ci < C; ++ci) {
            const float* p0 = plane(a, ci, 0) + i * ow;
            float* p2 = plane(a, ci, 2) + i * ow;
            for (int64_t j = 0; j < ow; j += L) store(p2 + j, load(p0 + 1 + j));
          }
      }
  }

  // Tap t = ky*3 + kx, channel ci: the plane float under the block's output p is tap(t, ci)[p].
  const float* tap(int t, int ci) const {
    const int ky = t / 3, kx = t % 3;
    return buf_.data() + (((ky % 2) * C + ci) * 3 + kx) * stride_ + (ky / 2) * g_.ow;
  }

 private:
  float* plane(int a, int ci, int k) { return buf_.data() + ((a * C + ci) * 3 + k) * stride_; }
  float* row_copy() { return buf_.data() + 6 * C * stride_; }

  // p2 from the split's registers up to C = 4; C = 6 copies it in pack() (its split holds 12
  // input registers: with the 6 shifted ones too, its forward took 1.17-1.21 of the time at
  // 14x14 and 28x28, paired).
  static constexpr bool kNextInRegisters = C <= 4;

  // Channel ci's p0[j] = xp[2j], p1[j] = xp[2j + 1], p2[j] = xp[2j + 2] of one padded row
  // (src its first real pixel), at ci*3*stride_ from p0, p1, p2, for j < pairs_ (writing past
  // the row's OW floats into the next row's place, written later). p2 is p0 one column on,
  // made in registers by the split (split_pairs' next). Before: for C = 1 a second split of
  // the row one pair on (a copy from p0 + 1 stalled on store forwarding, 36% of a 56x56 C=1
  // forward's cycles), for C >= 3 that copy (a second split was 1.12-1.17 of the time).
  void split_row(const float* src, const float* xbeg, const float* xend, float* p0, float* p1,
                 float* p2) {
    const int64_t pl = g_.win.pl, w = g_.w, cs = 3 * stride_;
    const float* start = src - pl * C;
    if (start >= xbeg && start + 2 * pairs_ * C <= xend) {
      stride2::split_pairs<C, true, kNextInRegisters>(start, pairs_, p0, p1, cs, p2);
      // Columns of the padding read from x: zero them (columns up to 2*OW are read).
      auto zero = [&](int64_t c) {
        for (int ci = 0; ci < C; ++ci) {
          if (c % 2) {
            p1[ci * cs + c / 2] = 0.f;
          } else {
            p0[ci * cs + c / 2] = 0.f;
            if (kNextInRegisters && c >= 2) p2[ci * cs + c / 2 - 1] = 0.f;
          }
        }
      };
      for (int64_t c = 0; c < pl; ++c) zero(c);
      for (int64_t c = pl + w; c <= 2 * g_.ow; ++c) zero(c);
      return;
    }
    // The copy's other floats stay the zeros allocate() wrote.
    float* t = row_copy();
    std::memcpy(t + pl * C, src, sizeof(float) * C * std::min(w, 2 * pairs_ - pl));
    stride2::split_pairs<C, true, kNextInRegisters>(t, pairs_, p0, p1, cs, p2);
  }

  const ConvGeometry& g_;
  const int64_t pairs_, stride_;
  std::vector<float> buf_;
  const float* next_ = nullptr;  // the next block's input rows [next_, next_end_)
  const float* next_end_ = nullptr;

 public:
  // The input rows block (img, oy0, rows) reads: the block before it prefetches them while it
  // computes (prefetch_over).
  void next_block(const float* img, int64_t oy0, int64_t rows) {
    const int64_t r0 = std::max<int64_t>(0, 2 * oy0 - g_.win.pt);
    const int64_t r1 = std::min(g_.h, 2 * (oy0 + rows) + 1 - g_.win.pt);
    next_ = img + r0 * g_.w * C;
    next_end_ = img + std::max(r0, r1) * g_.w * C;
  }
  // A prefetch of the next block's rows spread over `steps` steps.
  stride2::LinePrefetch<> prefetch_over(int64_t steps) const {
    stride2::LinePrefetch<> pf;
    pf.set(next_, next_end_, steps);
    return pf;
  }

  mutable std::vector<vec> sums;       // the weight pass's lane accumulators
  mutable int64_t pending = 0;         // pixels in them
  mutable std::vector<float> scratch;  // the weight pass's planar dy (one block's)
};

// body(planes, first output pixel, pixels) per block; finish(planes) per thread at the end.
template <int C, typename Body, typename Finish>
void run_blocks(const ConvGeometry& g, const float* x, int threads, bool dynamic, Body&& body,
                Finish&& finish) {
  const Blocks bl(g, threads);
  const int64_t image = g.h * g.w * C;
  const float* xend = x + g.n * image;
  const bool ahead = 4 * g.n * image >= stride2::kPrefetchFromBytes;
  ExceptionCaptor errors;  // the planes may not fit in memory (a very wide row)
  parallel_region(threads, [&] {
    note_team();
    Planes<C> pl(g, bl.rows);
    errors.run([&] { pl.allocate(); });
    auto item = [&](int64_t i) {
      if (errors.failed()) return;
      const int64_t n = i / bl.per_image, oy0 = (i % bl.per_image) * bl.rows;
      const int64_t rows = std::min(g.oh - oy0, bl.rows);
      errors.run([&] {
        if (ahead && i + 1 < bl.count) {
          const int64_t oy1 = ((i + 1) % bl.per_image) * bl.rows;
          pl.next_block(x + (i + 1) / bl.per_image * image, oy1, std::min(g.oh - oy1, bl.rows));
        }
        pl.pack(x + n * image, x, xend, oy0, rows);
        body(pl, (n * g.oh + oy0) * g.ow, rows * g.ow);
      });
    };
    if (dynamic) {
#pragma omp for schedule(dynamic)
      for (int64_t i = 0; i < bl.count; ++i) item(i);
    } else {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < bl.count; ++i) item(i);
    }
    errors.run([&] { finish(pl); });
  });
  errors.rethrow();
}

inline int threads_for(const ConvGeometry& g) {
  return g.n * g.oh * g.ow * 9 * g.c * g.oc < kParallelWork ? 1 : std::max(1, get_num_threads());
}

}  // namespace fastconv::cpu::detail::s2blocks
