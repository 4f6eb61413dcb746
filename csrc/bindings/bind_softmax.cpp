// Bindings of softmax and softmax cross-entropy on (N, C) rows. Labels are range-checked
// here, before the kernel, so a bad label is a ValueError and never an out-of-bounds read.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

py::array_t<float> rows(const py::handle& obj, const char* name) {
  auto a = require_f32(obj, name, 2, "(N, C)");
  if (a.shape(1) < 1)
    throw py::value_error(std::string(name) + " must have C >= 1 classes, got shape " + shape_str(a));
  return a;
}

py::array_t<int64_t> labels_for(const py::handle& obj, int64_t n, int64_t c) {
  auto labels = require_i64(obj, "labels", 1, "(N,)");
  require_shape(labels, "labels", {n});
  const int64_t* l = labels.data();
  for (int64_t i = 0; i < n; ++i)
    if (l[i] < 0 || l[i] >= c)
      throw py::value_error("labels must be in [0, " + std::to_string(c) + ") for " +
                            std::to_string(c) + " classes, got labels[" + std::to_string(i) +
                            "] = " + std::to_string(l[i]));
  return labels;
}

py::array_t<float> softmax_fwd(const py::handle& x_obj) {
  auto x = rows(x_obj, "x");
  const int64_t n = x.shape(0), c = x.shape(1);
  auto y = empty_f32({n, c});
  if (n > 0) {
    py::gil_scoped_release nogil;
    cpu::softmax_forward(n, c, x.data(), y.mutable_data());
  }
  return y;
}

py::array_t<float> softmax_bwd(const py::handle& dy_obj, const py::handle& y_obj) {
  auto y = rows(y_obj, "y");
  const int64_t n = y.shape(0), c = y.shape(1);
  auto dy = require_f32(dy_obj, "dy", 2, "(N, C)");
  require_shape(dy, "dy", {n, c});
  auto dx = empty_f32({n, c});
  if (n > 0) {
    py::gil_scoped_release nogil;
    cpu::softmax_backward(n, c, dy.data(), y.data(), dx.mutable_data());
  }
  return dx;
}

py::tuple ce_fwd(const py::handle& logits_obj, const py::handle& labels_obj) {
  auto logits = rows(logits_obj, "logits");
  const int64_t n = logits.shape(0), c = logits.shape(1);
  auto labels = labels_for(labels_obj, n, c);
  auto loss = empty_f32({n});
  auto probs = empty_f32({n, c});
  if (n > 0) {
    py::gil_scoped_release nogil;
    cpu::softmax_cross_entropy_forward(n, c, logits.data(), labels.data(), loss.mutable_data(),
                                       probs.mutable_data());
  }
  return py::make_tuple(loss, probs);
}

py::array_t<float> ce_bwd(const py::handle& probs_obj, const py::handle& labels_obj,
                          const py::handle& dloss_obj) {
  auto probs = rows(probs_obj, "probs");
  const int64_t n = probs.shape(0), c = probs.shape(1);
  auto labels = labels_for(labels_obj, n, c);
  auto dloss = require_f32(dloss_obj, "dloss", 1, "(N,)");
  require_shape(dloss, "dloss", {n});
  auto dlogits = empty_f32({n, c});
  if (n > 0) {
    py::gil_scoped_release nogil;
    cpu::softmax_cross_entropy_backward(n, c, probs.data(), labels.data(), dloss.data(),
                                        dlogits.mutable_data());
  }
  return dlogits;
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", &softmax_fwd, py::arg("x"), "Row softmax of x (N, C), max-shifted.");
  m.def("softmax_backward", &softmax_bwd, py::arg("dy"), py::arg("y"),
        "dx = y * (dy - sum(dy * y)) per row.");
  m.def("softmax_cross_entropy_forward", &ce_fwd, py::arg("logits"), py::arg("labels"),
        "(loss (N,), probs (N, C)): loss = logsumexp(logits) - logits[label]; labels int64 in [0, C).");
  m.def("softmax_cross_entropy_backward", &ce_bwd, py::arg("probs"), py::arg("labels"),
        py::arg("dloss"), "dlogits = dloss[:, None] * (probs - onehot(labels)).");
}

}  // namespace fastconv::bind
