// AVX-512F depthwise convolution: 16 channels per vector (dwconv_impl.h).
#include <immintrin.h>

#include "microkernels/dwconv_impl.h"

namespace xnor {
namespace {

struct Avx512Ops {
  static constexpr int kPixels = 8;  // output pixels per block_kw call (registers: see dwconv_impl.h)
  static constexpr int kWidth = 16;
  using V = __m512;
  using Mask = __mmask16;
  static Mask mask(int n) {  // lanes < n set; n in [0, 16]
    return static_cast<__mmask16>((1u << n) - 1u);
  }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V fma(V x, V w, V acc) { return _mm512_fmadd_ps(x, w, acc); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V relu(V y) { return _mm512_max_ps(y, _mm512_setzero_ps()); }  // (y > 0) ? y : +0
};

}  // namespace

XNOR_DEFINE_DWCONV(avx512, Avx512Ops)

}  // namespace xnor
