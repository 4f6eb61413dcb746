// Bindings of the conv kernels: conv2d_forward, conv2d_backward_data, conv2d_backward_weights.
// Every argument is checked here (array_check.h, geometry.h) before the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

ConvGeometry geometry(const std::array<int64_t, 4>& xs, const std::array<int64_t, 4>& ws,
                      const Window2d& win, int64_t groups) {
  return make_conv_geometry(xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[2], ws[3], win, groups);
}

std::array<int64_t, 4> shape4(const py::array& a) {
  return {(int64_t)a.shape(0), (int64_t)a.shape(1), (int64_t)a.shape(2), (int64_t)a.shape(3)};
}

constexpr const char* kX = "(N, H, W, C)";
constexpr const char* kW = "(KH, KW, Cin/groups, Cout)";
constexpr const char* kY = "(N, OH, OW, Cout)";

py::array_t<float> conv2d_forward(py::handle x_, py::handle w_, py::handle b_, py::handle strides,
                                  py::handle pads, py::handle dilation, int64_t groups,
                                  py::handle activation, py::handle residual_, py::handle prepared_) {
  const Activation act = parse_activation(activation);
  auto x = require_f32(x_, "x", 4, kX);
  auto w = require_f32(w_, "w", 4, kW);
  const ConvGeometry g = geometry(shape4(x), shape4(w), make_window(strides, pads, dilation), groups);
  py::array_t<float> b_keep;
  const float* b = optional_vec_f32(b_, "b", g.oc, b_keep);
  py::array_t<float> residual;
  if (!residual_.is_none()) {
    residual = require_f32(residual_, "residual", 4, kY);
    require_shape(residual, "residual", {g.n, g.oh, g.ow, g.oc});
  }
  py::array_t<float> prepared;
  if (!prepared_.is_none()) {
    prepared = require_f32(prepared_, "prepared", 1, "(conv2d_prepare's size,)");
    const int64_t want = cpu::conv2d_prepared_floats(g);
    if (want == 0 || prepared.shape(0) != want)
      throw py::value_error("conv2d_forward: prepared has " + std::to_string(prepared.shape(0)) +
                            " values, this geometry's prepared weights have " + std::to_string(want) +
                            " (pass what conv2d_prepare returned for the same w and geometry)");
  }
  auto y = empty_f32({g.n, g.oh, g.ow, g.oc});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_forward(g, x.data(), w.data(), b, yp, act, residual_.is_none() ? nullptr : residual.data(),
                        prepared_.is_none() ? nullptr : prepared.data());
  }
  return y;
}

// The prepared form of w for forward calls on this geometry, or None when the forward pass
// would not use one now.
py::object conv2d_prepare(py::handle w_, py::handle x_shape, py::handle strides, py::handle pads,
                          py::handle dilation, int64_t groups) {
  auto w = require_f32(w_, "w", 4, kW);
  const auto xs = int_tuple<4>(x_shape, "x_shape", kX);
  const ConvGeometry g = geometry(xs, shape4(w), make_window(strides, pads, dilation), groups);
  const int64_t floats = cpu::conv2d_prepared_floats(g);
  if (floats == 0 || !cpu::conv2d_prepared_pays(g)) return py::none();
  auto out = empty_f32({floats});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_prepare(g, w.data(), op);
  }
  return std::move(out);
}

// Which prepared form conv2d_prepare gives for this geometry: "winograd", "packed" or None.
py::object conv2d_prepared_form(py::handle w_shape, py::handle x_shape, py::handle strides,
                                py::handle pads, py::handle dilation, int64_t groups) {
  const auto xs = int_tuple<4>(x_shape, "x_shape", kX);
  const auto ws = int_tuple<4>(w_shape, "w_shape", kW);
  const ConvGeometry g = geometry(xs, ws, make_window(strides, pads, dilation), groups);
  const std::string form = cpu::conv2d_prepared_form(g);
  return form.empty() ? py::none() : py::object(py::str(form));
}

py::array_t<float> conv2d_backward_data(py::handle dy_, py::handle w_, py::handle x_shape,
                                        py::handle strides, py::handle pads, py::handle dilation,
                                        int64_t groups) {
  auto w = require_f32(w_, "w", 4, kW);
  const auto xs = int_tuple<4>(x_shape, "x_shape", kX);
  const ConvGeometry g = geometry(xs, shape4(w), make_window(strides, pads, dilation), groups);
  auto dy = require_f32(dy_, "dy", 4, kY);
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.oc});
  auto dx = empty_f32({g.n, g.h, g.w, g.c});
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_data(g, dy.data(), w.data(), dxp);
  }
  return dx;
}

py::tuple conv2d_backward_weights(py::handle dy_, py::handle x_, py::handle w_shape,
                                  py::handle strides, py::handle pads, py::handle dilation,
                                  int64_t groups, bool with_bias) {
  auto x = require_f32(x_, "x", 4, kX);
  const auto ws = int_tuple<4>(w_shape, "w_shape", kW);
  const ConvGeometry g = geometry(shape4(x), ws, make_window(strides, pads, dilation), groups);
  auto dy = require_f32(dy_, "dy", 4, kY);
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.oc});
  auto dw = empty_f32({ws[0], ws[1], ws[2], ws[3]});
  py::object db_obj = py::none();
  float* dbp = nullptr;
  if (with_bias) {
    auto db = empty_f32({g.oc});
    dbp = db.mutable_data();
    db_obj = db;
  }
  float* dwp = dw.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_weights(g, dy.data(), x.data(), dwp, dbp);
  }
  return py::make_tuple(dw, db_obj);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("strides"), py::arg("pads"), py::arg("dilation"), py::arg("groups"),
        py::arg("activation") = "linear", py::arg("residual") = py::none(), py::arg("prepared") = py::none(),
        "y = activation(conv2d(x, w) + b + residual). x (N, H, W, C) float32, w (KH, KW, C/groups, Cout), "
        "b (Cout,) or None, strides (sh, sw), pads (top, bottom, left, right), dilation (dh, dw), "
        "activation 'linear' | 'relu' | 'sigmoid' | 'tanh' | 'relu6', residual (N, OH, OW, Cout) or None "
        "(a residual block's shortcut, added before the activation), prepared: conv2d_prepare's result "
        "for this w and geometry, or None.");
  m.def("conv2d_prepare", &conv2d_prepare, py::arg("w"), py::arg("x_shape"), py::arg("strides"),
        py::arg("pads"), py::arg("dilation"), py::arg("groups"),
        "w prepared for repeated conv2d_forward calls on inputs of x_shape (the Winograd filter transform "
        "of a 3x3 stride-1 conv where Winograd pays, else an ungrouped conv's GEMM-packed weights), a 1-D "
        "float32 array to pass as conv2d_forward's `prepared`; None when "
        "the forward pass would not use one (under the current algorithm setting and threads).");
  m.def("conv2d_prepared_form", &conv2d_prepared_form, py::arg("w_shape"), py::arg("x_shape"),
        py::arg("strides"), py::arg("pads"), py::arg("dilation"), py::arg("groups"),
        "'winograd' or 'packed': the form conv2d_prepare gives for this geometry (by the geometry alone), "
        "or None where it has none. Two geometries of one conv with prepared arrays of equal size may "
        "still hold different forms.");
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("dy"), py::arg("w"),
        py::arg("x_shape"), py::arg("strides"), py::arg("pads"), py::arg("dilation"),
        py::arg("groups"), "dx (x_shape) = gradient of conv2d_forward with respect to x.");
  m.def("conv2d_backward_weights", &conv2d_backward_weights, py::arg("dy"), py::arg("x"),
        py::arg("w_shape"), py::arg("strides"), py::arg("pads"), py::arg("dilation"),
        py::arg("groups"), py::arg("with_bias"),
        "(dw (w_shape), db (Cout,) or None) = gradients of conv2d_forward with respect to w, b.");
}

}  // namespace fastconv::bind
