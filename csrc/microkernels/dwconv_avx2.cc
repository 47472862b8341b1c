// AVX2 + FMA depthwise convolution: 8 channels per vector (dwconv_impl.h).
#include <immintrin.h>

#include "microkernels/dwconv_impl.h"

namespace xnor {
namespace {

struct Avx2Ops {
  static constexpr int kPixels = 4;  // output pixels per block_kw call (registers: see dwconv_impl.h)
  static constexpr int kWidth = 8;
  using V = __m256;
  using Mask = __m256i;
  static Mask mask(int n) {  // lanes < n set; n in [0, 8]
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V fma(V x, V w, V acc) { return _mm256_fmadd_ps(x, w, acc); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V relu(V y) { return _mm256_max_ps(y, _mm256_setzero_ps()); }  // (y > 0) ? y : +0
};

}  // namespace

XNOR_DEFINE_DWCONV(avx2, Avx2Ops)

}  // namespace xnor
