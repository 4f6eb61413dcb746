// fastconv._C._index_check: a test hook that runs the CUDA kernels' per-element FC_HD
// functions (common/im2col_index.h, common/pool_gather.h, common/act_math.h) on the CPU
// over whole arrays, one call per element exactly as the GPU threads do, so
// tests/test_cuda_index.py checks the GPU indexing against the NumPy oracle without a GPU.
// Not a fast path: plain serial loops, forcecast inputs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/act_math.h"
#include "common/geometry.h"
#include "common/im2col_index.h"
#include "common/pool_gather.h"

namespace fastconv::bind {

namespace py = pybind11;

namespace {

using Farr = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Shape4 = std::array<int64_t, 4>;
using Pair = std::array<int64_t, 2>;

Shape4 shape4(const Farr& a, const char* name) {
  if (a.ndim() != 4) throw py::value_error(std::string(name) + " must be 4-D");
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

Window2d window(Pair s, Shape4 p, Pair d) {
  Window2d v;
  v.sh = s[0]; v.sw = s[1]; v.pt = p[0]; v.pb = p[1]; v.pl = p[2]; v.pr = p[3];
  v.dh = d[0]; v.dw = d[1];
  return v;
}

ConvGeometry conv_geom(Shape4 x, Shape4 w, Pair s, Shape4 p, Pair d, int64_t groups) {
  return make_conv_geometry(x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3], window(s, p, d), groups);
}

PoolGeometry pool_geom(Shape4 x, Pair pool, Pair s, Shape4 p) {
  Window2d v = window(s, p, {1, 1});
  v.kh = pool[0]; v.kw = pool[1];
  return make_pool_geometry(x[0], x[1], x[2], x[3], v, "index_check");
}

// out[i] = f(i) for every element, the GPU's one-thread-per-element map run serially.
template <class F>
Farr map_to(std::vector<py::ssize_t> shape, F f) {
  Farr out(shape);
  float* o = out.mutable_data();
  for (py::ssize_t i = 0; i < out.size(); ++i) o[i] = f((int64_t)i);
  return out;
}

}  // namespace

void bind_index_check(py::module_& parent) {
  auto m = parent.def_submodule("_index_check", "CPU runs of the CUDA kernels' FC_HD index functions (tests only)");
  m.def("im2col", [](Farr x, Shape4 ws, Pair s, Shape4 p, Pair d, int64_t groups) {
    const ConvGeometry g = conv_geom(shape4(x, "x"), ws, s, p, d, groups);
    const float* xp = x.data();
    return map_to({(py::ssize_t)(g.n * g.oh * g.ow), (py::ssize_t)(groups * ws[0] * ws[1] * ws[2])},
                  [&](int64_t i) { return im2col_value(g, xp, i); });
  });
  m.def("col2im", [](Farr dcol, Shape4 xs, Shape4 ws, Pair s, Shape4 p, Pair d, int64_t groups) {
    const ConvGeometry g = conv_geom(xs, ws, s, p, d, groups);
    if (dcol.size() != g.n * g.oh * g.ow * groups * ws[0] * ws[1] * ws[2])
      throw py::value_error("dcol has the wrong size for this geometry");
    const float* cp = dcol.data();
    return map_to({xs[0], xs[1], xs[2], xs[3]}, [&](int64_t i) { return col2im_value(g, cp, i); });
  });
  m.def("depthwise_forward", [](Farr x, Farr w, std::optional<Farr> b, Pair s, Shape4 p, Pair d) {
    const Shape4 xs = shape4(x, "x");
    const ConvGeometry g = conv_geom(xs, shape4(w, "w"), s, p, d, xs[3]);
    const float *xp = x.data(), *wp = w.data(), *bp = b ? b->data() : nullptr;
    return map_to({g.n, g.oh, g.ow, g.oc}, [&](int64_t i) { return depthwise_forward_value(g, xp, wp, bp, i); });
  });
  m.def("depthwise_backward_data", [](Farr dy, Farr w, Shape4 xs, Pair s, Shape4 p, Pair d) {
    const ConvGeometry g = conv_geom(xs, shape4(w, "w"), s, p, d, xs[3]);
    const float *dp = dy.data(), *wp = w.data();
    return map_to({xs[0], xs[1], xs[2], xs[3]},
                  [&](int64_t i) { return depthwise_backward_data_value(g, dp, wp, i); });
  });
  // Sums depthwise_dw_term over every output position, serially (the GPU sums the same terms
  // in a fixed blocked order; the test tolerance covers the different rounding).
  m.def("depthwise_backward_weights", [](Farr dy, Farr x, Shape4 ws, Pair s, Shape4 p, Pair d) {
    const Shape4 xs = shape4(x, "x");
    const ConvGeometry g = conv_geom(xs, ws, s, p, d, xs[3]);
    const float *dp = dy.data(), *xp = x.data();
    const int64_t rows = g.n * g.oh * g.ow;
    return map_to({ws[0], ws[1], ws[2], ws[3]}, [&](int64_t i) {
      const int64_t tap = i / g.oc, o = i % g.oc;
      double acc = 0.0;
      for (int64_t r = 0; r < rows; ++r) acc += depthwise_dw_term(g, dp, xp, tap, o, r);
      return (float)acc;
    });
  });
  m.def("max_pool2d_forward", [](Farr x, Pair pool, Pair s, Shape4 p) {
    const PoolGeometry g = pool_geom(shape4(x, "x"), pool, s, p);
    const float* xp = x.data();
    return map_to({g.n, g.oh, g.ow, g.c}, [&](int64_t i) { return max_pool_forward_value(g, xp, i); });
  });
  m.def("max_pool2d_backward", [](Farr dy, Farr x, Pair pool, Pair s, Shape4 p) {
    const PoolGeometry g = pool_geom(shape4(x, "x"), pool, s, p);
    const float *dp = dy.data(), *xp = x.data();
    return map_to({g.n, g.h, g.w, g.c}, [&](int64_t i) { return max_pool_backward_value(g, dp, xp, i); });
  });
  m.def("avg_pool2d_forward", [](Farr x, Pair pool, Pair s, Shape4 p) {
    const PoolGeometry g = pool_geom(shape4(x, "x"), pool, s, p);
    const float* xp = x.data();
    return map_to({g.n, g.oh, g.ow, g.c}, [&](int64_t i) { return avg_pool_forward_value(g, xp, i); });
  });
  m.def("avg_pool2d_backward", [](Farr dy, Shape4 xs, Pair pool, Pair s, Shape4 p) {
    const PoolGeometry g = pool_geom(xs, pool, s, p);
    const float* dp = dy.data();
    return map_to({g.n, g.h, g.w, g.c}, [&](int64_t i) { return avg_pool_backward_value(g, dp, i); });
  });
  m.def("act_apply", [](Farr z, int act) {
    const float* zp = z.data();
    std::vector<py::ssize_t> shape(z.shape(), z.shape() + z.ndim());
    return map_to(shape, [&](int64_t i) { return act_apply(act, zp[i]); });
  });
  m.def("act_grad_from_output", [](Farr y, int act) {
    const float* yp = y.data();
    std::vector<py::ssize_t> shape(y.shape(), y.shape() + y.ndim());
    return map_to(shape, [&](int64_t i) { return act_grad_from_output(act, yp[i]); });
  });
}

}  // namespace fastconv::bind
