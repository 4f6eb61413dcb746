// A cache of freed kernel outputs, reused by a later output of half to all of their byte size.
//
// Why: a model's forward (a predict, a training step) allocates the same sequence of output
// sizes on every call. Served by malloc, the largest blocks do not always fit the holes the
// previous call left, so the heap grows again and the new pages fault in (zeroed) on first
// touch: MobileNet b64 predict on the 2-core EPYC faulted 196 MiB (50k pages) on some calls,
// 1.04 s against 0.91 s for calls without faults. With reuse every output of a repeated call
// lands on pages that are already mapped (and, picking the most recently freed block, pages
// that are still in cache: see pick()).
//
// Bounded: at most limit() bytes stay cached (default 1 GiB, set_output_pool_limit; 0 turns
// the cache off). Past it the oldest cached blocks go back to malloc. Blocks are 64-byte
// aligned (see kAlignedOutputBytes in array_check.h). Every call here runs with the GIL held
// (allocation in a binding, release in the owning capsule's destructor); the mutex guards
// the bindings that release the GIL around a kernel and drop arrays from other threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

namespace fastconv::bind {

class OutputPool {
 public:
  struct Stats {
    size_t cached_bytes, cached_blocks, hits, misses, limit;
  };

  // A 64-byte aligned block of at least `bytes`: a cached one of 1 to 2 times that size when
  // there is one (pick), else a fresh one. Its size is kept in the 64 bytes before it, for give().
  void* take(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    void* base = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = pick(bytes);
      if (it != by_size_.end()) {
        base = it->second.block;
        erase(it);
        ++hits_;
      } else {
        ++misses_;
      }
    }
    if (!base) {
      base = std::aligned_alloc(64, bytes + kHeader);
      if (!base) throw std::bad_alloc();
      *static_cast<size_t*>(base) = bytes;
    }
    return static_cast<char*>(base) + kHeader;
  }

  // Hands a block from take() back: kept for reuse while the cache stays within its limit.
  void give(void* data) {
    void* p = static_cast<char*>(data) - kHeader;
    const size_t bytes = *static_cast<size_t*>(p);
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > limit_) {
      std::free(p);
      return;
    }
    // Make room: the least recently cached blocks go first (a stale size, e.g. the last
    // partial batch of an epoch, leaves before the sizes every call uses).
    while (cached_bytes_ + bytes > limit_) evict_oldest();
    const auto it = by_size_.emplace(bytes, Entry{p, ++clock_});
    by_age_.emplace(it->second.age, it);
    cached_bytes_ += bytes;
  }

  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = bytes;
    while (cached_bytes_ > limit_) evict_oldest();
  }

  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_bytes_, by_size_.size(), hits_, misses_, limit_};
  }

 private:
  static constexpr size_t kHeader = 64;  // keeps the data on a 64-byte line
  struct Entry {
    void* block;
    uint64_t age;
  };
  using BySize = std::multimap<size_t, Entry>;

  // The most recently cached block among sizes [bytes, 2 * bytes].
  // Why the most recent: it was last touched a step ago and is still in L2/L3, where the
  // oldest of a size was last written a whole forward earlier. A kernel's first store to an
  // output line that is not in cache waits for the line's read from memory: MobileNet b1's
  // depthwise steps ran 2-3x their in-cache time on the oldest blocks (RESULTS.md, helper Z2,
  // stop 35). Why up to twice the size: MobileNet's and ResNet's activations halve and double
  // in size from step to step, so the block the previous step just read is often of another
  // size (a stride-2 depthwise output, 0.8 MB, after a 1.6 MB pointwise output); the most
  // recent block of the exact size gained about half as much (RESULTS.md, helper S, stop 36).
  // A block serves at most twice its request, so a kept output pins at most twice its bytes;
  // a call sequence that repeats still settles on a fixed set of blocks after its first
  // repeat (MobileNet b1 predict: 12 blocks, 12.5 MB, against 17 and 18.9 MB exact).
  BySize::iterator pick(size_t bytes) {
    const size_t most = bytes <= SIZE_MAX / 2 ? 2 * bytes : SIZE_MAX;
    auto best = by_size_.end();
    for (auto it = by_size_.lower_bound(bytes); it != by_size_.end() && it->first <= most; ++it)
      if (best == by_size_.end() || it->second.age > best->second.age) best = it;
    return best;
  }

  void erase(BySize::iterator it) {
    by_age_.erase(it->second.age);
    cached_bytes_ -= it->first;
    by_size_.erase(it);
  }
  void evict_oldest() {
    const auto oldest = by_age_.begin()->second;
    std::free(oldest->second.block);
    erase(oldest);
  }

  std::mutex mutex_;
  BySize by_size_;
  std::map<uint64_t, BySize::iterator> by_age_;
  size_t cached_bytes_ = 0, hits_ = 0, misses_ = 0;
  size_t limit_ = size_t(1) << 30;
  uint64_t clock_ = 0;
};

// One pool per process (an inline function's static is shared by every binding file).
inline OutputPool& output_pool() {
  static OutputPool* pool = new OutputPool();  // never destroyed: capsules may outlive statics
  return *pool;
}

}  // namespace fastconv::bind
