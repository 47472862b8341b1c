#include "operators/bconv2d_amx.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "microkernels/amx_bgemm.h"
#include "microkernels/amx_detect.h"
#include "microkernels/bconv2d_common.h"

namespace xnor {

BgemmEngine bgemm_engine() {
  const char* value = std::getenv("XNORINFER_BGEMM");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "popcount") == 0) return BgemmEngine::kPopcount;
  if (std::strcmp(value, "amx") == 0) return BgemmEngine::kAmx;
  if (std::strcmp(value, "amx-emulated") == 0) return BgemmEngine::kAmxEmulated;
  if (std::strcmp(value, "auto") == 0) return BgemmEngine::kAuto;
  if (std::strcmp(value, "auto-emulated") == 0) return BgemmEngine::kAutoEmulated;
  throw std::invalid_argument(
      std::string("XNORINFER_BGEMM must be popcount, amx, amx-emulated, auto or auto-emulated, got '") + value + "'");
}

const char* engine_name(BgemmEngine engine) {
  switch (engine) {
    case BgemmEngine::kPopcount: return "popcount";
    case BgemmEngine::kAmx: return "amx";
    case BgemmEngine::kAmxEmulated: return "amx-emulated";
    case BgemmEngine::kAuto: return "auto";
    case BgemmEngine::kAutoEmulated: return "auto-emulated";
  }
  return "?";
}

bool amx_fits(const BinaryConv2d& conv) {
  const BconvConfig& c = conv.config();
  // The tile kernel expands one tap's words per A row: it needs the plain word layout.
  return conv.taps_per_word() == 1 && static_cast<int64_t>(c.kernel_h) * c.kernel_w * c.in_channels <= INT32_MAX;
}

namespace {

// The layer's B tiles, expanded on the AMX engines' first run and kept by the layer.
std::shared_ptr<const AmxTileWeights> tile_weights(const BinaryConv2d& conv) {
  if (std::shared_ptr<const AmxTileWeights> cached = conv.amx_tile_weights()) return cached;
  auto w = std::make_shared<AmxTileWeights>();
  w->block_bytes = static_cast<int64_t>(conv.k_words()) * kAmxWordBytes;
  w->tiles = AlignedBytes(static_cast<size_t>(conv.weight_blocks()) * static_cast<size_t>(w->block_bytes));
  for (int b = 0; b < conv.weight_blocks(); ++b) {
    amx_expand_weights(conv.weight_block(b), conv.weight_block_lanes(b), conv.weight_block_lanes(b), conv.k_words(),
                       reinterpret_cast<int8_t*>(w->tiles.data()) + b * w->block_bytes);
  }
  conv.set_amx_tile_weights(w);
  return w;
}

}  // namespace

void run_bconv2d_amx(const BinaryConv2d& conv, BgemmEngine engine, const uint64_t* input, int batch, int in_h, int in_w,
                     void* output, TaskRunner* pool, const float* pixel_scale) {
  if (engine == BgemmEngine::kAmx && !amx_support().available) {
    throw std::runtime_error("XNORINFER_BGEMM=amx: AMX is not usable here: " + amx_support().reason);
  }
  const AmxBgemmFn block_fn = engine == BgemmEngine::kAmx ? amx_bgemm_hardware : amx_bgemm_emulated;
  const std::shared_ptr<const AmxTileWeights> weights = tile_weights(conv);
  const BconvConfig& c = conv.config();
  const int oh = conv.out_h(in_h), ow = conv.out_w(in_w);
  const int64_t pixels = static_cast<int64_t>(oh) * ow;
  const int64_t pixel_blocks = (pixels + kAmxPixels - 1) / kAmxPixels;
  const int blocks = conv.weight_blocks();
  const int64_t groups = (blocks + kAmxGroupBlocks - 1) / kAmxGroupBlocks;  // channel blocks sharing an A expansion
  const int64_t image_words = static_cast<int64_t>(in_h) * in_w * conv.in_words();
  const int64_t out_pixel = conv.out_pixel_elements();
  const OutputKind kind = conv.output_kind();
  const size_t tasks = static_cast<size_t>(batch) * static_cast<size_t>(pixel_blocks) * static_cast<size_t>(groups);

  parallel_for(pool, tasks, 1, [&](size_t begin, size_t end) {
    alignas(64) int32_t sums[kAmxGroupBlocks * kAmxPixels * kBconvBlock];
    int64_t iy0[kAmxPixels], ix0[kAmxPixels];
    for (size_t task = begin; task < end; ++task) {
      const int64_t group = static_cast<int64_t>(task % static_cast<size_t>(groups));
      const int64_t rest = static_cast<int64_t>(task / static_cast<size_t>(groups));
      const int64_t n = rest / pixel_blocks;
      const int64_t p0 = rest % pixel_blocks * kAmxPixels;
      const int rows = static_cast<int>(std::min<int64_t>(kAmxPixels, pixels - p0));
      const int b0 = static_cast<int>(group) * kAmxGroupBlocks;
      for (int m = 0; m < rows; ++m) {
        const int64_t y = (p0 + m) / ow, x = (p0 + m) % ow;
        iy0[m] = y * c.stride_h - c.pad_h;
        ix0[m] = x * c.stride_w - c.pad_w;
      }
      AmxBgemmArgs a;
      a.image = input + n * image_words;
      a.in_h = in_h;
      a.in_w = in_w;
      a.in_words = conv.in_words();
      a.in_channels = c.in_channels;
      a.kernel_h = c.kernel_h;
      a.kernel_w = c.kernel_w;
      a.pad_mode = c.pad_mode;
      a.iy0 = iy0;
      a.ix0 = ix0;
      a.rows = rows;
      a.k_words = conv.k_words();
      a.b_tiles = reinterpret_cast<const int8_t*>(weights->tiles.data()) + b0 * weights->block_bytes;
      a.blocks = std::min(kAmxGroupBlocks, blocks - b0);
      a.sums = sums;
      block_fn(a);

      // The popcount kernels' epilogue, on the exact sums.
      const int64_t out_first = (n * pixels + p0) * out_pixel;
      for (int g = 0; g < a.blocks; ++g) {
        const int b = b0 + g;
        BgemmTileArgs e{};
        e.epilogue = &conv.block_epilogue(b);
        e.kind = kind;
        e.pixel_scale = pixel_scale == nullptr ? nullptr : pixel_scale + n * pixels + p0;
        set_block_output(e, kind, output, out_first, b, out_pixel);
        const int channels = block_channels(*e.epilogue);
        const int32_t* block_sums = sums + g * kAmxPixels * kBconvBlock;
        for (int m = 0; m < rows; ++m) {
          int64_t s[kBconvBlock];
          for (int ch = 0; ch < channels; ++ch) s[ch] = block_sums[m * kBconvBlock + ch];
          bgemm_store_pixel_scalar(e, m, s);
        }
        if (kind == OutputKind::kBits && blocks % 2 == 1 && b == blocks - 1) {
          // The last word's upper half has no block: its pad bits must be zero.
          uint32_t* upper = static_cast<uint32_t*>(e.output) + 1;
          for (int m = 0; m < rows; ++m) upper[m * e.out_pixel_stride] = 0;
        }
      }
    }
  });
}

}  // namespace xnor
