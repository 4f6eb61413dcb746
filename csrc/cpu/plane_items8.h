// The work items of the avx2 plane kernels of 3x3 stride-1 'same' convs with few channels
// (few_channel_fwd8.cpp, few_channel_weights8.cpp). Each item is one flat run of rows of
// P = W + 2 floats in every channel plane: whole small images, one zero row between two (which
// the padding wants anyway), or a band of rows of one image; an item's input and output
// planes fit `item_floats` floats.
#pragma once
#include <algorithm>
#include <cstdint>

namespace fastconv::cpu::detail {

// `images` whole images from image n0, or rows [oy0, oy0 + lines) of image n0.
struct PlaneItem {
  int64_t n0, images, oy0, lines;
  int64_t rows() const { return images * (lines + 1) - 1; }  // output rows, zero rows between images
};

class PlaneItems {
 public:
  // n images of h rows of p floats each, c channels.
  PlaneItems(int64_t n, int64_t h, int64_t p, int c, int64_t item_floats) : n_(n), h_(h) {
    const int64_t most = std::max<int64_t>(1, (item_floats / c - 2 * p) / (2 * p));  // output rows an item
    per_item_ = std::max<int64_t>(1, (most + 1) / (h + 1));
    band_ = std::min(h, most);
    per_image_ = (h + band_ - 1) / band_;
    whole_ = per_item_ > 1 || band_ == h;
    count = whole_ ? (n + per_item_ - 1) / per_item_ : n * per_image_;
    rows_max = whole_ ? per_item_ * (h + 1) - 1 : band_;
  }

  PlaneItem operator[](int64_t i) const {
    if (whole_) return {i * per_item_, std::min(per_item_, n_ - i * per_item_), 0, h_};
    const int64_t oy0 = (i % per_image_) * band_;
    return {i / per_image_, 1, oy0, std::min(h_, oy0 + band_) - oy0};
  }

  int64_t count = 0, rows_max = 0;

 private:
  int64_t n_, h_, per_item_ = 1, band_ = 1, per_image_ = 1;
  bool whole_ = true;
};

}  // namespace fastconv::cpu::detail
