// Shape validation and output-size arithmetic for windowed ops (conv, pool), shared by the
// CPU kernels, the CUDA kernels and the bindings, so no backend repeats the checks.
//
// Conventions: activations NHWC, conv weights HWIO (kh, kw, cin/groups, cout), explicit
// four-sided padding (top, bottom, left, right). Python turns 'valid'/'same' into pads with
// TensorFlow's rule; the kernels only ever see explicit pads.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/hd.h"

namespace fastconv {

// One spatial axis of a windowed op.
FC_HD int64_t window_output_size(int64_t in, int64_t k, int64_t stride, int64_t dilation,
                                 int64_t pad_before, int64_t pad_after) {
  const int64_t span = (k - 1) * dilation + 1;
  const int64_t padded = in + pad_before + pad_after;
  return padded < span ? 0 : (padded - span) / stride + 1;
}

struct Window2d {
  int64_t kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t dh = 1, dw = 1;
  int64_t pt = 0, pb = 0, pl = 0, pr = 0;
};

// Full geometry of a (grouped) 2-D convolution. groups == c && cin_g == 1 is depthwise.
struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input
  int64_t oh = 0, ow = 0, oc = 0;      // output
  int64_t groups = 1, cin_g = 0, cout_g = 0;
  Window2d win;
  bool is_depthwise() const { return groups == c && cin_g == 1 && groups > 1; }
  bool is_pointwise() const {
    return win.kh == 1 && win.kw == 1 && win.sh == 1 && win.sw == 1 && win.pt == 0 &&
           win.pb == 0 && win.pl == 0 && win.pr == 0;
  }
  int64_t input_size() const { return n * h * w * c; }
  int64_t output_size() const { return n * oh * ow * oc; }
  int64_t weight_size() const { return win.kh * win.kw * cin_g * oc; }
};

// Error messages are built with std::to_string and +, not std::ostringstream: streams format
// numbers through the locale's num_put facet, and on the H200 machine (Ubuntu 24.04, GCC 13)
// every message streamed this way segfaulted inside std::ostream::_M_insert<long> (found by
// the first real-GPU run, 2026-12-04), in _C and _cuda alike. to_string needs no locale.
inline std::string num_str(int64_t v) { return std::to_string(v); }

inline std::string dims_str(std::initializer_list<int64_t> d) {
  std::string s = "(";
  bool first = true;
  for (int64_t v : d) {
    s += (first ? "" : ", ") + num_str(v);
    first = false;
  }
  return s + ")";
}

// Throws std::invalid_argument (ValueError in Python) naming every shape involved.
inline void check_window(const Window2d& w, int64_t h, int64_t wd, const char* what) {
  const std::string w_ = what;
  std::string msg;
  if (w.kh < 1 || w.kw < 1) msg = w_ + ": window size must be >= 1, got " + dims_str({w.kh, w.kw});
  else if (w.sh < 1 || w.sw < 1) msg = w_ + ": strides must be >= 1, got " + dims_str({w.sh, w.sw});
  else if (w.dh < 1 || w.dw < 1) msg = w_ + ": dilation must be >= 1, got " + dims_str({w.dh, w.dw});
  else if (w.pt < 0 || w.pb < 0 || w.pl < 0 || w.pr < 0)
    msg = w_ + ": pads must be >= 0, got (top, bottom, left, right) = " + dims_str({w.pt, w.pb, w.pl, w.pr});
  else {
    const int64_t span_h = (w.kh - 1) * w.dh + 1, span_w = (w.kw - 1) * w.dw + 1;
    if (h + w.pt + w.pb < span_h || wd + w.pl + w.pr < span_w)
      msg = w_ + ": window " + dims_str({span_h, span_w}) + " (kernel " + dims_str({w.kh, w.kw}) +
            ", dilation " + dims_str({w.dh, w.dw}) + ") is larger than the padded input " +
            dims_str({h + w.pt + w.pb, wd + w.pl + w.pr}) + " (input " + dims_str({h, wd}) +
            ", pads " + dims_str({w.pt, w.pb, w.pl, w.pr}) + ")";
  }
  if (!msg.empty()) throw std::invalid_argument(msg);
}

// x: (n, h, w, c); weights: (kh, kw, cin_g, oc).
inline ConvGeometry make_conv_geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t cin_g, int64_t oc, Window2d win,
                                       int64_t groups) {
  ConvGeometry g;
  g.n = n; g.h = h; g.w = w; g.c = c; g.oc = oc; g.groups = groups; g.cin_g = cin_g;
  win.kh = kh; win.kw = kw;
  g.win = win;
  std::string msg;
  if (n < 0 || h < 1 || w < 1 || c < 1)
    msg = "conv2d: input x must be (N, H, W, C) with H, W, C >= 1, got " + dims_str({n, h, w, c});
  else if (kh < 1 || kw < 1 || cin_g < 1 || oc < 1)
    msg = "conv2d: weights must be (KH, KW, Cin/groups, Cout) with all >= 1, got " + dims_str({kh, kw, cin_g, oc});
  else if (groups < 1)
    msg = "conv2d: groups must be >= 1, got " + num_str(groups);
  else if (c % groups != 0 || oc % groups != 0)
    msg = "conv2d: groups=" + num_str(groups) + " must divide input channels " + num_str(c) +
          " and output channels " + num_str(oc);
  else if (cin_g * groups != c)
    msg = "conv2d: channel mismatch: x " + dims_str({n, h, w, c}) + " has " + num_str(c) +
          " channels but weights " + dims_str({kh, kw, cin_g, oc}) + " expect " + num_str(cin_g) +
          " per group x groups=" + num_str(groups) + " = " + num_str(cin_g * groups);
  if (!msg.empty()) throw std::invalid_argument(msg);
  check_window(win, h, w, "conv2d");
  g.cout_g = oc / groups;
  g.oh = window_output_size(h, kh, win.sh, win.dh, win.pt, win.pb);
  g.ow = window_output_size(w, kw, win.sw, win.dw, win.pl, win.pr);
  return g;
}

// Pooling geometry: x (n, h, w, c), window kh x kw, no dilation.
struct PoolGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0, oh = 0, ow = 0;
  Window2d win;
};

inline PoolGeometry make_pool_geometry(int64_t n, int64_t h, int64_t w, int64_t c, Window2d win,
                                       const char* what) {
  if (n < 0 || h < 1 || w < 1 || c < 1)
    throw std::invalid_argument(std::string(what) + ": input x must be (N, H, W, C) with H, W, C >= 1, got " +
                                dims_str({n, h, w, c}));
  win.dh = win.dw = 1;
  check_window(win, h, w, what);
  // A window made only of padding has nothing to pool: forbid pads >= window size.
  if (win.pt >= win.kh || win.pb >= win.kh || win.pl >= win.kw || win.pr >= win.kw)
    throw std::invalid_argument(std::string(what) + ": each pad must be smaller than the pool size " +
                                dims_str({win.kh, win.kw}) + ", got pads " +
                                dims_str({win.pt, win.pb, win.pl, win.pr}));
  PoolGeometry g;
  g.n = n; g.h = h; g.w = w; g.c = c; g.win = win;
  g.oh = window_output_size(h, win.kh, win.sh, 1, win.pt, win.pb);
  g.ow = window_output_size(w, win.kw, win.sw, 1, win.pl, win.pr);
  return g;
}

}  // namespace fastconv
