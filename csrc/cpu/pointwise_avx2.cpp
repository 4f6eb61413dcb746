// forward_product's GEMM in avx2 register tiles (pointwise_avx2.h; issue 18 item 4, helper I,
// stop 38).
//
// Why: below AVX-512 every forward conv product went to OpenBLAS's sgemm with beta = 1 onto a
// y first filled with the bias (init_output_rows), and the relu / relu6 was one more pass over
// the chunk: three trips over y, and sgemm packs both A and B on each call. MobileNet's batch-1
// pointwise convs are such products: conv_pw_1 (12544 x 32 -> 64, K = 32) is mostly those
// passes and the packing.
//
// Here a tile of up to 6 rows x 16 output columns is 12 ymm accumulators that start from the
// bias, take one K step per iteration (a broadcast of each row's input, the two weight
// vectors of the step from a 16-wide packed panel of W) and get the activation in registers
// before their one store. A is read in place (the 6 rows are 6 sequential streams). W's
// panels (K x 16, zero past n) are packed into the thread's scratch per call, read a row of W
// at a time; blocks of rows (kRowBlockBytes of A, in L1/L2) take every panel in turn. Only
// with K <= 64 and all of W in kPackAllBytes: with K and N larger the products are FMA-bound
// and the sgemm was as fast or faster (pointwise_avx2_product). With a residual, each block
// of y is first set to bias + residual in order (init_output_rows) and the tiles start from
// it: reading the residual in the tiles' stores (6 rows x 64 bytes a panel, 1 KiB apart at 256
// channels) made 56x56 64->256 + residual 1.2x the sgemm's time; from y, 0.80 (1 thread).
// The tile and the panel packing are pointwise_tile_avx2.h's, shared by pointwise_avx2.cpp and
// pointwise_passes_avx2.cpp (helper U, stop 38).
#include "cpu/pointwise_avx2.h"

#include "cpu/im2col.h"

#include <algorithm>

#include "cpu/pointwise_tile_avx2.h"
#include "cpu/simd.h"  // scratch

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)

namespace {

using namespace pw_tile;  // the tile and the packing (pointwise_tile_avx2.h)

constexpr int64_t kPackAllBytes = int64_t{64} << 10;  // W packed whole up to this, else the sgemm
constexpr int64_t kMaxK = 64;                          // reduction steps (see pointwise_avx2_product)
constexpr int64_t kRowBlockBytes = int64_t{48} << 10;  // rows of A a block (12 KiB: pw_1 0.92 vs 0.65)

// Rows [r0, r1) of y's columns of panel j.
template <Activation A>
void rows_of_panel(int64_t r0, int64_t r1, int64_t n, int64_t k, const float* col, int64_t ldcol,
                   const float* panel, int64_t j, const float* bias, float* y, int64_t ldy, bool from_y) {
  const int64_t c0 = j * 16;
  const Tail t = tail_of(n - c0);
  const float* bj = bias ? bias + c0 : nullptr;
  int64_t r = r0;
  if (t.cols == 16) {
    for (; r + kRows <= r1; r += kRows)
      tile<kRows, A, true>(k, col + r * ldcol, ldcol, panel, bj, y + r * ldy + c0, ldy, t, from_y);
    return tile_rows<A, true>(r1 - r, k, col + r * ldcol, ldcol, panel, bj, y + r * ldy + c0, ldy, t, from_y);
  }
  for (; r + kRows <= r1; r += kRows)
    tile<kRows, A, false>(k, col + r * ldcol, ldcol, panel, bj, y + r * ldy + c0, ldy, t, from_y);
  tile_rows<A, false>(r1 - r, k, col + r * ldcol, ldcol, panel, bj, y + r * ldy + c0, ldy, t, from_y);
}

template <Activation A>
void product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol, const float* w,
             int64_t ldw, const float* bias, const float* residual, float* y, int64_t ldy) {
  const int64_t panels = (n + 15) / 16, panel_floats = k * 16;
  // +16: the scratch aligned to 64 bytes for the aligned panel loads.
  float* buf = scratch(panels * panel_floats + 16);
  float* packed = (float*)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
  pack_panels(k, n, w, ldw, 1, packed);
  const int64_t block = std::max<int64_t>(kRows, kRowBlockBytes / (k * (int64_t)sizeof(float)) / kRows * kRows);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t r1 = std::min(rows, r0 + block);
    if (residual) init_output_rows(r1 - r0, n, ldy, bias, residual + r0 * ldy, y + r0 * ldy);
    for (int64_t j = 0; j < panels; ++j)
      rows_of_panel<A>(r0, r1, n, k, col, ldcol, packed + j * panel_floats, j, residual ? nullptr : bias, y, ldy,
                       residual != nullptr);
  }
}

}  // namespace

bool pointwise_avx2_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                            const float* w, int64_t ldw, const float* bias, const float* residual,
                            Activation act, float* y, int64_t ldy) {
  // W packed whole up to kPackAllBytes (64 KiB). Above, the sgemm: paired against it (1 thread,
  // two builds in one process, both orders), 28x28 256->256 (256 KiB) 1.08 / 1.18, 128->256
  // (128 KiB) 1.00 / 1.06, 512->128 0.96 / 1.03 (the same binary with a switch had read
  // 0.90-0.96 on these); a panel of W at a time over all rows, with or without slices of the
  // reduction, 1.01-1.13x at 14x14 512->512, 7x7 512->1024 and 1024->1024 (FMA-bound products:
  // the sgemm's own kernel does as well, and it packs W as these do).
  // And K <= 64: at K = 128 and 256 the products are mostly FMAs, the passes over y saved are
  // a small part, and the pairs were even (56x56 128->128 + relu6 0.93 / 0.98, 56x56 256->64
  // + relu 0.94 / 1.01) or slower (8x28x28 128->128 linear 1.02 / 1.06); at K = 32 and 64 they
  // gain (benchmarks/RESULTS.md, helper I, stop 38).
  if (rows <= 0 || n <= 0 || k <= 0 || k > kMaxK) return false;
  if ((n + 15) / 16 * 16 * k * (int64_t)sizeof(float) > kPackAllBytes) return false;
  switch (act) {
    case Activation::Linear: product<Activation::Linear>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    case Activation::Relu: product<Activation::Relu>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    case Activation::Relu6: product<Activation::Relu6>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    default: return false;
  }
}

#else

bool pointwise_avx2_product(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                            const float*, const float*, Activation, float*, int64_t) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
