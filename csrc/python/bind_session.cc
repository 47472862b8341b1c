// Bindings of the model loader and the graph runtime: _core.XbinFile (the
// validated container), _core.read_graph (the parsed graph with its parameters,
// for xnorinfer.xbin.read), _core.Model (a loaded model: the one C++ loader that
// the public C++ API uses too) and _core.Session.
#include <pybind11/stl.h>

#include <cstring>
#include <map>

#include "operators/bconv2d.h"
#include "python/common.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/xbin_reader.h"

namespace xnor::py_bind {
namespace {

py::object to_python(const json::Value& v) {
  switch (v.type()) {
    case json::Value::Type::kNull: return py::none();
    case json::Value::Type::kBool: return py::bool_(v.as_bool());
    case json::Value::Type::kInt: return py::int_(v.as_int());
    case json::Value::Type::kDouble: return py::float_(v.as_double());
    case json::Value::Type::kString: return py::str(v.as_string());
    case json::Value::Type::kArray: {
      py::list out;
      for (const json::Value& e : v.items()) out.append(to_python(e));
      return std::move(out);
    }
    case json::Value::Type::kObject: {
      py::dict out;
      for (const auto& [k, e] : v.members()) out[py::str(k)] = to_python(e);
      return std::move(out);
    }
  }
  return py::none();
}

py::object attr_to_python(const AttrValue& a) {
  switch (a.type) {
    case AttrValue::Type::kInt: return py::int_(a.i);
    case AttrValue::Type::kFloat: return py::float_(a.f);
    case AttrValue::Type::kBool: return py::bool_(a.b);
    case AttrValue::Type::kString: return py::str(a.s);
    case AttrValue::Type::kInts: return py::cast(a.ints);
  }
  return py::none();
}

// The graph description as plain Python values: inputs, outputs, tensors [{name, dtype, shape}],
// ops [{kind, name, inputs, outputs, attrs, params {name: {section, dtype, shape}}}], metadata.
// With `file`, every param also gets "array": a numpy copy of its section's bytes.
py::dict graph_to_python(const GraphDesc& g, const XbinFile* file) {
  std::map<std::string, py::dtype> dtypes;  // numpy parses a dtype name slowly: once per name
  py::dict out;
  out["inputs"] = py::cast(g.inputs);
  out["outputs"] = py::cast(g.outputs);
  py::list tensors;
  for (const TensorDesc& t : g.tensors) {
    py::dict d;
    d["name"] = t.name;
    d["dtype"] = t.dtype;
    d["shape"] = py::cast(t.shape);
    tensors.append(d);
  }
  out["tensors"] = tensors;
  py::list ops;
  for (const OpDesc& op : g.ops) {
    py::dict d;
    d["kind"] = op.kind;
    d["name"] = op.name;
    d["inputs"] = py::cast(op.inputs);
    d["outputs"] = py::cast(op.outputs);
    py::dict attrs;
    // File order when the description came from a file (a written-back graph keeps its bytes).
    std::vector<std::string> attr_keys = op.attr_order, param_keys = op.param_order;
    if (attr_keys.size() != op.attrs.size()) {
      attr_keys.clear();
      for (const auto& kv : op.attrs) attr_keys.push_back(kv.first);
    }
    if (param_keys.size() != op.params.size()) {
      param_keys.clear();
      for (const auto& kv : op.params) param_keys.push_back(kv.first);
    }
    for (const std::string& k : attr_keys) attrs[py::str(k)] = attr_to_python(op.attrs.at(k));
    d["attrs"] = attrs;
    py::dict params;
    for (const std::string& k : param_keys) {
      const ParamDesc& p = op.params.at(k);
      py::dict pd;
      pd["section"] = p.section;
      pd["dtype"] = p.dtype;
      pd["shape"] = py::cast(p.shape);
      if (file) {
        auto dt = dtypes.find(p.dtype);
        if (dt == dtypes.end()) dt = dtypes.emplace(p.dtype, py::dtype(p.dtype)).first;
        py::array arr(dt->second, std::vector<py::ssize_t>(p.shape.begin(), p.shape.end()));
        const XbinSection& sec = file->section(static_cast<size_t>(p.section));
        if (static_cast<uint64_t>(arr.nbytes()) != sec.size) throw std::logic_error("param size changed");
        std::memcpy(arr.mutable_data(), file->section_data(static_cast<size_t>(p.section)), sec.size);
        pd["array"] = arr;
      }
      params[py::str(k)] = pd;
    }
    d["params"] = params;
    ops.append(d);
  }
  out["ops"] = ops;
  out["metadata"] = to_python(g.metadata);
  return out;
}

// A path (str, or bytes as os.fsencode gives), or with `data` the model's bytes themselves.
std::shared_ptr<const XbinFile> open_file(const py::object& source, const std::string& name, bool data) {
  if (data) {
    char* p = nullptr;
    Py_ssize_t n = 0;
    if (PyBytes_AsStringAndSize(source.ptr(), &p, &n) != 0) throw py::error_already_set();
    py::gil_scoped_release release;  // bytes are immutable and `source` keeps them alive
    return std::make_shared<const XbinFile>(reinterpret_cast<const uint8_t*>(p), static_cast<uint64_t>(n), name);
  }
  const std::string path = source.cast<std::string>();
  py::gil_scoped_release release;
  return std::make_shared<const XbinFile>(path);
}

// Input shapes given as Python lists of dims (rank 1..kMaxRank each).
std::vector<Shape> shapes_of_dims(const std::vector<std::vector<int64_t>>& dims) {
  std::vector<Shape> shapes;
  for (const auto& d : dims) {
    if (d.empty() || d.size() > static_cast<size_t>(kMaxRank)) throw std::invalid_argument("bad input rank");
    Shape sh;
    sh.rank = static_cast<int>(d.size());
    for (size_t a = 0; a < d.size(); ++a) sh.d[a] = d[a];
    shapes.push_back(sh);
  }
  return shapes;
}

py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.rank);
  for (int i = 0; i < s.rank; ++i) t[i] = s.d[i];
  return t;
}

std::vector<py::ssize_t> nchw_of(const CArray<float>& x) {
  if (x.ndim() != 4)
    throw std::invalid_argument("Session.run: input must be float32 NCHW (N, C, H, W), got " + shape_str(x));
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
}

// Each array's shape as a runtime Shape (rank 1 to kMaxRank) and its data pointer.
void shapes_of(const std::vector<CArray<float>>& xs, std::vector<Shape>* shapes, std::vector<const float*>* data) {
  for (const CArray<float>& x : xs) {
    if (x.ndim() < 1 || x.ndim() > kMaxRank) {
      throw std::invalid_argument("Session.run: an input must have rank 1 to " + std::to_string(kMaxRank) + ", got " +
                                  shape_str(x));
    }
    Shape s;
    s.rank = static_cast<int>(x.ndim());
    for (int a = 0; a < s.rank; ++a) s.d[a] = x.shape(a);
    shapes->push_back(s);
    data->push_back(x.data());
  }
}

// One new float32 array per graph output; their data pointers go to *dst in order.
py::list allocate_outputs(const std::vector<Shape>& shapes, std::vector<float*>* dst) {
  py::list result;
  for (const Shape& sh : shapes) {
    CArray<float> a(std::vector<py::ssize_t>(sh.d, sh.d + sh.rank));
    dst->push_back(a.mutable_data());
    result.append(a);
  }
  return result;
}

// profile()'s per-op rows: {name, kind, seconds} in execution order, and for a binary GEMM op
// (bconv2d, blinear) engine: the XNORINFER_BGEMM engine its last run used.
py::list op_rows(const Session& s, const std::vector<double>& seconds) {
  py::list ops;
  const auto& steps = s.graph().steps();
  for (size_t i = 0; i < steps.size(); ++i) {
    py::dict row;
    row["name"] = steps[i].node->name();
    row["kind"] = steps[i].node->kind();
    row["seconds"] = seconds[i];
    if (const BinaryConv2d* gemm = steps[i].node->binary_gemm()) row["engine"] = engine_name(gemm->last_engine());
    ops.append(row);
  }
  return ops;
}

// bgemm_choices()'s rows: one per choice XNORINFER_BGEMM=auto made, by op in execution order.
py::list bgemm_choice_rows(const Session& s) {
  py::list rows;
  for (const auto& step : s.graph().steps()) {
    const BinaryConv2d* gemm = step.node->binary_gemm();
    if (gemm == nullptr) continue;
    for (const BgemmChoice& c : gemm->bgemm_choices()) {
      py::dict row;
      row["name"] = step.node->name();
      row["kind"] = step.node->kind();
      row["batch"] = c.batch;
      row["height"] = c.in_h;
      row["width"] = c.in_w;
      row["threads"] = c.threads;
      row["isa"] = isa_name(c.isa);
      row["engine"] = engine_name(c.engine);
      row["amx_engine"] = engine_name(c.amx_engine);
      row["popcount_seconds"] = c.popcount_seconds;
      row["amx_seconds"] = c.amx_seconds;
      row["not_measured"] = c.not_measured;
      rows.append(row);
    }
  }
  return rows;
}

}  // namespace

void register_session(py::module_& m) {
  py::register_exception<XbinError>(m, "XbinFormatError", PyExc_ValueError);
  py::register_exception<MemoryLimitError>(m, "MemoryLimitError", PyExc_ValueError);

  py::class_<XbinFile, std::shared_ptr<XbinFile>>(m, "XbinFile",
                                                  "A .xbin file read into memory with its container validated.")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release release;
             return std::make_shared<XbinFile>(path);
           }),
           py::arg("path"))
      .def_static(
          "from_bytes",
          [](const py::bytes& data, const std::string& name) {
            char* p = nullptr;
            Py_ssize_t n = 0;
            if (PyBytes_AsStringAndSize(data.ptr(), &p, &n) != 0) throw py::error_already_set();
            py::gil_scoped_release release;  // bytes are immutable and `data` keeps them alive
            return std::make_shared<XbinFile>(reinterpret_cast<const uint8_t*>(p), static_cast<uint64_t>(n), name);
          },
          py::arg("data"), py::arg("name") = "<bytes>",
          "Validate a model already in memory (copied); `name` stands for the file in messages.")
      .def_property_readonly("path", &XbinFile::path)
      .def_property_readonly("version", &XbinFile::version)
      .def_property_readonly("file_size", &XbinFile::file_size)
      .def_property_readonly("sections",
                             [](const XbinFile& f) {
                               py::list out;
                               for (size_t i = 0; i < f.section_count(); ++i) {
                                 const XbinSection& s = f.section(i);
                                 py::dict d;
                                 d["kind"] = s.kind == kXbinSectionJson ? "json" : "data";
                                 // Names are file bytes: decoded with "replace", so a name that is
                                 // not UTF-8 cannot raise here.
                                 PyObject* name = PyUnicode_DecodeUTF8(
                                     s.name.data(), static_cast<Py_ssize_t>(s.name.size()), "replace");
                                 if (!name) throw py::error_already_set();
                                 d["name"] = py::reinterpret_steal<py::str>(name);
                                 d["offset"] = s.offset;
                                 d["size"] = s.size;
                                 out.append(d);
                               }
                               return out;
                             })
      .def("json", [](const XbinFile& f) { return py::bytes(f.json()); }, "The graph JSON section (bytes).");

  m.attr("IR_VERSION") = kIrVersion;
  m.def(
      "read_graph",
      [](const py::object& source, const std::optional<std::string>& name) {
        std::shared_ptr<const XbinFile> file = open_file(source, name.value_or(""), name.has_value());
        GraphDesc g;
        {
          py::gil_scoped_release release;
          g = describe(*file);
        }
        return graph_to_python(g, file.get());
      },
      py::arg("source"), py::arg("name") = py::none(),
      "Read and check a .xbin (a path; or, with `name` standing for the file in messages, its bytes) without "
      "building the runtime graph; returns the graph description with every parameter as a numpy copy "
      "under params[...]['array'].");

  py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A loaded, validated model (the C++ loader).")
      .def(py::init([](const py::object& path) {
             std::shared_ptr<const XbinFile> file = open_file(path, "", false);
             py::gil_scoped_release release;
             return std::const_pointer_cast<Model>(Model::load(std::move(file)));  // read-only in Python
           }),
           py::arg("path"), "Load the model at `path` (str, or bytes as os.fsencode gives).")
      .def_static(
          "from_bytes",
          [](const py::bytes& data, const std::string& name) {
            std::shared_ptr<const XbinFile> file = open_file(data, name, true);
            py::gil_scoped_release release;
            return std::const_pointer_cast<Model>(Model::load(std::move(file)));
          },
          py::arg("data"), py::arg("name") = "<bytes>",
          "Load a model already in memory (copied); `name` stands for the file in messages.")
      .def_property_readonly("path", [](const Model& mo) { return mo.file().path(); })
      .def_property_readonly("input_shape", [](const Model& mo) { return shape_tuple(mo.graph()->input_nchw()); })
      .def_property_readonly("metadata", [](const Model& mo) { return to_python(mo.metadata()); })
      .def(
          "describe", [](const Model& mo) { return graph_to_python(mo.desc(), nullptr); },
          "The graph description (no parameter arrays), as read_graph returns it.");

  py::class_<Session>(m, "Session", "A loaded graph: run() executes every op in one call.")
      .def(py::init([](const std::shared_ptr<Model>& model, int threads, std::optional<uint64_t> max_memory) {
             py::gil_scoped_release release;
             return new Session(model->graph(), threads, max_memory.value_or(default_max_memory()));
           }),
           py::arg("model"), py::arg("threads") = 1, py::arg("max_memory") = py::none(),
           "max_memory: the most bytes one memory plan may take (default: default_max_memory()); a larger "
           "plan raises MemoryLimitError, at load for the recorded input shape.")
      .def_property_readonly("threads", &Session::threads)
      .def_property_readonly("max_memory", &Session::max_memory)
      .def(
          "planned_bytes",
          [](const Session& s, int64_t n, int64_t c, int64_t h, int64_t w) { return s.planned_bytes(n, c, h, w); },
          py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"),
          "Arena bytes of the memory plan for an NCHW input (n, c, h, w), computed without allocating.")
      .def_property_readonly("input_shape", [](const Session& s) { return shape_tuple(s.graph().input_nchw()); })
      .def_property_readonly(
          "input_names",
          [](const Session& s) {
            std::vector<std::string> names;
            for (int t : s.graph().inputs()) names.push_back(s.graph().tensors()[t].name);
            return names;
          },
          "The graph inputs' names, in run order.")
      .def_property_readonly(
          "input_shapes",
          [](const Session& s) {
            py::list out;
            for (size_t i = 0; i < s.graph().inputs().size(); ++i) out.append(shape_tuple(s.graph().input_user(i)));
            return out;
          },
          "The recorded input shapes (batch 1) as the caller passes them: NCHW for a 4-D input.")
      .def_property_readonly(
          "declared_shapes",
          [](const Session& s) {
            py::dict out;
            for (const auto& t : s.graph().tensors()) out[py::str(t.name)] = shape_tuple(t.declared);
            return out;
          },
          "Every tensor's recorded shape (batch 1; the engine's layout).")
      .def(
          "planned_bytes_inputs",
          [](const Session& s, const std::vector<std::vector<int64_t>>& dims) {
            const std::vector<Shape> shapes = shapes_of_dims(dims);
            return s.planned_bytes(shapes.data(), shapes.size());
          },
          py::arg("shapes"), "planned_bytes for every input's shape (NCHW for a 4-D input).")
      .def(
          "parallel_steps",
          [](const Session& s, const std::vector<std::vector<int64_t>>& dims) {
            const std::vector<Shape> shapes = shapes_of_dims(dims);
            return s.parallel_steps(shapes.data(), shapes.size());
          },
          py::arg("shapes"),
          "Per graph op (execution order): True when it runs on the session's threads, False when on the "
          "calling thread only (its work is below min_parallel_work; a fused op: False), for these input "
          "shapes (NCHW for a 4-D input).")
      .def_property_readonly("min_parallel_work", &Session::min_parallel_work,
                             "The per-op work (values touched) from which an op uses every thread.")
      .def_property_readonly("fused_affine", &Session::fused_affine,
                             "Per graph op: the index of the affine op fused into it, or -1.")
      .def_property_readonly("fused_chain", &Session::fused_chain,
                             "Per graph op: the indices of the element-wise ops chained onto it (run on its "
                             "output rows as they complete), in order; empty for most ops.")
      .def(
          "run_inputs",
          [](Session& s, const std::vector<CArray<float>>& xs, const std::optional<std::string>& isa_opt) {
            const Isa isa = resolve_isa(isa_opt);
            std::vector<Shape> in;
            std::vector<const float*> data;
            shapes_of(xs, &in, &data);
            const std::vector<Shape> shapes = s.prepare(in.data(), in.size());
            std::vector<float*> dst;
            py::list result = allocate_outputs(shapes, &dst);
            {
              py::gil_scoped_release release;
              s.run(data.data(), in.data(), in.size(), dst.data(), isa);
            }
            return result;
          },
          py::arg("xs"), py::arg("isa") = py::none(),
          "Run on every graph input (a list of float32 arrays, NCHW for a 4-D input); returns the outputs.")
      .def(
          "profile_inputs",
          [](Session& s, const std::vector<CArray<float>>& xs, int runs, const std::optional<std::string>& isa_opt) {
            const Isa isa = resolve_isa(isa_opt);
            std::vector<Shape> in;
            std::vector<const float*> data;
            shapes_of(xs, &in, &data);
            const std::vector<Shape> shapes = s.prepare(in.data(), in.size());
            std::vector<float*> dst;
            py::list result = allocate_outputs(shapes, &dst);
            std::vector<double> seconds;
            {
              py::gil_scoped_release release;
              seconds = s.profile(data.data(), in.data(), in.size(), dst.data(), isa, runs);
            }
            return py::make_tuple(op_rows(s, seconds), result);
          },
          py::arg("xs"), py::arg("runs") = 1, py::arg("isa") = py::none(),
          "profile() for every graph input (a list of arrays).")
      .def(
          "tensor_shapes",
          [](Session& s, int64_t n, int64_t c, int64_t h, int64_t w) {
            if (c != s.graph().input_nchw().d[1]) throw std::invalid_argument("tensor_shapes: wrong channel count");
            const std::vector<Shape> shapes = s.graph().infer(n, h, w);
            py::dict out;
            const auto& t = s.graph().tensors();
            for (size_t i = 0; i < t.size(); ++i) {
              if (shapes[i].rank) out[py::str(t[i].name)] = shape_tuple(shapes[i]);
            }
            return out;
          },
          py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"),
          "Shapes (NHWC / (N, F)) of every tensor for an NCHW input (n, c, h, w).")
      .def(
          "run",
          [](Session& s, const CArray<float>& x, const std::optional<std::string>& isa_opt) {
            const Isa isa = resolve_isa(isa_opt);
            const auto d = nchw_of(x);
            const std::vector<Shape> shapes = s.prepare(d[0], d[1], d[2], d[3]);
            std::vector<float*> dst;
            py::list result = allocate_outputs(shapes, &dst);
            {
              py::gil_scoped_release release;
              s.run(x.data(), d[0], d[1], d[2], d[3], dst.data(), isa);
            }
            return result;
          },
          py::arg("x"), py::arg("isa") = py::none(),
          "Run on float32 NCHW x; returns the graph outputs (float32, NHWC or (N, F)) as a list.")
      .def(
          "profile",
          [](Session& s, const CArray<float>& x, int runs, const std::optional<std::string>& isa_opt) {
            const Isa isa = resolve_isa(isa_opt);
            const auto d = nchw_of(x);
            const std::vector<Shape> shapes = s.prepare(d[0], d[1], d[2], d[3]);
            std::vector<float*> dst;
            py::list result = allocate_outputs(shapes, &dst);
            std::vector<double> seconds;
            {
              py::gil_scoped_release release;
              seconds = s.profile(x.data(), d[0], d[1], d[2], d[3], dst.data(), isa, runs);
            }
            return py::make_tuple(op_rows(s, seconds), result);
          },
          py::arg("x"), py::arg("runs") = 1, py::arg("isa") = py::none(),
          "Run `runs` times timing every op; returns ([{name, kind, seconds}] in execution order, with the "
          "wall seconds summed over all runs, [outputs of the last run]).")
      .def("bgemm_choices", &bgemm_choice_rows,
           "XNORINFER_BGEMM=auto's choices so far: [{name, kind, batch, height, width, threads, isa, engine, "
           "amx_engine, popcount_seconds, amx_seconds, not_measured}], by op in execution order.");
}

}  // namespace xnor::py_bind
