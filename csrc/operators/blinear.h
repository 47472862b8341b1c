// Binary dense layer: the binary GEMM y[m][n] = sum_k x[m][k] * w[n][k] over
// +/-1 bits, run as a 1x1 binary convolution over an M x 1 image so that it
// shares the bgemm microkernels, output transforms and threading.
#pragma once

#include <cstdint>

#include "operators/bconv2d.h"

namespace xnor {

class BinaryLinear {
 public:
  // weights: bit-packed [out_features][in_words], pad bits zero.
  BinaryLinear(int in_features, int out_features, const uint64_t* weights, OutputTransform transform)
      : conv_(make_config(in_features, out_features), weights, std::move(transform)) {}

  int in_features() const { return conv_.config().in_channels; }
  int out_features() const { return conv_.config().out_channels; }
  int in_words() const { return conv_.in_words(); }
  OutputKind output_kind() const { return conv_.output_kind(); }
  int64_t out_row_elements() const { return conv_.out_pixel_elements(); }

  const BinaryConv2d& conv() const { return conv_; }

  // Bytes of scratch run() needs for `rows` rows on `threads` threads.
  size_t workspace_bytes(int rows, int threads) const { return conv_.workspace_bytes(1, rows, 1, threads); }
  // input: [rows][in_words]; output: [rows][out_row_elements()] of the output kind; workspace:
  // workspace_bytes(rows, pool threads or 1) bytes, 64-byte aligned (null: allocated for this call).
  void run(const uint64_t* input, int rows, void* output, TaskRunner* pool, Isa isa, void* workspace = nullptr) const {
    if (workspace == nullptr) {
      conv_.run(input, 1, rows, 1, output, pool, isa);
    } else {
      conv_.run(input, 1, rows, 1, output, pool, isa, workspace);
    }
  }

 private:
  static BconvConfig make_config(int in_features, int out_features) {
    BconvConfig c;
    c.in_channels = in_features;
    c.out_channels = out_features;
    return c;
  }
  BinaryConv2d conv_;
};

}  // namespace xnor
