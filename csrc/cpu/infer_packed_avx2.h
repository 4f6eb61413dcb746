// Forward conv products with few rows against weights packed once per inference plan, at the
// avx2 level (infer_packed_avx2.cpp; issue 18 item 4, helper P, stop 39).
//
// At batch 1 the deep layers of a network are products of few rows (ResNet-18 CIFAR's 4x4
// 512 -> 512 3x3 conv: 16 rows, K = 4608, 9.4 MB of weights). Below AVX-512 they went to
// OpenBLAS's sgemm, which packs W again on every call (and, under cout_split.cpp, A again for
// every column block). Here the plan packs W once (conv2d_prepare, the "packed" form that the
// AVX-512 level fills with gemm_pack_b's layout) into 16-column panels, and the product reads
// each panel as one sequential run.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "cpu/gemm.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Floats of the packed form of the weights of g where this level keeps one (avx2 without
// AVX-512, an ungrouped conv of at most kInferPackedMaxRows output positions and weights of at
// least kInferPackedMinBytes); 0 elsewhere.
int64_t infer_packed_floats(const ConvGeometry& g);
// Packs W (k x n, row-major, leading dimension n) in reduction slices of 256 steps (the last
// one shorter), each a run of 16-column panels: slice p0 (kc steps) at dst + p0 * n_pad (n
// rounded up to 16), its panel j (columns [16 j, 16 j + 16), zeros past n) at + 16 j * kc,
// step p of it at + 16 p. A block of columns [col0, col0 + n) with col0 a multiple of 16 is one
// contiguous run of each slice. Serial.
void infer_pack(int64_t k, int64_t n, const float* w, float* dst);
// y[rows x n] (leading dimension ldy; residual the same layout, may be null) =
// act(col @ W[:, col0 : col0 + n] + bias + residual) with W read from infer_pack's panels
// (packed->data, packed->col0 a multiple of 16, packed->n W's columns). Linear, relu and relu6;
// returns false, writing nothing, for another activation or on a level without the form.
// Each output element is summed in the order of p, whatever the column block: results do not
// depend on how callers split the columns between threads. Serial.
bool infer_packed_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                          const GemmPackedB& packed, const float* bias, const float* residual,
                          Activation act, float* y, int64_t ldy);

}  // namespace fastconv::cpu::detail
