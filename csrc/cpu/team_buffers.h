// Bounded per-call buffers without a heap allocation on the hot path (direct_conv.cpp).
//
// A batch-1 forward pass of a few-channel conv is 5-50 us of work; a std::vector for its tap
// list (grown by push_back: several reallocations) and one for each thread's packed input
// rows are a malloc/free pair or more apiece on every call, and a free of a block above
// glibc's mmap threshold gives the pages back to the kernel, to be faulted in again next
// call. Here:
//   InlineVec<T, N>: up to N elements in the object (on the caller's stack), a heap vector
//     only beyond that (a kernel larger than any network uses).
//   pack_buffer(floats): a thread's packing buffer, reused from call to call while it holds
//     at most kPackBufferFloats floats (256 KiB a thread at most stays allocated: bounded),
//     a fresh vector held by the caller's `spill` above that.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace fastconv::cpu::detail {

template <typename T, size_t N>
class InlineVec {
 public:
  void push_back(const T& v) {
    if (heap_.empty() && size_ < N) {
      inline_[size_++] = v;
      return;
    }
    if (heap_.empty()) heap_.assign(inline_.begin(), inline_.begin() + size_);  // may throw: before any region
    heap_.push_back(v);
    ++size_;
  }
  const T* data() const { return heap_.empty() ? inline_.data() : heap_.data(); }
  size_t size() const { return size_; }

 private:
  std::array<T, N> inline_;
  std::vector<T> heap_;
  size_t size_ = 0;
};

constexpr int64_t kPackBufferFloats = 1 << 16;

// At least `floats` floats: the thread's reusable buffer when floats <= kPackBufferFloats,
// else spill resized (may throw std::bad_alloc: call it inside ExceptionCaptor::run). The
// contents are unspecified. One user at a time per thread: kernels that do not nest.
inline float* pack_buffer(int64_t floats, std::vector<float>& spill) {
  if (floats <= kPackBufferFloats) {
    thread_local std::vector<float> reused;
    if ((int64_t)reused.size() < floats) reused.resize((size_t)kPackBufferFloats);
    return reused.data();
  }
  spill.resize((size_t)floats);
  return spill.data();
}

}  // namespace fastconv::cpu::detail
