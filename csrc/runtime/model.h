// A loaded model: the validated container, the graph JSON parsed and checked
// (docs/xbin-format.md, "Validation"), the executable graph built from it, and the
// metadata with the preprocessing it records. This is the only .xbin reader: the
// public C++ API (include/xnorinfer/xnorinfer.h), the Python binding and the fuzz
// target all load through Model::load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/graph.h"
#include "runtime/graph_desc.h"
#include "runtime/json.h"
#include "runtime/xbin_reader.h"

namespace xnor {

// The newest IR version this runtime reads (xnorinfer/ir.py IR_VERSION).
constexpr int kIrVersion = 1;

// The largest image preprocessing may produce, and the largest resize (8192^2 = kMaxPixels);
// the same limits as xnorinfer/preprocess.py.
constexpr int64_t kMaxPixels = int64_t{64} * 1024 * 1024;
constexpr int64_t kMaxResize = 8192;

// What the model expects as input, from its metadata (input_shape, mean, std, resize);
// without metadata input_shape, the graph input's shape and no normalisation.
struct InputSpec {
  int64_t channels = 0, height = 0, width = 0;
  std::vector<double> mean, std;  // 1 or `channels` entries each, or empty (none)
  int64_t resize = 0;             // shorter side before a centre crop; 0: resize directly
};

// Parses and checks the graph JSON section of `file` against its section table; throws
// XbinError "<file>: <what>" naming the op or tensor at fault.
GraphDesc describe(const XbinFile& file);

class Model {
 public:
  // Read, validate and build. Throws XbinError naming the file (a bad file, or a graph
  // the runtime cannot build).
  static std::shared_ptr<const Model> load(const std::string& path);
  static std::shared_ptr<const Model> load(const uint8_t* data, uint64_t size, const std::string& name);
  static std::shared_ptr<const Model> load(std::shared_ptr<const XbinFile> file);

  const XbinFile& file() const { return *file_; }
  const std::shared_ptr<const XbinFile>& file_ptr() const { return file_; }
  const GraphDesc& desc() const { return desc_; }
  const std::shared_ptr<const Graph>& graph() const { return graph_; }
  const json::Value& metadata() const { return desc_.metadata; }
  const InputSpec& input_spec() const { return spec_; }
  // metadata "labels" (a list of strings), or empty.
  const std::vector<std::string>& labels() const { return labels_; }

 private:
  explicit Model(std::shared_ptr<const XbinFile> file);

  std::shared_ptr<const XbinFile> file_;
  GraphDesc desc_;
  std::shared_ptr<const Graph> graph_;
  InputSpec spec_;
  std::vector<std::string> labels_;
};

}  // namespace xnor
