// Bindings of the pooling kernels. Geometry (window, strides, pads vs input) is validated by
// make_pool_geometry, shared with the CUDA twins; this file checks the arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>
#include <vector>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

std::array<int64_t, 4> x_shape_tuple(const py::handle& obj) {
  return int_tuple<4>(obj, "x_shape", "(N, H, W, C)");
}

PoolGeometry geometry(const std::array<int64_t, 4>& xs, const py::handle& pool,
                      const py::handle& strides, const py::handle& pads, const char* what) {
  const auto k = int_tuple<2>(pool, "pool", "(ph, pw)");
  const auto s = int_tuple<2>(strides, "strides", "(sh, sw)");
  const auto p = int_tuple<4>(pads, "pads", "(top, bottom, left, right)");
  Window2d win;
  win.kh = k[0]; win.kw = k[1]; win.sh = s[0]; win.sw = s[1];
  win.pt = p[0]; win.pb = p[1]; win.pl = p[2]; win.pr = p[3];
  return make_pool_geometry(xs[0], xs[1], xs[2], xs[3], win, what);
}

std::array<int64_t, 4> shape4(const py::array& a) {
  return {(int64_t)a.shape(0), (int64_t)a.shape(1), (int64_t)a.shape(2), (int64_t)a.shape(3)};
}

using PoolFwd = void (*)(const PoolGeometry&, const float*, float*);

py::array_t<float> pool_forward(const py::handle& x_obj, const py::handle& pool,
                                const py::handle& strides, const py::handle& pads,
                                const char* what, PoolFwd kernel) {
  auto x = require_f32(x_obj, "x", 4, "(N, H, W, C)");
  const PoolGeometry g = geometry(shape4(x), pool, strides, pads, what);
  auto y = empty_f32({g.n, g.oh, g.ow, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    kernel(g, x.data(), y.mutable_data());
  }
  return y;
}

py::array_t<float> max_backward(const py::handle& dy_obj, const py::handle& x_obj,
                                const py::handle& pool, const py::handle& strides,
                                const py::handle& pads) {
  auto x = require_f32(x_obj, "x", 4, "(N, H, W, C)");
  auto dy = require_f32(dy_obj, "dy", 4, "(N, OH, OW, C)");
  const PoolGeometry g = geometry(shape4(x), pool, strides, pads, "max_pool2d_backward");
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.c});
  auto dx = empty_f32({g.n, g.h, g.w, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_backward(g, dy.data(), x.data(), dx.mutable_data());
  }
  return dx;
}

// Window positions fit the uint8 argmax only up to 256 cells (ky*kw + kx <= 255).
void require_small_window(const PoolGeometry& g, const char* what) {
  if (g.win.kh * g.win.kw > 256)
    throw py::value_error(std::string(what) + ": pool must have at most 256 cells for a uint8 "
                          "argmax, got pool (" + std::to_string(g.win.kh) + ", " +
                          std::to_string(g.win.kw) + "); use max_pool2d_backward with x");
}

py::tuple max_forward_argmax(const py::handle& x_obj, const py::handle& pool,
                             const py::handle& strides, const py::handle& pads) {
  auto x = require_f32(x_obj, "x", 4, "(N, H, W, C)");
  const PoolGeometry g = geometry(shape4(x), pool, strides, pads, "max_pool2d_forward_with_argmax");
  require_small_window(g, "max_pool2d_forward_with_argmax");
  auto y = empty_f32({g.n, g.oh, g.ow, g.c});
  auto arg = empty_u8({g.n, g.oh, g.ow, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_forward_argmax(g, x.data(), y.mutable_data(), arg.mutable_data());
  }
  return py::make_tuple(y, arg);
}

py::array_t<float> max_backward_argmax(const py::handle& dy_obj, const py::handle& arg_obj,
                                       const py::handle& x_shape, const py::handle& pool,
                                       const py::handle& strides, const py::handle& pads) {
  auto dy = require_f32(dy_obj, "dy", 4, "(N, OH, OW, C)");
  auto arg = require_array<uint8_t>(arg_obj, "argmax", 4, "(N, OH, OW, C)", "uint8");
  const PoolGeometry g = geometry(x_shape_tuple(x_shape), pool, strides, pads,
                                  "max_pool2d_backward_argmax");
  require_small_window(g, "max_pool2d_backward_argmax");
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.c});
  require_shape(arg, "argmax", {g.n, g.oh, g.ow, g.c});
  auto dx = empty_f32({g.n, g.h, g.w, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_backward_argmax(g, dy.data(), arg.data(), dx.mutable_data());
  }
  return dx;
}

py::array_t<float> avg_backward(const py::handle& dy_obj, const py::handle& x_shape,
                                const py::handle& pool, const py::handle& strides,
                                const py::handle& pads) {
  auto dy = require_f32(dy_obj, "dy", 4, "(N, OH, OW, C)");
  const PoolGeometry g = geometry(x_shape_tuple(x_shape), pool, strides, pads, "avg_pool2d_backward");
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.c});
  auto dx = empty_f32({g.n, g.h, g.w, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    cpu::avg_pool2d_backward(g, dy.data(), dx.mutable_data());
  }
  return dx;
}

// dz = avg_pool2d_backward(dy) * act'(y) for the pool's input y = act(z), in one pass.
py::array_t<float> avg_backward_activation(const py::handle& dy_obj, const py::handle& y_obj,
                                           const py::handle& pool, const py::handle& strides,
                                           const py::handle& pads, const py::handle& act_obj) {
  const Activation act = parse_activation(act_obj);
  auto y = require_f32(y_obj, "y", 4, "(N, H, W, C)");
  auto dy = require_f32(dy_obj, "dy", 4, "(N, OH, OW, C)");
  const PoolGeometry g = geometry(shape4(y), pool, strides, pads, "avg_pool2d_backward_activation");
  require_shape(dy, "dy", {g.n, g.oh, g.ow, g.c});
  auto dx = empty_f32({g.n, g.h, g.w, g.c});
  if (g.n > 0) {
    py::gil_scoped_release nogil;
    cpu::avg_pool2d_backward(g, dy.data(), dx.mutable_data(), y.data(), act);
  }
  return dx;
}

void check_global_shape(const std::array<int64_t, 4>& s, const char* name) {
  if (s[0] < 0 || s[1] < 1 || s[2] < 1 || s[3] < 1)
    throw py::value_error(std::string(name) + " must be (N, H, W, C) with H, W, C >= 1, got " +
                          dims_str({s[0], s[1], s[2], s[3]}));
}

py::array_t<float> global_forward(const py::handle& x_obj) {
  auto x = require_f32(x_obj, "x", 4, "(N, H, W, C)");
  const auto s = shape4(x);
  check_global_shape(s, "x");
  auto y = empty_f32({s[0], s[3]});
  if (s[0] > 0) {
    py::gil_scoped_release nogil;
    cpu::global_avg_pool2d_forward(s[0], s[1] * s[2], s[3], x.data(), y.mutable_data());
  }
  return y;
}

py::array_t<float> global_backward(const py::handle& dy_obj, const py::handle& x_shape) {
  const auto s = x_shape_tuple(x_shape);
  check_global_shape(s, "x_shape");
  auto dy = require_f32(dy_obj, "dy", 2, "(N, C)");
  require_shape(dy, "dy", {s[0], s[3]});
  auto dx = empty_f32({s[0], s[1], s[2], s[3]});
  if (s[0] > 0) {
    py::gil_scoped_release nogil;
    cpu::global_avg_pool2d_backward(s[0], s[1] * s[2], s[3], dy.data(), dx.mutable_data());
  }
  return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](py::object x, py::object pool, py::object strides, py::object pads) {
        return pool_forward(x, pool, strides, pads, "max_pool2d_forward", &cpu::max_pool2d_forward);
      },
      py::arg("x"), py::arg("pool"), py::arg("strides"), py::arg("pads"),
      "Max pool on x (N, H, W, C); padded cells never win, ties go to the first cell in "
      "row-major window order. pads = (top, bottom, left, right), each < pool.");
  m.def("max_pool2d_backward", &max_backward, py::arg("dy"), py::arg("x"), py::arg("pool"),
        py::arg("strides"), py::arg("pads"),
        "dx of max_pool2d_forward: each dy goes to its window's winning cell of x.");
  m.def("max_pool2d_forward_with_argmax", &max_forward_argmax, py::arg("x"), py::arg("pool"),
        py::arg("strides"), py::arg("pads"),
        "(y, argmax): max_pool2d_forward plus each output's winner as its position ky*kw + kx "
        "in the padded window (uint8, same shape as y). Needs ph*pw <= 256.");
  m.def("max_pool2d_backward_argmax", &max_backward_argmax, py::arg("dy"), py::arg("argmax"),
        py::arg("x_shape"), py::arg("pool"), py::arg("strides"), py::arg("pads"),
        "dx of max_pool2d_forward from the saved argmax (x is not needed).");
  m.def(
      "avg_pool2d_forward",
      [](py::object x, py::object pool, py::object strides, py::object pads) {
        return pool_forward(x, pool, strides, pads, "avg_pool2d_forward", &cpu::avg_pool2d_forward);
      },
      py::arg("x"), py::arg("pool"), py::arg("strides"), py::arg("pads"),
      "Average pool on x (N, H, W, C), dividing by the count of real (unpadded) cells.");
  m.def("avg_pool2d_backward", &avg_backward, py::arg("dy"), py::arg("x_shape"), py::arg("pool"),
        py::arg("strides"), py::arg("pads"), "dx of avg_pool2d_forward for an input of x_shape.");
  m.def("avg_pool2d_backward_activation", &avg_backward_activation, py::arg("dy"), py::arg("y"),
        py::arg("pool"), py::arg("strides"), py::arg("pads"), py::arg("activation"),
        "dz = avg_pool2d_backward(dy, y.shape, ...) * activation'(z) for the pool's input "
        "y = activation(z), from y ('linear' | 'relu' | 'sigmoid' | 'tanh' | 'relu6'), in one pass.");
  m.def("global_avg_pool2d_forward", &global_forward, py::arg("x"),
        "Mean over H and W: (N, H, W, C) -> (N, C).");
  m.def("global_avg_pool2d_backward", &global_backward, py::arg("dy"), py::arg("x_shape"),
        "dx of global_avg_pool2d_forward: dy / (H*W) broadcast over H and W.");
}

}  // namespace fastconv::bind
