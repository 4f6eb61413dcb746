// Join-free work sharing (see item_team.h): why and how.
//
// A batch-1 layer is 20-1000 us of work. Split by an OpenMP region, it waits at the region's
// start for the worker to wake (its vCPU may have halted: tens of us) and at its end for the
// worker to leave the barrier; on a shared machine, where the worker often has no CPU, a
// 70 us 1x1 conv took 0.6-0.8 ms at 2 threads (ResNet-18 CIFAR b1, 2-core Zen 4 at load 8,
// benchmarks/RESULTS.md). Here the caller publishes the task and starts on the items at
// once; a helper that is awake claims items from the same counter. The caller's only wait is
// for items a helper has claimed and not finished, which a helper claims only while running.
//
// Helpers spin briefly (kSpin) after each task, because the next layer's task usually
// follows within the Python between two plan steps, then sleep on a futex; the caller pays
// a wake-up (a system call) only when one sleeps.
//
// Lifetime of a task (it lives on the caller's stack): a helper announces the task it is
// about to touch in its hazard slot, then re-reads `current`; the caller clears `current`
// when no item is left and waits until no hazard slot names its task. Both sides use
// sequentially consistent operations, so either the helper sees `current` cleared and backs
// off without touching the task, or the caller sees the hazard and waits.
#include "cpu/item_team.h"

#include <omp.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <climits>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

constexpr int kMaxHelpers = 63;
// Spin before sleeping. ResNet-18 CIFAR b1 at 2 threads, sum of step times (load 6): 0 us
// 20.0 / 22.6 ms, 100 us 19.1 / 19.5, 1000 us 24.9 / 27.0 (two rounds): a long spin takes
// CPU from the caller on a busy machine.
constexpr auto kSpin = std::chrono::microseconds(100);

struct Task {
  ItemFn fn;
  void* ctx;
  int64_t count;
  int slots;  // participants allowed: helpers with index + 1 >= slots stay out
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::exception_ptr error;

  // Claims and runs items until none is left (or one failed).
  void work(int slot) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count || failed.load(std::memory_order_relaxed)) return;
      try {
        fn(ctx, i, slot);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        failed.store(true);
      }
    }
  }
};

struct Team {
  std::atomic<Task*> current{nullptr};
  std::atomic<uint32_t> generation{0};  // + 1 per published task (a futex word)
  std::atomic<Task*> hazard[kMaxHelpers] = {};
  std::atomic<int> sleepers{0};
  std::atomic<int64_t> helper_items{0};  // test hook
  std::mutex mu;                         // guards creating helpers
  std::atomic<int> started{0};
  std::atomic<pid_t> owner{0};  // the process whose helpers these are
  std::mutex call_mu;           // one task at a time (callers from several Python threads)
};

// Never destroyed: detached helpers still wait on its futex word at process exit.
Team& team() {
  static Team* t = new Team;
  return *t;
}

// No mutex between the caller and a helper: a helper preempted while holding one (right
// after a condition variable's wake-up, say) would stall the caller's next task.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// seen: the generation before the task its creator is about to publish, so it joins that one.
void helper_main(Team* tm, int index, uint32_t seen) {
  for (;;) {
    // Wait for a new task: spin kSpin, then sleep.
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (unsigned n = 1; tm->generation.load() == seen; ++n) {
      cpu_relax();
      if (n % 64 == 0 && std::chrono::steady_clock::now() > until) {
        // The kernel sleeps only while the word still equals `seen`, so a task published
        // after the check above wakes it (the caller reads sleepers after publishing).
        tm->sleepers.fetch_add(1);
        while (tm->generation.load() == seen) futex_wait(&tm->generation, seen);
        tm->sleepers.fetch_sub(1);
        break;
      }
    }
    seen = tm->generation.load();
    Task* t = tm->current.load();
    if (t == nullptr) continue;
    tm->hazard[index].store(t);
    if (tm->current.load() == t && index + 1 < t->slots) {
      const int64_t before = t->next.load(std::memory_order_relaxed);
      t->work(index + 1);
      // Items this helper ran, roughly (a test only checks > 0): none when it came too late.
      if (before < t->count) tm->helper_items.fetch_add(1, std::memory_order_relaxed);
    }
    tm->hazard[index].store(nullptr);
  }
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

}  // namespace

int run_items_slots() {
  if (omp_in_parallel()) return 1;
  const pid_t owner = team().owner.load();
  if (owner != 0 && owner != getpid()) return 1;  // a fork child: no helpers here
  return std::max(1, std::min({get_num_threads(), usable_cpus(), kMaxHelpers + 1}));
}

bool item_team_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("FASTCONV_ITEM_TEAM");
    if (v == nullptr || std::string(v) == "1") return true;
    if (std::string(v) == "0") return false;
    throw std::invalid_argument("FASTCONV_ITEM_TEAM must be 0 or 1, got '" + std::string(v) + "'");
  }();
  return enabled;
}

void run_items_raw(int64_t count, ItemFn fn, void* ctx) {
  if (count <= 0) return;
  Task task;
  const int slots = run_items_slots();
  task.fn = fn, task.ctx = ctx, task.count = count, task.slots = slots;
  if (slots == 1 || count == 1) {
    task.work(0);
    if (task.error) std::rethrow_exception(task.error);
    return;
  }
  Team& tm = team();
  std::unique_lock<std::mutex> call(tm.call_mu, std::try_to_lock);
  if (!call.owns_lock()) {  // another thread's task is running: do this one alone
    task.work(0);
    if (task.error) std::rethrow_exception(task.error);
    return;
  }
  const int helpers = slots - 1;
  // _threads_used (parallel.h): the team this task was offered to (helpers may not join).
  if (slots > g_team_high_water.load(std::memory_order_relaxed)) g_team_high_water.store(slots);
  if (tm.started.load() < helpers) {
    std::lock_guard<std::mutex> lock(tm.mu);
    tm.owner.store(getpid());
    try {
      for (int i = tm.started.load(); i < helpers; tm.started.store(++i))
        std::thread(helper_main, &tm, i, tm.generation.load()).detach();
    } catch (const std::system_error&) {  // no thread: the caller does the items alone
    }
  }
  tm.current.store(&task);
  tm.generation.fetch_add(1);
  if (tm.sleepers.load() > 0) futex_wake_all(&tm.generation);
  task.work(0);
  tm.current.store(nullptr);
  for (int i = 0, n = tm.started.load(); i < n; ++i)
    while (tm.hazard[i].load() == &task) cpu_relax();
  if (task.error) std::rethrow_exception(task.error);
}

int64_t take_helper_items() { return team().helper_items.exchange(0); }

std::vector<int> item_team_selftest(int64_t count, int64_t item_us, int64_t throw_item) {
  std::vector<int> slot_of((size_t)count, -1), runs((size_t)count, 0);
  run_items(count, [&](int64_t i, int slot) {
    if (i == throw_item) throw std::invalid_argument("item_team_selftest: item " + std::to_string(i));
    slot_of[(size_t)i] = slot;
    runs[(size_t)i] += 1;  // each item is claimed once: no other thread writes this element
    // Sleeping (not spinning) leaves the CPU to a helper on a busy machine too.
    std::this_thread::sleep_for(std::chrono::microseconds(item_us));
  });
  for (int64_t i = 0; i < count; ++i)
    if (runs[(size_t)i] != 1) slot_of[(size_t)i] = -1 - runs[(size_t)i];  // -1 never ran, -3 twice
  return slot_of;
}

}  // namespace fastconv::cpu
