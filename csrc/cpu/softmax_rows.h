// Row softmax and its backward in the avx2 level's own registers (softmax_rows.cpp,
// softmax_rows_backward.cpp), for softmax.cpp.
#pragma once
#include <cstdint>

namespace fastconv::cpu::detail {

// y = softmax(x) over each row of (n, c) with the row held in ceil(c / 8) ymm registers, or
// false (nothing written) where this path does not apply: only the avx2 level, from 9 classes
// (past 128 a row in three passes over it; softmax_rows.cpp says why).
bool softmax_forward_register_rows(int64_t n, int64_t c, const float* x, float* y);

// The same softmax on the first n / 8 * 8 rows, in blocks of rows in three passes
// (softmax_fwd_blocks.cpp; the same results bit for bit): the rows done (0 where it does not
// apply: only the avx2 level, 9..128 classes, n >= 8).
int64_t softmax_forward_blocks(int64_t n, int64_t c, const float* x, float* y);

// The planes path at 1..8 classes 4 (to 4 classes) or 2 registers of rows at a time
// (softmax_fwd_planes.cpp, the same results bit for bit): the rows done (n rounded down to a
// multiple of 32 or 16; 0 below the avx2 level).
int64_t softmax_forward_plane_pairs(int64_t n, int64_t c, const float* x, float* y);

// dx = y * (dy - sum(dy * y)) over each row of (n, c) with the row in ceil(c / 8) ymm registers
// of dy and of y (softmax_rows_backward.cpp), or false (nothing written): only the avx2 level,
// 9..64 classes.
bool softmax_backward_register_rows(int64_t n, int64_t c, const float* dy, const float* y, float* dx);

// The same at c == 6, four rows at a time in three registers (softmax_rows_backward.cpp): the
// rows done (n rounded down to a multiple of 4; 0 below the avx2 level).
int64_t softmax_backward_six(int64_t n, const float* dy, const float* y, float* dx);

}  // namespace fastconv::cpu::detail
