// Sign (float -> packed bits against per-channel thresholds) and unpack
// (packed bits -> +/-1.0f), compiled per ISA (per_isa.h): the portable loops
// below, and on the x86 builds the compare-and-mask versions of bsign_x86.h.
// Bit conventions and exact rules: elementwise.h.
#include <cstddef>
#include <cstdint>

#include "microkernels/elementwise.h"
#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE::bsign_portable {

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
    for (size_t j = 0; j < groups; ++j)
      sign_bits(xr, thresholds + j * channels, 0, channels, j * channels, zero_is_minus, o);
  }
}

inline void unpack(const uint64_t* bits, size_t rows, size_t channels, float* y) {
  const size_t words = (channels + 63) / 64;
  for (size_t r = 0; r < rows; ++r) unpack_range(bits + r * words, 0, channels, y + r * channels);
}

}  // namespace xnor::XNOR_ISA_NAMESPACE::bsign_portable

#if defined(__AVX2__)
#include "microkernels/portable/bsign_x86.h"
#define XNOR_BSIGN_IMPL bsign_x86
#else
#define XNOR_BSIGN_IMPL bsign_portable
#endif

#define XNOR_DEFINE_BSIGN_KERNELS(isa)                                                                  \
  void sign_##isa(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups, \
                  bool zero_is_minus, uint64_t* out) {                                                  \
    isa::XNOR_BSIGN_IMPL::sign(x, rows, channels, thresholds, groups, zero_is_minus, out);              \
  }                                                                                                     \
  void unpack_##isa(const uint64_t* bits, size_t rows, size_t channels, float* y) {                     \
    isa::XNOR_BSIGN_IMPL::unpack(bits, rows, channels, y);                                              \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_BSIGN_KERNELS)
}  // namespace xnor
