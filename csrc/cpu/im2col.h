// Internals shared by the CPU conv kernels (conv2d.cpp, im2col.cpp, depthwise.cpp, dense.cpp).
//
// Layout of the im2col matrix ("col"): one row per output position, rows ordered as the NHWC
// output (n, oy, ox), so `col @ W` lands directly in y without a transpose. A row holds
// `groups` blocks of K = KH*KW*Cin_g values ordered (ky, kx, ci), which is exactly the HWIO
// weight layout: group g's weights are the (K, Cout_g) sub-matrix W[:, g*Cout_g:] with
// leading dimension Cout, and its A operand is col + g*K with leading dimension groups*K.
//
// Work is cut into "lines": a line is one output row (n, oy) of OW positions, numbered
// l = n*OH + oy across the whole batch. A chunk is a contiguous range of lines, so it may
// span several whole images or, when one image alone would exceed the workspace cap, part
// of one; either way its rows in col, y and dy are contiguous.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "cpu/gemm.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Columns of col (= groups * KH*KW*Cin_g).
inline int64_t col_width(const ConvGeometry& g) { return g.groups * g.win.kh * g.win.kw * g.cin_g; }

// Lines per chunk so that one chunk's col stays under budget_bytes (at least 1 line).
int64_t lines_per_chunk(const ConvGeometry& g, int64_t budget_bytes);

// Packs lines [l0, l1) of the batch x into col ((l1-l0)*OW rows of col_width(g)).
// Padded cells are written as zeros. Serial: the callers parallelise over chunks.
void im2col_lines(const ConvGeometry& g, const float* x, int64_t l0, int64_t l1, float* col);

// dx += scatter of dcol (same layout as im2col_lines) for lines [l0, l1). Serial: windows of
// one image overlap, so concurrent callers must work on different images.
void col2im_lines(const ConvGeometry& g, const float* dcol, int64_t l0, int64_t l1, float* dx);

// What a forward GEMM accumulates onto (beta = 1): rows [0, rows) x cols of y (leading
// dimension ld; residual, when given, has the same layout) set to bias + residual, either of
// which may be null. Returns false, writing nothing, when both are null (the GEMM then runs
// with beta = 0 and never reads y). Serial.
bool init_output_rows(int64_t rows, int64_t cols, int64_t ld, const float* bias,
                      const float* residual, float* y);

// y (rows x n, leading dimension ldy; residual the same layout) = act(col @ W + bias +
// residual) for one chunk (and group) of a forward conv, col rows x k (ldcol), W k x n (ldw);
// bias and residual may be null. The native GEMM applies bias, residual and a (capped) relu
// as it stores each tile of y (gemm.h GemmEpilogue): no pass of their own over y. Otherwise
// y starts from bias + residual, the GEMM accumulates onto it and the activation follows on
// the chunk (still in cache); at avx2, W up to 64 KiB and those activations, avx2 register
// tiles take it (pointwise_avx2.h). Serial. packed (null: none): W packed once (gemm_pack_b of the
// whole k x N weights, this product's columns from packed->col0), read instead of w where the
// native GEMM runs with a fused epilogue; elsewhere w is read.
void forward_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                     const float* w, int64_t ldw, const float* bias, const float* residual,
                     Activation act, float* y, int64_t ldy, const GemmPackedB* packed = nullptr);

// Depthwise (groups == C, Cin_g == 1, multiplier M = Cout_g) direct kernels, depthwise.cpp.
// y = act(depthwise conv + b), the activation applied row by row while in cache.
void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act);
void depthwise_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void depthwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db);

// out[j] = sum_i a[i*cols + j]; deterministic for a fixed thread count (dense.cpp).
void column_sums(int64_t rows, int64_t cols, const float* a, float* out);

}  // namespace fastconv::cpu::detail
