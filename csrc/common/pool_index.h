// Per-element index math of 2-D pooling, shared by the CPU kernels (pool_*.cpp) and the CUDA
// twins, so both walk exactly the same windows. One axis at a time; NHWC offsets are formed
// by the caller.
//
// Output o of an axis reads padded positions [o*s - pad_before, o*s - pad_before + k). Pads
// are < k (make_pool_geometry), so every window holds at least one real cell and the
// clipped range below is never empty.
#pragma once
#include <cstdint>

#include "common/hd.h"

namespace fastconv {

struct AxisRange {
  int64_t lo, hi;  // half-open [lo, hi)
};

// Real input cells [lo, hi) read by output o: the window clipped to [0, in).
FC_HD AxisRange pool_window(int64_t o, int64_t stride, int64_t pad_before, int64_t k, int64_t in) {
  const int64_t start = o * stride - pad_before;
  const int64_t lo = start < 0 ? 0 : start;
  const int64_t end = start + k;
  return AxisRange{lo, end > in ? in : end};
}

// Outputs [lo, hi) whose window contains input cell i: the inverse of pool_window, for
// gather-style backward passes (each input sums its own contributions, no atomics).
//   o*s - pad_before <= i  <=  o*s - pad_before + k - 1
FC_HD AxisRange pool_outputs_covering(int64_t i, int64_t stride, int64_t pad_before, int64_t k,
                                      int64_t out) {
  const int64_t t = i + pad_before - k + 1;  // smallest o*s allowed
  const int64_t lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  const int64_t hi_incl = (i + pad_before) / stride;  // i + pad_before >= 0
  return AxisRange{lo, hi_incl + 1 < out ? hi_incl + 1 : out};
}

// Average pool divisor: real cells only (TensorFlow's 'same' semantics).
FC_HD float pool_inv_count(AxisRange rows, AxisRange cols) {
  return 1.0f / (float)((rows.hi - rows.lo) * (cols.hi - cols.lo));
}

}  // namespace fastconv
