// Ternary-weight convolution on packed binary (±1) activations: weights {-Wn, 0, +Wp} as two bit
// planes over the input channels, plus (weight +) and minus (weight -). For a set M of weights,
// sum over M of x = |M| - 2 * popcount(M AND x) (bit 1 = -1), so per output channel o
//   P = sum over in-bounds taps of count_plus[o, tap] - 2 * popcount(plus AND x),  N likewise,
//   y = fma(scale_pos[o], float(P), fma(-scale_neg[o], float(N), bias[o])).
// Padded taps contribute 0 (PyTorch's zero padding). Integer sums: every ISA path gives the same bits.
//
// Output (TbconvEpilogue::kind):
//   kFloat:     y as above, [out_w][out_c] floats.
//   kIntSign:   packed bits [out_w][ceil(out_c / 64)] words, bit (1 = -1) = (P - N < threshold[o]) XOR
//               flip[o] (symmetric scales Wp == Wn: a sign of an affine of y is a threshold on P - N).
//   kFloatSign: packed bits, bit = z < sign_threshold[o] (z <= ... when zero_is_minus) with
//               z = fma(y, post_scale[o], post_shift[o]): the affine and sign ops' arithmetic on y,
//               bit-identical to running tbconv2d (float), affine and sign one after the other.
// Pad bits past out_c in the last word are 0.
#pragma once

#include <cstdint>

namespace xnor {

struct TbconvGeometry {
  int64_t in_h, in_w, words;  // words = ceil(in_channels / 64) per pixel
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t out_w, out_c;
};

enum class TbconvOutput : int { kFloat = 0, kIntSign = 1, kFloatSign = 2 };

struct TbconvEpilogue {
  TbconvOutput kind = TbconvOutput::kFloat;
  const int32_t* threshold = nullptr;     // kIntSign, [out_c]
  const uint8_t* flip = nullptr;          // kIntSign, [out_c] of 0 / 1
  const float* post_scale = nullptr;      // kFloatSign, [out_c]
  const float* post_shift = nullptr;      // kFloatSign, [out_c]
  const float* sign_threshold = nullptr;  // kFloatSign, [out_c]
  bool zero_is_minus = false;             // kFloatSign: z == threshold gives -1
};

// image: one packed image [in_h][in_w][words]; plus / minus: [kernel_h * kernel_w][words][out_c]
// (output channels innermost, so the loops vectorise across them); count_plus / count_minus:
// [kernel_h * kernel_w][out_c], the popcounts of each tap's weights; out: output row oy,
// [out_w][out_c] floats (kFloat) or [out_w][ceil(out_c / 64)] uint64 words (the sign kinds).
using TbconvRowFn = void (*)(const uint64_t* image, const uint64_t* plus, const uint64_t* minus,
                             const int32_t* count_plus, const int32_t* count_minus, const float* scale_pos,
                             const float* scale_neg, const float* bias, const TbconvEpilogue& epi,
                             const TbconvGeometry& g, int64_t oy, void* out);

#define XNOR_DECLARE_TBCONV(isa)                                                                                       \
  void tbconv_row_##isa(const uint64_t* image, const uint64_t* plus, const uint64_t* minus, const int32_t* count_plus, \
                        const int32_t* count_minus, const float* scale_pos, const float* scale_neg, const float* bias, \
                        const TbconvEpilogue& epi, const TbconvGeometry& g, int64_t oy, void* out);
XNOR_DECLARE_TBCONV(scalar)
XNOR_DECLARE_TBCONV(avx2)
XNOR_DECLARE_TBCONV(avx512)
#undef XNOR_DECLARE_TBCONV

}  // namespace xnor
