// Sign (float -> packed bits against per-channel thresholds) and unpack
// (packed bits -> +/-1.0f), written once and compiled per ISA by
// bsign_<isa>.cc. Bit conventions: bitpack.h; exact rules: elementwise.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor::bsign_impl {

// Sets the bits base+c of `o` for channels c in [from, to) of one row (one threshold group).
inline void sign_bits(const float* __restrict x, const float* __restrict t, size_t from, size_t to, size_t base,
                      bool zero_is_minus, uint64_t* __restrict o) {
  for (size_t c = from; c < to; ++c) {
    const bool minus = zero_is_minus ? (x[c] <= t[c]) : (x[c] < t[c]);
    const size_t bit = base + c;
    o[bit >> 6] |= static_cast<uint64_t>(minus) << (bit & 63);
  }
}

// ±1.0f for channels [from, to) of one packed row.
inline void unpack_range(const uint64_t* __restrict b, size_t from, size_t to, float* __restrict y) {
  for (size_t c = from; c < to; ++c) y[c] = ((b[c >> 6] >> (c & 63)) & 1u) ? -1.0f : 1.0f;
}

inline void sign(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                 bool zero_is_minus, uint64_t* out) {
  const size_t out_channels = groups * channels;
  const size_t words = (out_channels + 63) / 64;
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    uint64_t* __restrict o = out + r * words;
    for (size_t w = 0; w < words; ++w) o[w] = 0;
    for (size_t j = 0; j < groups; ++j) sign_bits(xr, thresholds + j * channels, 0, channels, j * channels, zero_is_minus, o);
  }
}

inline void unpack(const uint64_t* bits, size_t rows, size_t channels, float* y) {
  const size_t words = (channels + 63) / 64;
  for (size_t r = 0; r < rows; ++r) unpack_range(bits + r * words, 0, channels, y + r * channels);
}

}  // namespace xnor::bsign_impl

// Defines sign_<isa> and unpack_<isa> from the sign/unpack of namespace `impl` (bsign_impl, or
// bsign_x86 for the x86 SIMD builds).
#define XNOR_DEFINE_BSIGN_KERNELS(isa, impl)                                                             \
  void sign_##isa(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,  \
                  bool zero_is_minus, uint64_t* out) {                                                   \
    impl::sign(x, rows, channels, thresholds, groups, zero_is_minus, out);                               \
  }                                                                                                      \
  void unpack_##isa(const uint64_t* bits, size_t rows, size_t channels, float* y) {                      \
    impl::unpack(bits, rows, channels, y);                                                               \
  }
