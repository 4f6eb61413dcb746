// y = act(x + b) on x viewed as (m, c), and its backward from the saved output y.
//
// Backward works from y, not z = x + b, so the forward input need not be kept:
// relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2, relu6' = (0 < y < 6). OpenMP over rows; the bias
// gradient is a per-channel column sum (parallel.h; the relu's in register lanes where
// lcm(c, register) is at most 8 registers: relu_backward_lanes).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "common/nan_math.h"
#include "cpu/fast_exp.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// exp(-z) overflows to inf for z < -88, giving 1/inf = 0: the right limit, no NaN.
inline float sigmoid(float z) { return 1.0f / (1.0f + exp_vec(-z)); }

template <Activation A>
inline float apply(float z) {
  // relu_nan: NaN stays NaN (`z > 0 ? z : 0` made it 0). GCC vectorises it as a compare and
  // blend, which keeps that order.
  if constexpr (A == Activation::Relu) return relu_nan(z);
  else if constexpr (A == Activation::Relu6) return z > 6.f ? 6.f : relu_nan(z);  // NaN > 6 is false
  else if constexpr (A == Activation::Sigmoid) return sigmoid(z);
  else if constexpr (A == Activation::Tanh) return tanh_vec(z);
  else return z;
}

template <Activation A>
inline float derivative_from_y(float y) {
  if constexpr (A == Activation::Relu) return y > 0.f ? 1.f : 0.f;
  else if constexpr (A == Activation::Relu6) return y > 0.f && y < 6.f ? 1.f : 0.f;
  else if constexpr (A == Activation::Sigmoid) return y * (1.f - y);
  else if constexpr (A == Activation::Tanh) return 1.f - y * y;
  else return 1.f;
}

// y[e] = act(x[e] + bias[e]) for e < n (bias may be null; y may be x: element e is read
// before it is written). Sigmoid and tanh run on explicit vectors (fast_exp.h exp16: GCC's
// vectorisation of the scalar exp is ~25% slower).
template <Activation A>
inline void act_run(int64_t n, const float* x, const float* __restrict bias, float* y) {
  int64_t e = 0;
  if constexpr (A == Activation::Sigmoid || A == Activation::Tanh) {
    // One register wide (simd.h f32xR): 16-lane vectors at the avx2 level went through the
    // stack in halves (store-forwarding stalls: sigmoid on (256*28*28, 6) 4.3 ms against
    // 0.54 at avx512). Same lanes, same operations: the same results at every width.
    for (; e + kRegLanes <= n; e += kRegLanes) {
      f32xR z, b;
      std::memcpy(&z, x + e, sizeof z);
      if (bias) {
        std::memcpy(&b, bias + e, sizeof b);
        z += b;
      }
      // kMinMax256: the clamps as vmaxps / vminps at the avx2 level (fast_exp.h); the other
      // levels instantiate the same exp as before
      constexpr bool kMM = kRegLanes == 8;
      const f32xR r = A == Activation::Sigmoid ? 1.0f / (1.0f + exp_lanes<f32xR, kMM>(-z)) : tanh_lanes<f32xR, kMM>(z);
      std::memcpy(y + e, &r, sizeof r);
    }
  }
  if (bias)
    for (; e < n; ++e) y[e] = apply<A>(x[e] + bias[e]);
  else
    for (; e < n; ++e) y[e] = apply<A>(x[e]);
}

template <Activation A>
void forward(int64_t m, int64_t c, const float* x, const float* b, float* y) {
  const std::vector<float> bias = b ? tile(b, c, row_group(c)) : std::vector<float>();
  for_each_run(m, c, y, [&](int64_t r0, int64_t rows, float* yr) {
    act_run<A>(rows * c, x + r0 * c, b ? bias.data() : nullptr, yr);
  });
}

// dz[e] = dy[e] * act'(y[e]) for e < n; acc[e] += dz[e] when kSum. Relu is written with
// explicit vectors: its select would otherwise become a masked load (simd.h load16_plain).
// Where the relu is off it yields dy * 0, not 0, so a NaN or inf in dy gives NaN there as in
// TensorFlow's dy * (y > 0) and the oracle (a plain 0 dropped it).
template <Activation A, bool kSum>
inline void grad_run(int64_t n, const float* __restrict gr, const float* __restrict yr,
                     float* __restrict out, float* __restrict acc) {
  int64_t e = 0;
  if constexpr (A == Activation::Relu) {
#if defined(__AVX512F__)
    for (; e + kLanes <= n; e += kLanes) {
      const f32x16 g = load16_plain(gr + e);
      const f32x16 d = load16(yr + e) > splat16(0.f) ? g : g * 0.f;
      store16(out + e, d);
      if constexpr (kSum) store16(acc + e, load16(acc + e) + d);
    }
#else
    // Register-wide vectors below AVX-512: the 16-lane select went through the stack at the
    // avx2 level (ResNet-18's bias+relu backward 2.4x its avx512 time). Same values.
    for (; e + kRegLanes <= n; e += kRegLanes) {
      f32xR g, y, d;
      std::memcpy(&g, gr + e, sizeof g);
      std::memcpy(&y, yr + e, sizeof y);
      d = y > 0.f ? g : g * 0.f;
      std::memcpy(out + e, &d, sizeof d);
      if constexpr (kSum) {
        f32xR a;
        std::memcpy(&a, acc + e, sizeof a);
        a += d;
        std::memcpy(acc + e, &a, sizeof a);
      }
    }
#endif
  }
  for (; e < n; ++e) {
    const float d = gr[e] * derivative_from_y<A>(yr[e]);
    out[e] = d;
    if constexpr (kSum) acc[e] += d;
  }
}

// The relu's dz = dy * (y > 0) of one register, as grad_run computes it (dy * 0 where off).
inline f32xR relu_grad(const float* gr, const float* yr) {
  const f32xR g = loadR_plain(gr);
  return loadR(yr) > 0.f ? g : g * 0.f;
}

// Relu backward with db where a period of P = lcm(c, kRegLanes) floats is at most 8 registers
// (at AVX-512 c = 1, 2, 4, 8, 16: one register; 3, 6, 12, 24, 48: three; 32, 64, 96, 128:
// c / 16; 40, 80: five; 7, 56, 112: seven). A thread's share starts on a row (e0 is a
// multiple of c, and so is P), so float q of every period counted from e0 (register
// q / kRegLanes, lane q % kRegLanes) is channel q % c, and the column sums stay in U * V
// register accumulators (each lane sums at most kReduceRows terms before it folds into the
// thread's doubles, parallel.h's bound) instead of column_reduce's tiled float rows in memory
// (a load and a store of the accumulator per vector). For a dz in cache (the streamed output
// keeps column_reduce).
template <int V>
void relu_backward_lanes(int64_t m, int64_t c, const float* dy, const float* y, float* dz, float* db) {
  constexpr int R = kRegLanes, U = V >= 4 ? 1 : 4 / V, P = V * R;  // P: floats per period
  constexpr int64_t B = (int64_t)U * P;                              // floats per step
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)max_threads * P, 0.0);
  ExceptionCaptor errors;
  parallel_region(m * c >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    errors.run([&] {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t e0 = m * t / nt * c, e1 = m * (t + 1) / nt * c;
      double* tot = part.data() + (int64_t)t * P;
      int64_t e = e0;
      while (e + B <= e1) {  // blocks of at most kReduceRows steps
        const int64_t end = std::min(e1 - (B - 1), e + kReduceRows * B);
        f32xR acc[U * V] = {};
        for (; e < end; e += B)
          for (int k = 0; k < U * V; ++k) {
            const f32xR d = relu_grad(dy + e + k * R, y + e + k * R);
            storeR(dz + e + k * R, d);
            acc[k] += d;
          }
        for (int k = 0; k < U * V; ++k)
          for (int l = 0; l < R; ++l) tot[(k % V) * R + l] += (double)acc[k][l];
      }
      for (; e < e1; ++e) {  // the last < U periods: element e is at (e - e0) % P of its period
        const float d = dy[e] * (y[e] > 0.f ? 1.f : 0.f);
        dz[e] = d;
        tot[(e - e0) % P] += (double)d;
      }
    });
  });
  errors.rethrow();
  std::vector<double> sums((size_t)c, 0.0);
  for (int t = 0; t < max_threads; ++t)  // thread order: deterministic per thread count
    for (int q = 0; q < P; ++q) sums[(size_t)(q % c)] += part[(size_t)(t * P + q)];
  for (int64_t j = 0; j < c; ++j) db[j] = (float)sums[(size_t)j];
}

// relu_backward_lanes for c with a period of at most 8 registers; false otherwise.
inline bool relu_backward_in_lanes(int64_t m, int64_t c, const float* dy, const float* y, float* dz,
                                   float* db) {
  if (stream_output(m * c * (int64_t)sizeof(float))) return false;
  int64_t period = c;  // lcm(c, kRegLanes)
  while (period % kRegLanes != 0) period += c;
  switch (period / kRegLanes) {
    case 1: return relu_backward_lanes<1>(m, c, dy, y, dz, db), true;
    case 2: return relu_backward_lanes<2>(m, c, dy, y, dz, db), true;
    case 3: return relu_backward_lanes<3>(m, c, dy, y, dz, db), true;
    case 4: return relu_backward_lanes<4>(m, c, dy, y, dz, db), true;
    case 5: return relu_backward_lanes<5>(m, c, dy, y, dz, db), true;
    case 6: return relu_backward_lanes<6>(m, c, dy, y, dz, db), true;
    case 7: return relu_backward_lanes<7>(m, c, dy, y, dz, db), true;
    case 8: return relu_backward_lanes<8>(m, c, dy, y, dz, db), true;
    default: return false;
  }
}

template <Activation A>
void backward(int64_t m, int64_t c, const float* dy, const float* y, float* dz, float* db) {
  if constexpr (A == Activation::Relu) {
    if (db && relu_backward_in_lanes(m, c, dy, y, dz, db)) return;
  }
  if (!db) {
    for_each_run(m, c, dz, [&](int64_t r0, int64_t rows, float* out) {
      grad_run<A, false>(rows * c, dy + r0 * c, y + r0 * c, out, nullptr);
    });
    return;
  }
  // One pass: each thread writes its rows of dz and sums them into its own accumulators.
  std::vector<double> sums(c);
  column_reduce(m, c, 1, sums.data(), dz,
                [&](int64_t r0, int64_t rows, float* acc, int64_t, float* out) {
    grad_run<A, true>(rows * c, dy + r0 * c, y + r0 * c, out, acc);
  });
  for (int64_t j = 0; j < c; ++j) db[j] = (float)sums[j];
}

// Calls fn with the activation as a compile-time constant.
template <typename Fn>
void with_activation(Activation act, Fn fn) {
  switch (act) {
    case Activation::Linear: return fn(std::integral_constant<Activation, Activation::Linear>());
    case Activation::Relu: return fn(std::integral_constant<Activation, Activation::Relu>());
    case Activation::Sigmoid: return fn(std::integral_constant<Activation, Activation::Sigmoid>());
    case Activation::Tanh: return fn(std::integral_constant<Activation, Activation::Tanh>());
    case Activation::Relu6: return fn(std::integral_constant<Activation, Activation::Relu6>());
  }
}

// Blocks of a flat array for the elementwise kernels below.
constexpr int64_t kFlatBlock = 1 << 14;

}  // namespace

// The conv epilogue: the activation applied to rows the caller has just written, chunk by
// chunk while they are still in cache (saves the separate pass a layer would make).
void activation_inplace(int64_t count, float* y, Activation act) {
  with_activation(act, [&](auto a) { act_run<decltype(a)::value>(count, y, nullptr, y); });
}

void activation_backward_inplace(int64_t count, const float* y, float* dz, Activation act) {
  if (act == Activation::Linear) return;
  with_activation(act, [&](auto a) {
    const float* __restrict yr = y;
    // dz * act'(y), as grad_run computes it (a relu that is off gives dz * 0: NaN stays NaN)
    for (int64_t e = 0; e < count; ++e) dz[e] = dz[e] * derivative_from_y<decltype(a)::value>(yr[e]);
  });
}

void activation_inplace_parallel(int64_t count, float* y, Activation act) {
  if (act == Activation::Linear) return;
  const int64_t blocks = (count + kFlatBlock - 1) / kFlatBlock;
  parallel_region((count >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < blocks; ++i)
      activation_inplace(std::min(kFlatBlock, count - i * kFlatBlock), y + i * kFlatBlock, act);
  });
}

// y = act(a + b): a ResNet block's residual join and its relu in one pass (numpy's
// single-threaded add plus a separate relu pass read the data three times).
void add_activation(int64_t count, const float* a, const float* b, Activation act, float* y) {
  const int64_t blocks = (count + kFlatBlock - 1) / kFlatBlock;
  parallel_region((count >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < blocks; ++i) {
      const int64_t e0 = i * kFlatBlock, n = std::min(kFlatBlock, count - e0);
      with_activation(act, [&](auto k) { act_run<decltype(k)::value>(n, a + e0, b + e0, y + e0); });
    }
  });
}

void bias_act_forward(int64_t m, int64_t c, const float* x, const float* b, Activation act,
                      float* y) {
  switch (act) {
    case Activation::Linear: return forward<Activation::Linear>(m, c, x, b, y);
    case Activation::Relu: return forward<Activation::Relu>(m, c, x, b, y);
    case Activation::Sigmoid: return forward<Activation::Sigmoid>(m, c, x, b, y);
    case Activation::Tanh: return forward<Activation::Tanh>(m, c, x, b, y);
    case Activation::Relu6: return forward<Activation::Relu6>(m, c, x, b, y);
  }
}

void bias_act_backward(int64_t m, int64_t c, const float* dy, const float* y, Activation act,
                       float* dz, float* db) {
  switch (act) {
    case Activation::Linear: return backward<Activation::Linear>(m, c, dy, y, dz, db);
    case Activation::Relu: return backward<Activation::Relu>(m, c, dy, y, dz, db);
    case Activation::Sigmoid: return backward<Activation::Sigmoid>(m, c, dy, y, dz, db);
    case Activation::Tanh: return backward<Activation::Tanh>(m, c, dy, y, dz, db);
    case Activation::Relu6: return backward<Activation::Relu6>(m, c, dy, y, dz, db);
  }
}

}  // namespace fastconv::cpu
