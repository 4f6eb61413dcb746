#include <pybind11/pybind11.h>

#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

void bind_threads(py::module_& m) {
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"),
        "Set the OpenMP thread count of the native kernels (OpenBLAS stays single-threaded inside them).");
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("set_workspace_limit", &cpu::set_workspace_limit, py::arg("bytes"),
        "Cap (bytes) on the im2col workspace of one conv call.");
  m.def("get_workspace_limit", &cpu::get_workspace_limit);
  m.attr("has_openmp") = true;
}

}  // namespace fastconv::bind
