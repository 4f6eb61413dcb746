// Argument checking shared by every binding. The bindings are public (fastconv._C), so each
// one validates dtype, contiguity, rank and shapes itself and raises a Python exception that
// names the argument; nothing reaches a kernel unchecked.
//
// Policy: the raw bindings REJECT (TypeError) arrays that are not float32 (int64 for labels)
// or not C-contiguous; they never copy silently. fastconv.functional converts for the user.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "kernels.h"
#include "output_pool.h"

namespace fastconv::bind {

namespace py = pybind11;

// std::to_string, not a stream: see dims_str in common/geometry.h.
inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
inline py::array_t<T> require_array(const py::handle& obj, const char* name, int ndim,
                                    const char* expected, const char* dtype_name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray of " + dtype_name + " " +
                         expected + ", got " + std::string(py::str(py::type::of(obj))));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<T>>(arr) || arr.dtype().kind() != py::dtype::of<T>().kind() ||
      arr.itemsize() != sizeof(T))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name + ", got " +
                         std::string(py::str(arr.dtype())) + " (convert with .astype)");
  if (!(arr.flags() & py::array::c_style))
    throw py::type_error(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
  if (ndim >= 0 && arr.ndim() != ndim)
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D " + expected +
                          ", got shape " + shape_str(arr));
  // Checked above: the array is already what array_t<T> holds, so no conversion (constructing
  // array_t from it ran numpy's PyArray_FromAny on every argument of every call).
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

// float32, C-contiguous, given rank (-1: any rank). `expected` describes the layout, e.g.
// "(N, H, W, C)".
inline py::array_t<float> require_f32(const py::handle& obj, const char* name, int ndim,
                                      const char* expected) {
  return require_array<float>(obj, name, ndim, expected, "float32");
}

inline py::array_t<int64_t> require_i64(const py::handle& obj, const char* name, int ndim,
                                        const char* expected) {
  return require_array<int64_t>(obj, name, ndim, expected, "int64");
}

// Optional float32 vector of length n (None allowed); returns nullptr for None.
inline const float* optional_vec_f32(const py::handle& obj, const char* name, int64_t n,
                                     py::array_t<float>& keep) {
  if (obj.is_none()) return nullptr;
  keep = require_f32(obj, name, 1, "(C,)");
  if (keep.shape(0) != n)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) +
                          ",), got " + shape_str(keep));
  return keep.data();
}

inline void require_shape(const py::array& a, const char* name, const std::vector<int64_t>& want) {
  bool ok = a.ndim() == (py::ssize_t)want.size();
  for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(i) == want[i];
  if (!ok) {
    std::string msg = std::string(name) + " must have shape (";
    for (size_t i = 0; i < want.size(); ++i) msg += (i ? ", " : "") + std::to_string(want[i]);
    throw py::value_error(msg + (want.size() == 1 ? ",)" : ")") + ", got " + shape_str(a));
  }
}

// A tuple/list of exactly N integers (Python or NumPy, via __index__; bool rejected), e.g.
// strides=(2, 2); `layout` names the entries in the message.
template <size_t N>
inline std::array<int64_t, N> int_tuple(const py::handle& obj, const char* name, const char* layout) {
  // The message only when it is raised: building it on every call was a visible share of a
  // small kernel's call (string appends and allocations, four tuples per conv call).
  const auto want = [&] {
    return std::string(name) + " must be a tuple of " + std::to_string(N) + " ints " + layout;
  };
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj))
    throw py::type_error(want() + ", got " + std::string(py::str(py::type::of(obj))));
  auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (seq.size() != N)
    throw py::value_error(want() + ", got " + std::to_string(seq.size()) + " values: " +
                          std::string(py::repr(obj)));
  std::array<int64_t, N> out{};
  for (size_t i = 0; i < N; ++i) {
    py::handle v = seq[i];
    if (py::isinstance<py::bool_>(v) || !PyIndex_Check(v.ptr()))
      throw py::type_error(want() + ", got " + std::string(py::repr(obj)));
    out[i] = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr())).cast<int64_t>();
  }
  return out;
}

// Debug switch "poison outputs": every output a binding allocates is filled with NaN (uint8
// outputs with 0xFF) before its kernel runs, so a kernel that leaves part of its output
// unwritten fails the tests instead of passing by luck of what np.empty's memory held.
// Only fresh allocations: buffers a caller passes in (in-place optimizer updates) are never
// touched. Set by FASTCONV_POISON_OUTPUTS=1 (read once, at the first allocation) or
// _C._set_poison_outputs(bool); tests/conftest.py turns it on for the whole test session.
// One flag per process: an inline function's static is shared by every binding file.
inline std::atomic<bool>& poison_outputs() {
  static std::atomic<bool> flag([] {
    const char* env = std::getenv("FASTCONV_POISON_OUTPUTS");
    return env != nullptr && std::string(env) == "1";
  }());
  return flag;
}

// Outputs of at least kAlignedOutputBytes start on a 64-byte line (numpy's own allocations
// are 16-byte aligned): a kernel's 64-byte vector stores to a row that starts on a line then
// each write one line instead of straddling two. One thread, the native GEMM writing C
// 16 bytes past a line -> on a line (GFLOP/s): 3136x256x64 (a 56x56 64->256 1x1 conv at
// batch 1) 128-129 -> 204-213, 50176x256x64 113-123 -> 182-211, 12544x512x128 159-164 ->
// 208-217, 3136x1024x256 157-200 -> 170-223. Smaller outputs keep numpy's allocation (an
// aligned block and its owner object cost a few hundred ns per call). The larger ones come from
// the output pool (output_pool.h), which hands a freed block of the same size back.
constexpr size_t kAlignedOutputBytes = 4096;

// An uninitialised C-ordered array: outputs of kAlignedOutputBytes or more from the output
// pool, smaller ones from numpy; filled with `poison` in the poison-outputs mode.
template <typename T>
inline py::array_t<T> empty_output(const std::vector<int64_t>& shape, T poison) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  size_t count = 1;
  for (int64_t d : shape) count *= (size_t)d;
  py::array_t<T> a;
  if (count * sizeof(T) >= kAlignedOutputBytes) {
    void* p = output_pool().take(count * sizeof(T));
    py::capsule owner(p, [](void* q) { output_pool().give(q); });
    a = py::array_t<T>(s, static_cast<T*>(p), owner);
  } else {
    a = py::array_t<T>(s);
  }
  if (poison_outputs().load(std::memory_order_relaxed)) std::fill_n(a.mutable_data(), a.size(), poison);
  return a;
}

inline py::array_t<float> empty_f32(const std::vector<int64_t>& shape) {
  return empty_output<float>(shape, std::numeric_limits<float>::quiet_NaN());
}

inline py::array_t<uint8_t> empty_u8(const std::vector<int64_t>& shape) {  // a max pool's argmax
  return empty_output<uint8_t>(shape, 0xFF);
}

// strides (sh, sw), pads (top, bottom, left, right), dilation (dh, dw) -> a Window2d.
inline Window2d make_window(const py::handle& strides, const py::handle& pads,
                            const py::handle& dilation) {
  const auto s = int_tuple<2>(strides, "strides", "(sh, sw)");
  const auto p = int_tuple<4>(pads, "pads", "(top, bottom, left, right)");
  const auto d = int_tuple<2>(dilation, "dilation", "(dh, dw)");
  Window2d win;
  win.sh = s[0]; win.sw = s[1];
  win.pt = p[0]; win.pb = p[1]; win.pl = p[2]; win.pr = p[3];
  win.dh = d[0]; win.dw = d[1];
  return win;
}

// 'linear' | 'relu' | 'sigmoid' | 'tanh' | 'relu6' -> the kernels' Activation (TypeError/ValueError).
inline Activation parse_activation(const py::handle& obj) {
  if (!py::isinstance<py::str>(obj))
    throw py::type_error("activation must be a str, one of 'linear', 'relu', 'sigmoid', 'tanh', 'relu6', got " +
                         std::string(py::str(py::type::of(obj))));
  const std::string name = obj.cast<std::string>();
  if (name == "linear") return Activation::Linear;
  if (name == "relu") return Activation::Relu;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "tanh") return Activation::Tanh;
  if (name == "relu6") return Activation::Relu6;
  throw py::value_error("activation must be one of 'linear', 'relu', 'sigmoid', 'tanh', 'relu6', got '" +
                        name + "'");
}

}  // namespace fastconv::bind
