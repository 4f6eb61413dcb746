// Placeholder: replaced by the softmax kernel bindings.
#include <pybind11/pybind11.h>

namespace fastconv::bind {
void bind_softmax(pybind11::module_&) {}
}  // namespace fastconv::bind
