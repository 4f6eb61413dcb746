// Placeholder: replaced by the activation kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_activation(pybind11::module_&) {}
}  // namespace fastconv::bind
