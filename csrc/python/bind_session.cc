#include "python/common.h"

namespace xnor::py_bind {

// The .xbin loader and graph runtime bindings (filled in by the runtime work).
void register_session(py::module_& m) {}

}  // namespace xnor::py_bind
