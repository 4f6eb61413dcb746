// fastconv._C: the pybind11 module. It holds the CPU kernels compiled for several x86-64
// levels (CMakeLists.txt, FASTCONV_ISA_LEVELS) and, at import, registers the functions of one
// of them under the usual names: the best level this CPU runs, or a lower one named by the
// environment variable FASTCONV_ISA (so the tests can run every level on one machine).
// Compiled once, for the baseline target: nothing here may use instructions the oldest
// supported CPU lacks.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace py = pybind11;

// One register_all per compiled level (bindings/register_all.cpp, in the level's namespace,
// see cpu/isa.h); CMake defines FASTCONV_HAVE_<LEVEL> for each level it builds.
#define FASTCONV_DECLARE_LEVEL(ns) \
  namespace fastconv::ns::bind {   \
  void register_all(py::module_& m); \
  }
#ifdef FASTCONV_HAVE_BASELINE
FASTCONV_DECLARE_LEVEL(isa_baseline)
#endif
#ifdef FASTCONV_HAVE_AVX2
FASTCONV_DECLARE_LEVEL(isa_avx2)
#endif
#ifdef FASTCONV_HAVE_AVX512
FASTCONV_DECLARE_LEVEL(isa_avx512)
#endif
#ifdef FASTCONV_HAVE_NATIVE
FASTCONV_DECLARE_LEVEL(isa_native)
#endif

namespace {

struct Level {
  const char* name;
  bool (*cpu_runs)();
  void (*register_all)(py::module_&);
};

#if defined(__x86_64__) || defined(__i386__)
// __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV), so an
// AVX-512 CPU under a kernel or hypervisor that disables it reports false.
[[maybe_unused]] bool runs_avx2() {
  __builtin_cpu_init();
  // x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (the flags the avx2 level is built with).
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("lzcnt") &&
         __builtin_cpu_supports("movbe");
}
[[maybe_unused]] bool runs_avx512() {
  // x86-64-v4 adds AVX-512 F, BW, CD, DQ and VL to v3.
  return runs_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif
[[maybe_unused]] bool runs_always() { return true; }

// Lowest first. A native build has the one level it was compiled for (this machine's).
const std::vector<Level>& compiled_levels() {
  static const std::vector<Level> levels = {
#ifdef FASTCONV_HAVE_BASELINE
      {"baseline", runs_always, fastconv::isa_baseline::bind::register_all},
#endif
#ifdef FASTCONV_HAVE_AVX2
      {"avx2", runs_avx2, fastconv::isa_avx2::bind::register_all},
#endif
#ifdef FASTCONV_HAVE_AVX512
      {"avx512", runs_avx512, fastconv::isa_avx512::bind::register_all},
#endif
#ifdef FASTCONV_HAVE_NATIVE
      {"native", runs_always, fastconv::isa_native::bind::register_all},
#endif
  };
  return levels;
}

std::vector<std::string> runnable_level_names() {
  std::vector<std::string> names;
  for (const Level& level : compiled_levels())
    if (level.cpu_runs()) names.push_back(level.name);
  return names;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The level to register: FASTCONV_ISA if set (it must be compiled in and run on this CPU:
// asking for more than the CPU has is an error, not a silent fallback, so a test run that
// forces a level really runs it), else the highest level this CPU runs.
const Level& choose_level() {
  const std::vector<Level>& levels = compiled_levels();
  const char* forced = std::getenv("FASTCONV_ISA");
  if (forced == nullptr || *forced == '\0') {
    for (auto it = levels.rbegin(); it != levels.rend(); ++it)
      if (it->cpu_runs()) return *it;
    throw std::runtime_error("fastconv._C: no compiled ISA level runs on this CPU");
  }
  std::vector<std::string> compiled;
  for (const Level& level : levels) {
    compiled.push_back(level.name);
    if (forced != std::string(level.name)) continue;
    if (!level.cpu_runs())
      throw py::import_error(std::string("FASTCONV_ISA=") + forced +
                             ": this CPU lacks the instructions of that level (it runs: " +
                             join(runnable_level_names()) + ")");
    return level;
  }
  throw py::import_error(std::string("FASTCONV_ISA must be one of the levels compiled in (") +
                         join(compiled) + "), got '" + forced + "'");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastconv native CPU kernels (NHWC float32, HWIO weights). See fastconv.functional.";
  const Level& level = choose_level();
  level.register_all(m);
  const std::string chosen = level.name;
  m.def("isa_level", [chosen]() { return chosen; },
        "The instruction-set level whose kernels this process runs: baseline (x86-64), avx2 "
        "(x86-64-v3: AVX2+FMA), avx512 (x86-64-v4) or native (a -march=native build).");
  m.def("isa_levels", &runnable_level_names,
        "The levels compiled into this module that this CPU can run, lowest first "
        "(FASTCONV_ISA may name any of them).");
}
