// Bit-plane extraction (microkernels/bitplane.h), compiled per ISA (per_isa.h): the portable loop
// below, and on the x86 builds (avx2, avx512) 8 channels per step with AVX2 compares, XORed as
// masks and packed with movemask. The compare is the ordered x >= t on every path (false for NaN,
// -0.0 equal to 0.0), and XOR is exact, so every path gives the same bits.
#include "microkernels/bitplane.h"

#include <cstddef>
#include <cstdint>

#include "microkernels/per_isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace xnor::XNOR_ISA_NAMESPACE::bitplane_portable {

// Sets the -1 bits of channels [from, to) of one row: bit = NOT (XOR over the plane's levels of x >= t).
inline void plane_bits(const float* __restrict x, const float* __restrict t, size_t channels, size_t levels,
                       size_t step, size_t from, size_t to, uint64_t* __restrict o) {
  for (size_t c = from; c < to; ++c) {
    bool set = false;
    for (size_t m = step; m <= levels; m += step) set ^= (x[c] >= t[(m - 1) * channels + c]);
    o[c >> 6] |= static_cast<uint64_t>(!set) << (c & 63);
  }
}

inline void bitplane(const float* x, size_t rows, size_t channels, const float* t, size_t levels, unsigned plane,
                     uint64_t* out) {
  const size_t words = (channels + 63) / 64;
  const size_t step = size_t{1} << plane;
#if defined(__AVX2__)
  const size_t vectorised = channels & ~size_t{7};
#else
  const size_t vectorised = 0;
#endif
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    uint64_t* __restrict o = out + r * words;
    for (size_t w = 0; w < words; ++w) o[w] = 0;
#if defined(__AVX2__)
    for (size_t c = 0; c < vectorised; c += 8) {
      const __m256 v = _mm256_loadu_ps(xr + c);
      __m256 set = _mm256_setzero_ps();
      for (size_t m = step; m <= levels; m += step)
        set = _mm256_xor_ps(set, _mm256_cmp_ps(v, _mm256_loadu_ps(t + (m - 1) * channels + c), _CMP_GE_OQ));
      const uint64_t minus = static_cast<uint32_t>(_mm256_movemask_ps(set)) ^ 0xFFu;
      const size_t shift = c & 63;
      o[c >> 6] |= minus << shift;  // c is a multiple of 8: 8 bits never straddle a word
    }
#endif
    plane_bits(xr, t, channels, levels, step, vectorised, channels, o);
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE::bitplane_portable

#define XNOR_DEFINE_BITPLANE_KERNELS(isa)                                                                   \
  void bitplane_##isa(const float* x, size_t rows, size_t channels, const float* thresholds, size_t levels, \
                      unsigned plane, uint64_t* out) {                                                      \
    isa::bitplane_portable::bitplane(x, rows, channels, thresholds, levels, plane, out);                    \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_BITPLANE_KERNELS)
}  // namespace xnor
