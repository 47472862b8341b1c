// The AMX binary GEMM on the emulated tile unit: TDPBSSD against a plain int8 matrix product, the
// emulator's faults, and amx_bgemm_emulated against a direct +/-1 convolution sum (every pad mode,
// channels across words, two channel blocks, several word chunks). Python's tests/test_amx.py
// checks the whole operator against the popcount kernels.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "microkernels/amx_bgemm.h"
#include "microkernels/amx_detect.h"
#include "microkernels/amx_tile.h"

namespace xnor {
namespace {

AmxTileConfig config_all(int rows, int colsb) {
  AmxTileConfig c;
  c.palette = 1;
  for (int t = 0; t < kAmxTiles; ++t) c.rows[t] = static_cast<uint8_t>(rows), c.colsb[t] = static_cast<uint16_t>(colsb);
  return c;
}

TEST(AmxEmulated, DpbssdIsAnInt8MatrixProduct) {
  std::mt19937 gen(3);
  std::uniform_int_distribution<int> byte(-128, 127);
  int8_t a[16][64], b[16][64];
  int32_t c[16][16];
  for (auto& row : a)
    for (auto& v : row) v = static_cast<int8_t>(byte(gen));
  for (auto& row : b)
    for (auto& v : row) v = static_cast<int8_t>(byte(gen));
  for (auto& row : c)
    for (auto& v : row) v = byte(gen) * 1000;
  AmxEmulated unit;
  unit.load_config(config_all(16, 64));
  unit.load(0, c, 64);
  unit.load(1, a, 64);
  unit.load(2, b, 64);
  unit.dpbssd(0, 1, 2);
  int32_t got[16][16];
  unit.store(0, got, 64);
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 16; ++n) {
      int64_t want = c[m][n];
      for (int j = 0; j < 64; ++j) want += int64_t{a[m][j]} * b[j / 4][4 * n + j % 4];  // B's VNNI layout
      EXPECT_EQ(got[m][n], want) << m << "," << n;
    }
  }
}

TEST(AmxEmulated, FaultsWhereTheHardwareDoes) {
  AmxEmulated unit;
  EXPECT_THROW(unit.zero(0), std::logic_error);  // unconfigured
  AmxTileConfig bad = config_all(16, 64);
  bad.reserved1[3] = 1;
  EXPECT_THROW(unit.load_config(bad), std::logic_error);
  EXPECT_THROW(unit.load_config(config_all(17, 64)), std::logic_error);
  AmxTileConfig shapes = config_all(16, 64);
  shapes.rows[2] = 15;  // rows(B) != colsb(A) / 4
  unit.load_config(shapes);
  EXPECT_THROW(unit.dpbssd(0, 1, 2), std::logic_error);
  unit.load_config(config_all(16, 64));
  EXPECT_THROW(unit.dpbssd(0, 0, 2), std::logic_error);  // tiles must differ
  unit.release();
  EXPECT_THROW(unit.dpbssd(0, 1, 2), std::logic_error);
}

TEST(AmxDetect, GivesAReasonWhenUnavailable) {
  const AmxSupport& s = amx_support();
  EXPECT_EQ(s.available, s.reason.empty());
  EXPECT_EQ(&s, &amx_support());  // probed once
}

// Direct sum over real taps and channels: +/-1 values (bit 1 = -1), padding 0 / +1 / -1.
int64_t direct_sum(const std::vector<uint64_t>& image, int h, int w, int words, int channels, const uint64_t* weights,
                   int kernel, int iy0, int ix0, PadMode mode) {
  int64_t s = 0;
  for (int ky = 0; ky < kernel; ++ky) {
    for (int kx = 0; kx < kernel; ++kx) {
      const int iy = iy0 + ky, ix = ix0 + kx;
      const bool inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
      for (int ch = 0; ch < channels; ++ch) {
        const int k = (ky * kernel + kx) * words + ch / 64;
        const int wv = ((weights[k] >> (ch % 64)) & 1u) ? -1 : 1;
        int xv = 0;
        if (inside) {
          xv = ((image[(static_cast<size_t>(iy) * w + ix) * words + ch / 64] >> (ch % 64)) & 1u) ? -1 : 1;
        } else if (mode != PadMode::kZero) {
          xv = mode == PadMode::kMinusOne ? -1 : 1;
        }
        s += xv * wv;
      }
    }
  }
  return s;
}

TEST(AmxBgemm, EmulatedBlockGivesTheDirectSums) {
  const int h = 5, w = 6, channels = 130, words = 3, kernel = 3, out_channels = 40;
  const int k_words = kernel * kernel * words;  // 27: two word chunks
  std::mt19937_64 gen(5);
  std::vector<uint64_t> image(static_cast<size_t>(h) * w * words);
  for (size_t i = 0; i < image.size(); ++i) image[i] = gen() & (i % words == 2 ? 0x3u : ~uint64_t{0});
  // Per output channel: [k_words] packed words (pad bits zero); laid out as the kernel's blocks.
  std::vector<uint64_t> weights(static_cast<size_t>(out_channels) * k_words);
  for (int o = 0; o < out_channels; ++o)
    for (int k = 0; k < k_words; ++k)
      weights[static_cast<size_t>(o) * k_words + k] = gen() & (k % words == 2 ? 0x3u : ~uint64_t{0});
  const int blocks = 2;
  std::vector<int8_t> tiles(static_cast<size_t>(blocks) * k_words * kAmxWordBytes + 64);
  int8_t* aligned = tiles.data() + (64 - reinterpret_cast<uintptr_t>(tiles.data()) % 64) % 64;
  for (int b = 0; b < blocks; ++b) {
    const int lanes = b == 0 ? 32 : out_channels - 32;
    std::vector<uint64_t> block(static_cast<size_t>(k_words) * lanes);
    for (int n = 0; n < lanes; ++n)
      for (int k = 0; k < k_words; ++k)
        block[static_cast<size_t>(k) * lanes + n] = weights[static_cast<size_t>(32 * b + n) * k_words + k];
    amx_expand_weights(block.data(), lanes, lanes, k_words,
                       aligned + static_cast<int64_t>(b) * k_words * kAmxWordBytes);
  }
  for (PadMode mode : {PadMode::kZero, PadMode::kPlusOne, PadMode::kMinusOne}) {
    int64_t iy0[kAmxPixels], ix0[kAmxPixels];
    const int rows = h * w;  // pad 1, stride 1: 30 pixels
    for (int m = 0; m < rows; ++m) iy0[m] = m / w - 1, ix0[m] = m % w - 1;
    std::vector<int32_t> sums(static_cast<size_t>(blocks) * kAmxPixels * kBconvBlock);
    AmxBgemmArgs a;
    a.image = image.data();
    a.in_h = h;
    a.in_w = w;
    a.in_words = words;
    a.in_channels = channels;
    a.kernel_h = a.kernel_w = kernel;
    a.pad_mode = mode;
    a.iy0 = iy0;
    a.ix0 = ix0;
    a.rows = rows;
    a.k_words = k_words;
    a.b_tiles = aligned;
    a.blocks = blocks;
    a.sums = sums.data();
    amx_bgemm_emulated(a);
    for (int m = 0; m < rows; ++m) {
      for (int o = 0; o < out_channels; ++o) {
        const int64_t want = direct_sum(image, h, w, words, channels, &weights[static_cast<size_t>(o) * k_words],
                                        kernel, static_cast<int>(iy0[m]), static_cast<int>(ix0[m]), mode);
        EXPECT_EQ(sums[(static_cast<size_t>(o / 32) * kAmxPixels + m) * kBconvBlock + o % 32], want)
            << "pad mode " << static_cast<int>(mode) << " pixel " << m << " channel " << o;
      }
    }
  }
}

}  // namespace
}  // namespace xnor
