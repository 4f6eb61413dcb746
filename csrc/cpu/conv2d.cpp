// Convolution by im2col + sgemm (NHWC input, HWIO weights); depthwise goes to depthwise.cpp.
//
// Thread policy (one OpenMP pool, see threads.cpp): OpenMP over chunks of output lines; each
// thread packs its chunk into its own col buffer and runs a single-threaded sgemm on it.
// Measured on the 2-core machine, N=32 56x56 64->64 k3 forward (sgemm 2048^3: 150-180
// GFLOP/s on 2 threads, 95 on 1):
//   OpenMP packing, then OpenBLAS threads on 32 MiB chunks: 54 GFLOP/s (59 on 1 thread) --
//     the two thread pools hand the cores back and forth at every chunk (each spins while
//     the other works), and the col is written to memory and read back.
//   per-thread ~1 MiB chunks, serial sgemm: 140-165 GFLOP/s (78 on 1 thread) -- the col is
//     still in L2 when the GEMM reads it and threads never wait on each other mid-call.
// The pointwise case (1x1, stride 1, no pad) skips im2col: x is already the col matrix,
// chunked the same way (one threaded GEMM after the bias loop measured 50 vs 130 GFLOP/s).

// GEMM shapes per chunk of `rows` output positions and group gi (K = KH*KW*Cin_g):
//   forward          y_g  (rows, Cout_g)  = col_g (rows, K) @ W_g (K, Cout_g)
//   backward data    dcol_g (rows, K)     = dy_g (rows, Cout_g) @ W_g^T
//   backward weights dW_g (K, Cout_g)    += col_g^T @ dy_g
// Sub-matrices are addressed in place via leading dimensions: W_g = w + gi*Cout_g (ld Cout),
// y_g/dy_g = base + gi*Cout_g (ld Cout), col_g = col + gi*K (ld groups*K).
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu/direct_conv.h"
#include "cpu/im2col.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/winograd.h"
#include "kernels.h"

#include <cblas.h>

namespace fastconv::cpu {

namespace {

// Chunk size target per thread: col small enough to still be in L2 when the GEMM reads it.
constexpr int64_t kChunkBytes = 1 << 20;
// Below this many multiply-adds a pass runs on one thread: a LeNet conv at batch 8 (~1 M)
// takes tens of microseconds, less than waking a team costs on a busy machine.
constexpr int64_t kParallelMacs = 1 << 21;

struct Plan {
  int threads;
  int64_t lines, chunk, nchunks, k, ldcol, chunk_floats;
};

Plan make_plan(const ConvGeometry& g) {
  Plan p;
  p.threads = std::max(1, get_num_threads());
  p.lines = g.n * g.oh;
  const int64_t budget = std::min(get_workspace_limit() / p.threads, kChunkBytes);
  p.chunk = detail::lines_per_chunk(g, budget);
  p.nchunks = (p.lines + p.chunk - 1) / p.chunk;
  p.k = g.win.kh * g.win.kw * g.cin_g;
  const int64_t macs = g.output_size() * p.k;
  p.threads = (int)std::min<int64_t>(macs < kParallelMacs ? 1 : p.threads, std::max<int64_t>(p.nchunks, 1));
  p.ldcol = detail::col_width(g);
  p.chunk_floats = std::max<int64_t>(1, p.chunk * g.ow * p.ldcol);
  // sgemm throws on 32-bit overflow; no exception may escape an OpenMP region, so check here.
  if (p.chunk * g.ow > INT_MAX || p.ldcol > INT_MAX || g.oc > INT_MAX)
    throw std::length_error("conv2d: a GEMM dimension exceeds the 32-bit BLAS interface");
  return p;
}

std::unique_ptr<float[]> workspace(int64_t floats) { return std::unique_ptr<float[]>(new float[floats]); }

}  // namespace

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act) {
  // The depthwise kernel writes y first, the activation follows; the few-channel direct
  // kernel applies it to each block of rows it has just written.
  const bool depthwise = g.is_depthwise();
  if (!depthwise && detail::direct_eligible(g, ConvPass::Forward))
    return detail::direct_forward(g, x, w, b, y, act);
  if (depthwise) {
    detail::depthwise_forward(g, x, w, b, y);
    return activation_inplace_parallel(g.output_size(), y, act);
  }
  // Winograd declines (false) an input holding NaN or inf (winograd.h); im2col redoes it.
  if (detail::use_winograd(g, ConvPass::Forward) && detail::winograd_forward(g, x, w, b, y, act))
    return;
  const Plan p = make_plan(g);
  const bool pointwise = g.is_pointwise();
  auto ws = workspace(pointwise ? 1 : p.threads * p.chunk_floats);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
#pragma omp parallel num_threads(p.threads)
  {
    note_team();
    float* buf = ws.get() + (pointwise ? 0 : omp_get_thread_num() * p.chunk_floats);
#pragma omp for schedule(dynamic)
    for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] {
      const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
      const float* col = pointwise ? x + l0 * g.ow * g.c : buf;
      if (!pointwise) detail::im2col_lines(g, x, l0, l1, buf);
      float* yc = y + l0 * g.ow * g.oc;
      // Bias is written first and the GEMM accumulates onto it (beta = 1), chunk by chunk
      // while y's rows are in cache.
      if (b)
        for (int64_t r = 0; r < rows; ++r) std::memcpy(yc + r * g.oc, b, sizeof(float) * g.oc);
      for (int64_t gi = 0; gi < g.groups; ++gi)
        sgemm(false, false, rows, g.cout_g, p.k, 1.f, col + gi * p.k, p.ldcol,
              w + gi * g.cout_g, g.oc, b ? 1.f : 0.f, yc + gi * g.cout_g, g.oc);
      activation_inplace(rows * g.oc, yc, act);
    });
  }
  errors.rethrow();
}

void conv2d_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (g.is_depthwise()) return detail::depthwise_backward_data(g, dy, w, dx);
  if (detail::direct_eligible(g, ConvPass::BackwardData)) return detail::direct_backward_data(g, dy, w, dx);
  if (detail::use_winograd(g, ConvPass::BackwardData) && detail::winograd_backward_data(g, dy, w, dx))
    return;
  const Plan p = make_plan(g);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  if (g.is_pointwise()) {  // dcol is dx itself: chunks write disjoint rows, nothing to scatter.
#pragma omp parallel num_threads(p.threads)
    {
      note_team();
#pragma omp for schedule(dynamic)
      for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] {
        const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          sgemm(false, true, rows, g.cin_g, g.cout_g, 1.f, dy + l0 * g.ow * g.oc + gi * g.cout_g,
                g.oc, w + gi * g.cout_g, g.oc, 0.f, dx + l0 * g.ow * g.c + gi * g.cin_g, g.c);
      });
    }
    return errors.rethrow();
  }
  // col2im accumulates into overlapping windows, so a thread owns whole images (their chunks
  // run in order on it). With a single image the GEMM alone is split across the threads.
  const int threads = (int)std::min<int64_t>(p.threads, std::max<int64_t>(g.n, 1));
  auto ws = workspace(threads * p.chunk_floats);
  const int64_t image_bytes = g.h * g.w * g.c * (int64_t)sizeof(float);
  auto image = [&](int64_t n, float* dcol) {
    std::memset(dx + n * g.h * g.w * g.c, 0, image_bytes);
    for (int64_t l0 = n * g.oh; l0 < (n + 1) * g.oh; l0 += p.chunk) {
      const int64_t l1 = std::min((n + 1) * g.oh, l0 + p.chunk), rows = (l1 - l0) * g.ow;
      const float* dyc = dy + l0 * g.ow * g.oc;
      for (int64_t gi = 0; gi < g.groups; ++gi)  // parallel_sgemm is serial inside a team
        parallel_sgemm(false, true, rows, p.k, g.cout_g, 1.f, dyc + gi * g.cout_g, g.oc,
                       w + gi * g.cout_g, g.oc, 0.f, dcol + gi * p.k, p.ldcol);
      detail::col2im_lines(g, dcol, l0, l1, dx);
    }
  };
  if (threads == 1) {
    for (int64_t n = 0; n < g.n; ++n) image(n, ws.get());
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    note_team();
    float* dcol = ws.get() + omp_get_thread_num() * p.chunk_floats;
#pragma omp for schedule(dynamic)
    for (int64_t n = 0; n < g.n; ++n) errors.run([&] { image(n, dcol); });
  }
  errors.rethrow();
}

namespace {

void im2col_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db);

}  // namespace

// The fast weight passes differ from the oracle in which taps a NaN or inf reaches: the
// direct kernel's pixel stream multiplies x by the zero dy of columns past OW (0 * NaN), the
// depthwise kernel skips padded taps (where the oracle and im2col multiply a zero by dy),
// and Winograd's transforms mix whole tiles. Each of these makes dw non-finite when such a
// value enters at all, so a non-finite dw (a few KB to check) sends the pass to im2col,
// whose products are the oracle's; finite inputs never pay more than the check.
void conv2d_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  bool done = false;
  if (g.is_depthwise()) {
    detail::depthwise_backward_weights(g, dy, x, dw, db);
    done = true;
  } else if (detail::direct_eligible(g, ConvPass::BackwardWeights)) {
    detail::direct_backward_weights(g, dy, x, dw, db);
    done = true;
  } else if (detail::use_winograd(g, ConvPass::BackwardWeights)) {
    detail::winograd_backward_weights(g, dy, x, dw, db);
    done = true;
  }
  if (done && all_finite(dw, g.weight_size())) return;
  im2col_backward_weights(g, dy, x, dw, db);
}

namespace {

void im2col_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  const int64_t positions = g.n * g.oh * g.ow;
  if (db) detail::column_sums(positions, g.oc, dy, db);
  const Plan p = make_plan(g);
  const bool pointwise = g.is_pointwise();  // x itself is the col matrix
  const int64_t wsize = g.weight_size();
  // Thread t accumulates chunks t, t+T, ... into its own dW (beta = 1 after its first chunk);
  // the partials are then added in thread order, so results do not vary between runs.
  const int threads = (int)std::min<int64_t>(p.threads, std::max<int64_t>(p.nchunks, 1));
  auto ws = workspace(pointwise ? 1 : threads * p.chunk_floats);
  std::vector<float> part((size_t)((threads - 1) * wsize));
  std::vector<char> touched(threads, 0);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
#pragma omp parallel num_threads(threads)
  {
    note_team();
    const int t = omp_get_thread_num();
    float* buf = ws.get() + (pointwise ? 0 : t * p.chunk_floats);
    float* acc = t == 0 ? dw : part.data() + (t - 1) * wsize;
#pragma omp for schedule(static, 1)
    for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] {
      const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
      const float* col = pointwise ? x + l0 * g.ow * g.c : buf;
      if (!pointwise) detail::im2col_lines(g, x, l0, l1, buf);
      const float* dyc = dy + l0 * g.ow * g.oc;
      const float beta = touched[t] ? 1.f : 0.f;
      for (int64_t gi = 0; gi < g.groups; ++gi)
        sgemm(true, false, p.k, g.cout_g, rows, 1.f, col + gi * p.k, p.ldcol, dyc + gi * g.cout_g,
              g.oc, beta, acc + gi * g.cout_g, g.oc);
      touched[t] = 1;
    });
  }
  errors.rethrow();
  if (!touched[0]) std::memset(dw, 0, sizeof(float) * wsize);  // empty batch
  for (int t = 1; t < threads; ++t) {
    if (!touched[t]) continue;
    const float* pt = part.data() + (t - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += pt[i];
  }
}

}  // namespace

}  // namespace fastconv::cpu
