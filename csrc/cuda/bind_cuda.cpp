// fastconv._cuda: pybind11 bindings of the CUDA kernels (kernels_cuda.h). Compiled by the
// host compiler; the .cu files live in a static library.
//
// Arrays cross as raw device addresses (CuPy's `a.data.ptr`) and the stream as CuPy's
// `cupy.cuda.get_current_stream().ptr`. fastconv/cuda.py checks dtypes/contiguity and
// allocates outputs; here the shapes are validated by common/geometry.h (ValueError) and
// CUDA failures raise RuntimeError naming the kernel.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/geometry.h"
#include "cuda/kernels_cuda.h"

namespace py = pybind11;
using fastconv::ConvGeometry;
using fastconv::PoolGeometry;
using fastconv::Window2d;
using Shape4 = std::array<int64_t, 4>;
using Pair = std::array<int64_t, 2>;

namespace {

const float* cf(uintptr_t p) { return reinterpret_cast<const float*>(p); }
float* mf(uintptr_t p) { return reinterpret_cast<float*>(p); }
cudaStream_t st(uintptr_t p) { return reinterpret_cast<cudaStream_t>(p); }

Window2d window(Pair strides, Shape4 pads, Pair dilation) {
  Window2d v;
  v.sh = strides[0]; v.sw = strides[1];
  v.pt = pads[0]; v.pb = pads[1]; v.pl = pads[2]; v.pr = pads[3];
  v.dh = dilation[0]; v.dw = dilation[1];
  return v;
}

ConvGeometry conv_geom(Shape4 x, Shape4 w, Pair strides, Shape4 pads, Pair dilation,
                       int64_t groups) {
  return fastconv::make_conv_geometry(x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3],
                                      window(strides, pads, dilation), groups);
}

ConvGeometry depthwise_geom(Shape4 x, Shape4 w, Pair strides, Shape4 pads, Pair dilation) {
  ConvGeometry g = conv_geom(x, w, strides, pads, dilation, x[3]);
  if (w[2] != 1)
    throw std::invalid_argument("depthwise: weights must be (KH, KW, 1, C*M), got Cin_g = " +
                                std::to_string(w[2]));
  return g;
}

PoolGeometry pool_geom(Shape4 x, Pair pool, Pair strides, Shape4 pads, const char* what) {
  Window2d v = window(strides, pads, {1, 1});
  v.kh = pool[0]; v.kw = pool[1];
  return fastconv::make_pool_geometry(x[0], x[1], x[2], x[3], v, what);
}

void require_rows(int64_t m, int64_t c, const char* what) {
  if (m < 0 || c < 1)
    throw std::invalid_argument(std::string(what) + ": need rows >= 0 and channels >= 1, got (" +
                                std::to_string(m) + ", " + std::to_string(c) + ")");
}

}  // namespace

// FASTCONV_CUDA_MODULE: _cuda, or _cuda_emu for the CPU emulation build of the same kernels.
#ifndef FASTCONV_CUDA_MODULE
#define FASTCONV_CUDA_MODULE _cuda
#endif

PYBIND11_MODULE(FASTCONV_CUDA_MODULE, m) {
  namespace fc = fastconv::cuda;
  m.doc() = "fastconv CUDA kernels on raw device pointers (use fastconv.cuda, not this module).";

  m.def("device_count", &fc::device_count);
  // This module links its own (static) CUDA runtime: point it at CuPy's current device.
  m.def("set_device", [](int device) {
    const cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess)
      throw std::runtime_error(std::string("fastconv._cuda.set_device: ") + cudaGetErrorString(err));
  });
  // Output shapes through the shared validation (ValueError on bad geometry), so Python can
  // allocate outputs without repeating the rules.
  m.def("conv_output_shape", [](Shape4 xs, Shape4 ws, Pair s, Shape4 p, Pair d, int64_t groups) {
    const ConvGeometry g = conv_geom(xs, ws, s, p, d, groups);
    return Shape4{g.n, g.oh, g.ow, g.oc};
  });
  m.def("pool_output_shape", [](Shape4 xs, Pair pool, Pair s, Shape4 p, const std::string& what) {
    const PoolGeometry g = pool_geom(xs, pool, s, p, what.c_str());
    return Shape4{g.n, g.oh, g.ow, g.c};
  });
  m.def("im2col", [](uintptr_t x, uintptr_t col, Shape4 xs, Shape4 ws, Pair s, Shape4 p, Pair d,
                     int64_t groups, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::im2col(conv_geom(xs, ws, s, p, d, groups), cf(x), mf(col), st(stream));
  });
  m.def("col2im", [](uintptr_t dcol, uintptr_t dx, Shape4 xs, Shape4 ws, Pair s, Shape4 p, Pair d,
                     int64_t groups, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::col2im(conv_geom(xs, ws, s, p, d, groups), cf(dcol), mf(dx), st(stream));
  });
  m.def("depthwise_forward", [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t y, Shape4 xs,
                                Shape4 ws, Pair s, Shape4 p, Pair d, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::depthwise_forward(depthwise_geom(xs, ws, s, p, d), cf(x), cf(w), cf(b), mf(y), st(stream));
  });
  m.def("depthwise_backward_data", [](uintptr_t dy, uintptr_t w, uintptr_t dx, Shape4 xs,
                                      Shape4 ws, Pair s, Shape4 p, Pair d, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::depthwise_backward_data(depthwise_geom(xs, ws, s, p, d), cf(dy), cf(w), mf(dx), st(stream));
  });
  m.def("depthwise_backward_weights", [](uintptr_t dy, uintptr_t x, uintptr_t dw, uintptr_t db,
                                         Shape4 xs, Shape4 ws, Pair s, Shape4 p, Pair d,
                                         uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::depthwise_backward_weights(depthwise_geom(xs, ws, s, p, d), cf(dy), cf(x), mf(dw), mf(db),
                                   st(stream));
  });
  m.def("column_sums", [](uintptr_t a, uintptr_t out, int64_t planes, int64_t rows, int64_t cols,
                          float scale, uintptr_t stream) {
    require_rows(rows, cols, "column_sums");
    py::gil_scoped_release nogil;
    fc::column_sums(planes, rows, cols, cf(a), scale, mf(out), st(stream));
  });

  m.def("max_pool2d_forward", [](uintptr_t x, uintptr_t y, Shape4 xs, Pair pool, Pair s, Shape4 p,
                                 uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::max_pool2d_forward(pool_geom(xs, pool, s, p, "max_pool2d"), cf(x), mf(y), st(stream));
  });
  m.def("max_pool2d_backward", [](uintptr_t dy, uintptr_t x, uintptr_t dx, Shape4 xs, Pair pool,
                                  Pair s, Shape4 p, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::max_pool2d_backward(pool_geom(xs, pool, s, p, "max_pool2d"), cf(dy), cf(x), mf(dx), st(stream));
  });
  m.def("avg_pool2d_forward", [](uintptr_t x, uintptr_t y, Shape4 xs, Pair pool, Pair s, Shape4 p,
                                 uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::avg_pool2d_forward(pool_geom(xs, pool, s, p, "avg_pool2d"), cf(x), mf(y), st(stream));
  });
  m.def("avg_pool2d_backward", [](uintptr_t dy, uintptr_t dx, Shape4 xs, Pair pool, Pair s,
                                  Shape4 p, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::avg_pool2d_backward(pool_geom(xs, pool, s, p, "avg_pool2d"), cf(dy), mf(dx), st(stream));
  });
  m.def("global_avg_pool2d_forward", [](uintptr_t x, uintptr_t y, int64_t n, int64_t hw, int64_t c,
                                        uintptr_t stream) {
    require_rows(n * hw, c, "global_avg_pool2d_forward");
    py::gil_scoped_release nogil;
    fc::global_avg_pool2d_forward(n, hw, c, cf(x), mf(y), st(stream));
  });
  m.def("global_avg_pool2d_backward", [](uintptr_t dy, uintptr_t dx, int64_t n, int64_t hw,
                                         int64_t c, uintptr_t stream) {
    require_rows(n * hw, c, "global_avg_pool2d_backward");
    py::gil_scoped_release nogil;
    fc::global_avg_pool2d_backward(n, hw, c, cf(dy), mf(dx), st(stream));
  });

  m.def("batch_norm_forward_train", [](uintptr_t x, uintptr_t gamma, uintptr_t beta, float eps,
                                       uintptr_t y, uintptr_t mean, uintptr_t var, uintptr_t inv_std,
                                       int64_t rows, int64_t c, uintptr_t stream) {
    if (rows < 1) throw std::invalid_argument("batch_norm_forward_train: x needs at least one row");
    require_rows(rows, c, "batch_norm_forward_train");
    py::gil_scoped_release nogil;
    fc::batch_norm_forward_train(rows, c, cf(x), cf(gamma), cf(beta), eps, mf(y), mf(mean), mf(var),
                                 mf(inv_std), st(stream));
  });
  m.def("batch_norm_forward_inference", [](uintptr_t x, uintptr_t gamma, uintptr_t beta,
                                           uintptr_t mean, uintptr_t var, float eps, uintptr_t y,
                                           int64_t rows, int64_t c, uintptr_t stream) {
    require_rows(rows, c, "batch_norm_forward_inference");
    py::gil_scoped_release nogil;
    fc::batch_norm_forward_inference(rows, c, cf(x), cf(gamma), cf(beta), cf(mean), cf(var), eps,
                                     mf(y), st(stream));
  });
  m.def("batch_norm_backward", [](uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean,
                                  uintptr_t inv_std, uintptr_t dx, uintptr_t dgamma,
                                  uintptr_t dbeta, int64_t rows, int64_t c, uintptr_t stream) {
    if (rows < 1) throw std::invalid_argument("batch_norm_backward: dy needs at least one row");
    require_rows(rows, c, "batch_norm_backward");
    py::gil_scoped_release nogil;
    fc::batch_norm_backward(rows, c, cf(dy), cf(x), cf(gamma), cf(mean), cf(inv_std), mf(dx),
                            mf(dgamma), mf(dbeta), st(stream));
  });

  m.def("bias_act_forward", [](uintptr_t x, uintptr_t b, int act, uintptr_t y, int64_t rows,
                               int64_t c, uintptr_t stream) {
    require_rows(rows, c, "bias_act_forward");
    py::gil_scoped_release nogil;
    fc::bias_act_forward(rows, c, cf(x), cf(b), act, mf(y), st(stream));
  });
  m.def("bias_act_backward", [](uintptr_t dy, uintptr_t y, int act, uintptr_t dz, uintptr_t db,
                                int64_t rows, int64_t c, uintptr_t stream) {
    require_rows(rows, c, "bias_act_backward");
    py::gil_scoped_release nogil;
    fc::bias_act_backward(rows, c, cf(dy), cf(y), act, mf(dz), mf(db), st(stream));
  });

  m.def("softmax_forward", [](uintptr_t x, uintptr_t y, int64_t n, int64_t c, uintptr_t stream) {
    require_rows(n, c, "softmax_forward");
    py::gil_scoped_release nogil;
    fc::softmax_forward(n, c, cf(x), mf(y), st(stream));
  });
  m.def("softmax_backward", [](uintptr_t dy, uintptr_t y, uintptr_t dx, int64_t n, int64_t c,
                               uintptr_t stream) {
    require_rows(n, c, "softmax_backward");
    py::gil_scoped_release nogil;
    fc::softmax_backward(n, c, cf(dy), cf(y), mf(dx), st(stream));
  });
  m.def("softmax_cross_entropy_forward", [](uintptr_t logits, uintptr_t labels, uintptr_t loss,
                                            uintptr_t probs, int64_t n, int64_t c, uintptr_t stream) {
    require_rows(n, c, "softmax_cross_entropy_forward");
    py::gil_scoped_release nogil;
    fc::softmax_cross_entropy_forward(n, c, cf(logits), reinterpret_cast<const int64_t*>(labels),
                                      mf(loss), mf(probs), st(stream));
  });
  m.def("sgd_update", [](uintptr_t w, uintptr_t g, uintptr_t velocity, int64_t n, float lr,
                         float momentum, bool nesterov, float decay, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::sgd_update(n, mf(w), cf(g), mf(velocity), lr, momentum, nesterov, decay, st(stream));
  });
  m.def("adam_update", [](uintptr_t w, uintptr_t g, uintptr_t m_, uintptr_t v, uintptr_t v_hat,
                          int64_t n, float alpha, float beta_1, float beta_2, float eps,
                          float decay, uintptr_t stream) {
    py::gil_scoped_release nogil;
    fc::adam_update(n, mf(w), cf(g), mf(m_), mf(v), mf(v_hat), alpha, beta_1, beta_2, eps, decay,
                    st(stream));
  });
  m.def("softmax_cross_entropy_backward", [](uintptr_t probs, uintptr_t labels, uintptr_t dloss,
                                             uintptr_t dlogits, int64_t n, int64_t c,
                                             uintptr_t stream) {
    require_rows(n, c, "softmax_cross_entropy_backward");
    py::gil_scoped_release nogil;
    fc::softmax_cross_entropy_backward(n, c, cf(probs), reinterpret_cast<const int64_t*>(labels),
                                       cf(dloss), mf(dlogits), st(stream));
  });
#ifdef FASTCONV_CUDA_EMULATION
  m.def("_set_reverse_order", &fastconv::emu::set_reverse_order,
        "Emulation only: run blocks and threads in reverse order (a race shows as a change).");
#endif
}
