// A cache of freed kernel outputs, reused by the next output of the same byte size.
//
// Why: a model's forward (a predict, a training step) allocates the same sequence of output
// sizes on every call. Served by malloc, the largest blocks do not always fit the holes the
// previous call left, so the heap grows again and the new pages fault in (zeroed) on first
// touch: MobileNet b64 predict on the 2-core EPYC faulted 196 MiB (50k pages) on some calls,
// 1.04 s against 0.91 s for calls without faults. With exact-size reuse every output of a
// repeated call lands on pages that are already mapped.
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

  // A 64-byte aligned block of at least `bytes`: a cached one of that size when there is
  // one, else a fresh one. Its size is kept in the 64 bytes before it, for give().
  void* take(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    void* base = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = by_size_.find(bytes);
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
