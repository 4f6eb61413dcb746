// Winograd convolution F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2015) for NHWC activations and HWIO weights.
//
// One output tile of m x m cells needs an alpha x alpha input tile (alpha = m + 2):
//     y_tile = A^T [ U (.) V ] A,   U = G g G^T (filter),   V = B^T d B (input)
// where (.) is elementwise over the alpha^2 positions and, with channels, becomes one GEMM per
// position: M_p (tiles x Cout) = V_p (tiles x Cin) @ U_p (Cin x Cout). That trades the 9
// multiply-adds per output cell of direct convolution for alpha^2/m^2 (2.25 for m = 4, 4 for
// m = 2) in the GEMMs, plus transforms linear in the channel counts.
//
// NHWC makes every tile cell a contiguous channel vector, so each transform is a small
// constexpr matrix applied to whole vectors: the unrolled sums over the matrix entries sit
// outside a `#pragma omp simd` loop over channels, and entries that are 0 or +-1 cost nothing
// or a sign (folded at compile time, see combine_row).
//
// Work is cut into blocks of tb consecutive tiles (tiles numbered (n, tile row, tile col)).
// Per block, one thread transforms the inputs into V [alpha^2][tb][Cin], runs alpha^2 serial
// GEMMs into M [alpha^2][tb][Cout] and transforms M straight into y (see kBlockTiles for why
// blocks are long rather than L2-sized). U = the filter transform, [alpha^2][Cin][Cout], is
// computed once per call and shared by the threads.
//
// Backward data is the forward kernel on dy with the flipped, Cin/Cout-swapped filter and
// pads 2 - pad. Backward weights follows from the forward formula by the chain rule:
//     dg = G^T [ sum over tiles of V (.) (A dy_tile A^T) ] G
// where the sum over tiles, per position p, is the GEMM dU_p (Cin x Cout) += V_p^T @ Y_p.
#include "cpu/winograd.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <stdexcept>
#include <utility>

#include "cpu/conv_algorithm.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// ---------------------------------------------------------------------------------------
// Transform matrices. A matrix type has R rows, K columns and a constexpr at(r, k), so every
// coefficient is known where it is used.

template <int Rows, int Cols>
struct Matrix {
  static constexpr int R = Rows, K = Cols;
};

// F(4x4, 3x3), interpolation points 0, +-1, +-2, infinity.
struct BT4 : Matrix<6, 6> {
  static constexpr float v[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                    {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                    {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};
struct G4 : Matrix<6, 3> {
  static constexpr float v[6][3] = {{1.f / 4, 0, 0},
                                    {-1.f / 6, -1.f / 6, -1.f / 6},
                                    {-1.f / 6, 1.f / 6, -1.f / 6},
                                    {1.f / 24, 1.f / 12, 1.f / 6},
                                    {1.f / 24, -1.f / 12, 1.f / 6},
                                    {0, 0, 1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};
struct AT4 : Matrix<4, 6> {
  static constexpr float v[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};

// F(2x2, 3x3), points 0, +-1, infinity.
struct BT2 : Matrix<4, 4> {
  static constexpr float v[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};
struct G2 : Matrix<4, 3> {
  static constexpr float v[4][3] = {{1, 0, 0}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0, 0, 1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};
struct AT2 : Matrix<2, 4> {
  static constexpr float v[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
  static constexpr float at(int r, int k) { return v[r][k]; }
};

template <class Mat>
struct Transposed : Matrix<Mat::K, Mat::R> {
  static constexpr float at(int r, int k) { return Mat::at(k, r); }
};

template <int M>
struct Wino;
template <>
struct Wino<4> {
  using BT = BT4;
  using G = G4;
  using AT = AT4;
};
template <>
struct Wino<2> {
  using BT = BT2;
  using G = G2;
  using AT = AT2;
};

// ---------------------------------------------------------------------------------------
// Applying a matrix to grids of channel vectors.

// Channels handled per transform call: the alpha x alpha x kChunk temporary (9 KiB for
// alpha = 6) stays in L1 between the column and the row pass.
constexpr int64_t kChunk = 64;
// Stands in for padded and out-of-range cells: they read as zero.
alignas(64) const float kZeros[kChunk] = {};

// One coefficient times v. A zero entry returns -0.f, and x + (-0.f) == x exactly for every
// x, so the compiler drops the term (x + 0.f is not foldable: -0 + 0 = +0).
template <class Mat, int r, int k>
inline float term(float v) {
  constexpr float c = Mat::at(r, k);
  if constexpr (c == 0.f)
    return -0.f;
  else
    return c * v;  // c = +-1 folds to v / -v
}

// dst[c] = (add ? add[c] : 0) + sum_k Mat(r, k) * src[k][c] for c < nc.
template <class Mat, int r, int... k>
inline void combine_row(const float* const* src, float* __restrict dst, const float* add,
                        int64_t nc, std::integer_sequence<int, k...>) {
  const float* s[] = {src[k]...};
  if (add) {
#pragma omp simd
    for (int64_t c = 0; c < nc; ++c) dst[c] = add[c] + (-0.f + ... + term<Mat, r, k>(s[k][c]));
  } else {
#pragma omp simd
    for (int64_t c = 0; c < nc; ++c) dst[c] = (-0.f + ... + term<Mat, r, k>(s[k][c]));
  }
}

// dst[r] = Mat(r, :) . src for every row r: the matrix times a K-vector of channel vectors.
template <class Mat, int... r>
inline void combine_rows(const float* const* src, float* const* dst, const float* add,
                         int64_t nc, std::integer_sequence<int, r...>) {
  (combine_row<Mat, r>(src, dst[r], add, nc, std::make_integer_sequence<int, Mat::K>{}), ...);
}

// out = Mat . in . Mat^T over a K x K grid of channel vectors (in[i*K + j]), giving an R x R
// grid (out[i*R + j]), nc <= kChunk channels each; add (if non-null) is added to every output.
template <class Mat>
void transform2d(const float* const* in, float* const* out, const float* add, int64_t nc) {
  constexpr int R = Mat::R, K = Mat::K;
  constexpr auto rows = std::make_integer_sequence<int, R>{};
  alignas(64) float tmp[R * K * kChunk];
  const float* src[K];
  float* dst[R];
  for (int j = 0; j < K; ++j) {  // columns: tmp[i][j] = sum_k Mat(i, k) in[k][j]
    for (int k = 0; k < K; ++k) src[k] = in[k * K + j];
    for (int i = 0; i < R; ++i) dst[i] = tmp + (i * K + j) * kChunk;
    combine_rows<Mat>(src, dst, nullptr, nc, rows);
  }
  for (int i = 0; i < R; ++i) {  // rows: out[i][j] = sum_k tmp[i][k] Mat(j, k)
    for (int k = 0; k < K; ++k) src[k] = tmp + (i * K + k) * kChunk;
    combine_rows<Mat>(src, out + i * R, add, nc, rows);
  }
}

// ---------------------------------------------------------------------------------------
// Problems, tiles and plans.

// A stride-1 3x3 correlation of x (n, h, w, cin), top/left pads pt/pl, into (n, oh, ow, cout).
// Cells outside x read as zero. Backward data is the same problem on dy.
struct Problem {
  int64_t n, h, w, cin, cout, pt, pl, oh, ow;
};

Problem forward_problem(const ConvGeometry& g) {
  return {g.n, g.h, g.w, g.c, g.oc, g.win.pt, g.win.pl, g.oh, g.ow};
}

// dx[iy] = sum_ky dy[iy + pt - ky] w[ky] = correlation of dy, padded by 2 - pt on top, with
// the flipped filter; the bottom pad 2 - pb then gives exactly H rows (same for columns).
Problem backward_data_problem(const ConvGeometry& g) {
  return {g.n, g.oh, g.ow, g.oc, g.c, 2 - g.win.pt, 2 - g.win.pl, g.h, g.w};
}

template <int M>
struct Grid {
  int64_t th, tw, tiles;
  explicit Grid(const Problem& p)
      : th((p.oh + M - 1) / M), tw((p.ow + M - 1) / M), tiles(p.n * th * tw) {}
  // Image and top-left output cell of tile t.
  void locate(int64_t t, int64_t& n, int64_t& oy, int64_t& ox) const {
    n = t / (th * tw);
    const int64_t r = t % (th * tw);
    oy = r / tw * M;
    ox = r % tw * M;
  }
};

// Tiles per block. Each of the alpha^2 GEMMs per block makes OpenBLAS pack U_p (Cin x Cout)
// afresh, work proportional to one pass over U_p, against tb multiply-adds per U_p element;
// so blocks must be long even though V and M then spill out of L2 into L3. Measured single
// thread, 256->256 on 14x14 (forward ms): tb 14 (V+M = 1 MiB): 24; 32: 17; 64: 15; 128: 14.5;
// 256: 13.6. At 64 channels the curve is flat (5.9-6.8 ms for tb 32..256).
constexpr int64_t kBlockTiles = 256;
// Below this many (direct-convolution) multiply-adds a pass runs on one thread: conv2d.cpp's
// threshold, for the same reason.
constexpr int64_t kParallelMacs = 1 << 21;

struct Plan {
  int m, alpha, threads;
  int64_t tiles, tb, nblocks;
  int64_t bytes;  // whole workspace of the pass
};

// Distance between the alpha^2 position slices of V, M, Y, U and dU. A tile's transform
// touches all alpha^2 slices at once; if their distance were a multiple of 4 KiB (tb*Cin
// floats often is) the streams would all map to the same cache sets and evict each other.
// One cache line of skew separates them.
constexpr int64_t kSkew = 16;
int64_t position_stride(int64_t floats) { return floats + kSkew; }

// Floats of V and M (forward) or V and Y (backward weights) for one thread.
int64_t block_floats(const Problem& p, const Plan& pl) {
  const int64_t aa = (int64_t)pl.alpha * pl.alpha;
  return aa * (position_stride(pl.tb * p.cin) + position_stride(pl.tb * p.cout));
}

// Floats of U (or one dU partial).
int64_t filter_floats(const Problem& p, const Plan& pl) {
  return (int64_t)pl.alpha * pl.alpha * position_stride(p.cin * p.cout);
}

// Whole workspace of a pass: U and each thread's blocks; for backward weights, each
// thread's dU partial and blocks.
int64_t workspace_floats(const Problem& p, const Plan& pl, ConvPass pass) {
  if (pass == ConvPass::BackwardWeights)
    return pl.threads * (filter_floats(p, pl) + block_floats(p, pl));
  return filter_floats(p, pl) + pl.threads * block_floats(p, pl);
}

// Output tile size m: the one needing fewer GEMM multiply-adds, tiles * alpha^2 (F(4x4) does
// 2.25 per output cell, F(2x2) 4, but clipped tiles waste more of a larger tile). Ties go to
// F(2x2), whose error is smaller. F(4x4) measured 1.2-1.6x faster than F(2x2) on every
// benchmark layer (256->256 14x14: 13.5 vs 16.2 ms forward, one thread).
int tile_size(const Problem& p) {
  const auto cost = [&](int64_t m) {
    return ((p.oh + m - 1) / m) * ((p.ow + m - 1) / m) * (m + 2) * (m + 2);
  };
  return cost(4) < cost(2) ? 4 : 2;
}

// Blocks of up to kBlockTiles tiles, fewer when the workspace limit demands it, in whole
// rounds so that every thread gets the same number of equal blocks.
Plan make_plan(const Problem& p, ConvPass /*pass: same plan for all three*/) {
  Plan pl;
  pl.m = tile_size(p);
  pl.alpha = pl.m + 2;
  const int64_t aa = (int64_t)pl.alpha * pl.alpha;
  // Small passes stay on one thread, as in conv2d.cpp (waking a team costs more).
  const int64_t macs = p.n * p.oh * p.ow * 9 * p.cin * p.cout;
  const int64_t threads = macs < kParallelMacs ? 1 : std::max(1, get_num_threads());
  pl.tiles = p.n * ((p.oh + pl.m - 1) / pl.m) * ((p.ow + pl.m - 1) / pl.m);
  pl.threads = (int)threads;
  // The limit bounds the activation-sized blocks. U and the dU partials are 4x the weights
  // (per thread for dU): bounded by the layer itself, and counting them would keep every
  // 512->512 layer (U = 36 MiB) off Winograd at the default 32 MiB.
  const int64_t free_floats = get_workspace_limit() / (int64_t)sizeof(float);
  const int64_t tile_floats = aa * (p.cin + p.cout);
  const int64_t per_thread = free_floats / threads - 2 * kSkew * aa;  // see block_floats
  pl.tb = std::max<int64_t>(1, std::min(kBlockTiles, per_thread / tile_floats));
  pl.tb = std::min(pl.tb, (pl.tiles + threads - 1) / threads);
  // One image (batch-1 inference): two blocks per thread where they keep >= 8 tiles, so a
  // helper that joins run_items late (run_forward) still takes a share.
  if (p.n == 1 && threads > 1)
    pl.tb = std::min(pl.tb, std::max<int64_t>(8, (pl.tiles + 2 * threads - 1) / (2 * threads)));
  pl.nblocks = (pl.tiles + pl.tb - 1) / pl.tb;
  pl.nblocks = (pl.nblocks + threads - 1) / threads * threads;
  pl.tb = (pl.tiles + pl.nblocks - 1) / pl.nblocks;
  pl.nblocks = (pl.tiles + pl.tb - 1) / pl.tb;
  pl.threads = (int)std::max<int64_t>(1, std::min(threads, pl.nblocks));
  pl.bytes = pl.threads * block_floats(p, pl) * (int64_t)sizeof(float);
  return pl;
}

bool plan_fits(const Problem& p, const Plan& pl) {
  return pl.bytes <= get_workspace_limit() && p.cin <= INT_MAX && p.cout <= INT_MAX;
}

Problem problem_for(const ConvGeometry& g, ConvPass pass) {
  return pass == ConvPass::BackwardData ? backward_data_problem(g) : forward_problem(g);
}

// The workspace of a pass, allocated per call: with fastconv's keep_freed_memory (on by
// default) the heap hands back the previous call's pages, so there are no page faults to
// amortise (measured equal to a buffer cached across calls, 256->256 14x14).
std::unique_ptr<float[]> workspace(int64_t floats) {
  return std::unique_ptr<float[]>(new float[std::max<int64_t>(floats, 1)]);
}

// ---------------------------------------------------------------------------------------
// Tile transforms. Each covers all channels of one tile, kChunk at a time.

// V_p[tile] = (B^T d B)_p for p < alpha^2, written to v + p*vstride (+ channel).
template <int M>
void input_tile(const Problem& p, const Grid<M>& grid, const float* x, int64_t t, float* v,
                int64_t vstride) {
  constexpr int A = M + 2;
  int64_t n, oy, ox;
  grid.locate(t, n, oy, ox);
  const float* cell[A * A];
  for (int i = 0; i < A; ++i)
    for (int j = 0; j < A; ++j) {
      const int64_t iy = oy - p.pt + i, ix = ox - p.pl + j;
      const bool inside = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
      cell[i * A + j] = inside ? x + ((n * p.h + iy) * p.w + ix) * p.cin : nullptr;
    }
  const float* in[A * A];
  float* out[A * A];
  for (int64_t c0 = 0; c0 < p.cin; c0 += kChunk) {
    for (int q = 0; q < A * A; ++q) {
      in[q] = cell[q] ? cell[q] + c0 : kZeros;
      out[q] = v + q * vstride + c0;
    }
    transform2d<typename Wino<M>::BT>(in, out, nullptr, std::min(kChunk, p.cin - c0));
  }
}

// y_tile = act(A^T M A + b), for the cells of the tile inside y (the rest go to a scratch
// vector), output channels [c_begin, c_end) (-1: to Cout).
template <int M>
void output_tile(const Problem& p, const Grid<M>& grid, const float* mt, int64_t mstride,
                 const float* b, Activation act, int64_t t, float* y, int64_t c_begin = 0,
                 int64_t c_end = -1) {
  constexpr int A = M + 2;
  alignas(64) float scratch[kChunk];
  int64_t n, oy, ox;
  grid.locate(t, n, oy, ox);
  float* cell[M * M];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < M; ++j) {
      const bool inside = oy + i < p.oh && ox + j < p.ow;
      cell[i * M + j] = inside ? y + ((n * p.oh + oy + i) * p.ow + ox + j) * p.cout : nullptr;
    }
  const float* in[A * A];
  float* out[M * M];
  if (c_end < 0) c_end = p.cout;
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kChunk) {
    for (int q = 0; q < A * A; ++q) in[q] = mt + q * mstride + c0;
    for (int q = 0; q < M * M; ++q) out[q] = cell[q] ? cell[q] + c0 : scratch;
    const int64_t nc = std::min(kChunk, c_end - c0);
    transform2d<typename Wino<M>::AT>(in, out, b ? b + c0 : nullptr, nc);
    if (act != Activation::Linear)
      for (int q = 0; q < M * M; ++q)
        if (cell[q]) activation_inplace(nc, cell[q] + c0, act);
  }
}

// Y_p[tile] = (A dy_tile A^T)_p; dy cells outside the output (clipped tiles) read as zero.
template <int M>
void output_grad_tile(const Problem& p, const Grid<M>& grid, const float* dy, int64_t t,
                      float* yt, int64_t ystride) {
  constexpr int A = M + 2;
  int64_t n, oy, ox;
  grid.locate(t, n, oy, ox);
  const float* cell[M * M];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < M; ++j) {
      const bool inside = oy + i < p.oh && ox + j < p.ow;
      cell[i * M + j] = inside ? dy + ((n * p.oh + oy + i) * p.ow + ox + j) * p.cout : nullptr;
    }
  const float* in[M * M];
  float* out[A * A];
  for (int64_t c0 = 0; c0 < p.cout; c0 += kChunk) {
    for (int q = 0; q < M * M; ++q) in[q] = cell[q] ? cell[q] + c0 : kZeros;
    for (int q = 0; q < A * A; ++q) out[q] = yt + q * ystride + c0;
    transform2d<Transposed<typename Wino<M>::AT>>(in, out, nullptr, std::min(kChunk, p.cout - c0));
  }
}

// U_p = (G g G^T)_p for every (ci, co): the 3x3 HWIO filter seen as 9 vectors of L = Cin*Cout
// values, transformed kChunk values at a time. U is [alpha^2][Cin][Cout], slices ustride apart.
// flip: transform w[2-ky][2-kx] instead (backward data), by reading the 9 slices backwards.
template <int M>
void filter_transform(const float* w, int64_t L, bool flip, float* u, int64_t ustride,
                      int threads) {
  constexpr int A = M + 2;
  const int64_t chunks = (L + kChunk - 1) / kChunk;
#pragma omp parallel num_threads(threads)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t l0 = c * kChunk;
      const float* in[9];
      float* out[A * A];
      for (int q = 0; q < 9; ++q) in[q] = w + (flip ? 8 - q : q) * L + l0;
      for (int q = 0; q < A * A; ++q) out[q] = u + q * ustride + l0;
      transform2d<typename Wino<M>::G>(in, out, nullptr, std::min(kChunk, L - l0));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Passes.

// One image on several threads, U larger than a core's L2: the threads split Cout instead
// of the tiles. A 14x14 output has 16 tiles at F(4,3): split by tiles, every thread
// multiplies its few tiles by all of U (4x the weights, 9.4 MB at 256->256), so U is streamed
// once per thread: ResNet-50's 14x14 256->256 took 2.6-3.0 CPU-ms at 2 threads against 1.8 at
// 1 (U from memory; 2.1-2.6 with this split). Here the input transform of every tile runs
// once (items: tiles), then each item multiplies all of V by one block of U's columns and
// transforms its columns of M, so U is read once in total. Returns false (y partly written) on a non-finite input tile, like
// run_forward; `done` false: the split does not apply (too big for the workspace limit).
constexpr int64_t kSplitColumns = 64;  // Cout per item: two 32-wide micro-tile strips
constexpr int64_t kSplitMinUBytes = 1 << 20;
// With more tiles the tile split wins: 28x28 128->128 (49 tiles, U 2.4 MB), 2 threads,
// process CPU ms over three runs: tiles 1.12-1.44, Cout 1.52-1.72.
constexpr int64_t kSplitMaxTilesPerThread = 8;

template <int M>
bool run_forward_cout_split(const Problem& p, const float* x, const float* u, int64_t ustride,
                            bool u_transposed, const float* b, Activation act, float* y, bool& done) {
  constexpr int AA = (M + 2) * (M + 2);
  const Grid<M> grid(p);
  const int64_t vstride = position_stride(grid.tiles * p.cin);
  const int64_t mstride = position_stride(grid.tiles * p.cout);
  done = AA * (vstride + mstride) * (int64_t)sizeof(float) <= get_workspace_limit();
  if (!done) return false;
  auto ws = workspace(AA * (vstride + mstride));
  float* v = ws.get();
  float* mt = v + AA * vstride;
  run_items(grid.tiles, [&](int64_t t, int) { input_tile<M>(p, grid, x, t, v + t * p.cin, vstride); });
  for (int q = 0; q < AA; ++q)
    if (!all_finite(v + q * vstride, grid.tiles * p.cin)) return false;
  const int64_t items = (p.cout + kSplitColumns - 1) / kSplitColumns;
  run_items(items, [&](int64_t i, int) {
    const int64_t c0 = i * kSplitColumns, cols = std::min(kSplitColumns, p.cout - c0);
    // U_p is Cin x Cout (forward) or Cout x Cin used transposed (backward data).
    const int64_t ld = u_transposed ? p.cin : p.cout, offset = u_transposed ? c0 * p.cin : c0;
    for (int q = 0; q < AA; ++q)
      sgemm(false, u_transposed, grid.tiles, cols, p.cin, 1.f, v + q * vstride, p.cin,
            u + q * ustride + offset, ld, 0.f, mt + q * mstride + c0, p.cout);
    for (int64_t t = 0; t < grid.tiles; ++t)
      output_tile<M>(p, grid, mt + t * p.cout, mstride, b, act, t, y, c0, c0 + cols);
  });
  return true;
}

// Blocks of tiles: input transform, alpha^2 GEMMs, output transform; ws holds every
// thread's V and M. u_transposed: the slices U_p are stored (Cout x Cin) and used transposed.
//
// Returns false, leaving y partly written, when an input tile holds NaN or inf: the
// transforms mix the tile's cells (B^T d B, then A^T M A), so such a value would reach every
// output of its tile, also those whose receptive field does not hold it, and inf - inf
// makes NaN where the exact sum is inf. The caller then runs the pass by im2col, whose
// outputs are non-finite exactly where the oracle's are. Checking V costs alpha^2*Cin per
// tile against the GEMMs' alpha^2*Cin*Cout; a NaN or inf in the weights needs no check (it
// reaches every output of its channel, as in every algorithm).
template <int M>
bool run_forward(const Problem& p, const Plan& pl, const float* x, const float* u,
                 int64_t ustride, bool u_transposed, const float* b, Activation act, float* y,
                 float* ws) {
  constexpr int AA = (M + 2) * (M + 2);
  const Grid<M> grid(p);
  const int64_t vstride = position_stride(pl.tb * p.cin);
  const int64_t mstride = position_stride(pl.tb * p.cout);
  if (p.n == 1 && pl.threads > 1 && item_team_enabled() && run_items_slots() > 1 &&
      pl.tiles <= kSplitMaxTilesPerThread * pl.threads && p.cout >= 2 * kSplitColumns &&
      AA * p.cin * p.cout * (int64_t)sizeof(float) > kSplitMinUBytes) {
    bool done = false;
    const bool finite = run_forward_cout_split<M>(p, x, u, ustride, u_transposed, b, act, y, done);
    if (done) return finite;
  }
  std::atomic<int> nonfinite{0};
  // Block blk on the buffers of participant `slot`.
  auto block = [&](int64_t blk, int slot) {
    float* v = ws + slot * block_floats(p, pl);
    float* mt = v + AA * vstride;
    if (nonfinite.load(std::memory_order_relaxed)) return;  // the pass will be redone: skip
    const int64_t t0 = blk * pl.tb, cnt = std::min(pl.tb, grid.tiles - t0);
    for (int64_t j = 0; j < cnt; ++j) input_tile<M>(p, grid, x, t0 + j, v + j * p.cin, vstride);
    bool finite = true;
    for (int q = 0; q < AA && finite; ++q) finite = all_finite(v + q * vstride, cnt * p.cin);
    if (!finite) {
      nonfinite.store(1);
      return;
    }
    for (int q = 0; q < AA; ++q)
      sgemm(false, u_transposed, cnt, p.cout, p.cin, 1.f, v + q * vstride, p.cin,
            u + q * ustride, u_transposed ? p.cin : p.cout, 0.f, mt + q * mstride, p.cout);
    for (int64_t j = 0; j < cnt; ++j)
      output_tile<M>(p, grid, mt + j * p.cout, mstride, b, act, t0 + j, y);
  };
  // One image: the join-free item team (item_team.h), which never waits for a helper to wake
  // or to leave a barrier; its slots index the per-thread buffers, so it needs no more
  // participants than the plan has buffers.
  if (p.n == 1 && pl.threads > 1 && item_team_enabled() && run_items_slots() <= pl.threads) {
    run_items(pl.nblocks, block);
    return !nonfinite.load();
  }
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
#pragma omp parallel num_threads(pl.threads)
  {
    note_team();
    const int slot = omp_get_thread_num();
#pragma omp for schedule(dynamic)
    for (int64_t blk = 0; blk < pl.nblocks; ++blk) errors.run([&] { block(blk, slot); });
  }
  errors.rethrow();
  return !nonfinite.load();
}

// `prepared` (null: none) is U for this geometry from winograd_prepare_filter: the transform
// is skipped and only the blocks are allocated.
template <int M>
bool forward_impl(const Problem& p, const Plan& pl, const float* x, const float* w,
                  const float* b, Activation act, float* y, const float* prepared) {
  const int64_t ustride = position_stride(p.cin * p.cout);
  if (prepared) {
    auto ws = workspace(pl.threads * block_floats(p, pl));
    return run_forward<M>(p, pl, x, prepared, ustride, false, b, act, y, ws.get());
  }
  auto ws = workspace(workspace_floats(p, pl, ConvPass::Forward));
  float* u = ws.get();
  filter_transform<M>(w, p.cin * p.cout, false, u, ustride, pl.threads);
  return run_forward<M>(p, pl, x, u, ustride, false, b, act, y, u + filter_floats(p, pl));
}

template <int M>
bool backward_data_impl(const Problem& p, const Plan& pl, const float* dy, const float* w,
                        float* dx) {
  // p is backward_data_problem: its cin is the conv's Cout, its cout the conv's Cin.
  const int64_t L = p.cin * p.cout, ustride = position_stride(L);
  auto ws = workspace(workspace_floats(p, pl, ConvPass::BackwardData));
  float* u = ws.get();
  // The conv's weights w'[ky][kx][co][ci] = w[2-ky][2-kx][ci][co]: the flip happens in the
  // filter transform, the channel swap in the GEMM (U_p used transposed), so w' is never
  // formed (an explicit transpose measured 1-2 ms at 256 channels, more than the GEMMs of a
  // small batch).
  filter_transform<M>(w, L, true, u, ustride, pl.threads);
  return run_forward<M>(p, pl, dy, u, ustride, true, nullptr, Activation::Linear, dx,
                        u + filter_floats(p, pl));
}

template <int M>
void backward_weights_impl(const Problem& p, const Plan& pl, const float* dy, const float* x,
                           float* dw) {
  constexpr int A = M + 2, AA = A * A;
  const Grid<M> grid(p);
  const int64_t L = p.cin * p.cout, ustride = position_stride(L);
  const int64_t vstride = position_stride(pl.tb * p.cin);
  const int64_t ystride = position_stride(pl.tb * p.cout);
  const int64_t per_thread = filter_floats(p, pl) + block_floats(p, pl);
  auto buf = workspace(pl.threads * per_thread);
  float* ws = buf.get();
  // Thread t owns blocks t, t+T, ... (static schedule) and its own dU; its first block
  // overwrites (beta = 0). Every thread has a block: make_plan keeps threads <= blocks.
  ExceptionCaptor errors;  // sgemm may throw (its packing buffers)
#pragma omp parallel num_threads(pl.threads)
  {
    note_team();
    float* du = ws + omp_get_thread_num() * per_thread;
    float* v = du + filter_floats(p, pl);
    float* yt = v + AA * vstride;
#pragma omp for schedule(static, 1)
    for (int64_t blk = 0; blk < pl.nblocks; ++blk) errors.run([&] {
      const int64_t t0 = blk * pl.tb, cnt = std::min(pl.tb, grid.tiles - t0);
      for (int64_t j = 0; j < cnt; ++j) {
        input_tile<M>(p, grid, x, t0 + j, v + j * p.cin, vstride);
        output_grad_tile<M>(p, grid, dy, t0 + j, yt + j * p.cout, ystride);
      }
      const float beta = blk < pl.threads ? 0.f : 1.f;
      for (int q = 0; q < AA; ++q)
        sgemm(true, false, p.cin, p.cout, cnt, 1.f, v + q * vstride, p.cin, yt + q * ystride,
              p.cout, beta, du + q * ustride, p.cout);
    });
  }
  errors.rethrow();
  // Partials added in thread order (deterministic), then dg = G^T dU G, kChunk values of
  // (ci, co) at a time; the chunks are independent, so they run in parallel.
  const int64_t chunks = (L + kChunk - 1) / kChunk;
#pragma omp parallel num_threads(pl.threads)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t l0 = c * kChunk, nc = std::min(kChunk, L - l0);
      const float* in[AA];
      float* out[9];
      for (int q = 0; q < AA; ++q) {
        float* acc = ws + q * ustride + l0;
        for (int t = 1; t < pl.threads; ++t) {
          const float* part = ws + t * per_thread + q * ustride + l0;
#pragma omp simd
          for (int64_t i = 0; i < nc; ++i) acc[i] += part[i];
        }
        in[q] = acc;
      }
      for (int q = 0; q < 9; ++q) out[q] = dw + q * L + l0;
      transform2d<Transposed<typename Wino<M>::G>>(in, out, nullptr, nc);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Algorithm choice.

// "auto": Winograd where it was measured to beat im2col. Single-thread CPU time, im2col /
// Winograd (speed-up per pass fwd, bwd-data, bwd-weights), 3x3 'same':
//   N=8 56x56  4->4: 0.97 1.21 0.87    8->8: 1.68 2.05 1.62    16->16: 2.3 2.3 2.2
//              3->64: 1.17 1.10 0.92   3->32: 1.20 1.11 0.95   64->3: 2.8 2.5 2.5
//   N=1 7x7 256->256 (4 tiles): 0.76 0.78 0.83      N=2 7x7 128->128 (8 tiles): 1.27 1.20 1.32
//   N=1 8x8 64->64 (4 tiles): 1.28 0.97 1.13        N=2 4x4 64->64 (2 tiles): 0.71 0.67 0.73
//   N=1 14x14 256->256 (16 tiles): 1.24 1.45 1.78   larger layers: 2-4.4x
// With few channels the transforms (linear in Cin + Cout) weigh as much as the GEMMs
// (Cin * Cout); with few tiles, the filter transform (alpha^2 * Cin * Cout per call) does.
bool winograd_pays(const Problem& p, const Plan& pl) {
  return std::min(p.cin, p.cout) >= 8 && pl.tiles >= 8;
}

}  // namespace

namespace detail {

bool winograd_eligible(const ConvGeometry& g) {
  const Window2d& w = g.win;
  const auto pad_ok = [](int64_t v) { return v >= 0 && v <= 2; };
  return g.n > 0 && g.groups == 1 && w.kh == 3 && w.kw == 3 && w.sh == 1 && w.sw == 1 &&
         w.dh == 1 && w.dw == 1 && pad_ok(w.pt) && pad_ok(w.pb) && pad_ok(w.pl) && pad_ok(w.pr);
}

bool winograd_worth_preparing(const ConvGeometry& g) {
  if (!winograd_eligible(g)) return false;
  // winograd_pays reads the plan's tile count only, which no thread count or setting changes.
  const Problem p = forward_problem(g);
  return winograd_pays(p, make_plan(p, ConvPass::Forward));
}

bool use_winograd(const ConvGeometry& g, ConvPass pass) {
  const Algo algo = algorithm_setting();
  if (algo == Algo::Im2col || algo == Algo::Direct || !winograd_eligible(g)) return false;
  const Problem p = problem_for(g, pass);
  const Plan pl = make_plan(p, pass);
  if (!plan_fits(p, pl)) return false;
  if (algo == Algo::Winograd) return true;
  // A weight pass over few tiles transforms an alpha^2 x Cin x Cout gradient for little GEMM
  // work: 512 -> 512 at 14x14, batch 1 (16 tiles), is 37.7 MB, past the 32 MB L3, and 37% of
  // the pass went to that transform; 13.6-14.2 ms against im2col's 11.5-11.8 (1 thread, Zen 4).
  // Backward data likewise transforms the whole (flipped) filter, 37.7 MB there, for 16 tiles:
  // 12.8-13.2 ms against im2col's 11.8 (im2col with W^T packed once: see RESULTS, helper Y
  // stop 33), and 20.4 ms in a sweep on the loaded machine, whose other jobs share the L3.
  constexpr int64_t kFewTiles = 16, kLargeGradientBytes = 24 << 20;
  if (pass != ConvPass::Forward && pl.tiles <= kFewTiles &&
      (int64_t)pl.alpha * pl.alpha * p.cin * p.cout * (int64_t)sizeof(float) > kLargeGradientBytes)
    return false;
  return winograd_pays(p, pl);
}

bool winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                      float* y, Activation act, const float* prepared) {
  const Problem p = forward_problem(g);
  const Plan pl = make_plan(p, ConvPass::Forward);
  if (pl.m == 4) return forward_impl<4>(p, pl, x, w, b, act, y, prepared);
  return forward_impl<2>(p, pl, x, w, b, act, y, prepared);
}

int64_t winograd_filter_floats(const ConvGeometry& g) {
  if (!winograd_eligible(g)) return 0;
  const int alpha = tile_size(forward_problem(g)) + 2;
  return (int64_t)alpha * alpha * position_stride(g.c * g.oc);
}

void winograd_prepare_filter(const ConvGeometry& g, const float* w, float* u) {
  const Problem p = forward_problem(g);
  const int64_t ustride = position_stride(p.cin * p.cout);
  const int threads = std::max(1, get_num_threads());
  // The skew between the position slices is never read; zero it so the array is defined.
  const int alpha = tile_size(p) + 2;
  for (int q = 0; q < alpha * alpha; ++q) std::fill_n(u + q * ustride + p.cin * p.cout, kSkew, 0.f);
  if (alpha == 6) filter_transform<4>(w, p.cin * p.cout, false, u, ustride, threads);
  else filter_transform<2>(w, p.cin * p.cout, false, u, ustride, threads);
}

bool winograd_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Problem p = backward_data_problem(g);
  const Plan pl = make_plan(p, ConvPass::BackwardData);
  if (pl.m == 4) return backward_data_impl<4>(p, pl, dy, w, dx);
  return backward_data_impl<2>(p, pl, dy, w, dx);
}

void winograd_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db) {
  if (db) column_sums(g.n * g.oh * g.ow, g.oc, dy, db);
  const Problem p = forward_problem(g);
  const Plan pl = make_plan(p, ConvPass::BackwardWeights);
  if (pl.m == 4) backward_weights_impl<4>(p, pl, dy, x, dw);
  else backward_weights_impl<2>(p, pl, dy, x, dw);
}

}  // namespace detail

}  // namespace fastconv::cpu
