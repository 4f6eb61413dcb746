// Bias + activation element math shared by the CUDA kernels (csrc/cuda/activation.cu) and
// the CPU test hook. The derivative is taken from the OUTPUT y, as in the CPU kernels.
#pragma once
#include <math.h>

#include "common/hd.h"
#include "common/nan_math.h"

namespace fastconv {

// Activation codes as passed across the binding (the order of fastconv::Activation).
enum ActCode : int { kActLinear = 0, kActRelu = 1, kActSigmoid = 2, kActTanh = 3 };

FC_HD float act_apply(int act, float z) {
  switch (act) {
    case kActRelu: return relu_nan(z);  // NaN stays NaN (nan_math.h)
    // exp(-z) overflows to inf for very negative z, giving 1/inf = 0: the right limit.
    case kActSigmoid: return 1.0f / (1.0f + expf(-z));
    case kActTanh: return tanhf(z);
    default: return z;
  }
}

// Multiplied into dy (dz = dy * grad), so a NaN or inf in dy still gives NaN where the relu is
// off (TensorFlow's ReluGrad: dy * (y > 0)); relu'(NaN) = 0 as there.
FC_HD float act_grad_from_output(int act, float y) {
  switch (act) {
    case kActRelu: return y > 0.f ? 1.f : 0.f;
    case kActSigmoid: return y * (1.f - y);
    case kActTanh: return 1.f - y * y;
    default: return 1.f;
  }
}

}  // namespace fastconv
