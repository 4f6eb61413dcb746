// im2col / col2im for NHWC input (layout described in im2col.h).
#include "cpu/im2col.h"

#include <algorithm>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/gemm.h"
#include "cpu/infer_packed_avx2.h"
#include "cpu/pointwise_avx2.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

int64_t lines_per_chunk(const ConvGeometry& g, int64_t budget_bytes) {
  const int64_t line_bytes = g.ow * col_width(g) * (int64_t)sizeof(float);
  const int64_t lines = budget_bytes / std::max<int64_t>(line_bytes, 1);
  // A single line over the cap is still processed whole: it is the smallest unit whose rows
  // are contiguous in y, and it is at most OW*KH*KW*C floats.
  return std::max<int64_t>(1, std::min(lines, g.n * g.oh));
}

bool init_output_rows(int64_t rows, int64_t cols, int64_t ld, const float* bias,
                      const float* residual, float* y) {
  if (!bias && !residual) return false;
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * ld;
    if (!residual) {
      std::memcpy(yr, bias, sizeof(float) * cols);
    } else if (!bias) {
      std::memcpy(yr, residual + r * ld, sizeof(float) * cols);
    } else {
      const float* rr = residual + r * ld;
      for (int64_t j = 0; j < cols; ++j) yr[j] = rr[j] + bias[j];
    }
  }
  return true;
}

void forward_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                     const float* w, int64_t ldw, const float* bias, const float* residual,
                     Activation act, float* y, int64_t ldy, const GemmPackedB* packed) {
  const bool fused = act == Activation::Linear || act == Activation::Relu || act == Activation::Relu6;
  if (fused && active_gemm_backend() == "native") {
    GemmEpilogue ep;
    ep.bias = bias;
    ep.residual = residual;
    ep.ldr = ldy;
    ep.act = act == Activation::Relu ? GemmEpilogue::kRelu
             : act == Activation::Relu6 ? GemmEpilogue::kRelu6 : GemmEpilogue::kLinear;
    return gemm_avx512(false, false, rows, n, k, 1.f, col, ldcol, w, ldw, 0.f, y, ldy, false, &ep, packed);
  }
  // At avx2, W packed once by the plan for a few-row product (infer_packed_avx2.h).
  if (fused && packed && infer_packed_product(rows, n, k, col, ldcol, *packed, bias, residual, act, y, ldy)) return;
  // At avx2, K <= 64 and W up to 64 KiB: register tiles with the bias and relu / relu6 in registers
  // (pointwise_avx2.h; false, nothing written, elsewhere).
  if (fused && pointwise_avx2_product(rows, n, k, col, ldcol, w, ldw, bias, residual, act, y, ldy)) return;
  const bool init = init_output_rows(rows, n, ldy, bias, residual, y);
  sgemm(false, false, rows, n, k, 1.f, col, ldcol, w, ldw, init ? 1.f : 0.f, y, ldy);
  if (act != Activation::Linear)
    for (int64_t r = 0; r < rows; ++r) activation_inplace(n, y + r * ldy, act);
}

namespace {

// Valid kernel taps along one axis: taps k in [k0, k1) land inside [0, size).
inline void valid_taps(int64_t origin, int64_t k, int64_t dil, int64_t size, int64_t& k0,
                       int64_t& k1) {
  // origin + t*dil >= 0  and  origin + t*dil < size
  k0 = origin >= 0 ? 0 : std::min<int64_t>(k, (-origin + dil - 1) / dil);
  k1 = origin >= size ? 0 : std::min<int64_t>(k, (size - origin + dil - 1) / dil);
  if (k1 < k0) k1 = k0;
}

// Runs of a kernel row are short for few channels (the stem: 7 taps x 3 channels = 21
// floats), where a memcpy/memset call per run cost more than the copy: im2col and libc's
// memmove/memset were a quarter of the stem's weight pass. Masked 16-float moves instead
// (masked-off lanes are never read, so a run ending at the end of x is safe).
inline void copy_run(float* d, const float* s, int64_t len) {
#if defined(__AVX512F__)
  if (len <= 64) {
    for (int64_t i = 0; i < len; i += 16) {
      const __mmask16 m = len - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - i)) - 1);
      _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
    }
    return;
  }
#endif
  std::memcpy(d, s, sizeof(float) * len);
}

inline void zero_run(float* d, int64_t len) {
#if defined(__AVX512F__)
  if (len <= 64) {
    for (int64_t i = 0; i < len; i += 16) {
      const __mmask16 m = len - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - i)) - 1);
      _mm512_mask_storeu_ps(d + i, m, _mm512_setzero_ps());
    }
    return;
  }
#endif
  std::memset(d, 0, sizeof(float) * len);
}

}  // namespace

void im2col_lines(const ConvGeometry& g, const float* x, int64_t l0, int64_t l1, float* col) {
  const Window2d& v = g.win;
  const int64_t kcols = v.kh * v.kw * g.cin_g, ldcol = g.groups * kcols;
  const int64_t hwc = g.h * g.w * g.c;
  // groups == 1 and unit horizontal dilation: the valid taps of one kernel row are one
  // contiguous run of x, and land contiguously in col, so a single copy per kernel row.
  const bool row_copy = g.groups == 1 && v.dw == 1;
  for (int64_t l = l0; l < l1; ++l) {
    const int64_t n = l / g.oh, oy = l % g.oh;
    const float* xn = x + n * hwc;
    float* crow = col + (l - l0) * g.ow * ldcol;
    const int64_t iy0 = oy * v.sh - v.pt;
    int64_t ky0, ky1;
    valid_taps(iy0, v.kh, v.dh, g.h, ky0, ky1);
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      float* dst = crow + ox * ldcol;
      const int64_t ix0 = ox * v.sw - v.pl;
      int64_t kx0, kx1;
      valid_taps(ix0, v.kw, v.dw, g.w, kx0, kx1);
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const bool row_ok = ky >= ky0 && ky < ky1;
        const float* xrow = xn + (iy0 + ky * v.dh) * g.w * g.c;
        if (row_copy) {
          float* d = dst + ky * v.kw * g.c;
          if (!row_ok) { zero_run(d, v.kw * g.c); continue; }
          if (kx0 > 0) zero_run(d, kx0 * g.c);
          copy_run(d + kx0 * g.c, xrow + (ix0 + kx0) * g.c, (kx1 - kx0) * g.c);
          if (kx1 < v.kw) zero_run(d + kx1 * g.c, (v.kw - kx1) * g.c);
          continue;
        }
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const bool ok = row_ok && kx >= kx0 && kx < kx1;
          const float* src = xrow + (ix0 + kx * v.dw) * g.c;
          for (int64_t gi = 0; gi < g.groups; ++gi) {
            float* d = dst + gi * kcols + (ky * v.kw + kx) * g.cin_g;
            if (ok) copy_run(d, src + gi * g.cin_g, g.cin_g);
            else zero_run(d, g.cin_g);
          }
        }
      }
    }
  }
}

void col2im_lines(const ConvGeometry& g, const float* dcol, int64_t l0, int64_t l1, float* dx) {
  if (l1 <= l0) return;
  const Window2d& v = g.win;
  const int64_t kcols = v.kh * v.kw * g.cin_g, ldcol = g.groups * kcols;
  const int64_t hwc = g.h * g.w * g.c;
  const int64_t n0 = l0 / g.oh, n1 = (l1 - 1) / g.oh + 1;
  // As im2col_lines' row_copy: with groups == 1 and unit horizontal dilation, a kernel row's
  // valid taps are KW*C contiguous floats in dcol and in dx, so one vector add per kernel row
  // (the stem's C = 3 otherwise ran a 3-float loop per tap).
  const bool row_add = g.groups == 1 && v.dw == 1;
  for (int64_t n = n0; n < n1; ++n) {
    float* dxn = dx + n * hwc;
    const int64_t la = std::max(l0, n * g.oh), lb = std::min(l1, (n + 1) * g.oh);
    for (int64_t l = la; l < lb; ++l) {
      const int64_t oy = l % g.oh;
      const float* crow = dcol + (l - l0) * g.ow * ldcol;
      const int64_t iy0 = oy * v.sh - v.pt;
      int64_t ky0, ky1;
      valid_taps(iy0, v.kh, v.dh, g.h, ky0, ky1);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const float* src = crow + ox * ldcol;
        const int64_t ix0 = ox * v.sw - v.pl;
        int64_t kx0, kx1;
        valid_taps(ix0, v.kw, v.dw, g.w, kx0, kx1);
        for (int64_t ky = ky0; ky < ky1; ++ky) {
          float* dxrow = dxn + (iy0 + ky * v.dh) * g.w * g.c;
          if (row_add) {  // the valid taps of this kernel row: one contiguous run each side
            const float* s = src + (ky * v.kw + kx0) * g.c;
            float* d = dxrow + (ix0 + kx0) * g.c;
            const int64_t len = (kx1 - kx0) * g.c;
            for (int64_t i = 0; i < len; ++i) d[i] += s[i];
            continue;
          }
          for (int64_t kx = kx0; kx < kx1; ++kx) {
            float* d = dxrow + (ix0 + kx * v.dw) * g.c;
            for (int64_t gi = 0; gi < g.groups; ++gi) {
              const float* s = src + gi * kcols + (ky * v.kw + kx) * g.cin_g;
              float* dg = d + gi * g.cin_g;
              for (int64_t ci = 0; ci < g.cin_g; ++ci) dg[ci] += s[ci];
            }
          }
        }
      }
    }
  }
}

}  // namespace fastconv::cpu::detail
