#include "python/common.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "xnorinfer C++ core: op registry, runtime";
  xnor::py_bind::register_runtime(m);
  xnor::py_bind::register_ops(m);
  xnor::py_bind::register_session(m);
}
