// The CPU execution of the CUDA kernels for `_cuda_emu` (see cuda_runtime.h here): blocks in
// order; in a cooperative launch the threads of a block are ucontext fibers, switched at
// barriers and warp shuffles, round robin, so every thread reaches barrier k before any
// passes it.
#include <ucontext.h>

#include <exception>
#include <stdexcept>
#include <vector>

#include "cuda_runtime.h"

namespace fastconv::emu {

thread_local ThreadState current;

namespace {

constexpr size_t kStackBytes = 64 * 1024;
constexpr int kWarp = 32;

struct Block {
  ucontext_t scheduler;
  std::vector<ucontext_t> contexts;
  std::vector<ThreadState> states;
  std::vector<char> done;
  std::vector<float> lanes;  // one shuffle slot per thread
  int running = -1;
  void (*thunk)(void*) = nullptr;
  void* closure = nullptr;
  std::exception_ptr error;
};

thread_local Block* active = nullptr;  // set while a cooperative block runs
bool reverse_order = false;
thread_local std::vector<char> stacks;

void fiber_main() {
  Block* b = active;
  try {
    b->thunk(b->closure);
  } catch (...) {
    b->error = std::current_exception();
  }
  b->done[b->running] = 1;  // returning resumes the scheduler (uc_link)
}

void yield_to_scheduler() {
  Block* b = active;
  swapcontext(&b->contexts[b->running], &b->scheduler);
}

int linear_thread() {
  const ThreadState& t = current;
  return (int)(t.thread.x + t.block_dim.x * (t.thread.y + t.block_dim.y * t.thread.z));
}

void run_block_cooperatively(Block& b, int nthreads) {
  const size_t need = (size_t)nthreads * kStackBytes;
  if (stacks.size() < need) stacks.resize(need);
  for (int i = 0; i < nthreads; ++i) {
    ucontext_t& c = b.contexts[i];
    getcontext(&c);
    c.uc_stack.ss_sp = stacks.data() + (size_t)i * kStackBytes;
    c.uc_stack.ss_size = kStackBytes;
    c.uc_link = &b.scheduler;
    makecontext(&c, fiber_main, 0);
    b.done[i] = 0;
  }
  for (int live = nthreads; live > 0 && !b.error;) {
    live = 0;
    for (int k = 0; k < nthreads && !b.error; ++k) {
      const int i = reverse_order ? nthreads - 1 - k : k;
      if (b.done[i]) continue;
      b.running = i;
      current = b.states[i];
      swapcontext(&b.scheduler, &b.contexts[i]);
      live += !b.done[i];
    }
  }
}

}  // namespace

void sync_threads() {
  if (!active)
    throw std::logic_error("__syncthreads() in a kernel launched with FC_LAUNCH: launch it with "
                           "FC_LAUNCH_SYNC");
  yield_to_scheduler();
}

float shfl_xor(float v, int lane_mask) {
  if (!active)
    throw std::logic_error("__shfl_xor_sync() in a kernel launched with FC_LAUNCH: launch it with "
                           "FC_LAUNCH_SYNC");
  Block* b = active;
  const int me = linear_thread(), lane = me % kWarp;
  b->lanes[me] = v;
  yield_to_scheduler();  // every lane of the warp has written
  const float other = b->lanes[me - lane + (lane ^ lane_mask)];
  yield_to_scheduler();  // every lane has read before the next shuffle overwrites
  return other;
}

void run_grid(dim3 grid, dim3 block, bool cooperative, void (*thunk)(void*), void* closure) {
  const int nthreads = (int)(block.x * block.y * block.z);
  if (nthreads < 1 || nthreads > 1024 || grid.x < 1 || grid.y < 1 || grid.z < 1) {
    last_error() = cudaErrorInvalidValue;  // what a real launch reports for a bad configuration
    return;
  }
  if (cooperative && nthreads % kWarp)
    throw std::logic_error("FC_LAUNCH_SYNC emulation needs whole warps per block");
  Block b;
  if (cooperative) {
    b.contexts.resize(nthreads);
    b.states.resize(nthreads);
    b.done.resize(nthreads);
    b.lanes.resize(nthreads);
    b.thunk = thunk;
    b.closure = closure;
  }
  ThreadState t;
  t.block_dim = block;
  t.grid_dim = grid;
  const int64_t blocks = (int64_t)grid.x * grid.y * grid.z;
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t l = reverse_order ? blocks - 1 - k : k;
    t.block = dim3((unsigned)(l % grid.x), (unsigned)(l / grid.x % grid.y), (unsigned)(l / grid.x / grid.y));
    for (int j = 0; j < nthreads; ++j) {
      const int i = reverse_order && !cooperative ? nthreads - 1 - j : j;
      t.thread = dim3(i % block.x, i / block.x % block.y, i / block.x / block.y);
      if (cooperative) {
        b.states[i] = t;
      } else {
        current = t;
        thunk(closure);
      }
    }
    if (cooperative) {
      // Reset even when the fibers' stacks fail to allocate (bad_alloc, raised as MemoryError):
      // a stale `active` would send a later plain launch's __syncthreads to a dead block.
      struct Activate {
        explicit Activate(Block* blk) { active = blk; }
        ~Activate() { active = nullptr; }
      } activate(&b);
      run_block_cooperatively(b, nthreads);
      if (b.error) std::rethrow_exception(b.error);
    }
  }
}

void set_reverse_order(bool reverse) { reverse_order = reverse; }

}  // namespace fastconv::emu
