// Float 2-D convolution operator: NHWC float input, OHWI weights packed once
// into SGEMM panels, im2col of a tile of output pixels into a per-task scratch
// buffer, then the ISA's SGEMM panel kernel. Unpadded 1x1 convolutions skip
// the im2col: the GEMM reads the input rows in place (with a row stride of
// stride_w pixels when strided).
// Work is split over tiles of output pixels (and groups and weight panels);
// every output element is one FMA chain over k = (kh, kw, ci) in order, so results do not depend on the ISA
// path or the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "microkernels/dwconv.h"
#include "microkernels/isa.h"
#include "operators/aligned_buffer.h"
#include "operators/parallel.h"
#include "operators/rows_done.h"
#include "operators/sgemm_packed.h"
#include "operators/workspace.h"

namespace xnor {

struct FloatConvConfig {
  int in_channels = 0;
  int out_channels = 0;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;            // symmetric zero padding, as torch.nn.Conv2d(padding=...)
  int dilation_h = 1, dilation_w = 1;  // kernel taps dilation apart, as torch.nn.Conv2d(dilation=...)
  bool relu = false;                   // fused max(y, 0) after the bias
  int groups = 1;                      // output channel o reads input channels of group o / (out_channels / groups)
};

class FloatConv2d {
 public:
  // weights: [out_channels][kernel_h][kernel_w][in_channels / groups] (OHWI); bias: [out_channels]
  // or nullptr. With groups > 1 each group is its own GEMM (its weights packed apart) on its
  // slice of the input channels, writing its slice of the output channels.
  // Throws std::invalid_argument on a bad configuration.
  FloatConv2d(const FloatConvConfig& config, const float* weights, const float* bias);

  const FloatConvConfig& config() const { return config_; }
  size_t held_bytes() const;  // the packed weights
  // Output size for an input size; <= 0 when the input is smaller than the kernel.
  int out_h(int in_h) const {
    return out_size(in_h, config_.kernel_h, config_.stride_h, config_.pad_h, config_.dilation_h);
  }
  int out_w(int in_w) const {
    return out_size(in_w, config_.kernel_w, config_.stride_w, config_.pad_w, config_.dilation_w);
  }
  // PyTorch's rule: (in + 2p - d(k - 1) - 1) / s + 1, or <= 0 when the dilated kernel does not fit.
  static int out_size(int in, int k, int s, int p, int d) {
    const int64_t span = int64_t{d} * (k - 1) + 1, padded = int64_t{in} + 2 * int64_t{p};
    return padded < span ? 0 : static_cast<int>((padded - span) / s + 1);
  }

  // Bytes of scratch run() needs on `threads` threads: one im2col tile per thread
  // (none for an unpadded 1x1 convolution, which is a GEMM on the input rows, strided or not).
  size_t workspace_bytes(int threads) const;
  // input: [batch][in_h][in_w][in_channels]; output: [batch][out_h][out_w][out_channels].
  // workspace: workspace_bytes(pool threads or 1) bytes, 64-byte aligned. `epilogue`, when given,
  // is called on every block of the output (rows = output pixels) right after it is written;
  // then `rows_done`, when given, with every output row once the row is complete (after the epilogue).
  // Throws std::invalid_argument when the output would be empty.
  void run(const float* input, int batch, int in_h, int in_w, float* output, TaskRunner* pool, Isa isa, void* workspace,
           const GemmEpilogue* epilogue = nullptr, const OutputRowsDone* rows_done = nullptr) const;
  // The same with a workspace allocated for this call (for callers without a memory plan).
  void run(const float* input, int batch, int in_h, int in_w, float* output, TaskRunner* pool, Isa isa) const;

 private:
  FloatConvConfig config_;
  bool is_gemm() const;                      // 1x1, stride 1, no padding
  bool is_strided_1x1() const;               // 1x1, a stride > 1, no padding
  size_t cin_g_, cout_g_;                    // channels per group
  size_t k_;                                 // kernel_h * kernel_w * in_channels / groups
  std::vector<PackedSgemmWeights> weights_;  // one per group
};

// Depthwise convolution (groups == in_channels == out_channels: one KHxKW filter per channel),
// NHWC, vectorised along channels by the ISA's dwconv kernel (operation order in
// microkernels/dwconv.h, so every ISA path and thread count gives the same bits). Work is split
// over output rows of all images. config.in_channels == config.out_channels == channels.
class FloatDepthwiseConv2d {
 public:
  // weights: [channels][kernel_h][kernel_w] (OHWI with I = 1); bias: [channels] or nullptr.
  // Throws std::invalid_argument on a bad configuration.
  FloatDepthwiseConv2d(const FloatConvConfig& config, const float* weights, const float* bias);

  const FloatConvConfig& config() const { return config_; }
  size_t held_bytes() const { return (weights_.size() + bias_.size()) * sizeof(float); }
  // input: [batch][in_h][in_w][channels]; output: [batch][out_h][out_w][channels].
  // Throws std::invalid_argument when the output would be empty.
  void run(const float* input, int64_t batch, int64_t in_h, int64_t in_w, float* output, TaskRunner* pool,
           Isa isa) const;

 private:
  FloatConvConfig config_;
  int64_t w_stride_;
  AlignedFloats weights_;  // [kernel_h][kernel_w][w_stride_], zero-padded channels
  AlignedFloats bias_;     // [w_stride_]
};

}  // namespace xnor
