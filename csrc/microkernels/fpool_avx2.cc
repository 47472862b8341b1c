// AVX2 float max/avg/global-average pooling: 8 channels per vector.
#include <immintrin.h>

#include "microkernels/fpool_impl.h"

namespace xnor {
namespace {

struct Avx2Ops {
  static constexpr int kWidth = 8;
  using V = __m256;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V max(V v, V m) { return _mm256_max_ps(v, m); }  // (v > m) ? v : m
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
};

}  // namespace

XNOR_DEFINE_FPOOL(avx2, Avx2Ops)

}  // namespace xnor
