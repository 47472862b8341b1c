#include "runtime/model.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include "runtime/op_registry.h"

namespace xnor {
namespace {

constexpr int64_t kMaxShapeDim = int64_t{1} << 30;

// Names and values from the file as a message quotes them: one line (control bytes as \xNN;
// the JSON reader has already checked that strings are UTF-8).
std::string one_line(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      out += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    } else {
      out += ch;
    }
  }
  return out;
}
std::string quoted(std::string_view s) { return "'" + one_line(s) + "'"; }
std::string show(const json::Value* v) {
  if (!v) return "nothing";
  if (v->is_string()) return quoted(v->as_string());
  const std::string text = v->dump();
  return one_line(text.size() > 200 ? text.substr(0, 197) + "..." : text);
}

int64_t itemsize(std::string_view dtype) {
  if (dtype == "uint64") return 8;
  if (dtype == "uint8") return 1;
  return 4;  // float32, int32
}

class Describer {
 public:
  explicit Describer(const XbinFile& file) : file_(file) {}

  GraphDesc run() {
    const json::Value doc = parse();
    GraphDesc g;
    for (const char* key : {"metadata", "inputs", "outputs", "tensors", "ops"}) {
      const json::Value* v = doc.find(key);
      const bool object = std::string_view(key) == "metadata";
      if (!v || (object ? !v->is_object() : !v->is_array())) {
        fail(std::string("graph JSON '") + key + "' must be " + (object ? "an object" : "a list"));
      }
    }
    tensors(*doc.find("tensors"), &g);
    ops(*doc.find("ops"), &g);
    g.inputs = names(*doc.find("inputs"), "graph 'inputs' must be tensor names");
    g.outputs = names(*doc.find("outputs"), "graph 'outputs' must be tensor names");
    structure(g);
    g.metadata = *doc.find("metadata");
    return g;
  }

 private:
  // Messages are built only on failure: checks run once per op, parameter and tensor.
  [[noreturn]] void fail(const std::string& what) const { throw XbinError(file_.path() + ": " + what); }

  json::Value parse() const {
    const XbinSection& s = file_.section(0);
    json::Value doc;
    try {
      doc = json::parse(
          std::string_view(reinterpret_cast<const char*>(file_.section_data(0)), static_cast<size_t>(s.size)));
    } catch (const json::ParseError& e) {
      fail(std::string("graph JSON section is not valid JSON (") + e.what() + ")");
    }
    if (!doc.is_object()) fail("graph JSON must be an object");
    const json::Value* format = doc.find("format");
    if (!format || !format->is_string() || format->as_string() != "xnorinfer.xbin") {
      fail("graph JSON 'format' is not 'xnorinfer.xbin'");
    }
    const json::Value* version = doc.find("ir_version");
    if (!version || !version->is_int()) fail("graph JSON 'ir_version' is missing");
    const int64_t v = version->as_int();
    if (v < 1) fail("IR version " + std::to_string(v) + " is invalid (versions start at 1)");
    if (v > kIrVersion) {
      fail("IR version " + std::to_string(v) + " is newer than this xnorinfer supports (" + std::to_string(kIrVersion) +
           ")");
    }
    return doc;
  }

  std::vector<int64_t> shape(const json::Value* v, const std::string& where) const {
    bool ok = v && v->is_array();
    if (ok) {
      const size_t r = v->items().size();
      ok = r >= 1 && r <= static_cast<size_t>(kMaxRank);
      for (size_t i = 0; ok && i < r; ++i) {
        const json::Value& d = v->items()[i];
        ok = d.is_int() && d.as_int() >= 1 && d.as_int() <= kMaxShapeDim;
      }
    }
    if (!ok) {
      fail(where + ": shape " + show(v) + " must be a list of 1 to " + std::to_string(kMaxRank) + " positive integers");
    }
    std::vector<int64_t> out;
    for (const json::Value& d : v->items()) out.push_back(d.as_int());
    return out;
  }

  std::vector<std::string> names(const json::Value& list, const std::string& what) const {
    std::vector<std::string> out;
    for (const json::Value& v : list.items()) {
      if (!v.is_string()) fail(what);
      out.push_back(v.as_string());
    }
    return out;
  }

  void tensors(const json::Value& list, GraphDesc* g) const {
    for (const json::Value& t : list.items()) {
      const json::Value* name = t.find("name");
      if (!t.is_object() || !name || !name->is_string()) fail("tensor entry without a name");
      const std::string where = "tensor " + quoted(name->as_string());
      const json::Value* dtype = t.find("dtype");
      if (!dtype || !dtype->is_string() || (dtype->as_string() != "f32" && dtype->as_string() != "bits")) {
        fail(where + ": dtype must be 'f32' or 'bits'");
      }
      g->tensors.push_back({name->as_string(), dtype->as_string(), shape(t.find("shape"), where)});
    }
  }

  static AttrValue attr(const json::Value& v, bool* ok) {
    AttrValue a;
    *ok = true;
    switch (v.type()) {
      case json::Value::Type::kBool:
        a.type = AttrValue::Type::kBool;
        a.b = v.as_bool();
        break;
      case json::Value::Type::kInt:
        a.type = AttrValue::Type::kInt;
        a.i = v.as_int();
        break;
      case json::Value::Type::kDouble:
        a.type = AttrValue::Type::kFloat;
        a.f = v.as_double();
        break;
      case json::Value::Type::kString:
        a.type = AttrValue::Type::kString;
        a.s = v.as_string();
        break;
      case json::Value::Type::kArray:
        a.type = AttrValue::Type::kInts;
        for (const json::Value& e : v.items()) {
          if (!e.is_int())
            *ok = false;
          else
            a.ints.push_back(e.as_int());
        }
        break;
      default: *ok = false;
    }
    return a;
  }

  void ops(const json::Value& list, GraphDesc* g) {
    for (const json::Value& o : list.items()) {
      const json::Value* name = o.find("name");
      const json::Value* kind = o.find("kind");
      if (!o.is_object() || !name || !name->is_string() || !kind || !kind->is_string()) {
        fail("op entry without a name or kind");
      }
      OpDesc op;
      op.name = name->as_string();
      op.kind = kind->as_string();
      const std::string where = "op " + one_line(op.name) + " (" + one_line(op.kind) + ")";
      const OpRegistration* reg = find_op(op.kind);
      if (reg == nullptr) fail(where + ": unknown op kind");
      for (const char* key : {"inputs", "outputs"}) {
        const json::Value* v = o.find(key);
        bool ok = v && v->is_array();
        for (size_t i = 0; ok && i < v->items().size(); ++i) ok = v->items()[i].is_string();
        if (!ok) fail(where + ": '" + key + "' must be a list of tensor names");
        (std::string_view(key) == "inputs" ? op.inputs : op.outputs) = names(*v, "");
      }
      const json::Value* attrs = o.find("attrs");
      const json::Value* params = o.find("params");
      if (!attrs || !attrs->is_object() || !params || !params->is_object()) {
        fail(where + ": 'attrs' and 'params' must be objects");
      }
      for (const auto& [key, value] : attrs->members()) {
        bool ok = false;
        AttrValue a = attr(value, &ok);
        if (!ok) fail(where + ": attribute " + quoted(key) + " has an unsupported value " + show(&value));
        op.attrs[key] = std::move(a);
        op.attr_order.push_back(key);
      }
      for (const auto& [pname, p] : params->members()) {
        const std::string pw = where + " param " + quoted(pname);
        if (!p.is_object()) fail(pw + ": must be an object");
        const ParamSchema* declared = nullptr;
        for (const ParamSchema& ps : reg->schema->params) {
          if (pname == ps.name) declared = &ps;
        }
        if (declared == nullptr) fail(where + ": unexpected ['" + one_line(pname) + "']");
        const std::string want(param_dtype_name(declared->dtype));
        const json::Value* dtype = p.find("dtype");
        if (!dtype || !dtype->is_string() || dtype->as_string() != want) {
          fail(pw + ": dtype must be " + want + ", got " + show(dtype));
        }
        std::vector<int64_t> dims = shape(p.find("shape"), pw);
        const json::Value* sec = p.find("section");
        const bool is_data = sec && sec->is_int() && sec->as_int() >= 1 &&
                             static_cast<uint64_t>(sec->as_int()) < file_.section_count() &&
                             file_.section(static_cast<size_t>(sec->as_int())).kind == kXbinSectionData;
        if (!is_data) fail(pw + ": section " + show(sec) + " is not a data section of this file");
        const int64_t index = sec->as_int();
        const XbinSection& section = file_.section(static_cast<size_t>(index));
        if (!used_sections_.insert(index).second) fail(pw + ": section " + std::to_string(index) + " is used twice");
        // Entry i must be the section written as param<i>: a consistent swap of two table
        // entries (each with its own valid CRC) would otherwise load the wrong weights.
        if (section.name != "param" + std::to_string(index)) {
          fail(pw + ": section " + std::to_string(index) + " is named '" + printable(section.name) +
               "', expected 'param" + std::to_string(index) + "' (section table entries reordered?)");
        }
        // Up to four dims of up to 2^30 each: multiply with a bound (anything that large cannot
        // match a section of the file anyway).
        uint64_t need = static_cast<uint64_t>(itemsize(want));
        bool overflow = false;
        for (const int64_t d : dims) {
          if (need > (uint64_t{1} << 62) / static_cast<uint64_t>(d))
            overflow = true;
          else
            need *= static_cast<uint64_t>(d);
        }
        if (overflow || need != section.size) {
          std::string shape_text = "(";
          for (size_t i = 0; i < dims.size(); ++i) shape_text += (i ? ", " : "") + std::to_string(dims[i]);
          shape_text += dims.size() == 1 ? ",)" : ")";
          fail(pw + ": " + want + " shape " + shape_text + " needs " +
               (overflow ? std::string("more than 2^62") : std::to_string(need)) + " bytes but its section has " +
               std::to_string(section.size));
        }
        op.params[pname] = ParamDesc{index, want, std::move(dims)};
        op.param_order.push_back(pname);
      }
      g->ops.push_back(std::move(op));
    }
  }

  // The structural checks of xnorinfer/ir.py Graph.validate: declared tensors, known
  // attributes and parameters, single assignment and topological order.
  void structure(const GraphDesc& g) const {
    std::unordered_set<std::string> declared;
    for (const TensorDesc& t : g.tensors) {
      if (!declared.insert(t.name).second) fail("a tensor name is declared twice");
    }
    std::unordered_set<std::string> defined(g.inputs.begin(), g.inputs.end());
    for (const std::string& name : g.inputs) {
      if (declared.count(name) == 0) fail("graph input " + one_line(name) + " has no tensor entry");
    }
    for (const OpDesc& op : g.ops) {
      const std::string who = "op " + one_line(op.name) + " (" + one_line(op.kind) + ")";
      const OpSchema& schema = *find_op(op.kind)->schema;
      std::set<std::string> missing, extra;
      auto check = [&](const auto& present, const auto& declared) {
        for (const auto& d : declared) {
          if (d.required && !present.count(d.name)) missing.insert(d.name);
        }
        for (const auto& entry : present) {
          const std::string& key = entry.first;  // a named variable: C++17 lambdas cannot capture bindings
          const bool known =
              std::any_of(declared.begin(), declared.end(), [&](const auto& d) { return key == d.name; });
          if (!known) extra.insert(key);
        }
      };
      check(op.attrs, schema.attrs);
      check(op.params, schema.params);
      auto list = [](const std::set<std::string>& s) {
        std::string out = "[";
        for (const std::string& k : s) out += (out.size() > 1 ? ", '" : "'") + one_line(k) + "'";
        return out + "]";
      };
      if (!missing.empty()) fail(who + ": missing " + list(missing));
      if (!extra.empty()) fail(who + ": unexpected " + list(extra));
      for (const std::string& t : op.inputs) {
        if (defined.count(t) == 0) fail(who + " reads " + one_line(t) + " before it is produced");
      }
      for (const std::string& t : op.outputs) {
        if (defined.count(t) != 0) fail(who + " writes " + one_line(t) + ", which is already defined");
        if (declared.count(t) == 0) fail(who + " writes " + one_line(t) + ", which has no tensor entry");
        defined.insert(t);
      }
    }
    for (const std::string& t : g.outputs) {
      if (defined.count(t) == 0) fail("graph output " + one_line(t) + " is never produced");
    }
  }

  const XbinFile& file_;
  std::set<int64_t> used_sections_;
};

bool is_int(const json::Value* v) { return v && v->is_int(); }

// The checks xnorinfer/session.py made at load, with its messages: metadata input_shape
// against the graph input, the preprocessing entries, labels.
void read_metadata(const XbinFile& file, const GraphDesc& g, const Graph& graph, InputSpec* spec,
                   std::vector<std::string>* labels) {
  auto fail = [&](const std::string& what) { throw XbinError(file.path() + ": " + what); };
  const json::Value& meta = g.metadata;
  const Shape in = graph.input_nchw();  // (1, C, H, W) for an image model; input 0 as recorded otherwise
  const size_t rank = static_cast<size_t>(in.rank);
  if (in.rank == 4) {  // image preprocessing applies to a 4-D first input only
    spec->channels = in.d[1];
    spec->height = in.d[2];
    spec->width = in.d[3];
  }
  if (const json::Value* shape = meta.find("input_shape")) {
    bool ok = shape->is_array() && shape->items().size() == rank;
    for (size_t i = 0; ok && i < rank; ++i) ok = shape->items()[i].is_int();
    for (size_t i = 1; ok && i < rank; ++i) ok = shape->items()[i].as_int() == in.d[i];
    ok = ok && shape->items()[0].as_int() >= 1;
    if (!ok) fail("metadata input_shape " + show(shape) + " does not match the graph input " + in.str());
    if (in.rank != 4) {
      for (const char* key : {"mean", "std", "resize"}) {
        const json::Value* v = meta.find(key);
        if (v && !v->is_null()) fail(std::string("model metadata ") + key + " needs an image (NCHW) input");
      }
    }
    const int64_t c = in.d[1], h = in.d[2], w = in.d[3];
    if (h * w > kMaxPixels) {
      fail("model metadata input_shape " + show(shape) + " is larger than the " + std::to_string(kMaxPixels) +
           " pixels an image may have");
    }
    if (const json::Value* resize = meta.find("resize"); resize && !resize->is_null()) {
      if (!is_int(resize) || resize->as_int() < std::max(h, w) || resize->as_int() > kMaxResize) {
        fail("model metadata resize must be an integer from " + std::to_string(std::max(h, w)) +
             " (the input size) to " + std::to_string(kMaxResize) + ", got " + show(resize));
      }
      spec->resize = resize->as_int();
    }
    for (const char* name : {"mean", "std"}) {
      const json::Value* values = meta.find(name);
      if (!values || values->is_null()) continue;
      bool ok = values->is_array() && (values->items().size() == 1 || values->items().size() == static_cast<size_t>(c));
      std::vector<double>& out = std::string_view(name) == "mean" ? spec->mean : spec->std;
      for (size_t i = 0; ok && i < values->items().size(); ++i) {
        ok = values->items()[i].is_number();
        if (ok) out.push_back(values->items()[i].as_double());
      }
      if (!ok) {
        fail(std::string("model metadata ") + name + " must be a list of 1 or " + std::to_string(c) +
             " finite numbers, got " + show(values));
      }
    }
    for (const double s : spec->std) {
      if (s == 0) fail("model metadata std has a zero entry");
    }
  }
  if (const json::Value* l = meta.find("labels"); l && !l->is_null()) {
    bool ok = l->is_array();
    for (size_t i = 0; ok && i < l->items().size(); ++i) {
      ok = l->items()[i].is_string();
      if (ok) labels->push_back(l->items()[i].as_string());
    }
    if (!ok) fail("model metadata labels must be a list of strings");
  }
}

}  // namespace

GraphDesc describe(const XbinFile& file) { return Describer(file).run(); }

Model::Model(std::shared_ptr<const XbinFile> file) : file_(std::move(file)) {
  desc_ = describe(*file_);
  try {
    graph_ = std::make_shared<const Graph>(file_, desc_);
  } catch (const std::invalid_argument& e) {
    // Graph's messages start with the file's path; names in them come from the file.
    throw XbinError(one_line(e.what()));
  }
  read_metadata(*file_, desc_, *graph_, &spec_, &labels_);
}

std::shared_ptr<const Model> Model::load(std::shared_ptr<const XbinFile> file) {
  return std::shared_ptr<const Model>(new Model(std::move(file)));
}

std::shared_ptr<const Model> Model::load(const std::string& path) {
  return load(std::make_shared<const XbinFile>(path));
}

std::shared_ptr<const Model> Model::load(const uint8_t* data, uint64_t size, const std::string& name) {
  return load(std::make_shared<const XbinFile>(data, size, name));
}

}  // namespace xnor
