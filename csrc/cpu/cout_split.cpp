// Forward conv with the threads splitting Cout (see cout_split.h).
//
// conv2d.cpp's forward hands each thread whole chunks of output lines (~1 MiB of col each).
// At batch 1 the deep layers of a network have a single chunk, so the second core idles
// while one thread streams the whole weight matrix (ResNet-18's 4x4 512->512 conv: 9.4 MB of
// weights for 16 output positions, memory-bound). Here the col matrix is built once, then
// each thread multiplies it by its own block of W's columns: the weights are read once in
// total, half by each core, and each thread writes its own columns of y.
#include "cpu/cout_split.h"


#include <algorithm>
#include <cstring>
#include <memory>

#include "cpu/conv_algorithm.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"

namespace fastconv::cpu::detail {

namespace {

// conv2d.cpp's per-thread col target and single-thread threshold, for the same reasons.
constexpr int64_t kChunkBytes = 1 << 20;
constexpr int64_t kParallelMacs = 1 << 21;
constexpr int64_t kSplitWeightBytes = 1 << 20;
// Column blocks are whole micro-tile strips of the GEMM (32 columns).
constexpr int64_t kColumnUnit = 32;
// Work blocks: at least kItemColumns wide, about kItemsPerThread per participant.
constexpr int64_t kItemColumns = 64;
constexpr int64_t kItemsPerThread = 4;
constexpr int64_t kWideItemABytes = 64 << 10;
constexpr int64_t kWideItemUnits = 8;

}  // namespace

bool cout_split_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                        float* y, Activation act, const float* residual, const float* packed) {
  const int threads = run_items_slots();
  if (threads < 2 || g.groups != 1 || algorithm_setting() == Algo::Direct) return false;
  const int64_t k = g.win.kh * g.win.kw * g.c;
  const int64_t rows = g.n * g.oh * g.ow;
  // Few multiply-adds but a large weight matrix (MobileNet's classifier at batch 1: 1 row,
  // 4 MB of weights) is a stream of W: two cores read it faster than one.
  const bool weight_bound = g.oc * k * (int64_t)sizeof(float) >= kSplitWeightBytes;
  if ((rows * g.oc * k < kParallelMacs && !weight_bound) || g.oc < 2 * kColumnUnit) return false;
  // Enough lines for the row split to give every thread a chunk: conv2d.cpp's path.
  const int64_t budget = std::min(get_workspace_limit() / threads, kChunkBytes);
  const int64_t lines = g.n * g.oh;
  if ((lines + lines_per_chunk(g, budget) - 1) / lines_per_chunk(g, budget) >= threads) return false;
  // The whole col must fit the workspace limit (it is at most one chunk here, <= budget,
  // unless a single line exceeds it; then the row path's own limits apply).
  if (rows * k * (int64_t)sizeof(float) > get_workspace_limit()) return false;

  const bool pointwise = g.is_pointwise();
  std::unique_ptr<float[]> ws(pointwise ? nullptr : new float[rows * k]);
  if (!pointwise) im2col_lines(g, x, 0, lines, ws.get());
  const float* col = pointwise ? x : ws.get();
  // Column blocks shared out by run_items (item_team.h): the caller starts on them at once
  // and a helper that is awake takes some, so an asleep or descheduled helper delays
  // nothing. Several blocks per participant, so a helper that joins late still takes a
  // share; not narrower than kItemColumns, each block reads col once more.
  const int64_t units = (g.oc + kColumnUnit - 1) / kColumnUnit;
  const int64_t min_units = units >= 2 * threads * (kItemColumns / kColumnUnit) ? kItemColumns / kColumnUnit : 1;
  int64_t per_item = std::max<int64_t>(min_units, units / (kItemsPerThread * threads));
  // Each block's product packs (or streams) all of A again: where A is large, blocks of at
  // least kWideItemUnits strips, still one per participant at least. 2 threads, ms, 64-column
  // blocks -> 256: 14x14 512->512 1x1 0.55-0.67 -> 0.50-0.57, 7x7 2048->512 1x1 0.56-0.69
  // -> 0.49-0.51, 8x8 256->256 3x3 0.47-0.59 -> 0.45-0.55, 4x4 512->512 3x3 0.51-0.61 ->
  // 0.46-0.54 (batch 1, prepared weights, three alternating rounds).
  if (rows * k * (int64_t)sizeof(float) >= kWideItemABytes)
    per_item = std::max<int64_t>(per_item, std::min<int64_t>(kWideItemUnits, units / threads));
  const int64_t items = (units + per_item - 1) / per_item;
  run_items(items, [&](int64_t i, int) {
    const int64_t c0 = std::min(g.oc, i * per_item * kColumnUnit);
    const int64_t c1 = std::min(g.oc, (i + 1) * per_item * kColumnUnit);
    GemmPackedB pb;
    pb.data = packed, pb.n = g.oc, pb.col0 = c0;  // c0: whole 32-column strips
    forward_product(rows, c1 - c0, k, col, k, w + c0, g.oc, b ? b + c0 : nullptr,
                    residual ? residual + c0 : nullptr, act, y + c0, g.oc, packed ? &pb : nullptr);
  });
  return true;
}

}  // namespace fastconv::cpu::detail
