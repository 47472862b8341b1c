#include "kernels/bconv2d.h"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "runtime/dispatch.h"

namespace xnor {
namespace {
constexpr int kPixelChunk = 16 * kBgemmMr;  // output pixels per task
constexpr int kTasksPerThread = 4;           // split channel blocks below this many chunks per thread
constexpr size_t kStackTileWords = 6144;     // 48 KiB of tile scratch on the stack
}

BinaryConv2d::BinaryConv2d(const BconvConfig& c, const uint64_t* weights, OutputTransform t)
    : config_(c), transform_kind_(t.kind) {
  if (c.in_channels <= 0 || c.out_channels <= 0 || c.kernel_h <= 0 || c.kernel_w <= 0 ||
      c.stride_h <= 0 || c.stride_w <= 0 || c.pad_h < 0 || c.pad_w < 0) {
    throw std::invalid_argument("BinaryConv2d: channels, kernel and stride must be positive, padding >= 0");
  }
  if (static_cast<int64_t>(c.kernel_h) * c.kernel_w > 32767) {
    throw std::invalid_argument("BinaryConv2d: kernel has more than 32767 taps");
  }
  const size_t oc = static_cast<size_t>(c.out_channels);
  if (t.kind == OutputKind::kFloat && (t.multiplier.size() != oc || t.bias.size() != oc)) {
    throw std::invalid_argument("BinaryConv2d: float output needs multiplier and bias of out_channels values");
  }
  if (t.kind == OutputKind::kBits && (t.threshold.size() != oc || t.flip.size() != oc)) {
    throw std::invalid_argument("BinaryConv2d: bit output needs threshold and flip of out_channels values");
  }
  in_words_ = (c.in_channels + 63) / 64;
  blocks_ = (c.out_channels + kBconvBlock - 1) / kBconvBlock;
  const int taps = c.kernel_h * c.kernel_w;
  const size_t k_words = static_cast<size_t>(taps) * in_words_;

  // Repack [oc][taps][in_words] into [block][tap*in_word][32 lanes].
  weights_.assign(static_cast<size_t>(blocks_) * k_words * (kBconvBlock / 8), WeightLine{});
  uint64_t* packed = weights_.data()->w;
  for (int o = 0; o < c.out_channels; ++o) {
    const int b = o / kBconvBlock, lane = o % kBconvBlock;
    for (size_t k = 0; k < k_words; ++k) {
      packed[(static_cast<size_t>(b) * k_words + k) * kBconvBlock + lane] = weights[o * k_words + k];
    }
  }

  const bool needs_correction = c.pad_mode == PadMode::kZero && (c.pad_h > 0 || c.pad_w > 0);
  if (needs_correction) {
    tap_weight_sum_.assign(static_cast<size_t>(blocks_) * taps * kBconvBlock, 0);
    for (int o = 0; o < c.out_channels; ++o) {
      const int b = o / kBconvBlock, lane = o % kBconvBlock;
      for (int tap = 0; tap < taps; ++tap) {
        int negatives = 0;
        for (int w = 0; w < in_words_; ++w)
          negatives += __builtin_popcountll(weights[o * k_words + static_cast<size_t>(tap) * in_words_ + w]);
        tap_weight_sum_[(static_cast<size_t>(b) * taps + tap) * kBconvBlock + lane] =
            c.in_channels - 2 * negatives;
      }
    }
  }

  epilogue_.assign(static_cast<size_t>(blocks_), BconvBlockEpilogue{});
  for (int b = 0; b < blocks_; ++b) {
    BconvBlockEpilogue& e = epilogue_[b];
    e.channels = std::min(kBconvBlock, c.out_channels - b * kBconvBlock);
    e.valid_mask = e.channels == 32 ? 0xFFFFFFFFu : ((1u << e.channels) - 1u);
    for (int lane = 0; lane < kBconvBlock; ++lane) {
      const int o = b * kBconvBlock + lane;
      const bool real = lane < e.channels;
      e.threshold[lane] = (real && t.kind == OutputKind::kBits) ? t.threshold[o] : INT64_MIN;
      // s lies in [-K, K]: clamping keeps s < T unchanged and K - T finite.
      const int64_t k = static_cast<int64_t>(c.kernel_h) * c.kernel_w * c.in_channels;
      const int64_t clamped = std::clamp<int64_t>(e.threshold[lane], -k - 1, k + 1);
      const int64_t d = k - clamped;  // s < T  <=>  2 * pop > d  <=>  pop > floor(d / 2)
      e.pop_threshold[lane] = d >= 0 ? d / 2 : -((-d + 1) / 2);
      e.multiplier[lane] = (real && t.kind == OutputKind::kFloat) ? t.multiplier[o] : 0.0f;
      e.bias[lane] = (real && t.kind == OutputKind::kFloat) ? t.bias[o] : 0.0f;
      if (real && t.kind == OutputKind::kBits && t.flip[o]) e.flip |= 1u << lane;
    }
  }

  pad_row_.assign(static_cast<size_t>(in_words_), 0);
  if (c.pad_mode == PadMode::kMinusOne) {
    for (int w = 0; w < in_words_; ++w) {
      const int bits = std::min(64, c.in_channels - w * 64);
      pad_row_[w] = bits == 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1);
    }
  }
}

int BinaryConv2d::out_h(int in_h) const {
  return (in_h + 2 * config_.pad_h - config_.kernel_h) / config_.stride_h + 1;
}
int BinaryConv2d::out_w(int in_w) const {
  return (in_w + 2 * config_.pad_w - config_.kernel_w) / config_.stride_w + 1;
}
int64_t BinaryConv2d::out_pixel_elements() const {
  return transform_kind_ == OutputKind::kBits ? out_words() : config_.out_channels;
}

void BinaryConv2d::run(const uint64_t* input, int batch, int in_h, int in_w, void* output,
                       ThreadPool* pool, Isa isa) const {
  const BconvConfig& c = config_;
  if (batch <= 0 || in_h + 2 * c.pad_h < c.kernel_h || in_w + 2 * c.pad_w < c.kernel_w) {
    throw std::invalid_argument("BinaryConv2d: input " + std::to_string(in_h) + "x" + std::to_string(in_w) +
                                " is smaller than the kernel");
  }
  const int oh = out_h(in_h), ow = out_w(in_w);
  const int pixels = oh * ow;
  const int chunks = (pixels + kPixelChunk - 1) / kPixelChunk;
  // Split channel blocks into groups too when there are few pixel chunks, so
  // that small feature maps still give every thread work.
  const int min_tasks = pool == nullptr ? 1 : kTasksPerThread * pool->threads();
  const int groups = std::min(blocks_, std::max(1, (min_tasks + chunks - 1) / chunks));
  const int blocks_per_group = (blocks_ + groups - 1) / groups;
  const size_t tasks = static_cast<size_t>(batch) * chunks * groups;
  const BgemmTileFn kernel = binary_kernels(isa).bgemm_tile;
  const int taps = c.kernel_h * c.kernel_w;
  const int k_words = taps * in_words_;
  const size_t block_lines = static_cast<size_t>(k_words) * (kBconvBlock / 8);
  const int64_t in_image = static_cast<int64_t>(in_h) * in_w * in_words_;
  const int64_t out_pixel = out_pixel_elements();
  const bool correct_padding = !tap_weight_sum_.empty();

  parallel_for(pool, tasks, 1, [&](size_t begin, size_t end) {
    // Scratch for one tile: packed activations and its padded-tap lists.
    // Allocated once per thread and call, never inside the tile loop.
    std::vector<uint64_t> a_heap;
    alignas(64) uint64_t a_stack[kStackTileWords];
    uint64_t* a_tile = a_stack;
    if (static_cast<size_t>(k_words) * kBgemmMr > kStackTileWords) {
      a_heap.resize(static_cast<size_t>(k_words) * kBgemmMr);
      a_tile = a_heap.data();
    }
    std::vector<int16_t> padded_taps(correct_padding ? static_cast<size_t>(taps) * kBgemmMr : 0);
    int16_t padded_count[kBgemmMr] = {0};

    for (size_t task = begin; task < end; ++task) {
      const int group = static_cast<int>(task % groups);
      const int chunk = static_cast<int>((task / groups) % chunks);
      const int n = static_cast<int>(task / (static_cast<size_t>(groups) * chunks));
      const uint64_t* image = input + n * in_image;
      const int b0 = group * blocks_per_group, b1 = std::min(blocks_, b0 + blocks_per_group);
      const int p_end = std::min(pixels, (chunk + 1) * kPixelChunk);
      for (int p0 = chunk * kPixelChunk; p0 < p_end; p0 += kBgemmMr) {
        const int rows = std::min(kBgemmMr, p_end - p0);
        // Gather the tile's K words (im2col of up to 6 pixels), pixel-minor.
        const int y0 = p0 / ow, x0 = p0 % ow;
        const int iy0 = y0 * c.stride_h - c.pad_h, ix0 = x0 * c.stride_w - c.pad_w;
        const bool interior = x0 + rows <= ow && iy0 >= 0 && iy0 + c.kernel_h <= in_h && ix0 >= 0 &&
                              ix0 + (rows - 1) * c.stride_w + c.kernel_w <= in_w;
        if (interior) {
          // Fast path: one output row, every tap inside the image.
          const int64_t pixel_step = static_cast<int64_t>(c.stride_w) * in_words_;
          for (int ky = 0; ky < c.kernel_h; ++ky) {
            for (int kx = 0; kx < c.kernel_w; ++kx) {
              const uint64_t* src = image + (static_cast<int64_t>(iy0 + ky) * in_w + ix0 + kx) * in_words_;
              uint64_t* dst = a_tile + static_cast<size_t>(ky * c.kernel_w + kx) * in_words_ * kBgemmMr;
              for (int w = 0; w < in_words_; ++w)
                for (int m = 0; m < rows; ++m) dst[w * kBgemmMr + m] = src[m * pixel_step + w];
            }
          }
          for (int m = 0; m < rows; ++m) padded_count[m] = 0;
        } else {
          for (int m = 0; m < rows; ++m) {
            const int y = (p0 + m) / ow, x = (p0 + m) % ow;
            const int py0 = y * c.stride_h - c.pad_h, px0 = x * c.stride_w - c.pad_w;
            int16_t count = 0;
            for (int ky = 0; ky < c.kernel_h; ++ky) {
              for (int kx = 0; kx < c.kernel_w; ++kx) {
                const int iy = py0 + ky, ix = px0 + kx;
                const int tap = ky * c.kernel_w + kx;
                const uint64_t* src;
                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                  src = pad_row_.data();
                  if (correct_padding) padded_taps[static_cast<size_t>(m) * taps + count++] = static_cast<int16_t>(tap);
                } else {
                  src = image + (static_cast<int64_t>(iy) * in_w + ix) * in_words_;
                }
                uint64_t* dst = a_tile + static_cast<size_t>(tap) * in_words_ * kBgemmMr + m;
                for (int w = 0; w < in_words_; ++w) dst[w * kBgemmMr] = src[w];
              }
            }
            padded_count[m] = count;
          }
        }
        bool any_padded = false;
        for (int m = 0; m < rows; ++m) any_padded |= padded_count[m] != 0;
        const int64_t out_first = (static_cast<int64_t>(n) * pixels + p0) * out_pixel;
        for (int b = b0; b < b1; ++b) {
          BgemmTileArgs a;
          a.a = a_tile;
          a.weights = weights_[static_cast<size_t>(b) * block_lines].w;
          a.k_words = k_words;
          a.rows = rows;
          a.k_bits = taps * c.in_channels;
          a.tap_weight_sum =
              (correct_padding && any_padded) ? tap_weight_sum_.data() + static_cast<size_t>(b) * taps * kBconvBlock
                                             : nullptr;
          a.padded_taps = padded_taps.data();
          a.padded_count = padded_count;
          a.taps_stride = taps;
          a.epilogue = &epilogue_[b];
          a.kind = transform_kind_;
          switch (transform_kind_) {
            case OutputKind::kInt32:
              a.output = static_cast<int32_t*>(output) + out_first + b * kBconvBlock;
              a.out_pixel_stride = out_pixel;
              break;
            case OutputKind::kFloat:
              a.output = static_cast<float*>(output) + out_first + b * kBconvBlock;
              a.out_pixel_stride = out_pixel;
              break;
            case OutputKind::kBits:
              // Two 32-channel blocks fill one little-endian uint64 word.
              a.output = reinterpret_cast<uint32_t*>(static_cast<uint64_t*>(output) + out_first) + b;
              a.out_pixel_stride = out_pixel * 2;
              break;
          }
          kernel(a);
          if (transform_kind_ == OutputKind::kBits && blocks_ % 2 == 1 && b == blocks_ - 1) {
            // The last word's upper half has no block: its pad bits must be zero.
            uint32_t* upper = static_cast<uint32_t*>(a.output) + 1;
            for (int m = 0; m < rows; ++m) upper[m * a.out_pixel_stride] = 0;
          }
        }
      }
    }
  });
}

}  // namespace xnor
