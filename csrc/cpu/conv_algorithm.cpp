// The global conv algorithm setting and the per-layer query. conv2d.cpp asks, in order:
// depthwise? strided_pointwise_shape (its forward and weight pass: "direct")?
// strided_pointwise_wide_shape (forward and backward data: "direct")? direct_eligible?
// use_winograd? else im2col; the query gives the same answer.
#include "cpu/conv_algorithm.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "cpu/direct_conv.h"
#include "cpu/strided_pointwise.h"
#include "cpu/winograd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {
std::atomic<int> g_algo{(int)detail::Algo::Auto};
constexpr const char* kAlgoNames[] = {"auto", "im2col", "winograd", "direct"};
}  // namespace

detail::Algo detail::algorithm_setting() { return (detail::Algo)g_algo.load(); }

void set_conv_algorithm(const std::string& name) {
  for (int i = 0; i < 4; ++i)
    if (name == kAlgoNames[i]) {
      g_algo = i;
      return;
    }
  throw std::invalid_argument("set_conv_algorithm: name must be one of 'auto', 'im2col', "
                              "'winograd', 'direct', got '" + name + "'");
}

std::string get_conv_algorithm() { return kAlgoNames[g_algo.load()]; }

std::string conv_algorithm(const ConvGeometry& g, ConvPass pass) {
  if (g.is_depthwise()) return "depthwise";
  if (detail::strided_pointwise_shape(g, pass)) return "direct";
  if (detail::strided_pointwise_wide_shape(g, pass)) return "direct";
  if (detail::direct_eligible(g, pass)) return "direct";
  return detail::use_winograd(g, pass) ? "winograd" : "im2col";
}

}  // namespace fastconv::cpu
