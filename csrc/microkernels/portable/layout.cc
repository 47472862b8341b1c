// Data-movement kernels: NCHW -> NHWC input transpose, float concatenation
// and bit concatenation along the last axis. Written once and compiled per
// ISA (per_isa.h).

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "microkernels/elementwise.h"
#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

inline void nchw_to_nhwc(const float* x, size_t channels, size_t pixels, size_t p_begin, size_t p_end, float* y) {
  constexpr size_t kTile = 32;  // pixels per tile: keeps the channel reads in cache
  for (size_t p0 = p_begin; p0 < p_end; p0 += kTile) {
    const size_t p1 = p0 + kTile < p_end ? p0 + kTile : p_end;
    for (size_t c = 0; c < channels; ++c) {
      const float* __restrict src = x + c * pixels;
      for (size_t p = p0; p < p1; ++p) y[p * channels + c] = src[p];
    }
  }
}

inline void concat(const float* const* in, const size_t* in_channels, size_t inputs, size_t row_begin, size_t row_end,
                   size_t out_channels, float* out) {
  for (size_t r = row_begin; r < row_end; ++r) {
    float* dst = out + r * out_channels;
    for (size_t k = 0; k < inputs; ++k) {
      std::memcpy(dst, in[k] + r * in_channels[k], in_channels[k] * sizeof(float));
      dst += in_channels[k];
    }
  }
}

// Input pad bits are zero, so OR-ing shifted words places each input's
// channels after the previous ones and leaves the output's pad bits zero.
inline void bconcat(const uint64_t* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,
                    size_t row_end, size_t out_channels, uint64_t* out) {
  const size_t out_words = (out_channels + 63) / 64;
  for (size_t r = row_begin; r < row_end; ++r) {
    uint64_t* __restrict dst = out + r * out_words;
    for (size_t w = 0; w < out_words; ++w) dst[w] = 0;
    size_t offset = 0;
    for (size_t k = 0; k < inputs; ++k) {
      const size_t words = (in_channels[k] + 63) / 64;
      const uint64_t* __restrict src = in[k] + r * words;
      const size_t base = offset >> 6, shift = offset & 63;
      for (size_t w = 0; w < words; ++w) {
        dst[base + w] |= src[w] << shift;
        if (shift && base + w + 1 < out_words) dst[base + w + 1] |= src[w] >> (64 - shift);
      }
      offset += in_channels[k];
    }
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_LAYOUT_KERNELS(isa)                                                                             \
  void nchw_to_nhwc_##isa(const float* x, size_t channels, size_t pixels, size_t p_begin, size_t p_end, float* y) { \
    isa::nchw_to_nhwc(x, channels, pixels, p_begin, p_end, y);                                                      \
  }                                                                                                                 \
  void concat_##isa(const float* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,             \
                    size_t row_end, size_t out_channels, float* out) {                                              \
    isa::concat(in, in_channels, inputs, row_begin, row_end, out_channels, out);                                    \
  }                                                                                                                 \
  void bconcat_##isa(const uint64_t* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,         \
                     size_t row_end, size_t out_channels, uint64_t* out) {                                          \
    isa::bconcat(in, in_channels, inputs, row_begin, row_end, out_channels, out);                                   \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_LAYOUT_KERNELS)
}  // namespace xnor
