// Bindings of the batch-norm kernels. x is (..., C): every axis but the last is a batch axis,
// so dense (N, C) and NHWC (N, H, W, C) activations share one kernel on the (m, C) view.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

struct Rows {
  int64_t m, c;
  std::vector<int64_t> shape;
};

// x must be at least 2-D (a batch axis and a channel axis) with C >= 1.
Rows rows_of(const py::array& x, const char* name, bool need_rows) {
  std::vector<int64_t> shape(x.shape(), x.shape() + x.ndim());
  if (x.ndim() < 2 || shape.back() < 1)
    throw py::value_error(std::string(name) + " must be at least 2-D (..., C) with C >= 1, got shape " +
                          shape_str(x));
  const int64_t c = shape.back();
  const int64_t m = (int64_t)x.size() / c;
  if (need_rows && m == 0)
    throw py::value_error(std::string(name) + " has no rows (shape " + shape_str(x) +
                          "): batch statistics are undefined for an empty batch");
  return {m, c, shape};
}

// gamma/beta may be None (Keras scale=False / center=False): 1 and 0.
const float* param_or(const py::handle& obj, const char* name, int64_t c, float fill,
                      py::array_t<float>& keep) {
  if (const float* p = optional_vec_f32(obj, name, c, keep)) return p;
  keep = empty_f32({c});
  float* d = keep.mutable_data();
  for (int64_t j = 0; j < c; ++j) d[j] = fill;
  return d;
}

const float* vec_c(const py::handle& obj, const char* name, int64_t c, py::array_t<float>& keep) {
  keep = require_f32(obj, name, 1, "(C,)");
  require_shape(keep, name, {c});
  return keep.data();
}

float check_eps(double eps) {
  if (!(eps >= 0.0)) throw py::value_error("eps must be >= 0, got " + std::to_string(eps));
  return (float)eps;
}

py::tuple forward_train(const py::handle& x_obj, const py::handle& gamma_obj,
                        const py::handle& beta_obj, double eps, bool relu) {
  auto x = require_f32(x_obj, "x", -1, "(..., C)");
  const Rows r = rows_of(x, "x", true);
  py::array_t<float> g_keep, b_keep;
  const float* gamma = param_or(gamma_obj, "gamma", r.c, 1.f, g_keep);
  const float* beta = param_or(beta_obj, "beta", r.c, 0.f, b_keep);
  const float e = check_eps(eps);
  auto y = empty_f32(r.shape);
  auto mean = empty_f32({r.c}), var = empty_f32({r.c}), inv_std = empty_f32({r.c});
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward_train(r.m, r.c, x.data(), gamma, beta, e, y.mutable_data(),
                                  mean.mutable_data(), var.mutable_data(), inv_std.mutable_data(),
                                  relu);
  }
  return py::make_tuple(y, mean, var, inv_std);
}

py::array_t<float> forward_inference(const py::handle& x_obj, const py::handle& gamma_obj,
                                     const py::handle& beta_obj, const py::handle& mean_obj,
                                     const py::handle& var_obj, double eps, bool relu) {
  auto x = require_f32(x_obj, "x", -1, "(..., C)");
  const Rows r = rows_of(x, "x", false);
  py::array_t<float> g_keep, b_keep, m_keep, v_keep;
  const float* gamma = param_or(gamma_obj, "gamma", r.c, 1.f, g_keep);
  const float* beta = param_or(beta_obj, "beta", r.c, 0.f, b_keep);
  const float* mean = vec_c(mean_obj, "mean", r.c, m_keep);
  const float* var = vec_c(var_obj, "var", r.c, v_keep);
  const float e = check_eps(eps);
  auto y = empty_f32(r.shape);
  if (r.m > 0) {
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward_inference(r.m, r.c, x.data(), gamma, beta, mean, var, e,
                                      y.mutable_data(), relu);
  }
  return y;
}

py::tuple backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& gamma_obj,
                   const py::handle& mean_obj, const py::handle& inv_std_obj,
                   const py::handle& relu_beta_obj) {
  auto x = require_f32(x_obj, "x", -1, "(..., C)");
  const Rows r = rows_of(x, "x", true);
  auto dy = require_f32(dy_obj, "dy", -1, "(..., C)");
  require_shape(dy, "dy", r.shape);
  py::array_t<float> g_keep, m_keep, s_keep;
  const float* gamma = param_or(gamma_obj, "gamma", r.c, 1.f, g_keep);
  const float* mean = vec_c(mean_obj, "mean", r.c, m_keep);
  const float* inv_std = vec_c(inv_std_obj, "inv_std", r.c, s_keep);
  py::array_t<float> rb_keep;
  const float* relu_beta = relu_beta_obj.is_none() ? nullptr : vec_c(relu_beta_obj, "relu_beta", r.c, rb_keep);
  auto dx = empty_f32(r.shape);
  auto dgamma = empty_f32({r.c}), dbeta = empty_f32({r.c});
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_backward(r.m, r.c, dy.data(), x.data(), gamma, mean, inv_std,
                             dx.mutable_data(), dgamma.mutable_data(), dbeta.mutable_data(),
                             relu_beta);
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm_forward_train", &forward_train, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("eps"), py::arg("relu") = false,
        "Batch norm with batch statistics over all axes but the last -> (y, mean, var, inv_std); "
        "var is biased (Keras). gamma/beta None mean 1/0. relu: max(y, 0) in the same pass.");
  m.def("batch_norm_forward_inference", &forward_inference, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("mean"), py::arg("var"), py::arg("eps"), py::arg("relu") = false,
        "Batch norm with given (moving) statistics (relu: max(y, 0) in the same pass).");
  m.def("batch_norm_backward", &backward, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("inv_std"), py::arg("relu_beta") = py::none(),
        "Gradients of batch_norm_forward_train -> (dx, dgamma, dbeta). relu_beta: the forward's "
        "beta when it ran with relu=True (dy is masked by the recomputed output's sign).");
}

}  // namespace fastconv::bind
