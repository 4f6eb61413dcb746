// Placeholder: replaced by the pool kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_pool(pybind11::module_&) {}
}  // namespace fastconv::bind
