// The conv algorithm setting (conv_algorithm.cpp), shared by the dispatch in conv2d.cpp and
// the eligibility rules of winograd.cpp and direct_conv.cpp.
#pragma once

namespace fastconv::cpu::detail {

// "auto": each conv takes the kernel measured fastest for its geometry; "im2col": always the
// im2col + GEMM path; "winograd": Winograd wherever it applies; "direct": the direct kernel for
// every groups == 1 conv. Depthwise convs always run the depthwise kernel.
enum class Algo { Auto, Im2col, Winograd, Direct };
Algo algorithm_setting();

}  // namespace fastconv::cpu::detail
