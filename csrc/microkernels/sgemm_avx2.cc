// AVX2 + FMA SGEMM panel kernel: 6 rows x 16 columns register tile (12 ymm
// accumulators), run over each 16-column half of the 32-wide panel. FMA
// chain per output element over k = 0..K-1 (same order as sgemm_scalar).
#include <immintrin.h>

#include "microkernels/float_kernels.h"

namespace xnor {
namespace {

constexpr int kMr = 6;

inline __m256i tail_mask(size_t cols) {  // lanes < cols set; cols in [0, 8]
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), iota);
}

template <int R, int V>  // R rows, V vectors of 8 columns (1 or 2)
inline void tile(size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
                 size_t ldc, bool relu) {
  __m256 acc[R][V];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* ar[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) ar[r] = a + static_cast<size_t>(r) * lda;
  for (size_t kk = 0; kk < k; ++kk) {
    __m256 wv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) wv[v] = _mm256_loadu_ps(w + kk * kSgemmPanelWidth + 8 * v);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ar[r] + kk);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(av, wv[v], acc[r][v]);
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const size_t cols = n > 8u * v ? n - 8u * v : 0;
    const __m256 bv = _mm256_loadu_ps(bias + 8 * v);
    const __m256i mask = tail_mask(cols >= 8 ? 8 : cols);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      __m256 y = _mm256_add_ps(acc[r][v], bv);
      if (relu) y = _mm256_max_ps(y, zero);  // (y > 0) ? y : +0
      float* dst = c + static_cast<size_t>(r) * ldc + 8 * v;
      if (cols >= 8) {
        _mm256_storeu_ps(dst, y);
      } else if (cols > 0) {
        _mm256_maskstore_ps(dst, mask, y);
      }
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
    default: tile<5, V>(n, k, ai, lda, w, bias, ci, ldc, relu); break;
  }
}

}  // namespace

void sgemm_avx2(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
                size_t ldc, bool relu) {
  for (size_t half = 0; half * 16 < n; ++half) {
    const size_t cols = n - half * 16 < 16 ? n - half * 16 : 16;
    const float* wh = w + half * 16;
    const float* bh = bias + half * 16;
    float* ch = c + half * 16;
    if (cols <= 8) {
      rows<1>(m, cols, k, a, lda, wh, bh, ch, ldc, relu);
    } else {
      rows<2>(m, cols, k, a, lda, wh, bh, ch, ldc, relu);
    }
  }
}

}  // namespace xnor
