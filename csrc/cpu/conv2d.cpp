// Convolution by im2col + sgemm (NHWC input, HWIO weights); depthwise goes to depthwise.cpp.
//
// Thread policy (one level per kernel, see threads.cpp): packing (im2col/col2im) runs as an
// OpenMP loop, then the GEMM runs alone on OpenBLAS's threads, in sequence. The alternative,
// OpenMP over images each calling a single-threaded sgemm, needs one col workspace per thread
// (halving the chunk under the same cap) and calls OpenBLAS from inside OpenMP threads, which
// this pthreads OpenBLAS serialises. Measured on the 2-core machine (bench_conv.py, N=32
// 56x56 64->64 k3 forward): threaded sgemm on whole chunks is within a few percent of the
// 2048^3 sgemm rate, and the packing is a small fraction of the time, so nothing is left
// for per-image parallelism to win.
//
// GEMM shapes per chunk of `rows` output positions and group gi (K = KH*KW*Cin_g):
//   forward          y_g  (rows, Cout_g)  = col_g (rows, K) @ W_g (K, Cout_g)
//   backward data    dcol_g (rows, K)     = dy_g (rows, Cout_g) @ W_g^T
//   backward weights dW_g (K, Cout_g)    += col_g^T @ dy_g          (beta = 1 after chunk 0)
// Sub-matrices are addressed in place via leading dimensions: W_g = w + gi*Cout_g (ld Cout),
// y_g/dy_g = base + gi*Cout_g (ld Cout), col_g = col + gi*K (ld groups*K).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "cpu/im2col.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

std::unique_ptr<float[]> workspace(const ConvGeometry& g, int64_t lines) {
  return std::unique_ptr<float[]>(new float[std::max<int64_t>(1, lines * g.ow * detail::col_width(g))]);
}

void parallel_zero(float* p, int64_t count) {
  const int64_t block = 1 << 16;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; i += block)
    std::memset(p + i, 0, sizeof(float) * std::min(block, count - i));
}

}  // namespace

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y) {
  if (g.is_depthwise()) return detail::depthwise_forward(g, x, w, b, y);
  const int64_t positions = g.n * g.oh * g.ow;
  // Bias is written first and the GEMM accumulates onto it (beta = 1): one pass over y.
  float beta = 0.f;
  if (b) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < positions; ++r) std::memcpy(y + r * g.oc, b, sizeof(float) * g.oc);
    beta = 1.f;
  }
  if (g.is_pointwise()) {  // 1x1, stride 1, no padding: x itself is the col matrix.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(false, false, positions, g.cout_g, g.cin_g, 1.f, x + gi * g.cin_g, g.c,
            w + gi * g.cout_g, g.oc, beta, y + gi * g.cout_g, g.oc);
    return;
  }
  const int64_t lines = g.n * g.oh, chunk = detail::lines_per_chunk(g);
  const int64_t k = g.win.kh * g.win.kw * g.cin_g, ldcol = detail::col_width(g);
  auto col = workspace(g, std::min(chunk, lines));
  for (int64_t l0 = 0; l0 < lines; l0 += chunk) {
    const int64_t l1 = std::min(lines, l0 + chunk), rows = (l1 - l0) * g.ow;
    detail::im2col_lines(g, x, l0, l1, col.get());
    float* yc = y + l0 * g.ow * g.oc;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(false, false, rows, g.cout_g, k, 1.f, col.get() + gi * k, ldcol, w + gi * g.cout_g,
            g.oc, beta, yc + gi * g.cout_g, g.oc);
  }
}

void conv2d_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (g.is_depthwise()) return detail::depthwise_backward_data(g, dy, w, dx);
  if (g.is_pointwise()) {  // dx_g = dy_g @ W_g^T, written straight into x's layout.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(false, true, g.n * g.h * g.w, g.cin_g, g.cout_g, 1.f, dy + gi * g.cout_g, g.oc,
            w + gi * g.cout_g, g.oc, 0.f, dx + gi * g.cin_g, g.c);
    return;
  }
  parallel_zero(dx, g.input_size());  // col2im accumulates (overlapping windows)
  const int64_t lines = g.n * g.oh, chunk = detail::lines_per_chunk(g);
  const int64_t k = g.win.kh * g.win.kw * g.cin_g, ldcol = detail::col_width(g);
  auto dcol = workspace(g, std::min(chunk, lines));
  for (int64_t l0 = 0; l0 < lines; l0 += chunk) {
    const int64_t l1 = std::min(lines, l0 + chunk), rows = (l1 - l0) * g.ow;
    const float* dyc = dy + l0 * g.ow * g.oc;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(false, true, rows, k, g.cout_g, 1.f, dyc + gi * g.cout_g, g.oc, w + gi * g.cout_g,
            g.oc, 0.f, dcol.get() + gi * k, ldcol);
    detail::col2im_lines(g, dcol.get(), l0, l1, dx);
  }
}

void conv2d_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  if (g.is_depthwise()) return detail::depthwise_backward_weights(g, dy, x, dw, db);
  const int64_t positions = g.n * g.oh * g.ow;
  if (db) detail::column_sums(positions, g.oc, dy, db);
  if (g.is_pointwise()) {  // dW_g = x_g^T @ dy_g over every position at once.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(true, false, g.cin_g, g.cout_g, positions, 1.f, x + gi * g.cin_g, g.c,
            dy + gi * g.cout_g, g.oc, 0.f, dw + gi * g.cout_g, g.oc);
    return;
  }
  const int64_t lines = g.n * g.oh, chunk = detail::lines_per_chunk(g);
  const int64_t k = g.win.kh * g.win.kw * g.cin_g, ldcol = detail::col_width(g);
  if (lines == 0) {  // empty batch: no chunk will write dw
    std::memset(dw, 0, sizeof(float) * g.weight_size());
    return;
  }
  auto col = workspace(g, std::min(chunk, lines));
  for (int64_t l0 = 0; l0 < lines; l0 += chunk) {
    const int64_t l1 = std::min(lines, l0 + chunk), rows = (l1 - l0) * g.ow;
    detail::im2col_lines(g, x, l0, l1, col.get());
    const float* dyc = dy + l0 * g.ow * g.oc;
    const float beta = l0 == 0 ? 0.f : 1.f;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      sgemm(true, false, k, g.cout_g, rows, 1.f, col.get() + gi * k, ldcol, dyc + gi * g.cout_g,
            g.oc, beta, dw + gi * g.cout_g, g.oc);
  }
}

}  // namespace fastconv::cpu
