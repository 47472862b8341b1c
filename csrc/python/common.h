// Shared helpers for the binding files: ISA and pool arguments, shape checks.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "runtime/isa.h"
#include "runtime/thread_pool.h"

namespace xnor::py_bind {

namespace py = pybind11;

// C-contiguous and aligned: numpy copies an input that is not (e.g. a view at an odd byte
// offset of a buffer), so the kernels' typed loads are never misaligned. Outputs are checked
// by output_array instead, because a copy would silently drop the results.
constexpr int kAlignedFlag = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
template <typename T>
using CArray = py::array_t<T, py::array::c_style | kAlignedFlag>;

inline bool is_aligned(const py::array& a) { return (py::detail::array_proxy(a.ptr())->flags & kAlignedFlag) != 0; }

inline Isa resolve_isa(const std::optional<std::string>& isa) {
  const Isa chosen = isa ? parse_isa(*isa) : default_isa();
  if (!isa_available(chosen)) {
    throw std::runtime_error(std::string("ISA path '") + isa_name(chosen) + "' is not supported by this CPU");
  }
  return chosen;
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks a caller-provided output array; returns it, or a new one when none given.
template <typename T>
CArray<T> output_array(const std::optional<CArray<T>>& out, const std::vector<py::ssize_t>& shape, const char* what) {
  if (!out) return CArray<T>(shape);
  const CArray<T>& o = *out;
  if (!is_aligned(o)) {
    throw std::invalid_argument(std::string(what) +
                                ": out must be aligned for its dtype (not a view at an odd byte offset)");
  }
  bool ok = o.ndim() == static_cast<py::ssize_t>(shape.size()) && o.writeable();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = o.shape(static_cast<py::ssize_t>(i)) == shape[i];
  if (!ok) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw std::invalid_argument(std::string(what) + ": out must be a writeable C-contiguous array of shape " + want +
                                "), got " + shape_str(o));
  }
  return o;
}

// Same check for an `out` taken as a plain array: it must already be exactly
// the right dtype, C-contiguous and writeable, so results never land in a
// silent temporary copy.
template <typename T>
CArray<T> output_array(const std::optional<py::array>& out, const std::vector<py::ssize_t>& shape, const char* what) {
  if (!out) return CArray<T>(shape);
  if (!CArray<T>::check_(*out) || !out->writeable()) {
    throw std::invalid_argument(std::string(what) + ": out must be a writeable C-contiguous " +
                                py::str(py::dtype::of<T>()).cast<std::string>() + " array, got dtype " +
                                py::str(out->dtype()).cast<std::string>());
  }
  return output_array<T>(std::optional<CArray<T>>(py::reinterpret_borrow<CArray<T>>(*out)), shape, what);
}

void register_runtime(py::module_& m);
void register_ops(py::module_& m);
void register_session(py::module_& m);

}  // namespace xnor::py_bind
