// The hardware ceiling the GEMM and the conv kernels are measured against: the FMA rate of one
// core at each vector width the compiled level runs (benchmarks/bench_isa_levels.py,
// bench_gemm.py, `fastconv info`). Compiled per level like every CPU source (cpu/isa.h), so
// the avx2 level's probe is a ymm loop and the avx512 level's a zmm one.
#pragma once
#include <cstdint>
#include <vector>

namespace fastconv::cpu {

// Vector widths in bits (128, 256, 512) this level has a multiply-add loop for, narrowest
// first: 128 everywhere, 256 from avx2, 512 at avx512.
std::vector<int> fma_peak_widths();

// Runs `iters` rounds of 24 independent multiply-add chains on vectors of `bits` bits and
// returns the flops done (2 per lane per step), or 0 when this level has no loop of that width.
// FMA instructions where the level has them; the baseline level (SSE2, no FMA) multiplies and
// adds, so its figure is the mul+add peak.
int64_t fma_peak_loop(int bits, int64_t iters);

}  // namespace fastconv::cpu
