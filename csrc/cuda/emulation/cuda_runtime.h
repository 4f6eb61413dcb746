// CPU stand-in for <cuda_runtime.h>, used only by the `_cuda_emu` build (CMake option
// FASTCONV_CUDA_EMULATION): the .cu files of csrc/cuda/ compile as plain C++ against it and
// their kernels run on the host, so the CPU test suite checks the CUDA kernels' own code
// (grid-stride loops, block reductions in shared memory, warp shuffles) against the oracle.
//
// Execution model (simt.cpp): blocks run one after another. A kernel launched with
// FC_LAUNCH runs each thread to completion in turn; FC_LAUNCH_SYNC runs the threads of a
// block as fibers that switch at every __syncthreads() and __shfl_xor_sync(), which gives
// both their CUDA meaning for code that follows CUDA's rules (barriers reached by every
// thread of the block, shuffles by every lane of the warp). A barrier inside an FC_LAUNCH
// kernel is an error. Not modelled: concurrency between blocks, memory spaces, streams.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // blocks run one at a time: one copy per kernel serves each block

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = struct CUstream_st*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };

namespace fastconv::emu {

struct ThreadState {
  dim3 thread, block, block_dim, grid_dim;
};
extern thread_local ThreadState current;

void sync_threads();                        // __syncthreads()
float shfl_xor(float v, int lane_mask);     // __shfl_xor_sync(full mask, v, lane_mask)

// Runs body(args...) once per (block, thread). cooperative: threads of a block are fibers.
void run_grid(dim3 grid, dim3 block, bool cooperative, void (*thunk)(void*), void* closure);

// Blocks, and threads within a block, run in reverse order when set: results that change
// with it depend on the order a GPU happens to run them in (a race).
void set_reverse_order(bool reverse);

template <class... Args>
struct Launch {
  dim3 grid, block;
  bool cooperative;
  void (*kernel)(Args...);
  template <class... Given>
  void operator()(Given&&... given) const {
    struct Closure {
      void (*kernel)(Args...);
      std::tuple<Args...> args;
    } closure{kernel, std::tuple<Args...>(std::forward<Given>(given)...)};
    run_grid(grid, block, cooperative,
             [](void* p) {
               auto* c = static_cast<Closure*>(p);
               std::apply(c->kernel, c->args);
             },
             &closure);
  }
};

template <class... Args>
Launch<Args...> launch(void (*kernel)(Args...), dim3 grid, dim3 block, bool cooperative) {
  return Launch<Args...>{grid, block, cooperative, kernel};
}

inline cudaError_t& last_error() {
  static thread_local cudaError_t err = cudaSuccess;
  return err;
}

}  // namespace fastconv::emu

#define threadIdx (::fastconv::emu::current.thread)
#define blockIdx (::fastconv::emu::current.block)
#define blockDim (::fastconv::emu::current.block_dim)
#define gridDim (::fastconv::emu::current.grid_dim)

inline void __syncthreads() { ::fastconv::emu::sync_threads(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  return ::fastconv::emu::shfl_xor(v, lane_mask);
}
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = ::fastconv::emu::last_error();
  ::fastconv::emu::last_error() = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation"
                                                                           : "cudaErrorInvalidValue";
}
inline const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }

// The launch syntax of launch.cuh's FC_LAUNCH / FC_LAUNCH_SYNC, on the host.
#define FC_LAUNCH(kernel, grid, block, stream) ::fastconv::emu::launch(kernel, grid, block, false)
#define FC_LAUNCH_SYNC(kernel, grid, block, stream) ::fastconv::emu::launch(kernel, grid, block, true)
