#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <string>
#include <stdexcept>
#include <vector>

#include "array_check.h"
#include "cpu/fma_peak.h"
#include "cpu/gemm.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "kernels.h"

#include <cblas.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace py = pybind11;

namespace fastconv::bind {

namespace {

// Checks that a flat float32 buffer holds a rows x cols row-major matrix with leading
// dimension ld (the last row may end at cols, as BLAS allows).
void check_operand(const py::array_t<float>& arr, const char* name, int64_t rows, int64_t cols,
                   int64_t ld) {
  if (ld < std::max<int64_t>(1, cols))
    throw py::value_error(std::string("ld") + name + " must be >= max(1, " + std::to_string(cols) +
                          "), got " + std::to_string(ld));
  const int64_t need = rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
  if (arr.size() < need)
    throw py::value_error(std::string(name) + " holds " + std::to_string(arr.size()) +
                          " floats, a " + std::to_string(rows) + " x " + std::to_string(cols) +
                          " matrix with ld " + std::to_string(ld) + " needs " +
                          std::to_string(need));
}

// Test/benchmark hook: one serial sgemm on flat float32 buffers, C updated in place.
// backend: "" = the selected one (set_gemm_backend), or "native" / "openblas" for this call.
void sgemm_hook(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const py::object& a_obj, int64_t lda, const py::object& b_obj, int64_t ldb,
                float beta, const py::object& c_obj, int64_t ldc, const std::string& backend) {
  if (m < 0 || n < 0 || k < 0) throw py::value_error("m, n, k must be >= 0");
  auto a = require_f32(a_obj, "a", -1, "buffer");
  auto b = require_f32(b_obj, "b", -1, "buffer");
  auto c = require_f32(c_obj, "c", -1, "buffer");
  if (!c.writeable()) throw py::value_error("c must be writeable");
  check_operand(a, "a", trans_a ? k : m, trans_a ? m : k, lda);
  check_operand(b, "b", trans_b ? n : k, trans_b ? k : n, ldb);
  check_operand(c, "c", m, n, ldc);
  if (backend != "" && backend != "native" && backend != "openblas")
    throw py::value_error("backend must be '', 'native' or 'openblas', got '" + backend + "'");
  float* cp = c.mutable_data();
  py::gil_scoped_release nogil;
  if (backend == "native") {
    if (!cpu::gemm_avx512_available()) throw std::invalid_argument("native gemm not compiled in");
    cpu::gemm_avx512(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, cp, ldc);
  } else if (backend == "openblas") {
    cpu::sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, cp,
                        ldc);
  } else {
    cpu::sgemm(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, cp, ldc);
  }
}

// GFLOP/s of a multiply-add loop on `bits`-bit vectors on the calling thread (cpu/fma_peak.h;
// bits 0: the widest this level has): the peak the GEMM is measured against. Best of
// `repeats` runs of ~`seconds` / repeats each.
double fma_peak_gflops(double seconds, int repeats, int bits) {
  const std::vector<int> widths = cpu::fma_peak_widths();
  if (bits == 0) bits = widths.back();
  if (std::find(widths.begin(), widths.end(), bits) == widths.end()) {
    std::string have;
    for (int w : widths) have += (have.empty() ? "" : ", ") + std::to_string(w);
    throw py::value_error("bits must be 0 or a vector width this kernel level runs (" + have +
                          "), got " + std::to_string(bits));
  }
  using clock = std::chrono::steady_clock;
  double best = 0;
  const int64_t iters = 1 << 20;
  py::gil_scoped_release nogil;
  const auto end = clock::now() + std::chrono::duration<double>(seconds);
  for (int r = 0; r < repeats || clock::now() < end; ++r) {
    const auto t0 = clock::now();
    const int64_t flops = cpu::fma_peak_loop(bits, iters);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::max(best, flops / dt * 1e-9);
    if (r >= repeats && clock::now() >= end) break;
  }
  return best;
}

}  // namespace

void bind_threads(py::module_& m) {
  m.def("_set_poison_outputs", [](bool on) { poison_outputs().store(on); }, py::arg("on"),
        "Debug: fill every freshly allocated kernel output with NaN (uint8: 0xFF) before the "
        "kernel runs, so an unwritten region shows (array_check.h). Also FASTCONV_POISON_OUTPUTS=1.");
  m.def("_get_poison_outputs", [] { return poison_outputs().load(); });
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"),
        "Set the OpenMP thread count of the native kernels (OpenBLAS stays single-threaded inside them).");
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("_team_hold_begin", &cpu::team_hold_begin,
        "Open a hold: until the matching _team_hold_end, up to get_num_threads() - 1 SCHED_IDLE "
        "threads spin on idle CPUs so the OpenMP workers' CPUs stay awake between parallel "
        "regions (the inference plan holds the team for one predict call). Holds nest.");
  m.def("_team_hold_end", &cpu::team_hold_end, "Close a hold (no-op when none is open).");
  m.def("_team_spinning", &cpu::team_spinning,
        "Test hook: how many keeper threads are spinning right now.");
  m.def("_threads_used", &cpu::take_team_high_water,
        "Test hook: the most OpenMP threads any parallel region of the native kernels ran with "
        "since the previous call (0: none ran; 1: only single-threaded regions). Reading resets it.");
  m.def("_item_team_selftest", &cpu::item_team_selftest, py::arg("count"), py::arg("item_us"), py::arg("throw_item") = -1,
        "Test hook: run `count` sleeping items through the join-free item team "
        "(cpu/item_team.h); per item the slot that ran it (0: caller, >0: a helper, <0: error).",
        py::call_guard<py::gil_scoped_release>());
  m.def("_helper_items", &cpu::take_helper_items,
        "Test hook: tasks in which an item-team helper ran items since the previous call.");
  m.def("set_workspace_limit", &cpu::set_workspace_limit, py::arg("bytes"),
        "Cap (bytes) on the im2col workspace of one conv call.");
  m.def("get_workspace_limit", &cpu::get_workspace_limit);
  m.attr("has_openmp") = true;
  m.def("set_gemm_backend", &cpu::set_gemm_backend, py::arg("name"),
        "Serial sgemm used by every kernel: 'auto' (native where compiled in), 'openblas' or "
        "'native' (fastconv's AVX-512 kernel).");
  m.def("get_gemm_backend", &cpu::get_gemm_backend);
  m.def("active_gemm_backend", &cpu::active_gemm_backend,
        "The sgemm that runs now: 'native' or 'openblas' ('auto' resolved).");
  m.attr("has_native_gemm") = cpu::gemm_avx512_available();
  m.def("gemm_width", &cpu::gemm_width,
        "Vector width in bits of the native sgemm's micro-kernels (512 or 256: chosen by CPU model, "
        "FASTCONV_GEMM_WIDTH overrides); 0 where the native sgemm is not compiled in.");
  m.def("_gemm_width_for", [](const std::string& vendor, int family, const std::string& env) {
          return cpu::gemm_width_for(vendor, family, env.c_str());
        }, py::arg("vendor"), py::arg("family"), py::arg("env") = "",
        "Test hook: the width gemm_width picks for a CPUID vendor string and display family, with "
        "FASTCONV_GEMM_WIDTH = env ('' = unset).");
  m.def("_sgemm", &sgemm_hook, py::arg("trans_a"), py::arg("trans_b"), py::arg("m"), py::arg("n"),
        py::arg("k"), py::arg("alpha"), py::arg("a"), py::arg("lda"), py::arg("b"), py::arg("ldb"),
        py::arg("beta"), py::arg("c"), py::arg("ldc"), py::arg("backend") = "",
        "Test hook: cblas-style row-major sgemm on flat float32 buffers, c updated in place.");
  m.def("_fma_peak_gflops", &fma_peak_gflops, py::arg("seconds") = 0.2, py::arg("repeats") = 20,
        py::arg("bits") = 0,
        "GFLOP/s of a multiply-add loop on one thread on `bits`-bit vectors (0: the widest "
        "the kernel level has; FMA from avx2 up, mul+add at the baseline level).");
  m.def("_fma_peak_widths", &cpu::fma_peak_widths,
        "Vector widths (bits) _fma_peak_gflops can measure at this kernel level.");
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
  m.def("set_output_pool_limit", [](int64_t bytes) {
        if (bytes < 0) throw py::value_error("bytes must be >= 0, got " + std::to_string(bytes));
        output_pool().set_limit((size_t)bytes);
      }, py::arg("bytes"),
      "Cap, in bytes, on freed kernel outputs kept for reuse by the next output of the same size "
      "(0: none kept).");
  m.def("output_pool_stats", [] {
        const auto s = output_pool().stats();
        py::dict d;
        d["cached_bytes"] = s.cached_bytes; d["cached_blocks"] = s.cached_blocks;
        d["hits"] = s.hits; d["misses"] = s.misses; d["limit"] = s.limit;
        return d;
      },
      "The output pool: bytes and blocks cached now, allocations served from it (hits) or "
      "not (misses) since import, and its limit.");
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
