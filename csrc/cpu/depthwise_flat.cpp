// 3x3 stride-1 'same' depthwise convolution with C < 16 channels: depthwise.cpp runs vectors
// over channels, so C = 3 filled 3 lanes of 16. Forward / backward data, ms, 1 thread, Zen 4:
// N=256 28x28x3 1.19 / 1.14 -> 0.51 / 0.43, N=32 112x112x3 2.04 / 1.97 -> 0.79 / 0.81,
// N=256 28x28x6 1.22 / 1.15 -> 0.80 / 0.76. The weight pass the same way: backward (data +
// weights) N=256 28x28x3 2.4 -> 1.0, N=32 112x112x3 4.4 -> 2.3, N=256 28x28x6 3.0 -> 1.8.
// Here a vector is consecutive floats of the flat output row (pixels x channels): tap
// (ky, kx) reads the input row oy + ky - 1 shifted by (kx - 1)*C floats. The weight pass
// steps 16 floats (15 for C = 3, 5, 15 on short rows), lane l of a vector at e0 serving
// channel (e0 + l) % C, one of C / gcd(step, C) patterns; the forward steps whole pixels
// (flat_pass). Edges: a tap's lanes that fall outside the input row, and rows in
// the vertical padding, read zeros and are multiplied like the rest, as in the oracle and
// depthwise.cpp (0 * an inf weight is NaN there too). Rows of 16 to 256 floats run all three
// passes as one stream over each thread's rows instead (image_stream, weights_stream): no
// row ends, each lane's place in its row and image carried from vector to vector.
// body_locals: each thread's body copies the sizes and pointers it uses into its own locals.
// Read through the lambda's references (or OpenMP's shared variables), every store (to y, or
// to the sums), which may alias them as far as GCC knows, made it reload L and C in the vector
// loop (objdump). Forward ms with that alone, 1 thread, medians of 5 alternating processes:
// N=256 14x14x6 0.188 -> 0.171, N=32 28x28x6 0.091 -> 0.078, N=32 112x112x3 0.677 -> 0.498
// (4 rounds), N=256 14x14x3 unchanged.
#include "cpu/depthwise_flat.h"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)
namespace {

constexpr int kTaps = 9;

// The input rows oy - 1, oy, oy + 1 of line (img, oy), null in the vertical padding.
inline void tap_rows(const float* in, int64_t img, int64_t oy, int64_t H, int64_t L, const float* (&rows)[3]) {
  for (int ky = 0; ky < 3; ++ky) {
    const int64_t iy = oy + ky - 1;
    rows[ky] = iy >= 0 && iy < H ? in + (img * H + iy) * L : nullptr;
  }
}

// 16 floats of a tap at a row's end: its row's floats [off, off + 16) in `lanes` (row_lanes),
// zeros in the others (the horizontal padding; rows in the vertical padding are a zero row).
inline __mmask16 row_lanes(int64_t off, int64_t L) {  // lanes whose float lies in [0, L)
  const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(kLanes, L - off);
  return hi <= lo ? (__mmask16)0 : (__mmask16)((0xFFFFu >> (kLanes - hi)) & (0xFFFFu << lo));
}
inline __m512 tap_load(const float* row, int64_t off, __mmask16 lanes) {
  return _mm512_maskz_loadu_ps(lanes, row + off);
}

// The forward steps S floats along the row, S = the largest multiple of C up to 16 (C = 3:
// 15), so every vector starts at channel 0 and lane l serves channel l % C: one set of nine
// tap vectors (+ bias), held in registers, where 16-float steps need C / gcd(16, C) sets (3
// for C = 3, 6) read from L1 by every FMA. Lanes >= S are computed and stored, then rewritten
// by the next vector (the row's last vector is masked to its row). The row's interior
// vectors load plainly; only those whose taps reach past a row end take row_lanes masks, and
// rows in the vertical padding read a zero row (so the padding's zeros are multiplied like
// the rest, as in the oracle). The 16-float steps had each FMA read its weights from memory
// and every tap through tap_load's mask and branches. Forward ms, 1 thread, thread CPU time,
// medians of 3 alternating processes (loaded 2-vCPU Zen 4, load ~4), before -> after:
// N=256 14x14x3 0.126 -> 0.110, N=256 14x14x6 0.285 -> 0.193, N=256 28x28x3 0.468 -> 0.350,
// N=32 112x112x3 0.911 -> 0.698, N=32 28x28x6 0.105 -> 0.092, N=32 56x56x3 0.184 -> 0.152;
// backward data alike. Tried and dropped: the same steps for the weight pass (C = 6 steps
// 12 floats, 4/3 the FMAs: 10-20% slower), and copying each input row into a zero-padded
// ring to drop the edge masks (the copy cost more than the masks saved, 112x112 20% slower).
inline int64_t step_floats(int64_t C) { return kLanes / C * C; }

// The nine tap vectors and the bias (b may be null) of S-float steps: lane l < S serves
// channel l % C, lanes >= S hold 0.
inline void step_table(int64_t C, int64_t S, const float* w, const float* b, float (&tv)[kTaps + 1][kLanes]) {
  for (int64_t l = 0; l < kLanes; ++l) {
    for (int t = 0; t < kTaps; ++t) tv[t][l] = l < S ? w[t * C + l % C] : 0.f;
    tv[kTaps][l] = l < S && b ? b[l % C] : 0.f;
  }
}

// Rows of 16 to kStreamRowFloats floats take the image stream. Past it the row walk's interior
// vectors (no masks) win: with 1024 the stream measured 1.03-1.26x the row walk's time on
// 336-float rows (N=32 112x112x3, N=32 56x56x6, N=256 56x56x6) and 672 (N=32 112x112x6),
// 4 alternating processes.
constexpr int64_t kStreamRowFloats = 256;
inline bool image_stream_applies(const ConvGeometry& g) {
  const int64_t L = g.w * g.c;
  return L >= kLanes && L <= kStreamRowFloats && g.h * L < (int64_t(1) << 30);
}

// Short rows (image_stream_applies): each thread's rows as one stream of S-float steps,
// with no row ends. Lane l of the vector at float f of the stream carries f mod L (its place
// in the row) and f mod H*L (in the image), added S per vector; tap (ky, kx) reads
// f + (ky - 1)*L + (kx - 1)*C where that stays inside the row (kx) and the image (ky), masked
// to zero elsewhere (the padding's zeros are multiplied like the rest, as in flat_pass; masked
// lanes read nothing, so no fault at the tensor's ends and no read across images). Vectors
// whose 16 lanes all have their rows above and below ("inner") need the two column masks
// only: with nine masks live per vector GCC moved them through memory and the stream was
// slower than the row walk from 84-float rows up. The row walk spends its time at the row
// ends on such rows (14 pixels x 3 channels: two of its three vectors take the masked edge
// path, plus each row's set-up). Forward ms, 1 thread, medians of 4 alternating processes,
// row walk -> stream (the first with the body locals, which alone gave 0.83-1.0):
// N=256 14x14x3 0.113 -> 0.077, 14x14x6 0.199 -> 0.167, 28x28x3 0.348 -> 0.305,
// 28x28x6 0.895 -> 0.708, 7x7x6 0.082 -> 0.051, N=32 28x28x6 0.100 -> 0.086, N=32 56x56x3
// (168-float rows) 0.160 -> 0.155; backward data alike (0.64-0.95).
// A stream starts at a row's first float, s0 = that row's place in its image (the threads take
// contiguous ranges of rows, as the row walk, so that one image also splits).
struct StreamLanes {
  int64_t L, HL, S, s0;  // s0: lane 0's place in its image
  __m512i r, s, vS, vL, vHL, vC, vLC, vHLL;
  StreamLanes(int64_t C, int64_t L_, int64_t HL_, int64_t S_, int64_t s0_) : L(L_), HL(HL_), S(S_), s0(s0_) {
    r = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);  // L >= 16
    s = _mm512_add_epi32(r, _mm512_set1_epi32((int)s0));
    vS = _mm512_set1_epi32((int)S), vL = _mm512_set1_epi32((int)L), vHL = _mm512_set1_epi32((int)HL);
    vC = _mm512_set1_epi32((int)C), vLC = _mm512_set1_epi32((int)(L - C)), vHLL = _mm512_set1_epi32((int)(HL - L));
  }
  bool inner(int64_t e0, int64_t end) const { return s0 >= L && s0 + kLanes <= HL - L && e0 + kLanes <= end; }
  // Lanes whose tap kx stays inside the row.
  void columns(__mmask16 (&hm)[3]) const {
    hm[0] = _mm512_cmpge_epi32_mask(r, vC), hm[1] = 0xFFFF, hm[2] = _mm512_cmplt_epi32_mask(r, vLC);
  }
  // Lanes before `end` whose kernel row ky stays inside the image.
  void rows(int64_t e0, int64_t end, __mmask16 (&vm)[3]) const {
    const __mmask16 live = e0 + kLanes <= end ? (__mmask16)0xFFFF : (__mmask16)((1u << (end - e0)) - 1);
    vm[0] = _mm512_mask_cmpge_epi32_mask(live, s, vL), vm[1] = live, vm[2] = _mm512_mask_cmplt_epi32_mask(live, s, vHLL);
  }
  void next() {
    r = _mm512_add_epi32(r, vS);
    r = _mm512_mask_sub_epi32(r, _mm512_cmpge_epi32_mask(r, vL), r, vL);
    s = _mm512_add_epi32(s, vS);
    s = _mm512_mask_sub_epi32(s, _mm512_cmpge_epi32_mask(s, vHL), s, vHL);
    s0 += S;
    s0 -= s0 >= HL ? HL : 0;
  }
};

// Tap (ky, kx) of the stream vector at p (+ the tap's offset): plain for an inner vector's
// middle column, else masked to the lanes that stay in the row and image.
template <bool Inner>
inline __m512 stream_tap(const float* p, int ky, int kx, const __mmask16 (&vm)[3], const __mmask16 (&hm)[3]) {
  if (Inner && kx == 1) return _mm512_loadu_ps(p);
  return _mm512_maskz_loadu_ps(Inner ? hm[kx] : (__mmask16)(vm[ky] & hm[kx]), p);
}

void image_stream(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out) {
  alignas(64) float tv[kTaps + 1][kLanes];
  step_table(g.c, step_floats(g.c), w, b, tv);
  split_lines(g.n, g.n * g.h, g.n * g.h * g.w * g.c >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    // The sizes and pointers as locals of the body (body_locals).
    const int64_t C = g.c, L = g.w * g.c, HL = g.h * L, S = step_floats(C), end = l1 * L;
    const float* const src = in;
    float* const dst = out;
    __m512 wv[kTaps];
    for (int t = 0; t < kTaps; ++t) wv[t] = _mm512_load_ps(tv[t]);
    const __m512 bias = _mm512_load_ps(tv[kTaps]);
    StreamLanes lanes(C, L, HL, S, l0 % g.h * L);
    for (int64_t e0 = l0 * L; e0 < end; e0 += S) {
      __mmask16 hm[3], vm[3] = {0xFFFF, 0xFFFF, 0xFFFF};
      lanes.columns(hm);
      auto vec = [&](auto inner) {
        constexpr bool kInner = decltype(inner)::value;
        if (!kInner) lanes.rows(e0, end, vm);
        __m512 a[3] = {bias, _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int kx = 0; kx < 3; ++kx)
          for (int ky = 0; ky < 3; ++ky) {
            const __m512 xv = stream_tap<kInner>(src + e0 + (ky - 1) * L + (kx - 1) * C, ky, kx, vm, hm);
            a[ky] = _mm512_fmadd_ps(xv, wv[ky * 3 + kx], a[ky]);
          }
        const __m512 v = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]);
        // lanes >= S are rewritten by the next vector; at the stream's end only its own lanes
        if (e0 + kLanes <= end) _mm512_storeu_ps(dst + e0, v);
        else _mm512_mask_storeu_ps(dst + e0, (__mmask16)(0xFFFFu >> (kLanes - std::min(S, end - e0))), v);
      };
      if (lanes.inner(e0, end)) vec(std::true_type());
      else vec(std::false_type());
      lanes.next();
    }
  });
}

// The weight pass on the same stream (rows of 16 to 256 floats, image_stream_applies): the
// forward's S-float steps, so one weight pattern (lane l: channel l % C, lanes >= S dropped),
// ten float sums in registers over the stream, folded into the thread's double totals every
// 16 rows' worth of vectors (the float error of the row walk's 16-line flushes).
void weights_stream(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  constexpr int kSums = kTaps + 1;  // + db
  const int64_t C = g.c, S = step_floats(C), stride = kSums * kLanes;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)(max_threads * stride), 0.0);
  int used = 1;
#pragma omp parallel if (g.n * g.h * g.w * g.c >= kParallelGrain)
  {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    // The sizes and pointers as locals of the region (body_locals).
    const int64_t C = g.c, L = g.w * g.c, HL = g.h * L, S = step_floats(C);
    const int64_t lines = g.n * g.h, l0 = lines * t / nt, end = lines * (t + 1) / nt * L;
    const int64_t flush_every = std::max<int64_t>(1, 16 * L / S);
    const float* const dyp = dy;
    const float* const xp = x;
    double* const total = part.data() + t * stride;
    StreamLanes lanes(C, L, HL, S, l0 % g.h * L);
    // Blocks of flush_every vectors, the sums in registers over a block (declared in the block
    // and added to the totals after it: with a flush lambda called in the loop GCC kept them
    // on the stack, a store and a reload per FMA, and the pass ran 1.2-2.5x slower).
    for (int64_t e0 = l0 * L; e0 < end;) {
      __m512 acc[kSums];
      for (auto& v : acc) v = _mm512_setzero_ps();
      for (const int64_t stop = std::min(end, e0 + flush_every * S); e0 < stop; e0 += S) {
        __mmask16 hm[3], vm[3] = {0xFFFF, 0xFFFF, 0xFFFF};
        lanes.columns(hm);
        auto vec = [&](auto inner) {
          constexpr bool kInner = decltype(inner)::value;
          if (!kInner) lanes.rows(e0, end, vm);
          // lanes >= S and past the end: 0 (the padding's zeros are multiplied by dy, as in
          // the oracle: dy = inf there gives NaN)
          const __m512 dv = _mm512_maskz_loadu_ps((__mmask16)(0xFFFFu >> (kLanes - std::min(S, end - e0))), dyp + e0);
          for (int kx = 0; kx < 3; ++kx)
            for (int ky = 0; ky < 3; ++ky) {
              const __m512 xv = stream_tap<kInner>(xp + e0 + (ky - 1) * L + (kx - 1) * C, ky, kx, vm, hm);
              acc[ky * 3 + kx] = _mm512_fmadd_ps(dv, xv, acc[ky * 3 + kx]);
            }
          acc[kTaps] = _mm512_add_ps(acc[kTaps], dv);
        };
        if (lanes.inner(e0, end)) vec(std::true_type());
        else vec(std::false_type());
        lanes.next();
      }
      for (int k = 0; k < kSums; ++k) {
        double* tk = total + k * kLanes;
        _mm512_storeu_pd(tk, _mm512_add_pd(_mm512_loadu_pd(tk), _mm512_cvtps_pd(_mm512_castps512_ps256(acc[k]))));
        _mm512_storeu_pd(tk + 8, _mm512_add_pd(_mm512_loadu_pd(tk + 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(acc[k], 1))));
      }
    }
  }
  std::vector<double> sum((size_t)(kSums * C), 0.0);
  for (int t = 0; t < used; ++t)
    for (int s2 = 0; s2 < kSums; ++s2)
      for (int64_t l = 0; l < S; ++l) sum[(size_t)(s2 * C + l % C)] += part[(size_t)(t * stride + s2 * kLanes + l)];
  for (int64_t i = 0; i < kTaps * C; ++i) dw[i] = (float)sum[(size_t)i];
  if (db)
    for (int64_t c = 0; c < C; ++c) db[c] = (float)sum[(size_t)(kTaps * C + c)];
}


void flat_pass(const ConvGeometry& g, const float* in, const float* w, const float* b, float* out) {
  if (image_stream_applies(g)) return image_stream(g, in, w, b, out);
  const int64_t C = g.c, H = g.h, L = g.w * g.c, S = step_floats(C), lines = g.n * H;
  alignas(64) float tv[kTaps + 1][kLanes];  // taps, then the bias; lanes >= S: 0
  step_table(C, S, w, b, tv);
  const std::vector<float> zeros((size_t)L, 0.f);
  split_lines(g.n, lines, lines * L >= kParallelGrain, [&](int64_t l0, int64_t l1) {
    // The sizes and pointers as locals of the body (body_locals).
    const int64_t C = g.c, H = g.h, L = g.w * g.c, S = step_floats(C);
    const float* const in_ = in;
    float* const out_ = out;
    const float* const zero = zeros.data();
    __m512 wv[kTaps];
    for (int t = 0; t < kTaps; ++t) wv[t] = _mm512_load_ps(tv[t]);
    const __m512 bias = _mm512_load_ps(tv[kTaps]);
    for (int64_t line = l0; line < l1; ++line) {
      float* y = out_ + line * L;
      const float* r[3];
      tap_rows(in_, line / H, line % H, H, L, r);
      for (auto& row : r) row = row ? row : zero;
      auto vec = [&](int64_t e0, auto edge) {
        // one accumulator per kernel row: three chains of three FMAs
        __m512 a[3] = {bias, _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t off = e0 + (kx - 1) * C;
          const __mmask16 lanes = decltype(edge)::value ? row_lanes(off, L) : (__mmask16)0xFFFF;
          for (int ky = 0; ky < 3; ++ky) {
            const __m512 v = decltype(edge)::value ? _mm512_maskz_loadu_ps(lanes, r[ky] + off) : _mm512_loadu_ps(r[ky] + off);
            a[ky] = _mm512_fmadd_ps(v, wv[ky * 3 + kx], a[ky]);
          }
        }
        const __m512 v = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]);
        if (e0 + kLanes <= L) _mm512_storeu_ps(y + e0, v);
        else _mm512_mask_storeu_ps(y + e0, (__mmask16)(0xFFFFu >> (kLanes - std::min(S, L - e0))), v);
      };
      int64_t e0 = 0;
      for (; e0 < L && e0 < C; e0 += S) vec(e0, std::true_type());  // reaches left of the row
      for (; e0 + kLanes + C <= L; e0 += S) vec(e0, std::false_type());
      for (; e0 < L; e0 += S) vec(e0, std::true_type());  // reaches right of the row
    }
  });
}

// dw[tap, c] = sum over pixels of dy[p, c] * x[p + tap, c] (the padding's zeros included)
// and db[c] = sum dy[p, c], on the same flat rows: per line and pattern (the lanes of a
// vector serve channels (e0 + l) % C), float register sums for each tap over the row's
// vectors of that pattern, folded into the thread's double totals every
// kFlushLines lines; the threads' totals are added in thread order (deterministic for a
// thread count), then each pattern lane goes to its channel.
void flat_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  const int64_t C = g.c, H = g.h, L = g.w * g.c, lines = g.n * H;
  // The stream's steps are the forward's: for C = 6, 7, 9..14 (12, 14, 9.. floats) more FMAs
  // than the row walk's 16, which then wins past rows of ~96 floats. Weight pass ms, 1 thread,
  // medians of 4 alternating processes, row walk -> stream: N=256 14x14x3 0.122 -> 0.089,
  // 28x28x3 0.371 -> 0.324, N=32 56x56x3 0.168 -> 0.158, N=256 7x7x6 0.098 -> 0.057,
  // 14x14x6 0.226 -> 0.207, but 28x28x6 0.82 -> 0.91 and N=32 28x28x6 0.078 -> 0.105.
  if (image_stream_applies(g) && (step_floats(C) >= kLanes - 1 || L <= 96))
    return weights_stream(g, dy, x, dw, db);
  // Steps of S floats: 16, or on rows of up to 256 floats 15 where that is whole pixels
  // (C = 3, 5, 15: one pattern instead of C, so one flush of the sums a line instead of C, at
  // 16/15 the FMAs). Weight pass ms, 1 thread, medians of 3-5 alternating processes (loaded
  // Zen 4), C = 3: N=256 14x14 0.168 -> 0.121, N=256 28x28 0.52 -> 0.36, N=32 56x56 0.207 ->
  // 0.152, N=256 56x56 2.36 -> 1.69, but N=32 112x112 (336 floats a row) 0.64 -> 0.70. C = 6
  // would step 12 floats, 4/3 the FMAs (measured 10-20% slower), so it keeps 16.
  const int64_t S = kLanes % C == 1 && L <= 256 ? kLanes - 1 : kLanes;
  const int patterns = (int)(C / std::gcd<int64_t>(S, C));
  constexpr int kSums = kTaps + 1;  // + db
  constexpr int64_t kFlushLines = 16;
  const int64_t stride = (int64_t)patterns * kSums * kLanes;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)(max_threads * stride), 0.0);
  int used = 1;
  const std::vector<float> zeros((size_t)L, 0.f);  // the rows in the vertical padding
#pragma omp parallel if (lines * L >= kParallelGrain)
  {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    const int64_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt;
    // The sizes and pointers as locals of the region (body_locals).
    const int64_t C = g.c, H = g.h, L = g.w * g.c;
    const int npat = patterns;
    const float* const dy_ = dy;
    const float* const x_ = x;
    const float* const zero = zeros.data();
    double* total = part.data() + t * stride;
    std::vector<float> fsum((size_t)stride, 0.f);
    auto flush = [&] {
      for (int64_t i = 0; i < stride; ++i) total[i] += fsum[(size_t)i];
      std::fill(fsum.begin(), fsum.end(), 0.f);
    };
    for (int64_t line = l0; line < l1; ++line) {
      const int64_t img = line / H, oy = line % H;
      const float* d = dy_ + line * L;
      const float* rows[3];
      tap_rows(x_, img, oy, H, L, rows);
      for (auto& row : rows) row = row ? row : zero;
      // One pattern at a time, its kSums sums in registers (all patterns' at once would be
      // 30 registers for C = 3, 6, and through memory they doubled the pass's time).
      // The step a compile-time constant: with S at run time the C = 6 pass (16-float steps,
      // the same work) measured 8-10% slower.
      auto run = [&](auto step) {
        constexpr int64_t kS = decltype(step)::value;
        for (int p = 0; p < npat; ++p) {
          __m512 acc[kSums];
          for (auto& v : acc) v = _mm512_setzero_ps();
          for (int64_t e0 = p * kS; e0 < L; e0 += npat * kS) {
            const __mmask16 live = (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kS, L - e0)));
            const __m512 dv = _mm512_maskz_loadu_ps(live, d + e0);  // lanes past the row: 0
            // the padding's zeros are multiplied too (dy = inf there gives NaN, as the oracle)
            // Every tap inside the row: plain loads (a mask and a branch per tap before: weight
            // pass ms, 5 alternating processes, N=32 112x112x3 0.725 -> 0.593, N=32 28x28x6
            // 0.097 -> 0.077, N=256 28x28x6 0.741 -> 0.739, with the body locals).
            if (e0 >= C && e0 + kLanes + C <= L) {
              for (int kx = 0; kx < 3; ++kx)
                for (int ky = 0; ky < 3; ++ky)
                  acc[ky * 3 + kx] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(rows[ky] + e0 + (kx - 1) * C), acc[ky * 3 + kx]);
            } else {
              for (int kx = 0; kx < 3; ++kx) {
                const int64_t off = e0 + (kx - 1) * C;
                const __mmask16 lanes = row_lanes(off, L);
                for (int ky = 0; ky < 3; ++ky)
                  acc[ky * 3 + kx] = _mm512_fmadd_ps(dv, tap_load(rows[ky], off, lanes), acc[ky * 3 + kx]);
              }
            }
            acc[kTaps] = _mm512_add_ps(acc[kTaps], dv);
          }
          float* f = fsum.data() + p * kSums * kLanes;
          for (int k = 0; k < kSums; ++k) _mm512_storeu_ps(f + k * kLanes, _mm512_add_ps(_mm512_loadu_ps(f + k * kLanes), acc[k]));
        }
      };
      if (S == kLanes) run(std::integral_constant<int64_t, kLanes>());
      else run(std::integral_constant<int64_t, kLanes - 1>());
      if ((line - l0) % kFlushLines == kFlushLines - 1) flush();
    }
    flush();
  }
  std::vector<double> sum((size_t)(kSums * C), 0.0);
  for (int t = 0; t < used; ++t)
    for (int p = 0; p < patterns; ++p)
      for (int s2 = 0; s2 < kSums; ++s2)
        for (int64_t l = 0; l < S; ++l)
          sum[(size_t)(s2 * C + (p * S + l) % C)] += part[(size_t)(t * stride + (p * kSums + s2) * kLanes + l)];
  for (int64_t i = 0; i < kTaps * C; ++i) dw[i] = (float)sum[(size_t)i];
  if (db)
    for (int64_t c = 0; c < C; ++c) db[c] = (float)sum[(size_t)(kTaps * C + c)];
}

}  // namespace

bool depthwise_flat_applies(const ConvGeometry& g) {
  const Window2d& v = g.win;
  return g.is_depthwise() && g.cout_g == 1 && g.c < kLanes && v.kh == 3 && v.kw == 3 && v.sh == 1 &&
         v.sw == 1 && v.dh == 1 && v.dw == 1 && v.pt == 1 && v.pb == 1 && v.pl == 1 && v.pr == 1 &&
         g.oh == g.h && g.ow == g.w;
}

void depthwise_flat_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                            float* y, Activation act) {
  flat_pass(g, x, w, b, y);
  if (act != Activation::Linear) activation_inplace_parallel(g.output_size(), y, act);
}

void depthwise_flat_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db) {
  flat_weights(g, dy, x, dw, db);
}

#else

bool depthwise_flat_applies(const ConvGeometry&) { return false; }
void depthwise_flat_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {}
void depthwise_flat_forward(const ConvGeometry&, const float*, const float*, const float*, float*, Activation) {}

#endif

}  // namespace fastconv::cpu::detail
