// Bindings of the fused optimizer updates (csrc/cpu/optimizer.cpp). Every array is updated in
// place, so each must be a writeable, C-contiguous float32 array of the parameter's shape;
// anything else raises TypeError/ValueError naming it (the Python optimizers only call these
// for such arrays and keep their NumPy code for the rest).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/array_check.h"
#include "kernels.h"

namespace py = pybind11;

namespace fastconv::bind {

namespace {

// The parameter array: float32, C-contiguous, writeable, any rank.
py::array_t<float> param(const py::handle& obj, const char* name) {
  auto a = require_f32(obj, name, -1, "(any shape)");
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writeable (updated in place)");
  return a;
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// A gradient or slot: like the parameter and of its shape. Slots must be writeable.
py::array_t<float> like(const py::handle& obj, const char* name, const py::array& w, bool slot) {
  auto a = require_f32(obj, name, -1, "(the parameter's shape)");
  require_shape(a, name, shape_of(w));
  if (slot && !a.writeable()) throw py::value_error(std::string(name) + " must be writeable (updated in place)");
  return a;
}

// An optional slot (None -> nullptr); `keep` holds the checked array alive.
float* optional_slot(const py::handle& obj, const char* name, const py::array& w,
                     py::array_t<float>& keep) {
  if (obj.is_none()) return nullptr;
  keep = like(obj, name, w, true);
  return keep.mutable_data();
}

void sgd(const py::handle& w_obj, const py::handle& g_obj, const py::handle& vel_obj, double lr,
         double momentum, bool nesterov, double decay) {
  auto w = param(w_obj, "w");
  auto g = like(g_obj, "g", w, false);
  py::array_t<float> vel_keep;
  float* vel = optional_slot(vel_obj, "velocity", w, vel_keep);
  py::gil_scoped_release nogil;
  cpu::sgd_update(w.size(), w.mutable_data(), g.data(), vel, (float)lr, (float)momentum,
                  nesterov, (float)decay);
}

void adam(const py::handle& w_obj, const py::handle& g_obj, const py::handle& m_obj,
          const py::handle& v_obj, double alpha, double beta_1, double beta_2, double epsilon,
          const py::handle& v_hat_obj, double decay) {
  auto w = param(w_obj, "w");
  auto g = like(g_obj, "g", w, false);
  auto m = like(m_obj, "m", w, true);
  auto v = like(v_obj, "v", w, true);
  py::array_t<float> vh_keep;
  float* v_hat = optional_slot(v_hat_obj, "v_hat", w, vh_keep);
  py::gil_scoped_release nogil;
  cpu::adam_update(w.size(), w.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(),
                   v_hat, (float)alpha, (float)(1.0 - beta_1), (float)(1.0 - beta_2), (float)epsilon,
                   (float)decay);
}

void rmsprop(const py::handle& w_obj, const py::handle& g_obj, const py::handle& ms_obj,
             double lr, double rho, double momentum, double epsilon, const py::handle& mg_obj,
             const py::handle& mom_obj, double decay) {
  auto w = param(w_obj, "w");
  auto g = like(g_obj, "g", w, false);
  auto ms = like(ms_obj, "velocity", w, true);
  py::array_t<float> mg_keep, mom_keep;
  float* mg = optional_slot(mg_obj, "average_gradient", w, mg_keep);
  float* mom = optional_slot(mom_obj, "momentum_buffer", w, mom_keep);
  py::gil_scoped_release nogil;
  cpu::rmsprop_update(w.size(), w.mutable_data(), g.data(), ms.mutable_data(), mg, mom,
                      (float)lr, (float)rho, (float)(1.0 - rho), (float)momentum, (float)epsilon,
                      (float)decay);
}

void adagrad(const py::handle& w_obj, const py::handle& g_obj, const py::handle& acc_obj,
             double lr, double epsilon, double decay) {
  auto w = param(w_obj, "w");
  auto g = like(g_obj, "g", w, false);
  auto acc = like(acc_obj, "accumulator", w, true);
  py::gil_scoped_release nogil;
  cpu::adagrad_update(w.size(), w.mutable_data(), g.data(), acc.mutable_data(), (float)lr,
                      (float)epsilon, (float)decay);
}

}  // namespace

void bind_optimizer(py::module_& m) {
  m.def("sgd_update", &sgd, py::arg("w"), py::arg("g"), py::arg("velocity"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("nesterov") = false, py::arg("decay") = 0.0,
        "In place: w -= w*decay; SGD step (velocity None: no momentum), Keras formulas.");
  m.def("adam_update", &adam, py::arg("w"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        py::arg("v_hat") = py::none(), py::arg("decay") = 0.0,
        "In place: w -= w*decay; Adam step with the bias-corrected step size alpha (v_hat: "
        "amsgrad).");
  m.def("rmsprop_update", &rmsprop, py::arg("w"), py::arg("g"), py::arg("velocity"),
        py::arg("lr"), py::arg("rho"), py::arg("momentum"), py::arg("epsilon"),
        py::arg("average_gradient") = py::none(), py::arg("momentum_buffer") = py::none(),
        py::arg("decay") = 0.0,
        "In place: w -= w*decay; RMSprop step (average_gradient: centered; momentum_buffer: "
        "momentum > 0).");
  m.def("adagrad_update", &adagrad, py::arg("w"), py::arg("g"), py::arg("accumulator"),
        py::arg("lr"), py::arg("epsilon"), py::arg("decay") = 0.0,
        "In place: w -= w*decay; Adagrad step.");
}

}  // namespace fastconv::bind
