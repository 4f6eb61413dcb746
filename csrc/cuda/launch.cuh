// Launch helpers shared by the .cu files: grid sizing, error reporting with the kernel's
// name, and a deterministic column reduction.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

// Launches are spelled FC_LAUNCH(kernel, grid, block, stream)(args...), which is
// kernel<<<grid, block, 0, stream>>>(args...) under nvcc; the CPU emulation build
// (emulation/cuda_runtime.h) runs the same kernels on the host. Kernels whose threads meet at
// __syncthreads() or warp shuffles launch with FC_LAUNCH_SYNC (the emulation then runs the
// threads of a block as fibers).
#ifndef FC_LAUNCH
#define FC_LAUNCH(kernel, grid, block, stream) kernel<<<grid, block, 0, stream>>>
#define FC_LAUNCH_SYNC(kernel, grid, block, stream) kernel<<<grid, block, 0, stream>>>
#endif

namespace fastconv::cuda::detail {

// Out of device memory is a std::bad_alloc, which pybind11 turns into Python's MemoryError
// (as CuPy's own OutOfMemoryError is one), so callers catch it the same way as on the cpu.
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::string message = std::string("fastconv._cuda.") + what + ": CUDA error " +
                        std::to_string((int)err) + " (" + cudaGetErrorName(err) + "): " +
                        cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) throw OutOfMemory(std::move(message));
  throw std::runtime_error(message);
}

// Call right after a launch: reports configuration errors and earlier asynchronous faults
// under this kernel's name.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

constexpr int kThreads = 256;

// 1-D grid for a grid-stride loop over `total` elements (capped: the loop covers the rest).
inline unsigned grid_for(int64_t total) {
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  return (unsigned)(blocks < 1 ? 1 : blocks);
}

// Elementwise kernel: out[i] = f(i) for i in [0, total).
template <class F>
__global__ void map_kernel(int64_t total, F f, float* out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = f(i);
}

template <class F>
void launch_map(int64_t total, F f, float* out, cudaStream_t s, const char* what) {
  if (total <= 0) return;
  FC_LAUNCH(map_kernel<F>, grid_for(total), kThreads, s)(total, f, out);
  check_launch(what);
}

// ---- deterministic column reduction ----
// out[p, j] = scale * sum_r term(p, r, j), for planes p, rows r, columns j. Pass 1: block
// (32 columns x 8 row lanes) per (column tile, row split, plane) sums its rows in a fixed
// order and reduces the 8 lanes in shared memory into partial[p, split, j]; pass 2 sums the
// splits in order. Accumulation in double: BN statistics over ~1e6 rows stay accurate.
constexpr int kColTile = 32, kRowLanes = 8;

template <class Term>
__global__ void colsum_partial_kernel(Term term, int64_t rows, int64_t cols,
                                      int64_t rows_per_split, double* partial) {
  __shared__ double lane_sums[kRowLanes][kColTile];
  const int64_t j = blockIdx.x * (int64_t)kColTile + threadIdx.x;
  const int64_t split = blockIdx.y, plane = blockIdx.z;
  const int64_t r0 = split * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  double acc = 0.0;
  if (j < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) acc += (double)term(plane, r, j);
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    double t = 0.0;
    for (int l = 0; l < kRowLanes; ++l) t += lane_sums[l][threadIdx.x];
    partial[(plane * gridDim.y + split) * cols + j] = t;
  }
}

// Pass 2; Post maps (plane, column, sum) to the stored value.
template <class Post>
__global__ void colsum_finish_kernel(int64_t planes, int64_t splits, int64_t cols,
                                     const double* partial, Post post) {
  const int64_t total = planes * cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = i / cols, j = i - p * cols;
    double t = 0.0;
    for (int64_t s = 0; s < splits; ++s) t += partial[(p * splits + s) * cols + j];
    post(p, j, t);
  }
}

// Stores scale * sum into out[p*cols + j].
struct StoreScaled {
  float* out;
  int64_t cols;
  double scale;
  __device__ void operator()(int64_t p, int64_t j, double t) const {
    out[p * cols + j] = (float)(t * scale);
  }
};

template <class Term, class Post>
void column_reduce(Term term, int64_t planes, int64_t rows, int64_t cols, Post post,
                   cudaStream_t s, const char* what) {
  if (planes <= 0 || cols <= 0) return;
  // Enough row splits to fill the GPU (~1k blocks) while each split keeps >= 256 rows.
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  int64_t splits = 1024 / (tiles * planes);
  const int64_t max_splits = (rows + 255) / 256;
  if (splits > max_splits) splits = max_splits;
  if (splits > 65535) splits = 65535;
  if (splits < 1) splits = 1;
  const int64_t per = (rows + splits - 1) / splits;
  double* partial = nullptr;
  check(cudaMallocAsync((void**)&partial, sizeof(double) * planes * splits * cols, s), what);
  FC_LAUNCH_SYNC(colsum_partial_kernel<Term>, dim3((unsigned)tiles, (unsigned)splits, (unsigned)planes),
                 dim3(kColTile, kRowLanes), s)(term, rows, cols, per, partial);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    FC_LAUNCH(colsum_finish_kernel<Post>, grid_for(planes * cols), kThreads, s)(planes, splits, cols,
                                                                             partial, post);
    err = cudaGetLastError();
  }
  cudaFreeAsync(partial, s);
  check(err, what);
}

}  // namespace fastconv::cuda::detail
