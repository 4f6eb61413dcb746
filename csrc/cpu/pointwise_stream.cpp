// Streamed outputs of stride-1 1x1 convs (see pointwise_stream.h; helper W, stop 36).
#include "cpu/pointwise_stream.h"

#include <algorithm>
#include <memory>

#include "cpu/im2col.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

// A pointwise conv that widens a shallow product (Cin <= 64, Cout >= 2 Cin) with y past the
// cache (simd.h stream_output): each chunk's product in blocks of kStreamRows rows, written
// to a scratch and streamed out (no read-for-ownership of y's lines: with K <= 64 the
// stores were the bound). Several images only (the one-image item team keeps its path).
// 1 thread, CPU ms, two builds in one process, medians of 7-9 (stop 36): N=32 56x56 64->256
// 54.4/44.0 and 53.3/44.6, 64->128 24.4/20.7, 32->64 7.04/6.71, N=8 56x56 64->256 11.2/9.6,
// N=64 28x28 64->256 25.8/21.8, N=16 56x56 32->128 8.34/6.42; not where the product is deeper
// or y no wider (N=32 56x56 256->64 1.01x, N=32 28x28 128->512 1.01x, N=32 14x14 256->1024
// 1.035x, N=256 28x28 64->64 0.98-1.02x).
bool stream_pointwise_forward(const ConvGeometry& g) {
  return g.groups == 1 && g.n > 1 && g.c <= 64 && g.oc >= 2 * g.c &&
         active_gemm_backend() == "native" && stream_output(g.output_size() * (int64_t)sizeof(float));
}

void streamed_forward_product(const ConvGeometry& g, int64_t rows, const float* col, const float* w,
                              const float* b, const float* rc, Activation act, float* yc,
                              const GemmPackedB* packed) {
  float* buf = scratch(kStreamRows * g.oc);
  for (int64_t r0 = 0; r0 < rows; r0 += kStreamRows) {
    const int64_t rr = std::min(kStreamRows, rows - r0);
    forward_product(rr, g.oc, g.c, col + r0 * g.c, g.c, w, g.oc, b, rc ? rc + r0 * g.oc : nullptr,
                    act, buf, g.oc, packed);
    stream_copy(yc + r0 * g.oc, buf, rr * g.oc);
  }
}

// A dx past the cache (simd.h stream_output): blocks of kStreamRows rows, each product
// written to a scratch in L2 and streamed out (no read-for-ownership of dx's lines), W^T
// packed once. 1 thread, CPU ms, two builds in one process (stop 36): N=32 28x28 256->64
// (item 2; 25.7 MB of dx) 10.2-11.1 -> 9.4-10.4 (0.92-0.94x); blocks of 28 rows 0.97x,
// 560 1.01x; the same blocks written straight to dx 1.09x (the stores were the cost).
// Also N=32 56x56 64->256 0.91x, 256->64 0.92x, N=32 28x28 512->512 0.94x, N=256 14x14
// 256->256 0.97x; but with 128 channels or fewer each side even or noisy (N=32 56x56
// 128->128 0.98-0.99x, N=256 56x56 32->32 0.99-1.03x, N=256 28x28 64->64 0.98-1.12x),
// so only from 256 on either side.
bool streamed_pointwise_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                      float* dx, int threads) {
  if (g.groups != 1 || std::max(g.c, g.oc) < 256 ||
      !stream_output(g.input_size() * (int64_t)sizeof(float)))
    return false;
  std::unique_ptr<float[]> packed_w(new float[std::max<int64_t>(1, gemm_packed_b_floats(g.oc, g.c))]);
  gemm_pack_b(g.oc, g.c, w, g.oc, packed_w.get(), true);
  GemmPackedB packed;
  packed.data = packed_w.get(), packed.n = g.c;
  const int64_t rows_total = g.n * g.h * g.w, blocks = (rows_total + kStreamRows - 1) / kStreamRows;
  ExceptionCaptor errors;  // sgemm and the scratch may throw
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) errors.run([&] {
      float* buf = scratch(kStreamRows * g.c);
      const int64_t r0 = bi * kStreamRows, rows = std::min(kStreamRows, rows_total - r0);
      gemm_avx512(false, true, rows, g.c, g.oc, 1.f, dy + r0 * g.oc, g.oc, w, g.oc, 0.f, buf, g.c,
                  false, nullptr, &packed);
      stream_copy(dx + r0 * g.c, buf, rows * g.c);
    });
    stream_fence();
  });
  errors.rethrow();
  return true;
}

}  // namespace fastconv::cpu::detail
