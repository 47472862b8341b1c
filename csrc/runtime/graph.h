// The executable graph: nodes built once from a GraphDesc whose parameters
// live in a validated XbinFile, tensor bookkeeping (dtype, producer,
// aliasing), and shape inference for any input size.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/graph_desc.h"
#include "runtime/nodes.h"
#include "runtime/tensor_shape.h"
#include "runtime/xbin_reader.h"

namespace xnor {

class Graph {
 public:
  struct TensorInfo {
    std::string name;
    DType dtype;
    Shape declared;  // as recorded in the file (batch 1, unless the graph runs per image)
    int storage;     // the tensor whose buffer holds this one (itself unless aliased)
  };
  struct Step {
    std::unique_ptr<Node> node;
    std::vector<int> inputs;
    int output;
  };

  // Checks everything in `desc` against `file` (section indices, dtypes,
  // sizes, shapes, topology) and builds the nodes. Throws std::invalid_argument
  // whose message starts with the file path.
  Graph(std::shared_ptr<const XbinFile> file, const GraphDesc& desc);

  const XbinFile& file() const { return *file_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<Step>& steps() const { return steps_; }
  int input() const { return input_; }
  const std::vector<int>& outputs() const { return outputs_; }
  // Declared input as NCHW (1, C, H, W).
  Shape input_nchw() const;

  // A graph whose axis 0 is not the batch everywhere (metadata "per_image": true, e.g. attention
  // that folds heads into axis 0): it runs one image at a time at its recorded input size, and
  // its recorded shapes are exact (no batch-1 rule).
  bool per_image() const { return per_image_; }

  // Shapes of every tensor for an NHWC input (n, h, w, C). Throws
  // std::invalid_argument naming the op that cannot take its input.
  std::vector<Shape> infer(int64_t n, int64_t h, int64_t w) const;

 private:
  std::shared_ptr<const XbinFile> file_;  // owns the parameter bytes the nodes were built from
  std::vector<TensorInfo> tensors_;
  std::vector<Step> steps_;
  int input_ = -1;
  std::vector<int> outputs_;
  bool per_image_ = false;
};

}  // namespace xnor
