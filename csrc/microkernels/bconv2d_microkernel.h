// Binary GEMM microkernels, the engine of binary convolution and dense layers.
//
// One call computes a tile of up to kBgemmMr output pixels x one block of 32
// output channels over the whole reduction, then applies the output transform.
// The inner loop is pure XOR + popcount (an indirect GEMM, as in XNNPACK):
//   activations  read in place from the packed NHWC input, already framed by
//                pad words: word k of pixel m is pixel_base[m][k_offset[k]]
//                (tap t = k / in_words at a fixed offset; no im2col copy)
//   weights      w[k][weight_stride] with k = t * in_words + word (one block,
//                channel-minor: 8 channels per 512-bit lane group; a layer's
//                last block is only as wide as its channels need, see bconv2d.h)
// Lanes hold output channels; an activation word is broadcast against them.
// x.w over K bits = K - 2 * popcount(x XOR w).
#pragma once

#include <cstdint>

namespace xnor {

constexpr int kBconvBlock = 32;  // output channels per weight block
constexpr int kBgemmMr = 6;      // output pixels per tile

enum class PadMode : int { kZero = 0, kPlusOne = 1, kMinusOne = 2 };
enum class OutputKind : int { kInt32 = 0, kFloat = 1, kBits = 2 };

// Per-block epilogue constants, prepared once when the operator is built.
struct alignas(64) BconvBlockEpilogue {
  int64_t threshold[kBconvBlock];  // kBits: bit = (s < threshold) ^ flip
  // The same test on the popcount, for pixels without padding correction:
  // s < threshold  <=>  popcount > pop_threshold (s = k_bits - 2 * popcount).
  int64_t pop_threshold[kBconvBlock];
  // kFloat: y = multiplier * s + bias (one fma); with a pixel scale K (XNOR-Net's beta map),
  // y = fma(multiplier, fl(s * K), bias).
  float multiplier[kBconvBlock];
  float bias[kBconvBlock];
  uint32_t flip = 0;        // kBits: bit c set inverts channel c
  uint32_t valid_mask = 0;  // bit c set when channel c of this block exists
  int channels = 0;         // valid channels in this block
};

struct BgemmTileArgs {
  const uint64_t* const* pixel_base;  // [rows] first word of each pixel's window
  const int64_t* k_offset;            // [k_words] offset of word k from the pixel base
  int k_words;                        // taps * words per tap
  const uint64_t* weights;            // [k_words][weight_stride], 64-byte aligned
  // Words per k: 32, or for a layer's last, narrower block its channels rounded up to 8
  // (the SIMD paths read whole 8-channel groups), or exactly its channels when under 8
  // (then only the scalar kernel runs it).
  int64_t weight_stride;
  int rows;        // valid pixels in the tile, 1..kBgemmMr
  int64_t k_bits;  // real reduction length in bits (taps x in_channels)
  // Zero-padding correction, or null: for pixel m, the padded taps are
  // padded_taps[m * taps_stride + i] for i < padded_count[m]; their rows of
  // tap_weight_sum ([tap][32], the sum of the +/-1 weights) are subtracted,
  // because the +1 pad words added them where the true value 0 adds nothing.
  const int32_t* tap_weight_sum;
  const int16_t* padded_taps;
  const int16_t* padded_count;
  int taps_stride;
  const BconvBlockEpilogue* epilogue;
  OutputKind kind;
  // Output of pixel m of the tile: int32/float: out + m * out_pixel_stride
  // (already offset to the block's first channel); bits: the 32-bit half word
  // ((uint32_t*)out)[m * out_pixel_stride].
  void* output;
  int64_t out_pixel_stride;
  // kFloat only, or null: the per-pixel scale of tile pixel m is pixel_scale[m] (XNOR-Net's K).
  const float* pixel_scale = nullptr;
};

// Points args.output / out_pixel_stride at block b's outputs of the tile whose first pixel's
// output starts at element out_first of `output` (out_pixel elements per pixel: channels, or
// words for bits, where two 32-channel blocks fill one little-endian uint64 word).
inline void set_block_output(BgemmTileArgs& args, OutputKind kind, void* output, int64_t out_first, int b,
                             int64_t out_pixel) {
  switch (kind) {
    case OutputKind::kInt32:
      args.output = static_cast<int32_t*>(output) + out_first + b * kBconvBlock;
      args.out_pixel_stride = out_pixel;
      break;
    case OutputKind::kFloat:
      args.output = static_cast<float*>(output) + out_first + b * kBconvBlock;
      args.out_pixel_stride = out_pixel;
      break;
    case OutputKind::kBits:
      args.output = reinterpret_cast<uint32_t*>(static_cast<uint64_t*>(output) + out_first) + b;
      args.out_pixel_stride = out_pixel * 2;
      break;
  }
}

using BgemmTileFn = void (*)(const BgemmTileArgs& args);

void bgemm_tile_scalar(const BgemmTileArgs& args);
void bgemm_tile_avx2(const BgemmTileArgs& args);
void bgemm_tile_avx512(const BgemmTileArgs& args);

// Diagnostic: XOR + VPOPCNTQ + ADD on registers only (no memory), the
// instruction-mix ceiling of the AVX-512 kernel on this machine. Returns
// binary MACs per second over `iterations` rounds of 24 512-bit products.
double bgemm_register_peak_avx512(long iterations);

}  // namespace xnor
