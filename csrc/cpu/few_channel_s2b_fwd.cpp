// The forward of 3x3 stride-2 convs with C = 3 or 6 channels in and out at the avx2 level,
// vectors along the flat NHWC output rows (helper B, stop 39; the transpose of
// few_channel_s2b_data.cpp's scheme).
//
// Why: on the planes (few_channel_s2_planes.cpp, forward_c) small images pay the column-phase
// pack of every input row, a zero column per plane row and the merge of C planar rows back to
// NHWC per output row: the sweep had N=256 14x14 C=3 at 0.125 and 7x7 C=6 at 0.126 of the
// FMA ceiling.
//
// Here lane l of the vector at float 8v of an output row is output pixel ox = (8v + l) / C,
// channel co = (8v + l) % C. For input row r, channel ci and tap kx it needs
// x[r][2*ox + kx - pl][ci]: over the at most 4 pixels of a vector these are every other
// float of 8 consecutive floats of that channel's planar row (the image split once, zero
// columns on both sides), so one vpermps with the window as its memory operand (index
// 2*(ox - ox0), the same for every kx: the window moves by kx) gives them, and one
// multiply-add by a lane-patterned weight vector (w[ky][kx][ci][co(l)]) uses them. A column
// of vectors runs down the image: input row 2*oy + 2 - pt serves output row oy (ky = 2) and,
// carried in a register, oy + 1 (ky = 0), so per output vector 6C permutes and 9C
// multiply-adds (every lane real), no pack of column phases, no merge. The padding's
// columns are zeros multiplied like the reference's; rows outside x are skipped, so a
// non-finite weight hands back (the reference multiplies them by those zeros).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2b.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

namespace {

// Up to 10 input columns. Wider, the 6C permutes per output vector (one shuffle port's
// worth on Zen 3: in a loop of independent ones each took ~1.3 multiply-adds' time) cost
// more than the planes' pack and merge: paired, 1 thread, CPU time, N=256, time / the
// planes': C=3 7x7 0.71-0.78, 9x9 0.66, 10x10 0.79, 12x12 1.04-1.18, 14x14 1.02-1.13,
// 28x28 1.37-1.42; C=6 5x5 0.49, 7x7 0.62, 9x9 0.65, 10x10 0.79, 12x12 0.97-1.11, 14x14
// 1.04-1.27, 28x28 1.28.
constexpr int64_t kFwdMaxWidth = 10;

template <int C>
struct FwdTables {
  alignas(32) int32_t idx[3][8];           // 2 * (lane's pixel - the vector's first)
  alignas(32) float w[3][3][3][C][8];      // [ph][ky][kx][ci]: w[ky][kx][ci][co(l)]
  alignas(32) float bias[3][8];
  FwdTables(const float* wt, const float* b) {
    for (int ph = 0; ph < 3; ++ph)
      for (int l = 0; l < 8; ++l) {
        const int f = 8 * ph + l, co = f % C;
        idx[ph][l] = 2 * (f / C - (8 * ph) / C);
        bias[ph][l] = b ? b[co] : 0.f;
        for (int t = 0; t < 9; ++t)
          for (int ci = 0; ci < C; ++ci) w[ph][t / 3][t % 3][ci][l] = wt[(t * C + ci) * C + co];
      }
  }
};

// dst[c*ps + k] = src[k*C + c] for k < n < 8, and zeros for n <= k < 8 (the right padding's
// columns: the planar row has at least 9 after the real ones): masked loads (vmaskmovps
// reads nothing past src + n*C) and one split. A float at a time, the tails of 14-column
// rows cost about as much as the multiply-adds of a 14x14 C=3 image.
template <int C>
inline void split_tail(const float* src, int64_t n, float* dst, int64_t ps) {
  alignas(32) static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  pixel_transpose::vec in[C], out[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const int64_t cnt = std::clamp<int64_t>(n * C - 8 * c, 0, 8);
    const __m256i m = _mm256_loadu_si256((const __m256i*)(ones + 8 - cnt));
    in[c] = (pixel_transpose::vec)_mm256_maskload_ps(src + 8 * c, m);
  }
  pixel_transpose::split<C>(in, out);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(dst + c * ps, (__m256)out[c]);
}

// Vectors [v0, v1) of every output row of one image (the last vector first, the partial one
// stored whole where its extra lanes land on floats written later: see
// few_channel_s2b_data.cpp's columns), from the planar x T (channel ci at T + ci*ps, row r
// at r*xp, column ix at ix + pl).
template <int C>
void fwd_columns(const ConvGeometry& g, const FwdTables<C>& tb, const float* T, int64_t ps,
                 int64_t xp, int64_t v0, int64_t v1, bool spill, float* y) {
  const int64_t OH = g.oh, H = g.h, rowf = g.ow * C, pt = g.win.pt;
  for (int64_t v = v1 - 1; v >= v0; --v) {
    const int ph = (int)(v % 3);
    const int64_t f0 = 8 * v, ox0 = f0 / C;
    const __m256i ix = _mm256_load_si256((const __m256i*)tb.idx[ph]);
    const __m256 bias = _mm256_load_ps(tb.bias[ph]);
    const int64_t cnt = std::min<int64_t>(8, rowf - f0);
    const int64_t room = OH * rowf - f0 - 8;
    const int64_t whole_to = cnt == 8 ? OH : spill && room >= 0 ? room / rowf + 1 : 0;
    const float(*wk)[3][C][8] = tb.w[ph];
    const float* col = T + 2 * ox0;
    // Row r's products with kernel row ky added to acc (r inside x).
    auto row_into = [&](int64_t r, int ky, __m256& acc, __m256& acc2) {
#pragma GCC unroll 8
      for (int ci = 0; ci < C; ++ci) {
        const float* p = col + ci * ps + r * xp;
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx) {
          const __m256 d = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + kx), ix);
          __m256& a = (ci * 3 + kx) % 2 ? acc2 : acc;
          a = _mm256_fmadd_ps(d, _mm256_load_ps(wk[ky][kx][ci]), a);
        }
      }
    };
    // Row r's products with ky = 2 into acc and ky = 0 into nxt (one permute for both).
    auto row_both = [&](int64_t r, __m256& acc, __m256& nxt) {
#pragma GCC unroll 8
      for (int ci = 0; ci < C; ++ci) {
        const float* p = col + ci * ps + r * xp;
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx) {
          const __m256 d = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + kx), ix);
          acc = _mm256_fmadd_ps(d, _mm256_load_ps(wk[2][kx][ci]), acc);
          nxt = _mm256_fmadd_ps(d, _mm256_load_ps(wk[0][kx][ci]), nxt);
        }
      }
    };
    __m256 carry = bias, dummy = _mm256_setzero_ps();
    if (-pt >= 0 && -pt < H) row_into(-pt, 0, carry, dummy);
    carry = _mm256_add_ps(carry, dummy);
    for (int64_t oy = 0; oy < OH; ++oy) {
      const int64_t r1 = 2 * oy + 1 - pt, r2 = r1 + 1;
      __m256 acc = carry, acc2 = _mm256_setzero_ps(), nxt = bias;
      if (r1 >= 0 && r1 < H) row_into(r1, 1, acc, acc2);
      if (r2 >= 0 && r2 < H) row_both(r2, acc2, nxt);
      carry = nxt;
      const __m256 r = _mm256_add_ps(acc, acc2);
      float* out = y + oy * rowf + f0;
      if (oy < whole_to) {
        _mm256_storeu_ps(out, r);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, r);
        std::memcpy(out, tmp, sizeof(float) * cnt);
      }
    }
  }
}

template <int C>
void fwd_flat8(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
               Activation act) {
  const FwdTables<C> tb(w, b);
  const int64_t pl = g.win.pl, nvec = (g.ow * C + 7) / 8;
  // Planar row: pl zeros, the W columns, zeros up to the last window's end (2*OW + 9).
  const int64_t xp = std::max<int64_t>(pl + g.w, 2 * g.ow + 10), ps = g.h * xp;
  const bool parallel = s2blocks::threads_for(g) > 1;
  const int64_t parts = g.n == 1 && parallel ? std::min<int64_t>(8, std::max<int64_t>(1, nvec / 6)) : 1;
  split_lines(g.n, g.n * parts, parallel, [&](int64_t l0, int64_t l1) {
    if (l0 >= l1) return;
    std::vector<float> buf((size_t)(C * ps + 8), 0.f);
    float* T = buf.data();
    int64_t staged = -1;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t n = l / parts, part = l % parts;
      if (n != staged) {
        const float* img = x + n * g.h * g.w * C;
        for (int64_t r = 0; r < g.h; ++r) {
          const float* src = img + r * g.w * C;
          float* dst = T + r * xp + pl;
          const int64_t k = pixel_transpose::split_rows<C>(src, g.w, dst, ps);
          if (k < g.w) split_tail<C>(src + k * C, g.w - k, dst + k, ps);
        }
        staged = n;
      }
      float* yn = y + n * g.oh * g.ow * C;
      const int64_t va = nvec * part / parts, vb = nvec * (part + 1) / parts;
      fwd_columns<C>(g, tb, T, ps, xp, va, vb, parts == 1, yn);
      if (act != Activation::Linear) {
        if (parts == 1) {
          activation_inplace(g.oh * g.ow * C, yn, act);
        } else {  // this part's floats of each row
          const int64_t f0 = 8 * va, f1 = std::min(8 * vb, g.ow * C);
          for (int64_t oy = 0; oy < g.oh; ++oy) activation_inplace(f1 - f0, yn + oy * g.ow * C + f0, act);
        }
      }
    }
  });
}

}  // namespace

bool s2b_fwd_flat8(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 &&
                        v.kw == 3 && v.dh == 1 && v.dw == 1 && v.sh == 2 && v.sw == 2 &&
                        v.pt >= 0 && v.pt <= 2 && v.pl >= 0 && v.pl <= 2 && g.n > 0 &&
                        g.h > 0 && g.w > 0 && g.oh >= 1 && g.ow >= 1 &&
                        g.c * g.h * (g.w + 2 * g.ow + 12) <= (int64_t(1) << 18) &&
                        g.w <= kFwdMaxWidth;
  if (!eligible || !all_finite(w, 9 * g.c * g.c)) return false;
  if (g.c == 3) fwd_flat8<3>(g, x, w, b, y, act);
  else fwd_flat8<6>(g, x, w, b, y, act);
  return true;
}

#else

bool s2b_fwd_flat8(const ConvGeometry&, const float*, const float*, const float*, float*,
                   Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
