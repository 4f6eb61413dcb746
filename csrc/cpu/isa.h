// The CPU kernels are compiled once per x86-64 level (CMakeLists.txt: baseline, avx2,
// avx512) into one extension module, and _C picks a level at import (bindings/module.cpp).
// Each copy lives in its own namespace so the three never clash at link time: FASTCONV_CPU
// is that namespace's name for this compile (cpu_baseline, cpu_avx2, cpu_avx512, or
// cpu_native), set with -D by CMake. Sources open `namespace fastconv::FASTCONV_CPU`;
// code that calls the kernels writes `cpu::name`, through the alias below, and so reaches
// the copy compiled for its own level.
#pragma once

#ifndef FASTCONV_CPU
#error "FASTCONV_CPU (the ISA level's namespace) must be defined; CMakeLists.txt sets it per level"
#endif

namespace fastconv {
namespace FASTCONV_CPU {}
namespace cpu = FASTCONV_CPU;
}  // namespace fastconv
