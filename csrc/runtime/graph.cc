#include "runtime/graph.h"

#include <map>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace xnor {
namespace {

int64_t itemsize(const std::string& dtype) {
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "uint64") return 8;
  if (dtype == "uint8") return 1;
  return 0;
}

Shape shape_from(const std::vector<int64_t>& v, const std::string& what) {
  if (v.empty() || v.size() > static_cast<size_t>(kMaxRank)) {
    throw std::invalid_argument(what + ": rank must be 1 to " + std::to_string(kMaxRank));
  }
  Shape s;
  s.rank = static_cast<int>(v.size());
  for (size_t i = 0; i < v.size(); ++i) s.d[i] = v[i];
  return s;
}

}  // namespace

Graph::Graph(std::shared_ptr<const XbinFile> file, const GraphDesc& desc) : file_(std::move(file)) {
  const std::string where = file_->path() + ": ";
  try {
    if (const json::Value* flag = desc.metadata.find("per_image")) {
      if (!flag->is_bool()) throw std::invalid_argument("metadata per_image must be true or false");
      per_image_ = flag->as_bool();
    }
    // A constant's output has the exact shape of its value (batch-independent, broadcast by its readers).
    std::unordered_set<std::string> constants;
    for (const OpDesc& op : desc.ops) {
      if (op.kind == "constant") constants.insert(op.outputs.begin(), op.outputs.end());
    }
    std::unordered_map<std::string, int> index;
    for (const TensorDesc& t : desc.tensors) {
      if (index.count(t.name)) throw std::invalid_argument("tensor '" + t.name + "' is declared twice");
      if (t.dtype != "f32" && t.dtype != "bits") {
        throw std::invalid_argument("tensor '" + t.name + "': dtype must be 'f32' or 'bits'");
      }
      const DType dt = t.dtype == "f32" ? DType::kF32 : DType::kBits;
      const Shape s = shape_from(t.shape, "tensor '" + t.name + "'");
      checked_bytes(s, dt, "tensor '" + t.name + "'");
      if (!per_image_ && s.d[0] != 1 && !constants.count(t.name)) {
        throw std::invalid_argument("tensor '" + t.name + "': the recorded batch must be 1");
      }
      index[t.name] = static_cast<int>(tensors_.size());
      tensors_.push_back({t.name, dt, s, static_cast<int>(tensors_.size())});
    }
    auto find = [&](const std::string& name, const std::string& who) {
      auto it = index.find(name);
      if (it == index.end()) throw std::invalid_argument(who + " refers to unknown tensor '" + name + "'");
      return it->second;
    };
    if (desc.inputs.empty()) throw std::invalid_argument("the graph has no inputs");
    std::vector<bool> defined(tensors_.size(), false);
    for (const std::string& name : desc.inputs) {
      const int t = find(name, "graph input");
      if (defined[t]) throw std::invalid_argument("graph input '" + name + "' is listed twice");
      if (constants.count(name)) throw std::invalid_argument("graph input '" + name + "' is written by a constant op");
      if (tensors_[t].dtype != DType::kF32 || tensors_[t].declared.d[0] != 1) {
        throw std::invalid_argument("graph input '" + name + "' must be an f32 tensor of batch 1");
      }
      defined[t] = true;
      inputs_.push_back(t);
    }
    for (const OpDesc& op : desc.ops) {
      const std::string who = "op '" + op.name + "' (" + op.kind + ")";
      std::map<std::string, ParamView> params;
      for (const auto& [key, p] : op.params) {
        const std::string pw = who + " parameter '" + key + "'";
        const int64_t size = itemsize(p.dtype);
        if (!size) throw std::invalid_argument(pw + ": unsupported dtype '" + p.dtype + "'");
        if (p.section < 1 || static_cast<uint64_t>(p.section) >= file_->section_count()) {
          throw std::invalid_argument(pw + ": data section " + std::to_string(p.section) + " does not exist");
        }
        const XbinSection& sec = file_->section(static_cast<size_t>(p.section));
        if (sec.kind != kXbinSectionData) throw std::invalid_argument(pw + ": section is not a data section");
        if (p.shape.empty() || p.shape.size() > static_cast<size_t>(kMaxRank)) {
          throw std::invalid_argument(pw + ": rank must be 1 to " + std::to_string(kMaxRank));
        }
        int64_t count = 1;
        for (int64_t d : p.shape) {
          if (d < 1 || d > kMaxDim || count > static_cast<int64_t>(sec.size) / d) {
            throw std::invalid_argument(pw + ": shape does not match its " + std::to_string(sec.size) +
                                        "-byte data section");
          }
          count *= d;
        }
        if (static_cast<uint64_t>(count * size) != sec.size) {
          throw std::invalid_argument(pw + ": " + p.dtype + " shape needs " + std::to_string(count * size) +
                                      " bytes but its data section has " + std::to_string(sec.size));
        }
        params[key] = ParamView{p.dtype, p.shape, file_->section_data(static_cast<size_t>(p.section)), count};
      }
      std::vector<int> ins;
      std::vector<int64_t> in_channels;
      for (const std::string& name : op.inputs) {
        const int t = find(name, who);
        if (!defined[t]) throw std::invalid_argument(who + " reads '" + name + "' before it is produced");
        ins.push_back(t);
        in_channels.push_back(tensors_[t].declared.channels());
      }
      if (op.outputs.size() != 1) throw std::invalid_argument(who + ": must have exactly one output");
      const int out = find(op.outputs[0], who);
      if (defined[out]) throw std::invalid_argument(who + " writes '" + op.outputs[0] + "', which is already defined");
      defined[out] = true;
      std::unique_ptr<Node> node = make_node(op, params, in_channels, per_image_);
      for (size_t i = 0; i < ins.size(); ++i) {
        if (tensors_[ins[i]].dtype != node->in_type(i)) {
          throw std::invalid_argument(who + ": input '" + op.inputs[i] + "' has the wrong dtype");
        }
      }
      if (tensors_[out].dtype != node->out_type()) {
        throw std::invalid_argument(who + ": output '" + op.outputs[0] + "' has the wrong dtype");
      }
      if (node->aliases_input()) tensors_[out].storage = tensors_[ins[0]].storage;
      steps_.push_back({std::move(node), std::move(ins), out});
    }
    for (const std::string& name : desc.outputs) {
      const int t = find(name, "graph output");
      if (!defined[t]) throw std::invalid_argument("graph output '" + name + "' is never produced");
      if (tensors_[t].dtype != DType::kF32) {
        throw std::invalid_argument("graph output '" + name + "' is bits; end the graph with an unpack op");
      }
      if (per_image_ && tensors_[t].declared.d[0] != 1) {
        throw std::invalid_argument("graph output '" + name + "' of a per-image graph must have batch 1");
      }
      outputs_.push_back(t);
    }
    if (outputs_.empty()) throw std::invalid_argument("the graph has no outputs");
    // The recorded shapes must be what the ops produce for the recorded input.
    std::vector<Shape> recorded;
    for (int t : inputs_) recorded.push_back(tensors_[t].declared);
    const std::vector<Shape> shapes = infer(recorded);
    for (const Step& st : steps_) {
      if (shapes[st.output] != tensors_[st.output].declared) {
        throw std::invalid_argument("op '" + st.node->name() + "' (" + st.node->kind() + ") produces " +
                                    shapes[st.output].str() + " but tensor '" + tensors_[st.output].name +
                                    "' is recorded as " + tensors_[st.output].declared.str());
      }
    }
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + e.what());
  } catch (const std::out_of_range& e) {
    throw std::invalid_argument(where + "inconsistent graph description (" + e.what() + ")");
  }
}

Shape Graph::engine_shape(const Shape& user) {
  return user.rank == 4 ? Shape::nhwc(user.d[0], user.d[2], user.d[3], user.d[1]) : user;
}

Shape Graph::user_shape(const Shape& engine) {
  return engine.rank == 4 ? Shape{4, {engine.d[0], engine.d[3], engine.d[1], engine.d[2]}} : engine;
}

Shape Graph::input_user(size_t i) const { return user_shape(tensors_[inputs_.at(i)].declared); }

std::vector<Shape> Graph::infer(int64_t n, int64_t h, int64_t w) const {
  std::vector<Shape> in;
  for (int t : inputs_) {
    in.push_back(tensors_[t].declared);
    in.back().d[0] = n;
  }
  if (in[0].rank == 4) {
    in[0].d[1] = h;
    in[0].d[2] = w;
  }
  return infer(in);
}

std::vector<Shape> Graph::infer(const std::vector<Shape>& inputs) const {
  if (inputs.size() != inputs_.size()) {
    throw std::invalid_argument("the graph takes " + std::to_string(inputs_.size()) + " inputs, got " +
                                std::to_string(inputs.size()));
  }
  std::vector<Shape> shapes(tensors_.size());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    checked_bytes(inputs[i], DType::kF32, "graph input '" + tensors_[inputs_[i]].name + "'");
    shapes[inputs_[i]] = inputs[i];
  }
  std::vector<Shape> in;
  for (const Step& st : steps_) {
    in.clear();
    for (int t : st.inputs) in.push_back(shapes[t]);
    const Shape out = st.node->infer(in.data(), in.size());
    checked_bytes(out, st.node->out_type(), "op '" + st.node->name() + "' (" + st.node->kind() + ") output");
    shapes[st.output] = out;
  }
  return shapes;
}

}  // namespace xnor
