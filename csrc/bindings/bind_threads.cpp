#include <pybind11/pybind11.h>

#include <climits>
#include <string>
#include <stdexcept>

#include "kernels.h"

#include <cblas.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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
  m.def("blas_corename", [] { return std::string(scipy_openblas_get_corename()); },
        "The CPU kernel family OpenBLAS runs here (e.g. 'Haswell', 'SkylakeX').");
  m.def(
      "keep_freed_memory",
      [] {
#if defined(__GLIBC__)
        // Every block comes from the heap (no per-block mmap) and the heap top is never
        // trimmed, so a freed activation's pages serve the next step's same-sized array
        // instead of being unmapped and faulted in (zeroed) again.
        return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
        return false;
#endif
      },
      "glibc malloc: serve every block from the heap and keep freed pages for reuse (the "
      "process's resident size then stays at its peak); returns False where unsupported.");
}

}  // namespace fastconv::bind
