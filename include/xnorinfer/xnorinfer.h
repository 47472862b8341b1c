// xnorinfer: run a binarized neural network from a .xbin model file in C++.
//
//   xnorinfer::Model model = xnorinfer::Model::load("model.xbin");
//   xnorinfer::Session session(model, /*threads=*/4);
//   std::vector<xnorinfer::Tensor> out = session.run(pixels.data(), {1, 1, 28, 28});
//
// The model file is read and checked completely at load (container, checksums, graph,
// parameters, metadata); a bad file throws xnorinfer::ModelError naming the file and the
// problem. See docs/cpp-api.md. This header is the whole public API: it includes only the
// standard library and stays stable while the engine behind it changes.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xnorinfer {

// A model file that is missing, unreadable, damaged or not one this version can run.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call with arguments that do not fit the model (input shape, thread count, limits).
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A memory plan above the session's limit (the message names the largest buffer).
class MemoryLimitError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// The preprocessing an image needs before it is a model input, as the model's metadata
// records it (what `xnorinfer run` applies): scale pixels to [0, 1]; resize (with `resize`,
// the shorter side to `resize`, then a centre crop to height x width); then per channel
// (x - mean[c]) / std[c]. `mean`/`std` hold 1 entry (every channel) or `channels`
// entries, or none (no normalisation).
struct Preprocessing {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<double> mean;
  std::vector<double> std;
  int64_t resize = 0;  // 0: none recorded
};

// One output of a run: float32 values in C order. 2-D outputs are (N, F); 4-D ones NHWC.
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// One input of a run: float32 values in C order and their shape: NCHW {N, C, H, W} for a 4-D
// (image) input, any other rank in the order the model records (Model::input_shapes()).
struct Input {
  const float* data = nullptr;
  std::vector<int64_t> shape;
};

// A loaded model (immutable; copies share it). Any number of sessions may run it.
class Model {
 public:
  // Reads and validates the file; throws ModelError.
  static Model load(const std::string& path);
  // Validates a copy of `size` bytes at `data`; `name` stands for the file in messages.
  static Model load(const void* data, std::size_t size, const std::string& name = "<bytes>");

  const std::string& path() const;
  // Input: float32 NCHW as recorded (batch 1); any batch size and, for models that allow
  // it, other spatial sizes run.
  const std::string& input_name() const;
  std::vector<int64_t> input_shape() const;
  // Every input of the model in run order (a model may take several, of rank 1 to 6), with the
  // recorded shapes (batch 1; NCHW for a 4-D input). input_name()/input_shape() are the first.
  std::vector<std::string> input_names() const;
  std::vector<std::vector<int64_t>> input_shapes() const;
  std::vector<std::string> output_names() const;
  // Output shapes for the recorded input (batch 1): (1, F), or NHWC (1, H, W, C).
  std::vector<std::vector<int64_t>> output_shapes() const;
  // The metadata object of the file as compact JSON text.
  std::string metadata_json() const;
  // Class names from the metadata (empty when it records none).
  const std::vector<std::string>& labels() const;
  // True when the metadata says the outputs are already probabilities ("output":
  // "probabilities"); otherwise they are logits (xnorinfer run applies a softmax).
  bool outputs_are_probabilities() const;
  const Preprocessing& preprocessing() const;

  struct Impl;

 private:
  explicit Model(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
  friend class Session;
};

// A model ready to run: one thread pool and one memory plan reused across runs. run() is
// safe to call from several threads (calls are serialised).
class Session {
 public:
  // threads from 1 to 1024; max_memory_bytes 0 means the default (half of the physical
  // memory or of the cgroup limit). Throws InvalidArgument, MemoryLimitError.
  explicit Session(const Model& model, int threads = 1, uint64_t max_memory_bytes = 0);
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int threads() const;
  const Model& model() const;
  // Runs on `input`, float32 NCHW of shape {N, C, H, W} (C as the model's), C order; returns
  // one Tensor per graph output. Throws InvalidArgument when the shape does not fit.
  std::vector<Tensor> run(const float* input, const std::vector<int64_t>& nchw_shape);
  // Runs a model on all its inputs, one per Model::input_names() in that order, all with the
  // same batch N (a one-input model of any rank too). Throws InvalidArgument when they do not fit.
  std::vector<Tensor> run(const std::vector<Input>& inputs);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The version of the library ("0.1.0").
const char* version();

}  // namespace xnorinfer
