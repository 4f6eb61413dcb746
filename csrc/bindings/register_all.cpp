// Registers every kernel family of one ISA level (its namespace: FASTCONV_ISA_NS, see
// cpu/isa.h) on the _C module; bindings/module.cpp calls the chosen level's copy. Each bind_*.cpp registers one
// family; C++ std::invalid_argument becomes ValueError (pybind11's default translation).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastconv::bind {
void bind_threads(py::module_& m);
void bind_algorithm(py::module_& m);
void bind_conv(py::module_& m);
void bind_dense(py::module_& m);
void bind_pool(py::module_& m);
void bind_norm(py::module_& m);
void bind_activation(py::module_& m);
void bind_softmax(py::module_& m);
void bind_optimizer(py::module_& m);
void bind_index_check(py::module_& m);
void bind_concat(py::module_& m);

void register_all(py::module_& m) {
  bind_threads(m);
  bind_algorithm(m);
  bind_conv(m);
  bind_dense(m);
  bind_pool(m);
  bind_norm(m);
  bind_activation(m);
  bind_softmax(m);
  bind_optimizer(m);
  bind_index_check(m);
  bind_concat(m);
}
}  // namespace fastconv::bind
