// Placeholder: replaced by the dense kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_dense(pybind11::module_&) {}
}  // namespace fastconv::bind
