// Binary GEMM tile micro-benchmark: the AVX2 tile of this checkout against another
// build of it (bgemm_tile_avx2_old, the file at a git revision, renamed by
// bench/bgemm_tile_avx2.sh) and the scalar tile, on the tiles of one binary conv layer
// each, interleaved in one process. Every output is compared byte for byte with the
// scalar tile's first. Build and run with bench/bgemm_tile_avx2.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "microkernels/bconv2d_microkernel.h"

namespace xnor {
void bgemm_tile_avx2_old(const BgemmTileArgs& args);
}

using namespace xnor;

namespace {

struct Layer {
  int c, h, w, o, kernel;  // 'same' padding, stride 1
};

struct Problem {
  Layer l;
  int in_words, ph, pw, taps, k_words, blocks;
  std::vector<uint64_t> frame;
  std::vector<int64_t> k_offset;
  uint64_t* weights;                    // [blocks][k_words][32], 64-byte aligned
  std::vector<int32_t> tap_weight_sum;  // [blocks][taps][32]
  std::vector<BconvBlockEpilogue> epilogue;
  std::vector<float> out_f;
  std::vector<uint32_t> out_b;
};

Problem make(const Layer& l, std::mt19937_64& rng) {
  Problem p;
  p.l = l;
  p.in_words = (l.c + 63) / 64;
  const int pad = l.kernel / 2;
  p.ph = l.h + 2 * pad;
  p.pw = l.w + 2 * pad;
  p.taps = l.kernel * l.kernel;
  p.k_words = p.taps * p.in_words;
  p.blocks = (l.o + 31) / 32;
  p.frame.resize(static_cast<size_t>(p.ph) * p.pw * p.in_words);
  for (auto& v : p.frame) v = rng();
  for (int ky = 0; ky < l.kernel; ++ky)
    for (int kx = 0; kx < l.kernel; ++kx)
      for (int w = 0; w < p.in_words; ++w)
        p.k_offset.push_back((static_cast<int64_t>(ky) * p.pw + kx) * p.in_words + w);
  const size_t wn = static_cast<size_t>(p.blocks) * p.k_words * kBconvBlock;
  p.weights = static_cast<uint64_t*>(std::aligned_alloc(64, wn * sizeof(uint64_t)));
  for (size_t i = 0; i < wn; ++i) p.weights[i] = rng();
  p.tap_weight_sum.resize(static_cast<size_t>(p.blocks) * p.taps * kBconvBlock);
  for (auto& v : p.tap_weight_sum) v = static_cast<int32_t>(rng() % 129) - 64;
  p.epilogue.resize(p.blocks);
  for (int b = 0; b < p.blocks; ++b) {
    BconvBlockEpilogue& e = p.epilogue[b];
    e.channels = std::min(kBconvBlock, l.o - 32 * b);
    e.valid_mask = e.channels == 32 ? 0xFFFFFFFFu : (1u << e.channels) - 1;
    e.flip = static_cast<uint32_t>(rng());
    const int64_t k_bits = static_cast<int64_t>(p.taps) * l.c;
    for (int c = 0; c < kBconvBlock; ++c) {
      e.threshold[c] = static_cast<int64_t>(rng() % 41) - 20;
      e.pop_threshold[c] = (k_bits - e.threshold[c]) / 2;  // s < t <=> 2 pop > k - t (k - t > 0 here)
      e.multiplier[c] = static_cast<float>(rng() % 1000) / 997.0f;
      e.bias[c] = static_cast<float>(rng() % 1000) / 991.0f - 0.5f;
    }
  }
  p.out_f.assign(static_cast<size_t>(l.h) * l.w * l.o, 0.0f);
  p.out_b.assign(static_cast<size_t>(l.h) * l.w * p.blocks, 0);
  return p;
}

// The whole layer through `fn`, as BinaryConv2d::run walks it (one thread).
void run_layer(Problem& p, BgemmTileFn fn, OutputKind kind, bool correct) {
  const Layer& l = p.l;
  const int pad = l.kernel / 2;
  const int64_t pixels = static_cast<int64_t>(l.h) * l.w;
  int16_t padded_taps[kBgemmMr * 9 + 8];
  int16_t padded_count[kBgemmMr];
  for (int64_t p0 = 0; p0 < pixels; p0 += kBgemmMr) {
    const int rows = static_cast<int>(std::min<int64_t>(kBgemmMr, pixels - p0));
    const uint64_t* base[kBgemmMr];
    for (int m = 0; m < rows; ++m) {
      const int y = static_cast<int>((p0 + m) / l.w), x = static_cast<int>((p0 + m) % l.w);
      base[m] = p.frame.data() + (static_cast<int64_t>(y) * p.pw + x) * p.in_words;
      int16_t count = 0;
      for (int ky = 0; ky < l.kernel; ++ky)
        for (int kx = 0; kx < l.kernel; ++kx) {
          const int iy = y - pad + ky, ix = x - pad + kx;
          if (iy < 0 || iy >= l.h || ix < 0 || ix >= l.w) padded_taps[m * p.taps + count++] = ky * l.kernel + kx;
        }
      padded_count[m] = count;
    }
    for (int b = 0; b < p.blocks; ++b) {
      BgemmTileArgs a;
      a.pixel_base = base;
      a.k_offset = p.k_offset.data();
      a.k_words = p.k_words;
      a.weights = p.weights + static_cast<size_t>(b) * p.k_words * kBconvBlock;
      a.weight_stride = kBconvBlock;
      a.rows = rows;
      a.k_bits = static_cast<int64_t>(p.taps) * l.c;
      a.tap_weight_sum = correct ? p.tap_weight_sum.data() + static_cast<size_t>(b) * p.taps * kBconvBlock : nullptr;
      a.padded_taps = padded_taps;
      a.padded_count = padded_count;
      a.taps_stride = p.taps;
      a.epilogue = &p.epilogue[b];
      a.kind = kind;
      if (kind == OutputKind::kBits) {
        a.output = p.out_b.data() + p0 * p.blocks + b;
        a.out_pixel_stride = p.blocks;
      } else {
        a.output = p.out_f.data() + p0 * l.o + 32 * b;
        a.out_pixel_stride = l.o;
      }
      fn(a);
    }
  }
}

double time_ms(Problem& p, BgemmTileFn fn, OutputKind kind, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) run_layer(p, fn, kind, true);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

bool same_output(Problem& p, BgemmTileFn fn, OutputKind kind) {
  std::fill(p.out_f.begin(), p.out_f.end(), -1.0f);
  std::fill(p.out_b.begin(), p.out_b.end(), 0xA5A5A5A5u);
  run_layer(p, bgemm_tile_scalar, kind, true);
  const std::vector<float> rf = p.out_f;
  const std::vector<uint32_t> rb = p.out_b;
  std::fill(p.out_f.begin(), p.out_f.end(), -1.0f);
  std::fill(p.out_b.begin(), p.out_b.end(), 0xA5A5A5A5u);
  run_layer(p, fn, kind, true);
  for (size_t i = 0; i < rf.size(); ++i)
    if (std::memcmp(&rf[i], &p.out_f[i], sizeof(float)) != 0) {
      std::fprintf(stderr, "first difference at float %zu: %a vs %a\n", i, rf[i], p.out_f[i]);
      break;
    }
  return std::memcmp(rf.data(), p.out_f.data(), rf.size() * sizeof(float)) == 0 && rb == p.out_b;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const Layer layers[] = {{64, 56, 56, 64, 3}, {128, 28, 28, 128, 3}, {256, 14, 14, 256, 3},
                          {512, 7, 7, 512, 3}, {256, 14, 14, 512, 1}, {128, 28, 28, 96, 3}};
  std::mt19937_64 rng(42);
  std::printf("layer (C x H x W -> O, k)   output  old_ms  new_ms  old/new  new GMAC/s  exact\n");
  double total_old = 0, total_new = 0;
  for (const Layer& l : layers) {
    Problem p = make(l, rng);
    const double macs = static_cast<double>(l.c) * l.kernel * l.kernel * l.h * l.w * l.o;
    for (OutputKind kind : {OutputKind::kFloat, OutputKind::kBits}) {
      const bool exact_new = same_output(p, bgemm_tile_avx2, kind),
                 exact_old = same_output(p, bgemm_tile_avx2_old, kind);
      const bool exact = exact_new && exact_old;
      const int reps = std::max(1, static_cast<int>(2e8 / macs));
      std::vector<double> t_old, t_new;
      time_ms(p, bgemm_tile_avx2_old, kind, reps);
      time_ms(p, bgemm_tile_avx2, kind, reps);
      for (int r = 0; r < rounds; ++r) {  // interleaved
        t_old.push_back(time_ms(p, bgemm_tile_avx2_old, kind, reps));
        t_new.push_back(time_ms(p, bgemm_tile_avx2, kind, reps));
      }
      std::sort(t_old.begin(), t_old.end());
      std::sort(t_new.begin(), t_new.end());
      const double o = t_old[rounds / 2], n = t_new[rounds / 2];
      total_old += o;
      total_new += n;
      std::printf("%4dx%3dx%3d -> %3d, %dx%d   %-6s %7.3f %7.3f %7.2fx %9.1f   %s\n", l.c, l.h, l.w, l.o, l.kernel,
                  l.kernel, kind == OutputKind::kBits ? "bits" : "float", o, n, o / n, macs / n * 1e-6,
                  exact       ? "yes"
                  : exact_new ? "old: NO"
                              : "new: NO");
      if (!exact) return 1;
    }
    std::free(p.weights);
  }
  std::printf("sum of medians: old %.3f ms, new %.3f ms, old/new %.2fx\n", total_old, total_new, total_old / total_new);
  return 0;
}
