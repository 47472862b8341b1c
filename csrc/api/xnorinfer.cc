// The public C++ API (include/xnorinfer/xnorinfer.h) over the runtime: Model wraps
// xnor::Model (the one .xbin loader), Session wraps xnor::Session. Internal exception
// types are translated here so that no internal header reaches an application.
#include "xnorinfer/xnorinfer.h"

#include <exception>
#include <utility>

#include "runtime/isa.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace xnorinfer {
namespace {

std::vector<int64_t> dims(const xnor::Shape& s) { return std::vector<int64_t>(s.d, s.d + s.rank); }

// Runs `f`, rethrowing the runtime's exceptions as the public ones (same messages).
template <typename F>
auto translate(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const xnor::XbinError& e) {
    throw ModelError(e.what());
  } catch (const xnor::MemoryLimitError& e) {
    throw MemoryLimitError(e.what());
  } catch (const InvalidArgument&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw InvalidArgument(e.what());
  } catch (const std::out_of_range& e) {
    throw InvalidArgument(e.what());
  }
}

}  // namespace

struct Model::Impl {
  std::shared_ptr<const xnor::Model> model;
  std::string input_name;
  std::vector<std::string> input_names;
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<std::string> output_names;
  std::vector<std::vector<int64_t>> output_shapes;
  Preprocessing preprocessing;
  bool probabilities = false;
};

Model::Model(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

namespace {
std::shared_ptr<const Model::Impl> make_impl(std::shared_ptr<const xnor::Model> m) {
  auto impl = std::make_shared<Model::Impl>();
  const xnor::Graph& g = *m->graph();
  impl->input_name = g.tensors()[g.input()].name;
  for (size_t i = 0; i < g.inputs().size(); ++i) {
    impl->input_names.push_back(g.tensors()[g.inputs()[i]].name);
    impl->input_shapes.push_back(dims(g.input_user(i)));
  }
  for (const int t : g.outputs()) {  // the recorded shapes are what the graph produces (Graph checks it)
    impl->output_names.push_back(g.tensors()[t].name);
    impl->output_shapes.push_back(dims(g.tensors()[t].declared));
  }
  const xnor::InputSpec& spec = m->input_spec();
  impl->preprocessing = {spec.channels, spec.height, spec.width, spec.mean, spec.std, spec.resize};
  const xnor::json::Value* output = m->metadata().find("output");
  impl->probabilities = output && output->is_string() && output->as_string() == "probabilities";
  impl->model = std::move(m);
  return impl;
}
}  // namespace

Model Model::load(const std::string& path) {
  return translate([&] { return Model(make_impl(xnor::Model::load(path))); });
}

Model Model::load(const void* data, std::size_t size, const std::string& name) {
  return translate([&] { return Model(make_impl(xnor::Model::load(static_cast<const uint8_t*>(data), size, name))); });
}

const std::string& Model::path() const { return impl_->model->file().path(); }
const std::string& Model::input_name() const { return impl_->input_name; }
std::vector<int64_t> Model::input_shape() const { return dims(impl_->model->graph()->input_nchw()); }
std::vector<std::string> Model::input_names() const { return impl_->input_names; }
std::vector<std::vector<int64_t>> Model::input_shapes() const { return impl_->input_shapes; }
std::vector<std::string> Model::output_names() const { return impl_->output_names; }
std::vector<std::vector<int64_t>> Model::output_shapes() const { return impl_->output_shapes; }
std::string Model::metadata_json() const { return impl_->model->metadata().dump(); }
const std::vector<std::string>& Model::labels() const { return impl_->model->labels(); }
bool Model::outputs_are_probabilities() const { return impl_->probabilities; }
const Preprocessing& Model::preprocessing() const { return impl_->preprocessing; }

struct Session::Impl {
  Model model;
  xnor::Session session;
  xnor::Isa isa;
  std::vector<float*> outputs;  // reused: run() allocates only the returned tensors
};

Session::Session(const Model& model, int threads, uint64_t max_memory_bytes) {
  impl_ = translate([&] {
    return std::unique_ptr<Impl>(
        new Impl{model,
                 xnor::Session(model.impl_->model->graph(), threads,
                               max_memory_bytes ? max_memory_bytes : xnor::default_max_memory()),
                 xnor::default_isa(),
                 {}});
  });
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

int Session::threads() const { return impl_->session.threads(); }
const Model& Session::model() const { return impl_->model; }

std::vector<Tensor> Session::run(const float* input, const std::vector<int64_t>& nchw_shape) {
  if (nchw_shape.size() != 4) throw InvalidArgument("input shape must be NCHW (4 dimensions)");
  return run(std::vector<Input>{{input, nchw_shape}});
}

std::vector<Tensor> Session::run(const std::vector<Input>& inputs) {
  return translate([&] {
    std::vector<xnor::Shape> shapes;
    std::vector<const float*> data;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::vector<int64_t>& d = inputs[i].shape;
      if (d.empty() || d.size() > static_cast<size_t>(xnor::kMaxRank)) {
        throw InvalidArgument("input " + std::to_string(i) + ": rank must be 1 to " + std::to_string(xnor::kMaxRank));
      }
      if (!inputs[i].data)
        throw InvalidArgument(inputs.size() == 1 ? "input is null" : "input " + std::to_string(i) + " is null");
      xnor::Shape s;
      s.rank = static_cast<int>(d.size());
      for (size_t a = 0; a < d.size(); ++a) s.d[a] = d[a];
      shapes.push_back(s);
      data.push_back(inputs[i].data);
    }
    const std::vector<xnor::Shape> out_shapes = impl_->session.prepare(shapes.data(), shapes.size());
    std::vector<Tensor> out(out_shapes.size());
    impl_->outputs.clear();
    for (size_t i = 0; i < out_shapes.size(); ++i) {
      out[i].name = impl_->model.impl_->output_names[i];
      out[i].shape = dims(out_shapes[i]);
      out[i].data.resize(static_cast<size_t>(out_shapes[i].elements()));
      impl_->outputs.push_back(out[i].data.data());
    }
    impl_->session.run(data.data(), shapes.data(), shapes.size(), impl_->outputs.data(), impl_->isa);
    return out;
  });
}

const char* version() { return "0.1.0"; }

}  // namespace xnorinfer
