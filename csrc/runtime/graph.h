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
  // The first graph input (the only one of an image model); inputs() lists them all.
  int input() const { return inputs_[0]; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  // Declared input 0 as NCHW (1, C, H, W) when it is 4-D, else as recorded.
  Shape input_nchw() const { return input_user(0); }
  // Declared input i as the caller passes it: NCHW for a 4-D input (the engine holds NHWC),
  // any other rank in its recorded order.
  Shape input_user(size_t i) const;
  // A caller's shape of a rank-4 input (NCHW) in the engine's layout (NHWC); other ranks as they are.
  static Shape engine_shape(const Shape& user);
  static Shape user_shape(const Shape& engine);

  // A graph whose axis 0 is not the batch everywhere (metadata "per_image": true, e.g. attention
  // that folds heads into axis 0): it runs one image at a time at its recorded input size, and
  // its recorded shapes are exact (no batch-1 rule).
  bool per_image() const { return per_image_; }

  // Shapes of every tensor for an NHWC input (n, h, w, C) of a graph with one 4-D input (other
  // inputs: as recorded, batch n). Throws std::invalid_argument naming the op that cannot take its input.
  std::vector<Shape> infer(int64_t n, int64_t h, int64_t w) const;
  // Shapes of every tensor for the graph inputs' engine-layout shapes (one per inputs()).
  std::vector<Shape> infer(const std::vector<Shape>& inputs) const;

 private:
  std::shared_ptr<const XbinFile> file_;  // owns the parameter bytes the nodes were built from
  std::vector<TensorInfo> tensors_;
  std::vector<Step> steps_;
  std::vector<int> inputs_;
  std::vector<int> outputs_;
  bool per_image_ = false;
};

}  // namespace xnor
