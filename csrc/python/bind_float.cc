#include "python/common.h"

namespace xnor::py_bind {

void register_float(py::module_& m) {}

}  // namespace xnor::py_bind
