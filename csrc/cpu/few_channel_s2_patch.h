// 3x3 stride-2 convs with 3 or 6 channels in and out: the weight pass straight from the NHWC
// rows, masked loads of each output pixel's patch rows (few_channel_s2_patch.cpp, AVX-512);
// s2_planes_backward_weights hands C = 3 from 14 columns here first, direct_conv.cpp C = 6
// and the narrower C = 3. The forwards from the rows: C = 6 under 8 output columns
// (few_channel_s2_patch_fwd.cpp), C = 3 (few_channel_s2_patch_fwd3.cpp); s2_planes_forward
// hands them here first.
#pragma once
#include <cstdint>
#include <vector>

#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether the weight pass of this conv runs here: groups 1, Cin = Cout = 3 or 6, 3x3,
// stride 2, dilation 1, pads 0..2 at the top and left; false below AVX-512.
bool s2_patch_shape(const ConvGeometry& g);

// Same contract as conv2d_backward_weights for the shapes s2_patch_shape admits; false
// (nothing written) for any other.
bool s2_patch_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db);

// The forward for C = 6 under 8 output columns (few_channel_s2_patch_fwd.cpp), same contract
// as conv2d_forward; false (nothing written) for any other shape, a non-finite weight, or
// below AVX-512.
bool s2_patch_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                      float* y, Activation act);

// The forward for C = 3 (few_channel_s2_patch_fwd3.cpp), same contract as conv2d_forward;
// false (nothing written) for any other shape, a non-finite weight, or below AVX-512.
bool s2_patch_forward3(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act);

// The backward data pass for C = 3 and 6 when the plane grid is dy's ('same' padding): dy
// up to 15 columns (C = 3 from 5, C = 6 up to 8), or up to 4096 pixels an image with a dx
// from 4 MiB (few_channel_s2_data_flat.cpp), straight from dy's pixels; same contract as
// conv2d_backward_data for finite weights (the caller checks them); false
// (nothing written) for any other shape or below AVX-512.
bool s2_data_flat(const ConvGeometry& g, const float* dy, const float* w, float* dx);

// The row masks of the patch kernels, one entry per output column ox: mask[ox] has lane k of
// pixel ox's first `lanes` floats set where that float's column 2*ox - pl + k / c lies in the
// row (0..w-1); tail[ox] is 0x3f where the window's last column 2*ox - pl + 2 does (C = 6's
// last two floats of each patch row), else 0.
inline void s2_patch_row_masks(const ConvGeometry& g, int c, int lanes, std::vector<uint16_t>& mask,
                               std::vector<uint8_t>& tail) {
  const int64_t W = g.w, OW = g.ow, pl = g.win.pl;
  mask.assign((size_t)OW, 0);
  tail.assign((size_t)OW, 0);
  for (int64_t ox = 0; ox < OW; ++ox) {
    unsigned m = 0;
    for (int k = 0; k < lanes; ++k) {
      const int64_t col = 2 * ox - pl + k / c;
      if (col >= 0 && col < W) m |= 1u << k;
    }
    mask[(size_t)ox] = (uint16_t)m;
    const int64_t last = 2 * ox - pl + 2;
    tail[(size_t)ox] = last >= 0 && last < W ? 0x3f : 0;
  }
}

}  // namespace fastconv::cpu::detail
