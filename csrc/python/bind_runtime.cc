#include <pybind11/stl.h>

#include "python/common.h"

namespace xnor::py_bind {

void register_runtime(py::module_& m) {
  m.def("available_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : available_isas()) names.emplace_back(isa_name(isa));
    return names;
  }, "ISA paths this CPU can run, most portable first.");
  m.def("default_isa", [] { return std::string(isa_name(default_isa())); },
        "The path kernels use when none is given: XNORINFER_ISA if set, else the best available.");
  py::class_<ThreadPool>(m, "ThreadPool", "A fixed pool of worker threads shared by kernel calls.")
      .def(py::init<int>(), py::arg("threads"))
      .def_property_readonly("threads", &ThreadPool::threads);
}

}  // namespace xnor::py_bind
