// Thread policy: fastconv.set_num_threads(n) sets both OpenMP and OpenBLAS. Each kernel uses
// ONE level of parallelism (an OpenMP loop with no BLAS inside, or threaded BLAS alone):
// OpenMP loops around a threaded sgemm oversubscribe the cores (9.0 ms vs 3.4 ms measured).
#include <omp.h>

#include <atomic>
#include <climits>
#include <stdexcept>

#include "kernels.h"

#include <cblas.h>  // scipy-openblas32: symbols carry the scipy_ prefix

namespace fastconv::cpu {

namespace {
std::atomic<int64_t> g_workspace_limit{32ll << 20};
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  scipy_openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

void set_workspace_limit(int64_t bytes) {
  if (bytes < (1 << 16))
    throw std::invalid_argument("set_workspace_limit: bytes must be >= 65536, got " + std::to_string(bytes));
  g_workspace_limit = bytes;
}

int64_t get_workspace_limit() { return g_workspace_limit; }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
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

}  // namespace fastconv::cpu
