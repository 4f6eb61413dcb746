// Bindings of the dense kernels: dense_forward, dense_backward.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

py::array_t<float> dense_forward(py::handle x_, py::handle w_, py::handle b_, py::handle act_) {
  const Activation act = parse_activation(act_);
  auto x = require_f32(x_, "x", 2, "(N, K)");
  auto w = require_f32(w_, "w", 2, "(K, M)");
  const int64_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
  if (w.shape(0) != k)
    throw py::value_error("w must have shape (K, M) with K = x.shape[1] = " + std::to_string(k) +
                          ", got w " + shape_str(w) + " for x " + shape_str(x));
  py::array_t<float> b_keep;
  const float* b = optional_vec_f32(b_, "b", m, b_keep);
  auto y = empty_f32({n, m});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::dense_forward(n, k, m, x.data(), w.data(), b, yp);
    // the activation while y is in cache, one call instead of two (a Python call costs
    // more than a small layer's activation)
    cpu::activation_inplace_parallel(n * m, yp, act);
  }
  return y;
}

py::tuple dense_backward(py::handle dy_, py::handle x_, py::handle w_) {
  auto dy = require_f32(dy_, "dy", 2, "(N, M)");
  auto x = require_f32(x_, "x", 2, "(N, K)");
  auto w = require_f32(w_, "w", 2, "(K, M)");
  const int64_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
  if (w.shape(0) != k)
    throw py::value_error("w must have shape (K, M) with K = x.shape[1] = " + std::to_string(k) +
                          ", got w " + shape_str(w) + " for x " + shape_str(x));
  require_shape(dy, "dy", {n, m});
  auto dx = empty_f32({n, k});
  auto dw = empty_f32({k, m});
  auto db = empty_f32({m});
  float *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::dense_backward(n, k, m, dy.data(), x.data(), w.data(), dxp, dwp, dbp);
  }
  return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("activation") = "linear",
        "y (N, M) = activation(x (N, K) @ w (K, M) + b (M,)) (b may be None); float32, "
        "C-contiguous; activation in 'linear' | 'relu' | 'sigmoid' | 'tanh' | 'relu6'.");
  m.def("dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        "(dx (N, K), dw (K, M), db (M,)) for y = x @ w + b.");
}

}  // namespace fastconv::bind
