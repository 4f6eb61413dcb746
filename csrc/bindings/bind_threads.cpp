#include <pybind11/numpy.h>
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
  m.def("set_stream_threshold", &cpu::set_stream_threshold, py::arg("bytes"),
        "Outputs of at least this many bytes (default 16 MiB) are written with non-temporal "
        "stores by the bandwidth-bound kernels (0: always; a huge value: never).");
  m.def("get_stream_threshold", &cpu::get_stream_threshold);
  m.def(
      "parallel_copy",
      [](py::array dst, py::array src) {
        if (!(dst.flags() & py::array::c_style) || !(src.flags() & py::array::c_style))
          throw py::type_error("parallel_copy: dst and src must be C-contiguous");
        if (!dst.writeable()) throw py::value_error("parallel_copy: dst must be writeable");
        if (dst.nbytes() != src.nbytes())
          throw py::value_error("parallel_copy: dst has " + std::to_string(dst.nbytes()) +
                                " bytes, src " + std::to_string(src.nbytes()));
        void* d = dst.mutable_data();
        const void* s = src.data();
        const int64_t n = (int64_t)src.nbytes();
        py::gil_scoped_release nogil;
        cpu::parallel_copy(n, s, d);
      },
      py::arg("dst"), py::arg("src"),
      "Copy src's bytes into dst (same byte size) with the OpenMP threads; a bandwidth baseline.");
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
