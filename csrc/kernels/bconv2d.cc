#include "kernels/bconv2d.h"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "runtime/dispatch.h"

namespace xnor {
namespace {
constexpr int kPixelChunk = 96;  // output pixels per task: 16 tiles of 6
}

BinaryConv2d::BinaryConv2d(const BconvConfig& c, const uint64_t* weights, OutputTransform t)
    : config_(c), transform_kind_(t.kind) {
  if (c.in_channels <= 0 || c.out_channels <= 0 || c.kernel_h <= 0 || c.kernel_w <= 0 ||
      c.stride_h <= 0 || c.stride_w <= 0 || c.pad_h < 0 || c.pad_w < 0) {
    throw std::invalid_argument("BinaryConv2d: channels, kernel and stride must be positive, padding >= 0");
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
  const size_t tasks = static_cast<size_t>(batch) * chunks * blocks_;
  const BconvMicrokernelFn kernel = binary_kernels(isa).bconv_block;
  const int taps = c.kernel_h * c.kernel_w;
  const size_t k_lines = static_cast<size_t>(taps) * in_words_ * (kBconvBlock / 8);
  const int64_t in_image = static_cast<int64_t>(in_h) * in_w * in_words_;
  const int64_t out_pixel = out_pixel_elements();

  parallel_for(pool, tasks, 1, [&](size_t begin, size_t end) {
    for (size_t task = begin; task < end; ++task) {
      const int b = static_cast<int>(task % blocks_);
      const int chunk = static_cast<int>((task / blocks_) % chunks);
      const int n = static_cast<int>(task / (static_cast<size_t>(blocks_) * chunks));
      BconvKernelArgs a;
      a.input = input + n * in_image;
      a.in_h = in_h;
      a.in_w = in_w;
      a.in_words = in_words_;
      a.kernel_h = c.kernel_h;
      a.kernel_w = c.kernel_w;
      a.stride_h = c.stride_h;
      a.stride_w = c.stride_w;
      a.pad_h = c.pad_h;
      a.pad_w = c.pad_w;
      a.out_w = ow;
      a.k_bits = taps * c.in_channels;
      a.pad_row = pad_row_.data();
      a.tap_weight_sum =
          tap_weight_sum_.empty() ? nullptr : tap_weight_sum_.data() + static_cast<size_t>(b) * taps * kBconvBlock;
      a.weights = weights_[static_cast<size_t>(b) * k_lines].w;
      a.epilogue = &epilogue_[b];
      a.kind = transform_kind_;
      a.pixel_begin = chunk * kPixelChunk;
      a.pixel_end = std::min(pixels, a.pixel_begin + kPixelChunk);
      const int64_t image_out = static_cast<int64_t>(n) * pixels * out_pixel;
      switch (transform_kind_) {
        case OutputKind::kInt32:
          a.output = static_cast<int32_t*>(output) + image_out + b * kBconvBlock;
          a.out_pixel_stride = out_pixel;
          break;
        case OutputKind::kFloat:
          a.output = static_cast<float*>(output) + image_out + b * kBconvBlock;
          a.out_pixel_stride = out_pixel;
          break;
        case OutputKind::kBits:
          // Two 32-channel blocks fill one little-endian uint64 word.
          a.output = reinterpret_cast<uint32_t*>(static_cast<uint64_t*>(output) + image_out) + b;
          a.out_pixel_stride = out_pixel * 2;
          break;
      }
      kernel(a);
      if (transform_kind_ == OutputKind::kBits && (blocks_ % 2 == 1) && b == blocks_ - 1) {
        // The last word's upper half has no block: its pad bits must be zero.
        uint32_t* upper = static_cast<uint32_t*>(a.output) + 1;
        for (int p = a.pixel_begin; p < a.pixel_end; ++p) upper[p * a.out_pixel_stride] = 0;
      }
    }
  });
}

}  // namespace xnor
