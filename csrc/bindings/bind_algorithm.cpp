// Bindings of the conv algorithm choice: the global setting and the per-conv query.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

// {'forward': ..., 'backward_data': ..., 'backward_weights': ...} for a conv of these shapes.
py::dict conv_algorithm(py::handle x_shape, py::handle w_shape, py::handle strides,
                        py::handle pads, py::handle dilation, int64_t groups) {
  const auto xs = int_tuple<4>(x_shape, "x_shape", "(N, H, W, C)");
  const auto ws = int_tuple<4>(w_shape, "w_shape", "(KH, KW, Cin/groups, Cout)");
  const ConvGeometry g = make_conv_geometry(xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[2], ws[3],
                                            make_window(strides, pads, dilation), groups);
  py::dict out;
  out["forward"] = cpu::conv_algorithm(g, cpu::ConvPass::Forward);
  out["backward_data"] = cpu::conv_algorithm(g, cpu::ConvPass::BackwardData);
  out["backward_weights"] = cpu::conv_algorithm(g, cpu::ConvPass::BackwardWeights);
  return out;
}

}  // namespace

void bind_algorithm(py::module_& m) {
  m.def("set_conv_algorithm", &cpu::set_conv_algorithm, py::arg("name"),
        "Conv algorithm: 'auto' (Winograd where eligible and measured faster), 'im2col', or "
        "'winograd' (wherever eligible: 3x3, stride 1, dilation 1, groups 1, pads <= 2).");
  m.def("get_conv_algorithm", &cpu::get_conv_algorithm);
  m.def("conv_algorithm", &conv_algorithm, py::arg("x_shape"), py::arg("w_shape"),
        py::arg("strides"), py::arg("pads"), py::arg("dilation"), py::arg("groups"),
        "Which algorithm each pass of this conv runs with under the current settings: "
        "dict of 'winograd' | 'im2col' | 'depthwise' per pass.");
}

}  // namespace fastconv::bind
