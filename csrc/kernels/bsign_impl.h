// Sign (float -> packed bits against per-channel thresholds) and unpack
// (packed bits -> +/-1.0f), written once and compiled per ISA by
// bsign_<isa>.cc. Bit conventions: bitpack.h; exact rules: elementwise.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor::bsign_impl {

inline void sign(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                 bool zero_is_minus, uint64_t* out) {
  const size_t out_channels = groups * channels;
  const size_t words = (out_channels + 63) / 64;
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    uint64_t* __restrict o = out + r * words;
    for (size_t w = 0; w < words; ++w) o[w] = 0;
    for (size_t j = 0; j < groups; ++j) {
      const float* __restrict t = thresholds + j * channels;
      for (size_t c = 0; c < channels; ++c) {
        const bool minus = zero_is_minus ? (xr[c] <= t[c]) : (xr[c] < t[c]);
        const size_t bit = j * channels + c;
        o[bit >> 6] |= static_cast<uint64_t>(minus) << (bit & 63);
      }
    }
  }
}

inline void unpack(const uint64_t* bits, size_t rows, size_t channels, float* y) {
  const size_t words = (channels + 63) / 64;
  for (size_t r = 0; r < rows; ++r) {
    const uint64_t* __restrict b = bits + r * words;
    float* __restrict yr = y + r * channels;
    for (size_t c = 0; c < channels; ++c) yr[c] = ((b[c >> 6] >> (c & 63)) & 1u) ? -1.0f : 1.0f;
  }
}

}  // namespace xnor::bsign_impl

#define XNOR_DEFINE_BSIGN_KERNELS(isa)                                                                   \
  void sign_##isa(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,  \
                  bool zero_is_minus, uint64_t* out) {                                                   \
    bsign_impl::sign(x, rows, channels, thresholds, groups, zero_is_minus, out);                         \
  }                                                                                                      \
  void unpack_##isa(const uint64_t* bits, size_t rows, size_t channels, float* y) {                      \
    bsign_impl::unpack(bits, rows, channels, y);                                                         \
  }
