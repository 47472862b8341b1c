// AVX-512 float max/avg/global-average pooling: 16 channels per vector.
#include <immintrin.h>

#include "microkernels/fpool_impl.h"

namespace xnor {
namespace {

struct Avx512Ops {
  static constexpr int kWidth = 16;
  using V = __m512;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  // (v > m) ? v : m; the maskz form avoids GCC 12's -Wmaybe-uninitialized on _mm512_max_ps.
  static V max(V v, V m) { return _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), v, m); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
};

}  // namespace

XNOR_DEFINE_FPOOL(avx512, Avx512Ops)

}  // namespace xnor
