// AVX-512 SGEMM panel kernel: 12 rows x 32 columns register tile (24 zmm
// accumulators), one broadcast of A and two loads of W per k, FMA chain per
// output element over k = 0..K-1 (same order as sgemm_scalar).
#include <immintrin.h>

#include "microkernels/float_kernels.h"

namespace xnor {
namespace {

constexpr int kMr = 12;

template <int R, int V>  // R rows, V vectors of 16 columns (1 or 2)
inline void tile(size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
                 size_t ldc, bool relu) {
  __m512 acc[R][V];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* ar[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) ar[r] = a + static_cast<size_t>(r) * lda;
  for (size_t kk = 0; kk < k; ++kk) {
    __m512 wv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) wv[v] = _mm512_loadu_ps(w + kk * kSgemmPanelWidth + 16 * v);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r][kk]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(av, wv[v], acc[r][v]);
    }
  }
  __mmask16 mask[V];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const size_t cols = n > 16u * v ? n - 16u * v : 0;
    mask[v] = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
  }
  const __m512 zero = _mm512_setzero_ps();
  __m512 bv[V];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(bias + 16 * v);
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      __m512 y = _mm512_add_ps(acc[r][v], bv[v]);
      // maskz form: same VMAXPS, avoids GCC 12's -Wmaybe-uninitialized on _mm512_undefined_ps.
      if (relu) y = _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), y, zero);  // (y > 0) ? y : +0
      _mm512_mask_storeu_ps(c + static_cast<size_t>(r) * ldc + 16 * v, mask[v], y);
    }
  }
}

template <int V>
void rows(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
          size_t ldc, bool relu) {
  size_t i = 0;
  for (; i + kMr <= m; i += kMr) tile<kMr, V>(n, k, a + i * lda, lda, w, bias, c + i * ldc, ldc, relu);
  const float* ai = a + i * lda;
  float* ci = c + i * ldc;
  switch (m - i) {
    case 0: break;
    case 1: tile<1, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 2: tile<2, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 3: tile<3, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 4: tile<4, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 5: tile<5, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 6: tile<6, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 7: tile<7, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 8: tile<8, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 9: tile<9, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    case 10: tile<10, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
    default: tile<11, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
  }
}

}  // namespace

void sgemm_avx512(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
                  size_t ldc, bool relu) {
  if (n <= 16) {
    rows<1>(m, n, k, a, lda, w, bias, c, ldc, relu);
  } else {
    rows<2>(m, n, k, a, lda, w, bias, c, ldc, relu);
  }
}

}  // namespace xnor
