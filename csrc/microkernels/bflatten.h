// Bit flatten: packed NHWC bits (pixels x channels, each pixel's channels
// starting on a word boundary) -> one packed row of pixels * channels bits in
// NHWC order. When channels % 64 == 0 the two layouts are the same bytes (the
// runtime then aliases the tensor and never calls this).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace xnor {

// src: `pixels` rows of ceil(channels/64) words (pad bits zero); dst: ceil(pixels*channels/64) words.
inline void bflatten_image(const uint64_t* src, size_t pixels, size_t channels, uint64_t* dst) {
  const size_t in_words = (channels + 63) / 64, out_words = (pixels * channels + 63) / 64;
  std::memset(dst, 0, out_words * sizeof(uint64_t));
  for (size_t p = 0; p < pixels; ++p) {
    for (size_t k = 0; k < in_words; ++k) {
      const uint64_t v = src[p * in_words + k];
      const size_t bits = (k + 1) * 64 <= channels ? 64 : channels - k * 64;
      const size_t at = p * channels + k * 64, word = at / 64, shift = at % 64;
      dst[word] |= v << shift;
      if (shift != 0 && shift + bits > 64) dst[word + 1] |= v >> (64 - shift);
    }
  }
}

}  // namespace xnor
