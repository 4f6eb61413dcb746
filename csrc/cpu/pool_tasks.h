// The parallel loop of the pooling kernels (pool_max.cpp, pool_max_backward.cpp,
// pool_avg.cpp, pool_tiling.cpp): (image, channel block) tasks, which never write the same
// dx cell, so the backward passes need no atomics and are deterministic; splitting channels
// as well as images keeps all threads busy for small batches.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "cpu/item_team.h"
#include "cpu/parallel.h"

namespace fastconv::cpu::detail {

// Channels per task: the whole row when there are enough images (or one thread), otherwise
// split into blocks of at least 16 floats (one 64-byte line) so a small batch still fills the
// threads. On one thread a split only walks the image once per block, each walk reading every
// other run of a pixel's channels (and a short last block, e.g. 8 of C = 24, one channel at a
// time): a 2x2 max pool of (1, 112, 112, 512) took 6.1 ms against 3.0 for (4, 56, 56, 512),
// the same bytes, and (1, 112, 112, 24) 0.20 ms (1 thread, Zen 4).
struct ChannelBlocks {
  int64_t size, count;
};

inline ChannelBlocks channel_blocks(int64_t n, int64_t c) {
  const int64_t threads = omp_get_max_threads();
  if (threads == 1 || n >= 2 * threads || c <= 16) return {c, 1};
  const int64_t want = (2 * threads + n - 1) / n;  // blocks per image
  int64_t size = (c + want - 1) / want;
  size = std::max<int64_t>(16, (size + 15) / 16 * 16);
  return {std::min(size, c), (c + size - 1) / size};
}

// `work`: elements the call touches, to decide whether threads are worth waking.
// One image goes to the item team (item_team.h), as batch-1 convs do: between two item-team
// layers the OpenMP workers have gone to sleep, and a region waited ~30 us for one to wake
// (2-vCPU Zen 4, a batch-1 global average pool of 7x7x1024 after a conv: 31.5 us on 2
// threads, 8.3 on 1); the item team's caller never waits for a helper that is not awake.
template <typename Body>
inline void for_each_task(int64_t n, int64_t c, int64_t work, Body body) {
  const ChannelBlocks cb = channel_blocks(n, c);
  const int64_t tasks = n * cb.count;
  if (n == 1 && work >= kParallelGrain && item_team_enabled() && run_items_slots() > 1) {
    run_items(tasks, [&](int64_t t, int) { body(0, t * cb.size, std::min(c, (t + 1) * cb.size)); });
    return;
  }
  ExceptionCaptor errors;  // bodies allocate per-task buffers
  parallel_region((work >= kTeamGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) errors.run([&] {
      const int64_t img = t / cb.count, c0 = (t % cb.count) * cb.size;
      body(img, c0, std::min(c, c0 + cb.size));
    });
  });
  errors.rethrow();
}

}  // namespace fastconv::cpu::detail
