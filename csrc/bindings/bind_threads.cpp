#include <pybind11/pybind11.h>

#include <algorithm>
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
      [](int64_t max_block_bytes) {
#if defined(__GLIBC__)
        if (max_block_bytes < 0)
          throw std::invalid_argument("keep_freed_memory: max_block_bytes must be >= 0");
        // Blocks up to max_block_bytes come from the heap instead of fresh mmaps, and the
        // heap top is not trimmed, so a training step reuses the previous step's pages.
        const int threshold = (int)std::min<int64_t>(max_block_bytes, 32ll << 20);
        return mallopt(M_MMAP_THRESHOLD, threshold) == 1 &&
               mallopt(M_TRIM_THRESHOLD, threshold > 0 ? 1 << 30 : 128 << 10) == 1;
#else
        (void)max_block_bytes;
        return false;
#endif
      },
      py::arg("max_block_bytes"),
      "glibc malloc: serve blocks up to max_block_bytes (capped at glibc's 32 MiB) from the "
      "heap and keep freed pages; returns False where unsupported.");
}

}  // namespace fastconv::bind
