#include <pybind11/stl.h>

#include "microkernels/amx_detect.h"
#include "python/common.h"
#include "runtime/memory_plan.h"
#include "runtime/session.h"

namespace xnor::py_bind {

void register_runtime(py::module_& m) {
  m.def(
      "available_isas",
      [] {
        std::vector<std::string> names;
        for (Isa isa : available_isas()) names.emplace_back(isa_name(isa));
        return names;
      },
      "ISA paths this CPU can run, most portable first.");
  m.def(
      "amx_support",
      [] {
        const AmxSupport& a = amx_support();
        return py::make_tuple(a.available, a.reason);
      },
      "(available, reason): whether this process can run AMX-INT8 tiles (CPUID, XCR0, Linux's permission "
      "for the tile data; XNORINFER_BGEMM=amx|auto), and what is missing when not.");
  m.def(
      "default_isa", [] { return std::string(isa_name(default_isa())); },
      "The path kernels use when none is given: XNORINFER_ISA if set, else the best available.");
  m.def("default_max_memory", &default_max_memory,
        "The default memory-plan limit of a Session in bytes: half of this machine's physical memory.");
  m.def(
      "plan_memory",
      [](const std::vector<size_t>& bytes, const std::vector<int>& first, const std::vector<int>& last,
         std::optional<uint64_t> pair_budget) {
        if (first.size() != bytes.size() || last.size() != bytes.size()) {
          throw std::invalid_argument("plan_memory: bytes, first and last must have the same length");
        }
        std::vector<BufferRequest> req(bytes.size());
        for (size_t i = 0; i < req.size(); ++i) req[i] = {bytes[i], first[i], last[i]};
        MemoryPlan plan;
        {
          py::gil_scoped_release release;
          plan = plan_memory(req, pair_budget.value_or(kGreedyPairBudget));
        }
        return py::make_tuple(plan.offsets, plan.arena_bytes);
      },
      py::arg("bytes"), py::arg("first"), py::arg("last"), py::arg("pair_budget") = py::none(),
      "The session's memory planner on buffers alive from step first[i] to last[i] (inclusive): returns "
      "(offsets, arena_bytes). Greedy by size while the buffers overlap in at most pair_budget pairs, else a "
      "time-order best-fit sweep (pair_budget=0 forces the sweep).");
  py::class_<ThreadPool>(m, "ThreadPool", "A fixed pool of worker threads shared by kernel calls.")
      .def(py::init<int>(), py::arg("threads"))
      .def_property_readonly("threads", &ThreadPool::threads);
}

}  // namespace xnor::py_bind
