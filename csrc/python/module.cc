#include "python/common.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "xnorinfer C++ core: bit-packing, binary and float kernels, runtime";
  xnor::py_bind::register_runtime(m);
  xnor::py_bind::register_binary(m);
  xnor::py_bind::register_float(m);
  xnor::py_bind::register_session(m);
}
