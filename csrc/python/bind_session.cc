// Bindings of the .xbin container reader and the graph runtime:
// _core.XbinFile (validated file, JSON text for the Python side to parse) and
// _core.Session (built from an XbinFile and the checked graph description).
#include <pybind11/stl.h>

#include "python/common.h"
#include "runtime/session.h"
#include "runtime/xbin_reader.h"

namespace xnor::py_bind {
namespace {

AttrValue to_attr(const py::handle& v, const std::string& where) {
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
        throw std::invalid_argument(where + ": list attributes must hold integers");
      }
      a.ints.push_back(e.cast<int64_t>());
    }
  } else {
    throw std::invalid_argument(where + ": unsupported attribute type");
  }
  return a;
}

GraphDesc to_desc(const py::dict& d) {
  GraphDesc g;
  try {
    g.inputs = d["inputs"].cast<std::vector<std::string>>();
    g.outputs = d["outputs"].cast<std::vector<std::string>>();
    for (const py::handle& t : d["tensors"].cast<py::list>()) {
      const py::dict td = t.cast<py::dict>();
      g.tensors.push_back(
          {td["name"].cast<std::string>(), td["dtype"].cast<std::string>(), td["shape"].cast<std::vector<int64_t>>()});
    }
    for (const py::handle& o : d["ops"].cast<py::list>()) {
      const py::dict od = o.cast<py::dict>();
      OpDesc op;
      op.kind = od["kind"].cast<std::string>();
      op.name = od["name"].cast<std::string>();
      op.inputs = od["inputs"].cast<std::vector<std::string>>();
      op.outputs = od["outputs"].cast<std::vector<std::string>>();
      for (const auto& [k, v] : od["attrs"].cast<py::dict>()) {
        const std::string key = k.cast<std::string>();
        op.attrs[key] = to_attr(v, "op '" + op.name + "' attribute '" + key + "'");
      }
      for (const auto& [k, v] : od["params"].cast<py::dict>()) {
        const py::dict pd = v.cast<py::dict>();
        op.params[k.cast<std::string>()] = ParamDesc{pd["section"].cast<int64_t>(), pd["dtype"].cast<std::string>(),
                                                     pd["shape"].cast<std::vector<int64_t>>()};
      }
      g.ops.push_back(std::move(op));
    }
  } catch (const py::error_already_set& e) {
    throw std::invalid_argument(std::string("malformed graph description: ") + e.what());
  } catch (const py::cast_error& e) {
    throw std::invalid_argument(std::string("malformed graph description: ") + e.what());
  }
  return g;
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
                                 // Names are file bytes: decoded as xnorinfer/xbin.py does ("replace"),
                                 // so a name that is not UTF-8 cannot raise here.
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

  py::class_<Session>(m, "Session", "A loaded graph: run() executes every op in one call.")
      .def(py::init([](std::shared_ptr<XbinFile> file, const py::dict& desc, int threads,
                       std::optional<uint64_t> max_memory) {
             const GraphDesc g = to_desc(desc);
             py::gil_scoped_release release;
             return new Session(std::move(file), g, threads, max_memory.value_or(default_max_memory()));
           }),
           py::arg("file"), py::arg("desc"), py::arg("threads") = 1, py::arg("max_memory") = py::none(),
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
            py::list ops;
            const auto& steps = s.graph().steps();
            for (size_t i = 0; i < steps.size(); ++i) {
              py::dict row;
              row["name"] = steps[i].node->name();
              row["kind"] = steps[i].node->kind();
              row["seconds"] = seconds[i];
              ops.append(row);
            }
            return py::make_tuple(ops, result);
          },
          py::arg("x"), py::arg("runs") = 1, py::arg("isa") = py::none(),
          "Run `runs` times timing every op; returns ([{name, kind, seconds}] in execution order, with the "
          "wall seconds summed over all runs, [outputs of the last run]).");
}

}  // namespace xnor::py_bind
