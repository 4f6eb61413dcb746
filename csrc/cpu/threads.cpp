// Thread policy: ONE thread pool, OpenMP's. OpenBLAS is pinned to a single thread and every
// kernel parallelises with OpenMP, calling the serial sgemm from its threads (parallel_sgemm
// splits one product across them). Two pools on the same cores fight: OpenBLAS workers spin
// after each call while the next OpenMP region wants the cores, and a LeNet-5 b256 training
// step measured 105 ms with OpenBLAS at 2 threads against 21 ms with it pinned to 1 (2-core
// EPYC, OpenMP at 2 threads in both). fastconv.set_num_threads(n) is the one knob.
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "cpu/gemm.h"
#include "cpu/parallel.h"

#include "kernels.h"

#include <cblas.h>  // scipy-openblas32: symbols carry the scipy_ prefix

namespace fastconv::cpu {

namespace {
std::atomic<int64_t> g_workspace_limit{32ll << 20};

// Pinned once at load, before any kernel runs (set_num_threads keeps it there).
const bool g_blas_pinned = (scipy_openblas_set_num_threads(1), true);

// Below this many multiply-adds a product runs on the calling thread: waking the team costs
// more than the work. 2^21: 2^23 (~200 us of work) kept LeNet-5's dense layers and 5x5 convs
// on one thread up to b128, and its training steps at 2 threads were 1.07-1.17x slower on a
// quiet Zen 3 VM; the worker then slept between the model's remaining team regions
// (benchmarks/RESULTS.md, stop 39 lead; kTeamGrain, parallel.h, for the memory-bound kernels).
constexpr int64_t kParallelGemmWork = 1 << 21;

// Which serial sgemm runs: fastconv's own AVX-512 kernel (gemm.cpp) or OpenBLAS.
enum class GemmBackend { Auto, OpenBlas, Native };
std::atomic<GemmBackend> g_gemm_backend{GemmBackend::Auto};

// "auto" picks the native kernel wherever it was compiled in: it was faster on every shape
// measured. 2-core Zen 5 EPYC, OPENBLAS_CORETYPE=Haswell (as this site sets), FMA peak 270
// GFLOP/s per core; `PYTHONPATH=. python benchmarks/bench_gemm.py --repeats 9`, medians,
// GFLOP/s, OpenBLAS -> native:
//   serial  2048^3 126 -> 203; conv forward chunks 448x64x576 119 -> 244, 112x256x2304
//           122 -> 239; backward data 448x576x64 (B^T) 121 -> 237; backward weights
//           576x64x448 (A^T) 117 -> 235; Winograd-sized 64x256x256 111 -> 223; dense
//           256x1000x4096 119 -> 201; slowest ratio 1.61 (2048^3).
//   2 threads, whole conv/dense kernels: 1.4x-2.1x (56x56 64->64 k3 forward 212 -> 388).
// OpenBLAS's own AVX-512 (SkylakeX) kernels reach ~245 on 2048^3 where they are allowed.
bool use_native_gemm() {
  const GemmBackend b = g_gemm_backend.load(std::memory_order_relaxed);
  return b == GemmBackend::Native || (b == GemmBackend::Auto && gemm_avx512_available());
}
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  scipy_openblas_set_num_threads(1);
  (void)g_blas_pinned;
}

int get_num_threads() { return omp_get_max_threads(); }

// ---- team keeper ----
// An inference call runs ~10-100 short parallel regions with Python between them. libgomp's
// worker spins GOMP_SPINCOUNT (10000 pauses, ~0.1 ms here) after a region, then sleeps in the
// kernel; its vCPU, idle, halts (cpuidle haltpoll with guest polling off), and the next region's
// wake-up is a host round trip, or lands the worker on the master's CPU, where it waits out
// the master's own barrier spin. The keeper keeps those CPUs running during one inference call
// only: SCHED_IDLE threads that spin with `pause` while a hold is open. SCHED_IDLE yields to
// every other thread at once (a wake-up preempts it), so it takes only cycles that would idle,
// and it parks (blocks, no CPU) when the last hold ends, or after kMaxSpin if one never does.
// Process-wide libgomp settings (GOMP_SPINCOUNT, read once at load) would make the workers
// spin after every region of training too, at normal priority: on a busy machine that costs
// the others a core (see _loader.py).
namespace {
constexpr auto kMaxSpin = std::chrono::seconds(2);
constexpr int kMaxSpinners = 255;

struct Keeper {
  std::mutex mu;
  std::condition_variable cv;
  int holds = 0;                  // open holds (under mu)
  int started = 0;                // spinner threads created (under mu)
  std::atomic<int> wanted{0};     // spinners 0 .. wanted-1 spin during the current hold
  std::atomic<unsigned> generation{0};  // + 1 each time holds goes 0 -> 1
  std::atomic<bool> held{false};  // holds > 0
  std::atomic<int> spinning{0};   // test hook
  std::atomic<pid_t> owner{0};    // process that created the spinners (a fork child has none)
};

// Never destroyed: detached spinners still wait on its condition variable at process exit.
Keeper& keeper() {
  static Keeper* k = new Keeper;
  return *k;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

void spinner_main(Keeper* k, int index) {
  sched_param param{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0) return;  // never spin at normal priority
  unsigned done = k->generation.load();  // a hold open at creation is the one to spin for
  done -= 1;
  std::unique_lock<std::mutex> lock(k->mu);
  for (;;) {
    k->cv.wait(lock, [&] { return k->holds > 0 && k->generation.load() != done && index < k->wanted.load(); });
    const unsigned gen = k->generation.load();
    lock.unlock();
    k->spinning.fetch_add(1);
    const auto end = std::chrono::steady_clock::now() + kMaxSpin;
    for (unsigned n = 1; k->held.load(std::memory_order_relaxed) && k->generation.load(std::memory_order_relaxed) == gen; ++n) {
      cpu_relax();
      if (n % 4096 == 0 && std::chrono::steady_clock::now() > end) break;
    }
    k->spinning.fetch_sub(1);
    done = gen;
    lock.lock();
  }
}

// The CPUs this process may run on.
int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}
}  // namespace

void team_hold_begin() {
  Keeper& k = keeper();
  const pid_t pid = getpid();
  pid_t owner = k.owner.load();
  if (owner != 0 && owner != pid) return;  // a fork child: its parent's spinners do not exist here
  std::lock_guard<std::mutex> lock(k.mu);
  if (k.holds++ > 0) return;
  const int want = std::min({get_num_threads(), usable_cpus(), kMaxSpinners + 1}) - 1;
  k.wanted.store(want);
  k.generation.fetch_add(1);
  k.held.store(true);
  k.owner.store(pid);
  try {
    for (; k.started < want; ++k.started) std::thread(spinner_main, &k, k.started).detach();
  } catch (const std::system_error&) {  // no thread: run without (the keeper only saves time)
  }
  k.cv.notify_all();
}

void team_hold_end() {
  Keeper& k = keeper();
  if (k.owner.load() != getpid()) return;
  std::lock_guard<std::mutex> lock(k.mu);
  if (k.holds == 0) return;
  if (--k.holds == 0) k.held.store(false);
}

int team_spinning() { return keeper().spinning.load(); }

namespace {
std::atomic<int64_t> g_stream_threshold{16 << 20};
}

void set_stream_threshold(int64_t bytes) {
  if (bytes < 0)
    throw std::invalid_argument("set_stream_threshold: bytes must be >= 0, got " + std::to_string(bytes));
  g_stream_threshold = bytes;
}
int64_t get_stream_threshold() { return g_stream_threshold.load(std::memory_order_relaxed); }

// Each thread memcpys one contiguous share (whole 4 KiB pages): the copy-bandwidth baseline
// of benchmarks/bench_bandwidth.py, with the same thread team as the kernels.
void parallel_copy(int64_t nbytes, const void* src, void* dst) {
  const int64_t pages = (nbytes + 4095) / 4096;
  parallel_region((nbytes >= 4 * kParallelGrain) ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t b0 = std::min(nbytes, pages * t / nt * 4096);
    const int64_t b1 = std::min(nbytes, pages * (t + 1) / nt * 4096);
    if (b1 > b0) std::memcpy((char*)dst + b0, (const char*)src + b0, (size_t)(b1 - b0));
  });
}

void set_workspace_limit(int64_t bytes) {
  if (bytes < (1 << 16))
    throw std::invalid_argument("set_workspace_limit: bytes must be >= 65536, got " + std::to_string(bytes));
  g_workspace_limit = bytes;
}

int64_t get_workspace_limit() { return g_workspace_limit; }

void set_gemm_backend(const std::string& name) {
  GemmBackend b;
  if (name == "auto")
    b = GemmBackend::Auto;
  else if (name == "openblas")
    b = GemmBackend::OpenBlas;
  else if (name == "native")
    b = GemmBackend::Native;
  else
    throw std::invalid_argument("set_gemm_backend: backend must be 'auto', 'openblas' or 'native', got '" +
                                name + "'");
  if (b == GemmBackend::Native && !gemm_avx512_available())
    throw std::invalid_argument(
        "set_gemm_backend: 'native' needs AVX-512, and this kernel level was compiled without "
        "it (_C.isa_level(): the CPU lacks AVX-512 or FASTCONV_ISA chose a lower level)");
  g_gemm_backend = b;
}

std::string get_gemm_backend() {
  switch (g_gemm_backend.load()) {
    case GemmBackend::OpenBlas: return "openblas";
    case GemmBackend::Native: return "native";
    default: return "auto";
  }
}

std::string active_gemm_backend() { return use_native_gemm() ? "native" : "openblas"; }

void sgemm_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
    throw std::length_error("sgemm: a dimension exceeds the 32-bit BLAS interface");
  if (k == 0) {  // OpenBLAS rejects k == 0 with ld < 1; the product is then beta*C.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                    (int)(lda < 1 ? 1 : lda), b, (int)(ldb < 1 ? 1 : ldb), beta, c,
                    (int)(ldc < 1 ? 1 : ldc));
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  if (use_native_gemm())
    gemm_avx512(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void parallel_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : get_num_threads();
  if (threads == 1 || m * n * k < kParallelGemmWork)
    return sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  // Split C along its longer side into one block per thread, aligned to 16 (a SIMD row of
  // the micro-kernel); each block is an independent serial product. Errors (dimension
  // overflow) are raised here, before any thread starts: none may escape an OpenMP region.
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
    throw std::length_error("sgemm: a dimension exceeds the 32-bit BLAS interface");
  const bool split_rows = m >= n;
  const int64_t len = split_rows ? m : n;
  const int64_t block = std::max<int64_t>(16, ((len + threads - 1) / threads + 15) / 16 * 16);
  const int64_t blocks = (len + block - 1) / block;
  ExceptionCaptor errors;  // the native sgemm allocates its packing buffers per thread
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < blocks; ++i) errors.run([&] {
      const int64_t s0 = i * block, s = std::min(block, len - s0);
      if (split_rows)  // rows s0.. of op(A) and C
        sgemm(trans_a, trans_b, s, n, k, alpha, trans_a ? a + s0 : a + s0 * lda, lda, b, ldb, beta,
              c + s0 * ldc, ldc);
      else  // columns s0.. of op(B) and C
        sgemm(trans_a, trans_b, m, s, k, alpha, a, lda, trans_b ? b + s0 * ldb : b + s0, ldb, beta,
              c + s0, ldc);
    });
  });
  errors.rethrow();
}

}  // namespace fastconv::cpu
