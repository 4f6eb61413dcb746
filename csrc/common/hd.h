// Host/device qualifier shared by CPU (.cpp, g++) and CUDA (.cu, nvcc) translation units.
// Per-element index math lives in FC_HD functions so the CPU test build checks the exact
// code the CUDA kernels run.
#pragma once
#if defined(__CUDACC__)
#define FC_HD __host__ __device__ __forceinline__
#else
#define FC_HD inline
#endif
