// Binary convolution microkernels: one block of 32 output channels over a run
// of output pixels of one image, reading the bit-packed NHWC input directly
// (implicit GEMM: no im2col copy) and applying the output transform in the
// epilogue.
//
// Lanes hold output channels: packed weights are laid out
// [block][tap][in_word][32 channels], so one 512-bit load gives one input word
// position for 8 channels, and the activation word is broadcast against it.
// x.w over K bits = K - 2 * popcount(x XOR w).
#pragma once

#include <cstdint>

namespace xnor {

constexpr int kBconvBlock = 32;  // output channels per weight block

enum class PadMode : int { kZero = 0, kPlusOne = 1, kMinusOne = 2 };
enum class OutputKind : int { kInt32 = 0, kFloat = 1, kBits = 2 };

// Per-block epilogue constants, prepared once when the operator is built.
struct alignas(64) BconvBlockEpilogue {
  int64_t threshold[kBconvBlock];  // kBits: bit = (s < threshold) ^ flip
  float multiplier[kBconvBlock];   // kFloat: y = multiplier * s + bias (one fma)
  float bias[kBconvBlock];
  uint32_t flip = 0;         // kBits: bit c set inverts channel c
  uint32_t valid_mask = 0;   // bit c set when channel c of this block exists
  int channels = 0;          // valid channels in this block
};

struct BconvKernelArgs {
  // Input image, packed NHWC: [in_h][in_w][in_words].
  const uint64_t* input;
  int in_h, in_w, in_words;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int out_w;
  int k_bits;  // real reduction length: kernel_h * kernel_w * in_channels
  // Row of in_words words read in place of a padded tap: zeros (+1) for
  // kZero and kPlusOne, the real-channel mask (-1) for kMinusOne.
  const uint64_t* pad_row;
  // kZero only: [taps][32] sum of the +/-1 weights per tap and channel, to
  // subtract what the +1 pad row added (the tap really contributes 0).
  const int32_t* tap_weight_sum;
  const uint64_t* weights;  // this block: [taps * in_words][32]
  const BconvBlockEpilogue* epilogue;
  OutputKind kind;
  // Output of this image and block: element (pixel p, block channel c) is at
  // int32/float: out + p * out_pixel_stride + c   (already offset to the block)
  // bits: ((uint32_t*)out)[p * out_pixel_stride + 0] (32 channels, one half word)
  void* output;
  int64_t out_pixel_stride;  // in elements of the output type (uint32 for bits)
  int pixel_begin, pixel_end;
};

using BconvMicrokernelFn = void (*)(const BconvKernelArgs& args);

void bconv_block_scalar(const BconvKernelArgs& args);
void bconv_block_avx2(const BconvKernelArgs& args);
void bconv_block_avx512(const BconvKernelArgs& args);

}  // namespace xnor
