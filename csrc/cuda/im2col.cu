// im2col / col2im on the GPU (CPU twin: cpu/im2col.cpp). The per-element math is
// common/im2col_index.h, which the CPU test suite runs too.
#include "common/im2col_index.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

void im2col(const ConvGeometry& g, const float* x, float* col, cudaStream_t s) {
  const int64_t total = g.n * g.oh * g.ow * g.groups * g.win.kh * g.win.kw * g.cin_g;
  const ConvGeometry gg = g;
  detail::launch_map(total, [=] __device__(int64_t i) { return im2col_value(gg, x, i); }, col, s,
                     "im2col");
}

void col2im(const ConvGeometry& g, const float* dcol, float* dx, cudaStream_t s) {
  const ConvGeometry gg = g;
  detail::launch_map(g.input_size(), [=] __device__(int64_t i) { return col2im_value(gg, dcol, i); },
                     dx, s, "col2im");
}

void column_sums(int64_t planes, int64_t rows, int64_t cols, const float* a, float scale,
                 float* out, cudaStream_t s) {
  if (rows == 0) {
    detail::check(cudaMemsetAsync(out, 0, sizeof(float) * planes * cols, s), "column_sums");
    return;
  }
  detail::column_reduce(
      [=] __device__(int64_t p, int64_t r, int64_t j) { return a[(p * rows + r) * cols + j]; },
      planes, rows, cols, detail::StoreScaled{out, cols, (double)scale}, s, "column_sums");
}

int device_count() {
  int n = 0;
  detail::check(cudaGetDeviceCount(&n), "device_count");
  if (n == 0) throw std::runtime_error("fastconv._cuda.device_count: no CUDA device visible");
  return n;
}

}  // namespace fastconv::cuda
