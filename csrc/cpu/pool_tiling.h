// Max (argmax) and average pooling whose windows tile the input (pool_tiling.cpp).
#pragma once
#include <cstdint>

#include "common/geometry.h"

namespace fastconv::cpu::detail {

// Windows side by side without gaps or overlap (kh == sh, kw == sw, no padding) and at least
// a register of channels: the layout of 2x2 stride-2 pooling on even and odd sizes.
bool pool_windows_tile(const PoolGeometry& g);

// Same contracts as max_pool2d_backward_argmax and avg_pool2d_backward without an activation,
// for the geometries pool_windows_tile admits.
void max_backward_argmax_tiles(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx);
void avg_backward_tiles(const PoolGeometry& g, const float* dy, float* dx);

// Forwards over tiling windows: pool_windows_tile's geometries, below 16 channels (AVX-512)
// those whose window row fits two registers (kw*C <= 32). Same contracts as
// max_pool2d_forward(_argmax) (arg null: no argmax) and avg_pool2d_forward.
bool pool_forward_tiles(const PoolGeometry& g);
void max_forward_tiles(const PoolGeometry& g, const float* x, float* y, uint8_t* arg);
void avg_forward_tiles(const PoolGeometry& g, const float* x, float* y);

#if defined(__AVX2__) && !defined(__AVX512F__)
// The avx2 level's forwards over tiling windows below 8 channels (pool_rows8.cpp): the
// windows of pool_windows_tile with kw*C <= 16; same contracts as max_forward_tiles and
// avg_forward_tiles.
bool pool_rows8_applies(const PoolGeometry& g);
void max_forward_rows8(const PoolGeometry& g, const float* x, float* y, uint8_t* arg);
void avg_forward_rows8(const PoolGeometry& g, const float* x, float* y);
// Their backwards for kw == 2 at C = 1, 2, 3, 4, 6; same contracts as
// max_backward_argmax_tiles and avg_backward_tiles.
bool pool_rows8_backward_applies(const PoolGeometry& g);
void max_backward_rows8(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx);
void avg_backward_rows8(const PoolGeometry& g, const float* dy, float* dx);
// avg_forward_rows8's 2x2 windows at C = 3 with 8+ outputs a row (pool_avg_c3.cpp), same
// contract and the same floats.
bool avg_c3_applies(const PoolGeometry& g);
void avg_forward_c3(const PoolGeometry& g, const float* x, float* y);
// max_forward_tiles at C = 8..64 in ymm registers (pool_c24_pieces.cpp), same contract and
// the same floats and argmax.
bool pool_c24_applies(const PoolGeometry& g);
void max_forward_c24(const PoolGeometry& g, const float* x, float* y, uint8_t* arg);
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// max_forward_tiles from 16 channels (pool_cells.cpp), same contract.
void max_forward_cells(const PoolGeometry& g, const float* x, float* y, uint8_t* arg);
#endif

}  // namespace fastconv::cpu::detail
