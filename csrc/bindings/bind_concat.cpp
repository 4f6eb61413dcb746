// Bindings of the array-movement kernels: concat_last (a list of float32 C-contiguous arrays
// that agree on every axis but the last -> their concatenation along it) and zero_pad2d.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/array_check.h"
#include "cpu/pad2d.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

py::array_t<float> concat_last(const py::sequence& arrays) {
  if (py::len(arrays) == 0) throw py::value_error("arrays must hold at least one array");
  std::vector<py::array_t<float>> keep;
  std::vector<const float*> ptrs;
  std::vector<int64_t> widths;
  std::vector<int64_t> lead;
  int64_t total = 0;
  for (size_t i = 0; i < py::len(arrays); ++i) {
    const std::string name = "arrays[" + std::to_string(i) + "]";
    keep.push_back(require_f32(arrays[i], name.c_str(), -1, "(..., C_i)"));
    const auto& a = keep.back();
    if (a.ndim() < 1) throw py::value_error(name + " must have at least one axis, got a scalar");
    std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
    const std::vector<int64_t> head(shape.begin(), shape.end() - 1);
    if (i == 0) lead = head;
    if (head != lead)
      throw py::value_error(name + " has shape " + shape_str(a) + ": every array must match arrays[0] " +
                            "on all axes but the last");
    ptrs.push_back(a.data());
    widths.push_back(shape.back());
    total += shape.back();
  }
  int64_t rows = 1;
  for (int64_t d : lead) rows *= d;
  std::vector<int64_t> out_shape(lead.begin(), lead.end());
  out_shape.push_back(total);
  auto out = empty_f32(out_shape);
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::concat_last(rows, (int64_t)ptrs.size(), ptrs.data(), widths.data(), o);
  }
  return out;
}

}  // namespace

py::array_t<float> zero_pad2d(const py::handle& x_obj, const py::handle& pads) {
  const auto x = require_f32(x_obj, "x", 4, "(N, H, W, C)");
  const auto p = int_tuple<4>(pads, "pads", "(top, bottom, left, right)");
  for (int i = 0; i < 4; ++i)
    if (p[i] < 0) throw py::value_error("pads must be >= 0, got " + std::string(py::repr(pads)));
  const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2), c = x.shape(3);
  auto y = empty_f32({n, p[0] + h + p[1], p[2] + w + p[3], c});
  const float* src = x.data();
  float* dst = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::zero_pad2d(n, h, w, c, p[0], p[1], p[2], p[3], src, dst);
  }
  return y;
}

void bind_concat(py::module_& m) {
  m.def("zero_pad2d", &zero_pad2d, py::arg("x"), py::arg("pads"),
        "y = x (N, H, W, C) float32 with pads = (top, bottom, left, right) rows and columns of "
        "zeros around each image.");
  m.def("concat_last", &concat_last, py::arg("arrays"),
        "Concatenate float32 C-contiguous arrays along the last axis (all other axes equal).");
}

}  // namespace fastconv::bind
