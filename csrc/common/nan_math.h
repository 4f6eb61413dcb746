// NaN-propagating max and relu, shared by the CPU kernels, the CUDA kernels and the oracle's
// semantics (shared/CONVENTIONS.md: NaN and Inf propagate as in TensorFlow/PyTorch).
//
// Why not the obvious spellings: `z > 0 ? z : 0` maps NaN to 0 (every comparison with NaN is
// false), fmaxf/std::fmax return the non-NaN operand, and x86 max instructions
// (_mm512_max_ps, maxss) return their SECOND operand when either is NaN. A kernel that drops
// a NaN this way turns one bad pixel into finite but wrong outputs, while the NaN that does
// reach the weights through other paths goes unnoticed by the loss. Each helper below is
// written so that the comparison that fails on NaN selects the NaN operand.
#pragma once

#include "common/hd.h"

namespace fastconv {

// relu(NaN) = NaN, relu(+inf) = +inf, relu(-inf) = 0.
FC_HD float relu_nan(float z) { return z < 0.f ? 0.f : z; }

// max(a, b), NaN when either is NaN (numpy.maximum).
FC_HD float max_nan(float a, float b) { return (a > b || a != a) ? a : b; }

// True when candidate v replaces the running maximum `best` of a max-pool window: v is
// larger, or v is NaN (PyTorch's rule). Strict, so ties keep the earlier cell; no number
// replaces a NaN (v > NaN is false), so a window holding NaN pools to NaN and its LAST NaN in
// row-major window order is the argmax that receives the gradient, as in PyTorch. Two
// compares per cell, the same in the 16-lane loops.
FC_HD bool pool_beats(float v, float best) { return v > best || v != v; }

}  // namespace fastconv
