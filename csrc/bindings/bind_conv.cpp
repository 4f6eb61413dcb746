// Placeholder: replaced by the conv kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_conv(pybind11::module_&) {}
}  // namespace fastconv::bind
