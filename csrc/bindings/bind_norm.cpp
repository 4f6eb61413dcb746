// Placeholder: replaced by the norm kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_norm(pybind11::module_&) {}
}  // namespace fastconv::bind
