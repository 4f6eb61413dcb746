// The CPU kernels and their bindings are compiled once per x86-64 level (CMakeLists.txt:
// baseline, avx2, avx512) into one extension module, and _C picks a level at import
// (bindings/module.cpp). CMake force-includes this header (-include) in every one of those
// compiles, with FASTCONV_ISA_NS set to the level's name (isa_baseline, isa_avx2, isa_avx512,
// or isa_native): `fastconv::cpu` and `fastconv::bind` are then declared inside an inline
// namespace of that name. The sources keep writing `namespace fastconv::cpu { ... }` and
// `cpu::name` (an inline namespace's members are reopened and found as if they were
// fastconv's own), but every symbol is mangled with its level, e.g.
// fastconv::isa_avx2::cpu::conv2d_forward, so the three copies never clash at link time.
#pragma once

#ifndef FASTCONV_ISA_NS
#error "FASTCONV_ISA_NS (the ISA level's namespace) must be defined; CMakeLists.txt sets it per level"
#endif

namespace fastconv {
inline namespace FASTCONV_ISA_NS {
namespace cpu {}
namespace bind {}
}  // namespace FASTCONV_ISA_NS
}  // namespace fastconv
