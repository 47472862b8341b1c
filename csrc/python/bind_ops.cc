// The op-level bindings: run_op builds one node through the same registry, schema checks and
// factory the loader uses, plans its workspace and runs it once, so tests reach every kernel the
// way a model does; op_schemas exposes the registry's schemas.
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "microkernels/bconv2d_microkernel.h"
#include "microkernels/dispatch.h"
#include "operators/aligned_buffer.h"
#include "operators/bconv2d.h"
#include "python/common.h"
#include "runtime/nodes.h"
#include "runtime/op_registry.h"
#include "runtime/tensor_shape.h"

namespace xnor::py_bind {
namespace {

AttrValue attr_value(const py::handle& v, const std::string& key) {
  AttrValue a;
  if (py::isinstance<py::bool_>(v)) {
    a.type = AttrValue::Type::kBool;
    a.b = v.cast<bool>();
  } else if (py::isinstance<py::int_>(v)) {
    a.type = AttrValue::Type::kInt;
    a.i = v.cast<int64_t>();
  } else if (py::isinstance<py::float_>(v)) {
    a.type = AttrValue::Type::kFloat;
    a.f = v.cast<double>();
  } else if (py::isinstance<py::str>(v)) {
    a.type = AttrValue::Type::kString;
    a.s = v.cast<std::string>();
  } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    a.type = AttrValue::Type::kInts;
    for (const py::handle& e : v) {
      if (!py::isinstance<py::int_>(e) || py::isinstance<py::bool_>(e)) {
        throw std::invalid_argument("run_op: attribute '" + key + "' must hold integers");
      }
      a.ints.push_back(e.cast<int64_t>());
    }
  } else {
    throw std::invalid_argument("run_op: attribute '" + key + "' has an unsupported type");
  }
  return a;
}

std::string param_dtype(const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return "float32";
  if (a.dtype().is(py::dtype::of<uint64_t>())) return "uint64";
  if (a.dtype().is(py::dtype::of<int32_t>())) return "int32";
  if (a.dtype().is(py::dtype::of<uint8_t>())) return "uint8";
  return py::str(a.dtype()).cast<std::string>();
}

std::vector<py::ssize_t> storage_shape(const Shape& s, DType t) {
  std::vector<py::ssize_t> dims(s.d, s.d + s.rank);
  dims.back() = static_cast<py::ssize_t>(row_elements(s, t));
  return dims;
}

// An op's description and parameter views, with the arrays the views point into.
struct OpInput {
  OpDesc op;
  std::vector<py::array> param_arrays;  // C-contiguous, aligned; alive while the node is built
  std::map<std::string, ParamView> params;
};

OpInput describe_op(const std::string& kind, const py::dict& attrs, const py::dict& params) {
  OpInput d;
  d.op.kind = kind;
  d.op.name = kind;
  d.op.outputs = {"output"};
  for (const auto& [k, v] : attrs) {
    const std::string key = k.cast<std::string>();
    d.op.attrs[key] = attr_value(v, key);
  }
  for (const auto& [k, v] : params) {
    const std::string key = k.cast<std::string>();
    py::array a = py::array::ensure(v, py::array::c_style | kAlignedFlag);
    if (!a) throw std::invalid_argument("run_op: parameter '" + key + "' is not an array");
    d.param_arrays.push_back(a);
    d.params[key] = ParamView{param_dtype(a), std::vector<int64_t>(a.shape(), a.shape() + a.ndim()), a.data(),
                              static_cast<int64_t>(a.size())};
  }
  return d;
}

// Input i: float32 (f32), or uint64 packed bits (the last axis in words).
struct InputArray {
  py::array array;
  DType type;
};

InputArray input_array(const py::handle& h, size_t i) {
  const std::string what = "run_op: input " + std::to_string(i);
  py::array a = py::array::ensure(h, py::array::c_style | kAlignedFlag);
  if (!a) throw std::invalid_argument(what + " is not an array");
  const bool bits = a.dtype().is(py::dtype::of<uint64_t>());
  if (!bits && !a.dtype().is(py::dtype::of<float>())) {
    throw std::invalid_argument(what + " must be float32 or packed uint64, got " + param_dtype(a));
  }
  if (a.ndim() < 1 || a.ndim() > kMaxRank) {
    throw std::invalid_argument(what + ": rank must be 1 to " + std::to_string(kMaxRank) + ", got " + shape_str(a));
  }
  return {a, bits ? DType::kBits : DType::kF32};
}

// One node built by the runtime's registry (schema checks and factory), run on any inputs
// whose channel counts are the ones it was built for.
class PreparedOp {
 public:
  PreparedOp(const std::string& kind, const py::dict& attrs, const py::dict& params, std::vector<int64_t> channels)
      : desc_(describe_op(kind, attrs, params)), channels_(std::move(channels)) {
    for (size_t i = 0; i < channels_.size(); ++i) desc_.op.inputs.push_back("input" + std::to_string(i));
    node_ = make_node(desc_.op, desc_.params, channels_);
  }

  const Node& node() const { return *node_; }

  py::array run(const py::list& inputs, const std::optional<std::string>& isa_opt, int threads, ThreadPool* pool,
                const std::optional<py::array>& out) const {
    if (inputs.size() != channels_.size()) {
      throw std::invalid_argument("run_op: the op was built for " + std::to_string(channels_.size()) +
                                  " input(s), got " + std::to_string(inputs.size()));
    }
    std::vector<py::array> arrays;
    std::vector<Shape> shapes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::string what = "run_op: input " + std::to_string(i);
      const InputArray in = input_array(inputs[i], i);
      Shape s;
      s.rank = static_cast<int>(in.array.ndim());
      for (int d = 0; d < s.rank; ++d) s.d[d] = in.array.shape(d);
      if (in.type == DType::kBits) {
        const int64_t words = s.d[s.rank - 1];
        s.d[s.rank - 1] = channels_[i];
        if (words_of(channels_[i]) != words) {
          throw std::invalid_argument(what + ": " + std::to_string(words) + " words do not hold " +
                                      std::to_string(channels_[i]) + " channels");
        }
      }
      checked_bytes(s, in.type, what);
      if (in.type != node_->in_type(i)) {
        node_fail("input " + std::to_string(i) + " must be " +
                  (node_->in_type(i) == DType::kF32 ? "float32" : "packed uint64 bits"));
      }
      arrays.push_back(in.array);
      shapes.push_back(s);
    }
    const Shape out_shape = node_->infer(shapes.data(), shapes.size());
    const int64_t out_bytes = checked_bytes(out_shape, node_->out_type(), "run_op: output");

    const Isa isa = resolve_isa(isa_opt);
    if (threads < 1) throw std::invalid_argument("run_op: threads must be at least 1");
    std::unique_ptr<ThreadPool> own_pool;
    if (pool == nullptr && threads > 1) own_pool = std::make_unique<ThreadPool>(threads);
    ThreadPool* const runner = pool != nullptr ? pool : own_pool.get();

    py::array result;
    void* dst = nullptr;
    if (node_->out_type() == DType::kF32) {
      CArray<float> r = output_array<float>(out, storage_shape(out_shape, DType::kF32), "run_op");
      dst = r.mutable_data();
      result = r;
    } else {
      CArray<uint64_t> r = output_array<uint64_t>(out, storage_shape(out_shape, DType::kBits), "run_op");
      dst = r.mutable_data();
      result = r;
    }
    std::vector<const void*> in_data;
    for (const py::array& a : arrays) in_data.push_back(a.data());
    const AlignedBytes workspace(
        node_->workspace_bytes(shapes.data(), shapes.size(), runner == nullptr ? 1 : runner->threads()));
    {
      py::gil_scoped_release release;
      if (node_->aliases_input()) {
        // In a graph the output is a view of the input; here it is a copy of the same bytes.
        std::memcpy(dst, in_data[0], static_cast<size_t>(out_bytes));
      } else {
        const RunContext ctx{runner, isa, &elementwise_kernels(isa), &binary_kernels(isa), workspace.data()};
        node_->run(ctx, in_data.data(), shapes.data(), shapes.size(), dst, out_shape);
      }
    }
    return result;
  }

 private:
  [[noreturn]] void node_fail(const std::string& what) const {
    throw std::invalid_argument("op '" + desc_.op.name + "' (" + desc_.op.kind + "): " + what);
  }

  OpInput desc_;  // keeps the parameter arrays alive beside the node built from them
  std::vector<int64_t> channels_;
  std::unique_ptr<Node> node_;
};

// The channel count of each input: float32 arrays' last axis; for packed bits `channels`
// (default: every bit of the last axis' words).
std::vector<int64_t> input_channels(const py::list& inputs, const std::optional<std::vector<int64_t>>& channels) {
  if (channels) {
    if (channels->size() != inputs.size())
      throw std::invalid_argument("run_op: channels must give one count per input");
    return *channels;
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputArray in = input_array(inputs[i], i);
    const int64_t last = in.array.shape(in.array.ndim() - 1);
    out.push_back(in.type == DType::kBits ? last * 64 : last);
  }
  return out;
}

py::array run_op(const std::string& kind, const py::dict& attrs, const py::dict& params, const py::list& inputs,
                 const std::optional<std::string>& isa, int threads, ThreadPool* pool,
                 const std::optional<std::vector<int64_t>>& channels, const std::optional<py::array>& out) {
  // The node first, as the loader does: its attribute and parameter errors come before any
  // about the inputs.
  const PreparedOp op(kind, attrs, params, input_channels(inputs, channels));
  return op.run(inputs, isa, threads, pool, out);
}

py::list op_schemas() {
  py::list out;
  for (const OpRegistration& r : registered_ops()) {
    const OpSchema& s = *r.schema;
    py::dict attrs, params;
    for (const AttrSchema& a : s.attrs) {
      attrs[a.name] = py::dict(py::arg("type") = attr_type_name(a.type), py::arg("required") = a.required);
    }
    for (const ParamSchema& p : s.params) {
      params[p.name] = py::dict(py::arg("dtype") = param_dtype_name(p.dtype), py::arg("required") = p.required);
    }
    out.append(py::dict(py::arg("name") = s.name, py::arg("min_inputs") = s.min_inputs,
                        py::arg("max_inputs") = s.max_inputs, py::arg("attrs") = attrs, py::arg("params") = params));
  }
  return out;
}

}  // namespace

void register_ops(py::module_& m) {
  m.def("run_op", &run_op, py::arg("kind"), py::arg("attrs"), py::arg("params"), py::arg("inputs"),
        py::arg("isa") = py::none(), py::arg("threads") = 1, py::arg("pool") = nullptr,
        py::arg("channels") = py::none(), py::arg("out") = py::none(),
        "Build one op of `kind` through the runtime's registry (schema checks and factory included) from "
        "attrs (JSON-like values) and params (name -> numpy array of the parameter's dtype), infer its output "
        "shape, plan its workspace and run it once on `inputs` (float32, or uint64 packed bits whose real "
        "channel counts `channels` gives; default: every bit of the last axis). Runs on `pool`, or on a pool "
        "of `threads` threads. Returns float32, or uint64 packed bits; `out` is written when given.");
  py::class_<PreparedOp>(m, "PreparedOp",
                         "One op built once by the runtime's registry, as run_op builds it, to run many times "
                         "(benchmarks). `channels`: the channel count of each input.")
      .def(py::init<const std::string&, const py::dict&, const py::dict&, std::vector<int64_t>>(), py::arg("kind"),
           py::arg("attrs"), py::arg("params"), py::arg("channels"))
      .def("run", &PreparedOp::run, py::arg("inputs"), py::arg("isa") = py::none(), py::arg("threads") = 1,
           py::arg("pool") = nullptr, py::arg("out") = py::none())
      .def_property_readonly(
          "held_bytes", [](const PreparedOp& op) { return op.node().held_bytes(); },
          "Bytes the node holds beside its parameters (repacked weights, constants).")
      .def_property_readonly(
          "bgemm_layout",
          [](const PreparedOp& op) -> py::object {
            const BinaryConv2d* gemm = op.node().binary_gemm();
            if (gemm == nullptr) return py::none();
            py::dict d;
            d["k_words"] = gemm->k_words();
            d["taps_per_word"] = gemm->taps_per_word();
            d["slot_bits"] = gemm->slot_bits();
            return std::move(d);
          },
          "A binary conv/linear's reduction layout: {k_words (words per output pixel), taps_per_word, "
          "slot_bits (bits per pixel in a word)}; None for other ops.");
  m.def("op_schemas", &op_schemas,
        "Every op kind's schema, sorted by name: {name, min_inputs, max_inputs, attrs: {name: {type, required}}, "
        "params: {name: {dtype, required}}}.");
  m.def(
      "bgemm_register_peak",
      [](long iterations) {
        if (iterations <= 0) throw std::invalid_argument("iterations must be positive");
        if (!isa_available(Isa::kAvx512)) throw std::runtime_error("the AVX-512 VPOPCNTDQ path is not available");
        py::gil_scoped_release release;
        return bgemm_register_peak_avx512(iterations);
      },
      py::arg("iterations") = 20000000,
      "Binary MACs/s of the AVX-512 XOR+VPOPCNTQ+ADD mix on registers only: the ceiling the bgemm kernel can "
      "approach on this machine (one thread).");
}

}  // namespace xnor::py_bind
