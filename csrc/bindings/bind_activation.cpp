// Bindings of the fused bias + activation kernels; x is (..., C), viewed as (m, C).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

std::vector<int64_t> shape_of(const py::array& a, const char* name) {
  if (a.ndim() < 1)
    throw py::value_error(std::string(name) + " must be at least 1-D (..., C), got a 0-D array");
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

py::array_t<float> forward(const py::handle& x_obj, const py::handle& b_obj,
                           const py::handle& act_obj) {
  const Activation act = parse_activation(act_obj);
  auto x = require_f32(x_obj, "x", -1, "(..., C)");
  const auto shape = shape_of(x, "x");
  const int64_t c = shape.back();
  py::array_t<float> b_keep;
  const float* b = optional_vec_f32(b_obj, "b", c, b_keep);
  auto y = empty_f32(shape);
  if (x.size() > 0) {
    py::gil_scoped_release nogil;
    cpu::bias_act_forward((int64_t)x.size() / c, c, x.data(), b, act, y.mutable_data());
  }
  return y;
}

py::tuple backward(const py::handle& dy_obj, const py::handle& y_obj, const py::handle& act_obj,
                   bool with_bias) {
  const Activation act = parse_activation(act_obj);
  auto y = require_f32(y_obj, "y", -1, "(..., C)");
  const auto shape = shape_of(y, "y");
  auto dy = require_f32(dy_obj, "dy", -1, "(..., C)");
  require_shape(dy, "dy", shape);
  const int64_t c = shape.back();
  auto dz = empty_f32(shape);
  py::array_t<float> db;
  float* db_ptr = nullptr;
  if (with_bias) {
    db = empty_f32({c});
    db_ptr = db.mutable_data();
    for (int64_t j = 0; j < c; ++j) db_ptr[j] = 0.f;  // stays 0 for an empty batch
  }
  if (y.size() > 0) {
    py::gil_scoped_release nogil;
    cpu::bias_act_backward((int64_t)y.size() / c, c, dy.data(), y.data(), act,
                           dz.mutable_data(), db_ptr);
  }
  return py::make_tuple(dz, with_bias ? py::object(db) : py::object(py::none()));
}

py::array_t<float> add_forward(const py::handle& a_obj, const py::handle& b_obj,
                               const py::handle& act_obj) {
  const Activation act = parse_activation(act_obj);
  auto a = require_f32(a_obj, "a", -1, "(...)");
  auto b = require_f32(b_obj, "b", -1, "(...)");
  const std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  require_shape(b, "b", shape);
  auto y = empty_f32(shape);
  {
    py::gil_scoped_release nogil;
    cpu::add_activation((int64_t)a.size(), a.data(), b.data(), act, y.mutable_data());
  }
  return y;
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("add_act_forward", &add_forward, py::arg("a"), py::arg("b"), py::arg("activation"),
        "y = activation(a + b) elementwise, a and b of one shape (a residual join); backward is "
        "bias_act_backward on y.");
  m.def("bias_act_forward", &forward, py::arg("x"), py::arg("b"), py::arg("activation"),
        "y = activation(x + b) over the last axis; b may be None; activation in "
        "'linear' | 'relu' | 'sigmoid' | 'tanh'.");
  m.def("bias_act_backward", &backward, py::arg("dy"), py::arg("y"), py::arg("activation"),
        py::arg("with_bias"),
        "(dz, db or None): dz = dy * activation'(z) from the output y; db = dz summed over rows.");
}

}  // namespace fastconv::bind
