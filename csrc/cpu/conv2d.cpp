// Convolution by im2col + sgemm (NHWC input, HWIO weights); depthwise goes to depthwise.cpp.
//
// Thread policy (one OpenMP pool, see threads.cpp): OpenMP over chunks of output lines; each
// thread packs its chunk into its own col buffer and runs a single-threaded sgemm on it.
// Measured on the 2-core machine, N=32 56x56 64->64 k3 forward (sgemm 2048^3: 150-180
// GFLOP/s on 2 threads, 95 on 1):
//   OpenMP packing, then OpenBLAS threads on 32 MiB chunks: 54 GFLOP/s (59 on 1 thread) --
//     the two thread pools hand the cores back and forth at every chunk (each spins while
//     the other works), and the col is written to memory and read back.
//   per-thread ~1 MiB chunks, serial sgemm: 140-165 GFLOP/s (78 on 1 thread) -- the col is
//     still in L2 when the GEMM reads it and threads never wait on each other mid-call.
// The pointwise case (1x1, stride 1, no pad) skips im2col: x is already the col matrix,
// chunked the same way (one threaded GEMM after the bias loop measured 50 vs 130 GFLOP/s).
// Strided ungrouped convs with >= 32 channels each side skip im2col too, in forward and
// backward data ("tap GEMMs", below): per output line and kernel tap, x and dy are GEMM
// operands in place (with fastconv's own GEMM; under OpenBLAS the forward keeps im2col and
// backward data mostly does, see use_tap_gemm). conv_algorithm still names them "im2col" (the
// GEMM family); the setting "im2col" keeps them on the col path.

// GEMM shapes per chunk of `rows` output positions and group gi (K = KH*KW*Cin_g):
//   forward          y_g  (rows, Cout_g)  = col_g (rows, K) @ W_g (K, Cout_g)
//   backward data    dcol_g (rows, K)     = dy_g (rows, Cout_g) @ W_g^T
//   backward weights dW_g (K, Cout_g)    += col_g^T @ dy_g
// Sub-matrices are addressed in place via leading dimensions: W_g = w + gi*Cout_g (ld Cout),
// y_g/dy_g = base + gi*Cout_g (ld Cout), col_g = col + gi*K (ld groups*K).
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu/conv_algorithm.h"
#include "cpu/cout_split.h"
#include "cpu/infer_packed_avx2.h"
#include "cpu/depthwise_flat8.h"
#include "cpu/few_channel_s1_c1.h"
#include "cpu/direct_conv.h"
#include "cpu/gemm.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/pointwise_passes_avx2.h"
#include "cpu/pointwise_weights_avx2.h"
#include "cpu/pointwise_stream.h"
#include "cpu/simd.h"
#include "cpu/strided_pointwise.h"
#include "cpu/weight_rows_product.h"
#include "cpu/winograd.h"
#include "kernels.h"

#include <cblas.h>

namespace fastconv::cpu {

namespace {

// Chunk size target per thread: col small enough to still be in L2 when the GEMM reads it.
constexpr int64_t kChunkBytes = 1 << 20;
// Below this many multiply-adds a pass runs on one thread: a LeNet conv at batch 8 (~1 M)
// takes tens of microseconds, less than waking a team costs on a busy machine.
constexpr int64_t kParallelMacs = 1 << 21;

// One image on several threads: line chunks a thread, and the weights up to which that many
// chunks (each reading all of them) pay (see make_plan).
constexpr int64_t kOneImageChunksPerThread = 4;
constexpr int64_t kOneImageChunkMaxWeightBytes = 512 << 10;

// Elements per item of a one-image residual add (below kParallelGrain: a serial call).
constexpr int64_t kAddBlock = kParallelGrain / 2;

struct Plan {
  int threads;
  int64_t lines, chunk, nchunks, k, ldcol, chunk_floats;
};

Plan make_plan(const ConvGeometry& g) {
  Plan p;
  p.threads = std::max(1, get_num_threads());
  p.lines = g.n * g.oh;
  const int64_t budget = std::min(get_workspace_limit() / p.threads, kChunkBytes);
  p.chunk = detail::lines_per_chunk(g, budget);
  p.k = g.win.kh * g.win.kw * g.cin_g;
  const int64_t macs = g.output_size() * p.k;
  // One image on several threads (the item team): at least kOneImageChunksPerThread chunks a
  // thread, so that the lines split evenly. By the col budget alone MobileNet's 56x56 128->128
  // 1x1 made 2 chunks of 36 and 20 lines: 1.09 -> 0.70 ms on 2 threads, the longer chunk's time
  // (0.63 ms in 8 chunks; its 112x112 32->64 1x1 0.47 -> 0.42). Each chunk reads all of the
  // weights, so only where they are small.
  if (g.n == 1 && p.threads > 1 && macs >= kParallelMacs &&
      g.weight_size() * (int64_t)sizeof(float) <= kOneImageChunkMaxWeightBytes)
    p.chunk = std::min(p.chunk, std::max<int64_t>(1, p.lines / (kOneImageChunksPerThread * p.threads)));
  p.nchunks = (p.lines + p.chunk - 1) / p.chunk;
  p.threads = (int)std::min<int64_t>(macs < kParallelMacs ? 1 : p.threads, std::max<int64_t>(p.nchunks, 1));
  p.ldcol = detail::col_width(g);
  p.chunk_floats = std::max<int64_t>(1, p.chunk * g.ow * p.ldcol);
  // sgemm throws on 32-bit overflow; no exception may escape an OpenMP region, so check here.
  if (p.chunk * g.ow > INT_MAX || p.ldcol > INT_MAX || g.oc > INT_MAX)
    throw std::length_error("conv2d: a GEMM dimension exceeds the 32-bit BLAS interface");
  return p;
}

std::unique_ptr<float[]> workspace(int64_t floats) { return std::unique_ptr<float[]>(new float[floats]); }

// ---- strided convs without im2col ("tap GEMMs") -------------------------------------------
// A strided conv (groups == 1) needs no col matrix in forward and backward data: for one
// output line and one kernel tap (ky, kx), the inputs the tap reads are the rows of x at
// stride sw*C, a plain GEMM operand with leading dimension sw*C, and the outputs of backward
// data land at that same stride in dx. So each pass is a set of per-(line, tap) GEMMs reading
// x, dy and the weights in place: no col written and read back (for 56x56 64->128 k3 s2 the
// col is 2.25x the size of x) and no col2im scatter. Each tap's valid output columns are one
// contiguous range (tap_columns), so padding costs no zero fills and no wasted multiplies.

// sgemm with A packed where the native GEMM runs (gemm.h force_pack_a). For the strided
// forward's x rows and the pointwise backward data's dy rows the driver would read A in place;
// packed, on the shared 2-core Xeon (CPU-time medians of 4 alternating runs of 7): 56x56
// 64->128 s2 forward 33.1 -> 32.0 ms, 28x28 256->64 1x1 backward data 8.6 -> 8.0 ms. (The
// strided backward data's dy rows measured no better packed, so they stay in place; on the
// Zen 4 the pointwise backward data's are read in place too, pack = false.)
inline void sgemm_a_packed(bool native, bool trans_b, int64_t m, int64_t n, int64_t k,
                           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                           float* c, int64_t ldc, bool pack = true) {  // false: the driver's choice
  if (native)
    gemm_avx512(false, trans_b, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc, pack);
  else
    sgemm(false, trans_b, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc);
}

// floor(a / b) for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Output columns ox in [lo, hi) whose input column ox*sw + offset lies in [0, width).
inline void tap_columns(int64_t offset, int64_t sw, int64_t width, int64_t ow, int64_t& lo,
                        int64_t& hi) {
  lo = std::max<int64_t>(0, floor_div(-offset + sw - 1, sw));
  hi = std::min<int64_t>(ow, floor_div(width - 1 - offset, sw) + 1);
  if (hi < lo) hi = lo;
}

// Where the tap path replaces im2col: strided, ungrouped, with channel counts the GEMM
// tiles fill (few-channel convs go to direct_conv.cpp; pointwise and stride-1 3x3 convs
// have their own paths). Under the "im2col" setting the col path runs, as asked.
// Only while the weights stay in L2: each (line, tap) product streams its whole W_tap, so with
// large weights the tap path reads them once per output line (14x14x1024 -> 7x7x2048 1x1 s2 at
// batch 1: 8 MB of weights, 7 times). im2col then wins, gathering a chunk of lines into one
// product. Measured, one thread, the shared Xeon (CPU ms, tap -> im2col), forward batch 32:
// 3x3 s2 8x8 256->512 (4.7 MB of W) 40 -> 8.3, 14x14 512->512 158 -> 53, 16x16 128->256
// (1.2 MB) 11.2 -> 9.4, 1x1 28x28 512->1024 (2 MB) 69 -> 52, but 1x1 56x56 256->512 (512 KiB)
// 49.6 -> 56 and 3x3 56x56 64->128 (288 KiB) 31.5 -> 34; batch 1: 1x1 14x14 1024->2048 4.2 ->
// 1.9; backward data batch 32: 8x8 256->512 k3 25.8 -> 17.0, 1x1 14x14 1024->2048 118 -> 61.
constexpr int64_t kTapMaxWeightBytes = 512 << 10;
// And only for output rows of 16 columns or more: a (line, tap) product has ow rows, and short
// ones left the GEMM's 14-row tiles mostly empty. 3x3 s2 fwd, ms, tap -> im2col, one thread,
// Zen 4: 7x7x96 (ow 4) batch 1 0.025 -> 0.018, batch 32 0.83 -> 0.48, 7x7x64 batch 256 2.9
// -> 1.8, 14x14x96 (ow 7) batch 1 0.121 -> 0.083; from ow 28 the two were even there.
constexpr int64_t kTapMinColumns = 16;
// Nor for the forward of a strided 1x1 conv of <= 64 input channels whose x (>= 16 MiB) comes
// from memory: its products (K = C) read A's rows sw*C apart in x, where im2col first gathers
// them into one contiguous col chunk. 1x1 s2 fwd, 1 thread, ms tap/im2col, medians of 9-11
// alternating calls in one process (Zen 4, 2026-12-07, helper W2): C=48 N=32 56x56 (19 MB)
// 2.72/2.26, 2.58/2.10, N=32 112x112 10.1/7.93, 9.55/7.78, N=256 56x56 20.2/16.3; C=64 N=32
// 112x112 13.5/12.5, N=32 56x56 3.75/3.67; while the tap path kept cached x (C=48 N=1 112x112,
// 2.4 MB: 0.193/0.203) and more channels (C=96 N=32 56x56 6.62/6.58, C=128 10.6/11.2). The
// backward data keeps the tap path there (C=48 N=32 56x56 2.09/2.30, 112x112 8.82/9.49).
// (im2col's col chunk stays bounded by make_plan, as for every other shape.)
constexpr int64_t kStreamedPointwiseMaxChannels = 64;
constexpr int64_t kStreamedPointwiseBytes = int64_t{16} << 20;
// With OpenBLAS as the GEMM (CPUs without AVX-512, where the native GEMM is not compiled in, or
// set_gemm_backend("openblas")) the tap products are one cblas call per (line, tap) with K = C
// (forward) or N = C (backward data) and ow rows: each call packs its operands afresh for a
// few dozen rows, and these ran at ~60 GFLOP/s where im2col's chunk product (hundreds of rows,
// K = 9*C) ran at ~80 (Zen 3, avx2 level). 1 thread, thread CPU time, ms, tap / im2col,
// medians of 7-9 alternating calls in one process (2026-12-07, helper W, stop 37): forward
// 3x3 s2 N=32 56x56 64->128 59.5/50.2, N=4 9.85/8.04, N=8 112x112 32->64 16.6/13.7, N=32
// 32x32 64->64 12.1/9.58, N=16 64x64 96->128 64.8/57.4, N=32 57x57 64->128 64.9/58.3, 1x1 s2
// N=32 56x56 256->512 124/100. So the forward never takes the tap path there. Backward data
// the same at ow 16..32 (N=32 56x56 64->128 72.1/58.7, 32->64 20.8/15.7, 48->96 N=16 20.8/17.3,
// 1x1 s2 256->512 127/116), but not at ow 56, where the products are twice as long and im2col's
// col2im scatters over wider rows: 112x112 N=8 32->64 16.5/17.9, 32->32 9.1/9.6, 48->64
// 24.2/24.2, N=4 32->64 8.9/8.9. So it keeps the tap path from kTapMinColumnsBlas columns.
constexpr int64_t kTapMinColumnsBlas = 48;
// And with few images a thread: im2col's backward data gives each thread whole images (col2im
// overlaps windows) and one image only its GEMM split, where the tap products split dx rows
// evenly (batch 1 to 3 on 2 threads). So im2col from kBlasImagesPerThread images a thread.
constexpr int64_t kBlasImagesPerThread = 4;

int tap_threads(const ConvGeometry& g) {
  const int64_t macs = g.output_size() * g.win.kh * g.win.kw * g.c;
  return macs < kParallelMacs ? 1 : std::max(1, get_num_threads());
}

bool use_tap_gemm(const ConvGeometry& g, ConvPass pass) {
  const bool streamed_pointwise =
      pass == ConvPass::Forward && g.win.kh == 1 && g.win.kw == 1 &&
      g.c <= kStreamedPointwiseMaxChannels &&
      g.input_size() * (int64_t)sizeof(float) >= kStreamedPointwiseBytes;
  if (active_gemm_backend() != "native" &&
      (pass == ConvPass::Forward ||
       (g.ow < kTapMinColumnsBlas && g.n >= kBlasImagesPerThread * tap_threads(g))))
    return false;
  return g.groups == 1 && (g.win.sh > 1 || g.win.sw > 1) && g.c >= 32 && g.oc >= 32 &&
         g.ow >= kTapMinColumns && g.weight_size() * (int64_t)sizeof(float) <= kTapMaxWeightBytes &&
         !streamed_pointwise && detail::algorithm_setting() != detail::Algo::Im2col;
}

// The full window of output column ox of line l (KH*KW*C floats, zeros where it leaves x):
// one im2col row.
void window_row(const ConvGeometry& g, const float* x, int64_t l, int64_t ox, float* dst) {
  const Window2d& v = g.win;
  const int64_t n = l / g.oh, oy = l % g.oh;
  for (int64_t ky = 0; ky < v.kh; ++ky) {
    const int64_t iy = oy * v.sh + ky * v.dh - v.pt;
    for (int64_t kx = 0; kx < v.kw; ++kx, dst += g.c) {
      const int64_t ix = ox * v.sw + kx * v.dw - v.pl;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w)
        std::memset(dst, 0, sizeof(float) * g.c);
      else
        std::memcpy(dst, x + ((n * g.h + iy) * g.w + ix) * g.c, sizeof(float) * g.c);
    }
  }
}

// Lines per block of tap_forward: the edge columns of a block's lines form one product of
// this many rows (one micro-tile strip of gemm.cpp), at most; fewer when there are too few
// lines to give every thread several blocks.
constexpr int64_t kTapBlockLines = 14;

// y in blocks of lines: bias (or zero), then += x_tap @ W_tap per line and kernel row over
// the interior columns, then the edge columns of the whole block in one product, then the
// activation while the block is in cache. Blocks are independent, so the team splits them.
// Interior columns [in0, in1) are those where every kx of the kernel row is inside x: their
// taps read one contiguous run of KW*C floats, so a kernel row is one product with K = KW*C
// (fewer passes over y's line than K = C per tap: 28x128 outputs at K = 192 run at 130
// GFLOP/s where K = 64 runs at 108). Its A rows overlap (leading dimension sw*C < K), which
// only fastconv's own GEMM accepts; cblas rejects it, so other backends run per tap.
// Edge columns (outside [in0, in1): one or two per line with "same" padding) were products of
// one row per tap, K = C: on the Zen 4 guest (1 thread, CPU time, 56x56 64->128 s2 batch 32,
// medians of 6 alternating runs) they took 7% of the forward (48.5 ms; 45.2 without them).
// Gathered instead, the window of one edge column in each line of the block is a row of a
// small zero-padded matrix (block x KH*KW*C floats), and y's rows for that column are
// line_floats apart: one product with 14 rows per edge column and block.
void tap_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                 Activation act, const float* residual) {
  const Window2d& v = g.win;
  const int64_t lines = g.n * g.oh, line_floats = g.ow * g.oc, kwin = v.kh * v.kw * g.c;
  const bool native = active_gemm_backend() == "native", row_products = v.dw == 1 && native;
  const int threads = tap_threads(g);
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(kTapBlockLines, lines / (4 * threads)));
  const int64_t blocks = (lines + block - 1) / block;
  int64_t in0 = 0, in1 = 0, unused;  // interior columns (none without row products)
  if (row_products) {
    tap_columns(-v.pl, v.sw, g.w, g.ow, in0, unused);
    tap_columns((v.kw - 1) - v.pl, v.sw, g.w, g.ow, unused, in1);
    if (in0 >= in1) in0 = in1 = 0;
  }
  const bool gather_edges = in0 < in1;  // else every column runs per tap
  const int64_t edge_floats = gather_edges ? block * kwin : 0;
  // Block bi of lines; edge: the caller's scratch of edge_floats.
  auto run_block = [&](int64_t bi, float* edge) {
    const int64_t l0 = bi * block, l1 = std::min(lines, l0 + block);
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t n = l / g.oh, oy = l % g.oh;
      float* yl = y + l * line_floats;
      if (!detail::init_output_rows(g.ow, g.oc, g.oc, b, residual ? residual + l * line_floats : nullptr, yl))
        std::memset(yl, 0, sizeof(float) * line_floats);
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const int64_t iy = oy * v.sh + ky * v.dh - v.pt;
        if (iy < 0 || iy >= g.h) continue;
        const float* xrow = x + (n * g.h + iy) * g.w * g.c;
        const float* wrow = w + ky * v.kw * g.c * g.oc;
        if (gather_edges) {
          sgemm_a_packed(true, false, in1 - in0, g.oc, v.kw * g.c, xrow + (in0 * v.sw - v.pl) * g.c,
                         v.sw * g.c, wrow, g.oc, 1.f, yl + in0 * g.oc, g.oc);
          continue;
        }
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const int64_t offset = kx * v.dw - v.pl;
          int64_t lo, hi;
          tap_columns(offset, v.sw, g.w, g.ow, lo, hi);
          if (lo < hi)
            sgemm_a_packed(native, false, hi - lo, g.oc, g.c, xrow + (lo * v.sw + offset) * g.c,
                           v.sw * g.c, wrow + kx * g.c * g.oc, g.oc, 1.f, yl + lo * g.oc, g.oc);
        }
      }
    }
    if (gather_edges)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        if (ox == in0) ox = in1;  // skip the interior
        if (ox >= g.ow) break;
        for (int64_t l = l0; l < l1; ++l) window_row(g, x, l, ox, edge + (l - l0) * kwin);
        sgemm_a_packed(true, false, l1 - l0, g.oc, kwin, edge, kwin, w, g.oc, 1.f,
                       y + l0 * line_floats + ox * g.oc, line_floats);
      }
    activation_inplace((l1 - l0) * line_floats, y + l0 * line_floats, act);
  };
  // One image: blocks shared out by the join-free item team (item_team.h), scratch per slot.
  if (g.n == 1 && threads > 1 && item_team_enabled()) {
    auto edges = workspace(std::max<int64_t>(1, run_items_slots() * edge_floats));
    return run_items(blocks, [&](int64_t bi, int slot) { run_block(bi, edges.get() + slot * edge_floats); });
  }
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  parallel_region(threads, [&] {
    note_team();
    std::unique_ptr<float[]> edge(new float[std::max<int64_t>(1, edge_floats)]);
#pragma omp for schedule(dynamic)
    for (int64_t bi = 0; bi < blocks; ++bi) errors.run([&] { run_block(bi, edge.get()); });
  });
  errors.rethrow();
}

// dx row by row (n, iy): the row is zeroed, then every (output line, tap) that reads it adds
// dy_line @ W_tap^T into its columns at stride sw*C. A row is written by one thread only, so
// the team splits rows freely (batch 1 included), with no per-thread dx and no reduction.
void tap_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  const int64_t taps = v.kh * v.kw, rows = g.n * g.h, row_floats = g.w * g.c;
  // W_tap^T (Cout x C) per tap, so every product reads its B operand in place.
  auto wt = workspace(taps * g.oc * g.c);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t ci = 0; ci < g.c; ++ci)
      for (int64_t co = 0; co < g.oc; ++co)
        wt[(t * g.oc + co) * g.c + ci] = w[(t * g.c + ci) * g.oc + co];
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  parallel_region(tap_threads(g), [&] {
    note_team();
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) errors.run([&] {
      const int64_t n = r / g.h, iy = r % g.h;
      float* dxr = dx + r * row_floats;
      std::memset(dxr, 0, sizeof(float) * row_floats);
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const int64_t num = iy + v.pt - ky * v.dh;  // = oy * sh for the line that reads row iy
        if (num < 0 || num % v.sh != 0 || num / v.sh >= g.oh) continue;
        const float* dyl = dy + (n * g.oh + num / v.sh) * g.ow * g.oc;
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const int64_t offset = kx * v.dw - v.pl;
          int64_t lo, hi;
          tap_columns(offset, v.sw, g.w, g.ow, lo, hi);
          if (lo >= hi) continue;
          sgemm(false, false, hi - lo, g.c, g.oc, 1.f, dyl + lo * g.oc, g.oc,
                wt.get() + (ky * v.kw + kx) * g.oc * g.c, g.c, 1.f,
                dxr + (lo * v.sw + offset) * g.c, v.sw * g.c);
        }
      }
    });
  });
  errors.rethrow();
}

}  // namespace

// Two prepared forms, told apart by the geometry alone (so a prepared array checked in the
// binding against conv2d_prepared_floats(g) is always the right kind): a 3x3 stride-1 conv
// where Winograd pays has the filter transform; every other ungrouped conv has its weights
// (KH*KW*Cin x Cout) packed for the native GEMM (gemm.h GemmPackedB). At batch 1 the deep
// layers are weight streams (ResNet-18's 4x4 512->512 conv reads 9.4 MB for 16 output
// positions): read in place, each 32-column strip steps a whole weight row per k, a stride
// the hardware prefetcher does not follow; packed, the strip is one sequential run. Below
// AVX-512 (OpenBLAS's sgemm, which packs W on every call) the avx2 level packs the weights of
// few-row convs only, in its own layout (infer_packed_avx2.h; the same "packed" form name).
// Whether the forward reads it is decided per call (settings may change): a call taking
// another path ignores it.
namespace {

enum class PreparedForm { None, WinogradFilter, PackedWeights };

PreparedForm prepared_form(const ConvGeometry& g) {
  if (g.groups != 1) return PreparedForm::None;
  if (detail::winograd_worth_preparing(g)) return PreparedForm::WinogradFilter;
  return PreparedForm::PackedWeights;
}

}  // namespace

const char* conv2d_prepared_form(const ConvGeometry& g) {
  switch (prepared_form(g)) {
    case PreparedForm::WinogradFilter: return "winograd";
    case PreparedForm::PackedWeights: return conv2d_prepared_floats(g) > 0 ? "packed" : "";
    default: return "";
  }
}

int64_t conv2d_prepared_floats(const ConvGeometry& g) {
  switch (prepared_form(g)) {
    case PreparedForm::WinogradFilter: return detail::winograd_filter_floats(g);
    case PreparedForm::PackedWeights: {
      // gemm_pack_b's layout at AVX-512; at avx2, few-row products' 16-column panels
      // (infer_packed_avx2.h); 0 (none) elsewhere.
      const int64_t native = gemm_packed_b_floats(g.win.kh * g.win.kw * g.c, g.oc);
      return native > 0 ? native : detail::infer_packed_floats(g);
    }
    default: return 0;
  }
}

bool conv2d_prepared_pays(const ConvGeometry& g) {
  if (g.is_depthwise() || detail::strided_pointwise_shape(g, ConvPass::Forward) ||
      detail::strided_pointwise_wide_shape(g, ConvPass::Forward) || detail::direct_eligible(g, ConvPass::Forward))
    return false;
  switch (prepared_form(g)) {
    case PreparedForm::WinogradFilter: return detail::use_winograd(g, ConvPass::Forward);
    // Without it the GEMM reads B in place (few rows) or packs it per call (per chunk). The
    // strided tap GEMMs read w itself (their weights are small, kTapMaxWeightBytes).
    case PreparedForm::PackedWeights:
      // At avx2 the few-row products read it (forward_product -> infer_packed_product).
      return (active_gemm_backend() == "native" || detail::infer_packed_floats(g) > 0) &&
             !use_tap_gemm(g, ConvPass::Forward);
    default: return false;
  }
}

void conv2d_prepare(const ConvGeometry& g, const float* w, float* prepared) {
  switch (prepared_form(g)) {
    case PreparedForm::WinogradFilter: return detail::winograd_prepare_filter(g, w, prepared);
    case PreparedForm::PackedWeights:
      if (gemm_packed_b_floats(g.win.kh * g.win.kw * g.c, g.oc) > 0)
        gemm_pack_b(g.win.kh * g.win.kw * g.c, g.oc, w, g.oc, prepared);
      else if (detail::infer_packed_floats(g) > 0)
        detail::infer_pack(g.win.kh * g.win.kw * g.c, g.oc, w, prepared);
      return;
    default: return;
  }
}

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act, const float* residual, const float* prepared) {
  // The depthwise kernel writes y first, the activation follows; the few-channel direct
  // kernel applies it to each block of rows it has just written. Those and Winograd take no
  // residual: with one, they run linear and one add + activation pass follows.
  const bool depthwise = g.is_depthwise();
  const Activation own = residual ? Activation::Linear : act;
  auto add_residual = [&] {
    if (!residual) return;
    const int64_t size = g.output_size();
    if (g.n > 1 || size < kParallelGrain || !item_team_enabled()) return add_activation(size, y, residual, act, y);
    // One image: blocks small enough that add_activation runs each on its caller, shared
    // out by the join-free item team (at ResNet-18 CIFAR b1 load 6, with OpenMP regions the
    // 0.35 ms Winograd + add step took 2.3-4.7 ms at 2 threads; benchmarks/RESULTS.md, helper A).
    run_items((size + kAddBlock - 1) / kAddBlock, [&](int64_t i, int) {
      const int64_t e0 = i * kAddBlock;
      add_activation(std::min(kAddBlock, size - e0), y + e0, residual + e0, act, y + e0);
    });
  };
  // Strided 1x1 convs of 17..32 channels each side (AVX-512): register tiles of pixels.
  if (!depthwise && detail::strided_pointwise_forward(g, x, w, b, y, own)) return add_residual();
  // 25..64 channels each side at avx2 (17.. with x past the cache; strided_pointwise_wide.cpp):
  // register tiles of 3 pixels.
  if (!depthwise && detail::strided_pointwise_wide_forward(g, x, w, b, y, own)) return add_residual();
  // A NaN / inf weight in a direct-eligible (few-channel) conv takes the plain im2col GEMM:
  // its columns hold the padding's zeros, multiplied by w as the reference does (0 * inf =
  // NaN at the border), where the direct routes at stride 1 skip the padding (inf or finite
  // there). Checking the <= 9 * 8 * 64 weights is cheap; the finite path is unchanged.
  const bool direct = !depthwise && detail::direct_eligible(g, ConvPass::Forward);
  const bool plain_im2col = direct && !all_finite(w, g.weight_size());
  if (direct && !plain_im2col) {
    // One channel in and out, 3x3 'same' stride 1, at avx2: the depthwise flat rows
    // (depthwise_flat8.cpp; the same arithmetic, one 9-float kernel), a direct kernel too.
    // The batch as one flat stream first (few_channel_s1_c1.cpp; false for a non-finite weight).
    if (detail::few_channel_s1_c1_forward(g, x, w, b, y, own)) return add_residual();
    if (detail::depthwise_flat8_applies(g)) {
      detail::depthwise_flat8_forward(g, x, w, b, y, own);
      return add_residual();
    }
    detail::direct_forward(g, x, w, b, y, own);
    return add_residual();
  }
  if (depthwise) {
    detail::depthwise_forward(g, x, w, b, y, own);
    return add_residual();
  }
  // Winograd declines (false) an input holding NaN or inf (winograd.h); im2col redoes it.
  const PreparedForm form = prepared ? prepared_form(g) : PreparedForm::None;
  if (!plain_im2col && detail::use_winograd(g, ConvPass::Forward) &&
      detail::winograd_forward(g, x, w, b, y, own, form == PreparedForm::WinogradFilter ? prepared : nullptr))
    return add_residual();
  // The packed weights (the other prepared form) are read by forward_product.
  const float* packed = form == PreparedForm::PackedWeights ? prepared : nullptr;
  GemmPackedB pb;
  pb.data = packed, pb.n = g.oc;
  // Too few output lines to give each thread rows (batch-1 inference): split Cout instead.
  if (!plain_im2col && detail::cout_split_forward(g, x, w, b, y, act, residual, packed)) return;
  if (!plain_im2col && use_tap_gemm(g, ConvPass::Forward)) return tap_forward(g, x, w, b, y, act, residual);
  const Plan p = make_plan(g);
  // At avx2 under OpenBLAS: register tiles, y written once with the bias (pointwise_passes_avx2.h).
  if (!residual && !packed && detail::pointwise_forward_avx2(g, x, w, b, y, act, p.threads)) return;
  const bool pointwise = g.is_pointwise();
  auto ws = workspace(pointwise ? 1 : p.threads * p.chunk_floats);
  // A shallow pointwise product that widens, y past the cache: its output streamed out.
  const bool stream_y = pointwise && detail::stream_pointwise_forward(g);
  // Chunk c on the col buffer of participant `slot`.
  auto chunk = [&](int64_t c, int slot) {
    float* buf = ws.get() + (pointwise ? 0 : slot * p.chunk_floats);
    const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
    const float* col = pointwise ? x + l0 * g.ow * g.c : buf;
    if (!pointwise) detail::im2col_lines(g, x, l0, l1, buf);
    float* yc = y + l0 * g.ow * g.oc;
    const float* rc = residual ? residual + l0 * g.ow * g.oc : nullptr;
    // Bias, residual and activation go with each group's product (forward_product).
    if (stream_y)
      return detail::streamed_forward_product(g, rows, col, w, b, rc, act, yc, packed ? &pb : nullptr);
    for (int64_t gi = 0; gi < g.groups; ++gi)
      detail::forward_product(rows, g.cout_g, p.k, col + gi * p.k, p.ldcol, w + gi * g.cout_g, g.oc,
                              b ? b + gi * g.cout_g : nullptr, rc ? rc + gi * g.cout_g : nullptr, act,
                              yc + gi * g.cout_g, g.oc, packed ? &pb : nullptr);
  };
  // One image: the join-free item team (item_team.h), which never waits for a helper to wake
  // or leave a barrier; its slots index the col buffers, so no more of them than p.threads.
  if (g.n == 1 && p.threads > 1 && item_team_enabled() && run_items_slots() <= p.threads) return run_items(p.nchunks, chunk);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  parallel_region(p.threads, [&] {
    note_team();
    const int slot = omp_get_thread_num();
#pragma omp for schedule(dynamic)
    for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] { chunk(c, slot); });
    if (stream_y) stream_fence();
  });
  errors.rethrow();
}

void conv2d_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (g.is_depthwise()) return detail::depthwise_backward_data(g, dy, w, dx);
  // Strided 1x1 convs of 33..64 channels each side at avx2: dx written once, zeros included.
  if (detail::strided_pointwise_wide_backward_data(g, dy, w, dx)) return;
  // A NaN / inf weight in a direct-eligible (few-channel) conv takes the im2col GEMM below:
  // the direct, planes and flat routes run dx as a correlation over zero-padded dy (or read
  // padding lanes), and 0 * inf gave NaN to border pixels that the reference (dy's own
  // pixels times w, scattered) leaves finite. The GEMM's dcol holds exactly the products
  // dy * w and col2im drops the padded positions, as the reference does. Checking the
  // 9 * C * Cout weights of these small convs is cheap; the finite path is unchanged.
  bool gemm_only = false;
  if (detail::direct_eligible(g, ConvPass::BackwardData)) {
    if (all_finite(w, g.weight_size())) {
      // One channel in and out, 3x3 'same' stride 1, at avx2 (as the forward).
      if (detail::few_channel_s1_c1_backward_data(g, dy, w, dx)) return;
      if (detail::depthwise_flat8_applies(g)) return detail::depthwise_flat8_backward_data(g, dy, w, dx);
      return detail::direct_backward_data(g, dy, w, dx);
    }
    gemm_only = true;
  }
  if (!gemm_only && detail::use_winograd(g, ConvPass::BackwardData) &&
      detail::winograd_backward_data(g, dy, w, dx))
    return;
  if (!gemm_only && use_tap_gemm(g, ConvPass::BackwardData)) return tap_backward_data(g, dy, w, dx);
  const Plan p = make_plan(g);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  if (g.is_pointwise()) {  // dcol is dx itself: chunks write disjoint rows, nothing to scatter.
    const bool native = active_gemm_backend() == "native";
    // A dx past the cache with >= 256 channels a side: streamed out (pointwise_stream.h).
    if (native && detail::streamed_pointwise_backward_data(g, dy, w, dx, p.threads)) return;
    // At avx2 under OpenBLAS: register tiles, dx written once (pointwise_passes_avx2.h).
    if (detail::pointwise_backward_data_avx2(g, dy, w, dx, p.threads)) return;
    parallel_region(p.threads, [&] {
      note_team();
#pragma omp for schedule(dynamic)
      for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] {
        const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          // dy's rows read in place where the driver would (gemm.cpp kInPlaceAMaxN): packed
          // they measured faster on the shared Xeon (28x28 256->64 8.6 -> 8.0 ms, see
          // sgemm_a_packed), slower on the Zen 4 (stop 34, 1 thread, CPU ms packed/in place,
          // medians of 3-5 alternating runs: N=32 28x28 256->64 10.13/9.78, 56x56 64->256
          // 43.4/32.9, 14x14 1024->256 33.7/33.0, 28x28 128->512 35.1/35.4, N=1 56x56 256->64
          // 1.03/1.06).
          sgemm_a_packed(native, true, rows, g.cin_g, g.cout_g, dy + l0 * g.ow * g.oc + gi * g.cout_g,
                         g.oc, w + gi * g.cout_g, g.oc, 0.f, dx + l0 * g.ow * g.c + gi * g.cin_g, g.c,
                         false);
      });
    });
    return errors.rethrow();
  }
  // At most 16 output positions (batch 1, 4x4 outputs) against large weights: dcol from W in
  // place (weight_rows_product.h), no packed W^T.
  const int64_t macs = g.output_size() * p.k;
  if (detail::weight_rows_backward_data(g, dy, w, dx, macs < kParallelMacs ? 1 : std::max(1, get_num_threads())))
    return;
  // col2im accumulates into overlapping windows, so a thread owns whole images (their chunks
  // run in order on it). With a single image the GEMM alone is split across the threads.
  const int threads = (int)std::min<int64_t>(p.threads, std::max<int64_t>(g.n, 1));
  auto ws = workspace(threads * p.chunk_floats);
  const int64_t image_bytes = g.h * g.w * g.c * (int64_t)sizeof(float);
  // W^T packed once for all chunks (gemm.h GemmPackedB), where each chunk's product would pack
  // it again: 3x3 s1 N=1 14x14 512->512 (9.4 MB of weights, 5 chunks of 3 lines) spent 28% of
  // the pass in pack_b (perf, Zen 4, 1 thread). Only where the chunks' products are serial
  // (one thread, or a thread per image); one image on several threads splits each product
  // in parallel_sgemm as before. The packed copy is the size of the weights.
  const bool serial_products = threads > 1 || p.threads == 1;
  const int64_t packed_floats =
      g.groups == 1 && p.nchunks > 1 && serial_products && active_gemm_backend() == "native"
          ? gemm_packed_b_floats(g.oc, p.k) : 0;
  std::unique_ptr<float[]> packed_w;
  GemmPackedB packed;
  if (packed_floats > 0) {
    packed_w = workspace(packed_floats);
    gemm_pack_b(g.oc, p.k, w, g.oc, packed_w.get(), true);
    packed.data = packed_w.get(), packed.n = p.k;
  }
  auto image = [&](int64_t n, float* dcol) {
    std::memset(dx + n * g.h * g.w * g.c, 0, image_bytes);
    for (int64_t l0 = n * g.oh; l0 < (n + 1) * g.oh; l0 += p.chunk) {
      const int64_t l1 = std::min((n + 1) * g.oh, l0 + p.chunk), rows = (l1 - l0) * g.ow;
      const float* dyc = dy + l0 * g.ow * g.oc;
      if (packed.data)
        gemm_avx512(false, true, rows, p.k, g.oc, 1.f, dyc, g.oc, w, g.oc, 0.f, dcol, p.ldcol,
                    false, nullptr, &packed);
      else
        for (int64_t gi = 0; gi < g.groups; ++gi)  // parallel_sgemm is serial inside a team
          parallel_sgemm(false, true, rows, p.k, g.cout_g, 1.f, dyc + gi * g.cout_g, g.oc,
                         w + gi * g.cout_g, g.oc, 0.f, dcol + gi * p.k, p.ldcol);
      detail::col2im_lines(g, dcol, l0, l1, dx);
    }
  };
  if (threads == 1) {
    for (int64_t n = 0; n < g.n; ++n) image(n, ws.get());
    return;
  }
  parallel_region(threads, [&] {
    note_team();
    float* dcol = ws.get() + omp_get_thread_num() * p.chunk_floats;
#pragma omp for schedule(dynamic)
    for (int64_t n = 0; n < g.n; ++n) errors.run([&] { image(n, dcol); });
  });
  errors.rethrow();
}

namespace {

void im2col_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db);

}  // namespace

// The fast weight passes differ from the oracle in which taps a NaN or inf reaches: the
// direct kernel's pixel stream multiplies x by the zero dy of columns past OW (0 * NaN), the
// depthwise kernel skips padded taps (where the oracle and im2col multiply a zero by dy),
// and Winograd's transforms mix whole tiles. Each of these makes dw non-finite when such a
// value enters at all, so a non-finite dw (a few KB to check) sends the pass to im2col,
// whose products are the oracle's; finite inputs never pay more than the check.
void conv2d_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  bool done = false;
  if (detail::strided_pointwise_backward_weights(g, dy, x, dw, db)) {
    done = true;
  } else if (g.is_depthwise()) {
    detail::depthwise_backward_weights(g, dy, x, dw, db);
    done = true;
  } else if (detail::direct_eligible(g, ConvPass::BackwardWeights)) {
    // One channel in and out, 3x3 'same' stride 1, at avx2 (as the forward): the flat batch
    // stream (few_channel_s1_c1.cpp), else depthwise_flat8's rows.
    if (detail::few_channel_s1_c1_backward_weights(g, dy, x, dw, db)) done = true;
    else if (detail::depthwise_flat8_weights_applies(g)) detail::depthwise_flat8_backward_weights(g, dy, x, dw, db);
    else detail::direct_backward_weights(g, dy, x, dw, db);
    done = true;
  } else if (detail::use_winograd(g, ConvPass::BackwardWeights)) {
    detail::winograd_backward_weights(g, dy, x, dw, db);
    done = true;
  }
  if (done && all_finite(dw, g.weight_size())) return;
  im2col_backward_weights(g, dy, x, dw, db);
}

namespace {

// The weight pass's col chunk where dW exceeds the col budget (im2col_backward_weights).
constexpr int64_t kWeightColMaxBytes = 4 << 20;

// Output positions (GEMM rows) below which the weight product runs untransposed.
constexpr int64_t kTransposedMinRows = 256;

void im2col_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  const int64_t positions = g.n * g.oh * g.ow;
  Plan p = make_plan(g);
  // At avx2 under OpenBLAS: register tiles over packed blocks of pixels, db summed while dy is
  // packed (pointwise_weights_avx2.h).
  if (detail::pointwise_backward_weights_avx2(g, dy, x, dw, db, p.threads)) return;
  if (db) detail::column_sums(positions, g.oc, dy, db);
  // Pointwise: x is the col matrix, read in place, so no col buffer bounds a chunk: one chunk
  // per thread (each thread's product then runs its reduction as one GEMM call, whose driver
  // streams the next slice of x into L2 while the current one computes; with chunks of the col
  // budget every chunk's first slice started cold). 1 thread, CPU time, ms, medians of 7-9
  // alternating calls in one process (env switch), N=32 28x28 256->64 (item 2): 8.81/8.33,
  // 8.95/8.51, 8.98/8.48; 56x56 256->64 35.5/33.6, 56x56 64->64 11.3/10.8; even (+-1%):
  // 56x56 64->256, 14x14 1024->256, 28x28 128->512, 7x7 512->2048, N=1 56x56 256->64.
  if (g.is_pointwise()) {
    // (at most INT_MAX rows: the OpenBLAS backend's limit, checked by make_plan)
    p.chunk = std::max<int64_t>(p.chunk, std::min<int64_t>((p.lines + p.threads - 1) / p.threads,
                                                           INT_MAX / std::max<int64_t>(g.ow, 1)));
    p.nchunks = (p.lines + p.chunk - 1) / p.chunk;
  }
  // Weights larger than a chunk's col (batch 1 at 7x7..14x14 output with 512 channels): every
  // chunk reads and writes all of dW (beta = 1), so the col budget made that traffic, not the
  // product, the cost: 3x3 N=1 14x14 512->512 ran 5 chunks of 3 lines over 9.4 MB of dW. The
  // col may then grow to the size of dW, up to kWeightColMaxBytes a thread. 1 thread, CPU time,
  // ms, medians of 5-7 alternating calls in one process (env switch), budget chunks / 4x:
  // 3x3 s1 N=1 14x14 C=512 12.3 / 9.8, 3x3 s2 N=1 28x28 C=512 12.8 / 9.8; even: 3x3 s1 N=1
  // 7x7 C=512 3.11 / 3.13, 3x3 s2 N=1 14x14 C=512 3.15 / 3.09. Against main's build (two builds
  // in one process, benchmarks/RESULTS.md, helper W stop 35): 3x3 s2 N=32 14x14 C=512 1.26x,
  // N=32 14x14 256->512 1.13x, N=256 14x14 C=256 1.08x, 3x3 s1 N=4 14x14 C=512 even.
  if (!g.is_pointwise()) {
    const int64_t line_bytes = g.ow * p.ldcol * (int64_t)sizeof(float);
    const int64_t cap = std::min<int64_t>(kWeightColMaxBytes, get_workspace_limit() / p.threads);
    const int64_t want = std::min<int64_t>(cap, g.weight_size() * (int64_t)sizeof(float)) / std::max<int64_t>(line_bytes, 1);
    if (want > p.chunk) {
      p.chunk = std::max(p.chunk, std::min(want, (p.lines + p.threads - 1) / p.threads));
      p.nchunks = (p.lines + p.chunk - 1) / p.chunk;
      p.chunk_floats = std::max<int64_t>(1, p.chunk * g.ow * p.ldcol);
    }
  }
  const bool pointwise = g.is_pointwise();  // x itself is the col matrix
  const int64_t wsize = g.weight_size();
  // Which way round the product runs. dW_g (K x Cout_g) = col_g^T @ dy_g reads col in place
  // with K rows of C; its transpose dW_g^T = dy_g^T @ col_g reads each col row as the B
  // operand (whole 32-wide strips when K is a multiple of 32) and gives C only Cout_g rows.
  // Measured per chunk on one thread (GFLOP/s, CPU time, the shared 2-core Xeon): K 576 x
  // Cout 128 x 448 rows 123-127 -> 152 transposed; 256 x 64 x 1008 (1x1) 138-141 -> 153-154;
  // but the stem's 147 x 64 x 1680 139-153 -> 127 (a 19-wide last strip), so only then.
  // Not for a product of few rows (batch 1 at 7x7 or 14x14): there the per-thread dW^T
  // (zeroed) and its strided transpose into dw cost more than the product (3x3 s2 N=1 7x7
  // C=512, 16 rows: 19 ms for 75 MFLOP, helper C's sweep, benchmarks/RESULTS.md).
  const bool transposed = p.k % 32 == 0 && g.cout_g <= p.k && positions >= kTransposedMinRows;
  // Thread t accumulates chunks t, t+T, ... into its own dW (beta = 1 after its first chunk);
  // the partials are then added in thread order, so results do not vary between runs. The
  // transposed form accumulates dW^T (Cout x K, group blocks of Cout_g rows) for every thread
  // and transposes the sum into dw at the end.
  const int threads = (int)std::min<int64_t>(p.threads, std::max<int64_t>(p.nchunks, 1));
  auto ws = workspace(pointwise ? 1 : threads * p.chunk_floats);
  std::vector<float> part((size_t)((threads - (transposed ? 0 : 1)) * wsize));
  std::vector<char> touched(threads, 0);
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
    float* buf = ws.get() + (pointwise ? 0 : t * p.chunk_floats);
    float* acc = transposed ? part.data() + t * wsize : t == 0 ? dw : part.data() + (t - 1) * wsize;
#pragma omp for schedule(static, 1)
    for (int64_t c = 0; c < p.nchunks; ++c) errors.run([&] {
      const int64_t l0 = c * p.chunk, l1 = std::min(p.lines, l0 + p.chunk), rows = (l1 - l0) * g.ow;
      const float* col = pointwise ? x + l0 * g.ow * g.c : buf;
      if (!pointwise) detail::im2col_lines(g, x, l0, l1, buf);
      const float* dyc = dy + l0 * g.ow * g.oc;
      const float beta = touched[t] ? 1.f : 0.f;
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        if (transposed)
          sgemm(true, false, g.cout_g, p.k, rows, 1.f, dyc + gi * g.cout_g, g.oc, col + gi * p.k,
                p.ldcol, beta, acc + gi * g.cout_g * p.k, p.k);
        else
          sgemm(true, false, p.k, g.cout_g, rows, 1.f, col + gi * p.k, p.ldcol,
                dyc + gi * g.cout_g, g.oc, beta, acc + gi * g.cout_g, g.oc);
      }
      touched[t] = 1;
    });
  });
  errors.rethrow();
  if (transposed) {
    // dw[kk, co] = sum over threads (in order) of acc_t[co, kk].
    std::memset(dw, 0, sizeof(float) * wsize);
    for (int t = 0; t < threads; ++t) {
      if (!touched[t]) continue;
      const float* pt = part.data() + t * wsize;
      for (int64_t co = 0; co < g.oc; ++co)
        for (int64_t kk = 0; kk < p.k; ++kk) dw[kk * g.oc + co] += pt[co * p.k + kk];
    }
    return;
  }
  if (!touched[0]) std::memset(dw, 0, sizeof(float) * wsize);  // empty batch
  for (int t = 1; t < threads; ++t) {
    if (!touched[t]) continue;
    const float* pt = part.data() + (t - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += pt[i];
  }
}

}  // namespace

}  // namespace fastconv::cpu
