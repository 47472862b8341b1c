// The binary GEMM on an AMX tile unit: +/-1 dot products as exact int8 dot products (TDPBSSD).
//
// One call computes up to kAmxPixels output pixels x up to kAmxGroupBlocks channel blocks of 32
// output channels of a binary convolution over the whole reduction and stores the exact integer
// sums s. Every 64-bit word of the reduction (one tap's 64 input channels) becomes one 64-byte
// tile row:
//   A tiles (tmm4, tmm5): 16 pixels x 64 int8 each, value (1 - 2 * bit) for a real input channel,
//                         0 for a channel past in_channels and for a zero-padded tap, +1 / -1 for a
//                         tap in +1 / -1 padding; expanded here, kAmxKChunk words at a time, and
//                         reused for every channel block of the call;
//   B tiles (tmm6, tmm7): 16 channels each in the VNNI layout TDPBSSD reads (row r holds, for
//                         channel n, the weights of bits 4r..4r+3 at bytes 4n..4n+3), expanded
//                         once per layer by amx_expand_weights (operators/bconv2d_amx.cc caches them);
//   C tiles (tmm0..tmm3): 16 pixels x 16 channels of int32 sums, 2 x 2 of them per channel block,
//                         kept in `sums` between word chunks.
// Because int8 can hold 0, a zero-padded tap contributes nothing and needs no correction: the
// tile sums are s itself, the same integer the popcount kernels reach as k_bits - 2 * popcount
// minus their padding correction, so the shared epilogue gives the same bytes.
//
// The template runs on any unit with the interface of AmxEmulated (amx_tile.h): the emulator
// (amx_emulated.cc, every machine) and the hardware (amx_hardware.cc, after amx_support()).
#pragma once

#include <cstdint>
#include <cstring>

#include "microkernels/amx_tile.h"
#include "microkernels/bconv2d_microkernel.h"

namespace xnor {

constexpr int kAmxPixels = 32;      // output pixels per call: two A tiles of 16 rows
constexpr int kAmxKChunk = 16;      // reduction words expanded at a time (32 KiB of A rows)
constexpr int kAmxGroupBlocks = 4;  // channel blocks per call sharing one A expansion
constexpr int64_t kAmxTileBytes = 16 * 64;
// Bytes of one channel block's B tiles per reduction word: two 16-channel tiles.
constexpr int64_t kAmxWordBytes = 2 * kAmxTileBytes;

struct AmxBgemmArgs {
  const uint64_t* image;  // one image, [in_h][in_w][in_words], unpadded
  int64_t in_h, in_w;
  int in_words;
  int in_channels;
  int kernel_h, kernel_w;
  PadMode pad_mode;
  // Pixel m < rows of the call: its window's top-left input position (negative in the padding).
  const int64_t* iy0;
  const int64_t* ix0;
  int rows;     // 1..kAmxPixels
  int k_words;  // kernel_h * kernel_w * in_words
  // The call's channel blocks' B tiles, block after block: [blocks][k_words][2][16][64] int8
  // (amx_expand_weights), 64-byte aligned.
  const int8_t* b_tiles;
  int blocks;  // 1..kAmxGroupBlocks
  // Out: block g's sum of pixel m, lane n is sums[(g * kAmxPixels + m) * kBconvBlock + n] (rows
  // past `rows` and lanes past a block's channels hold sums of zero rows / columns).
  int32_t* sums;
};

using AmxBgemmFn = void (*)(const AmxBgemmArgs& args);
void amx_bgemm_emulated(const AmxBgemmArgs& args);
// Only after amx_support().available (amx_detect.h): on a CPU without AMX it faults.
void amx_bgemm_hardware(const AmxBgemmArgs& args);

namespace amx_detail {

// Byte j of pm1[b] is -1 (0xFF) where bit j of b is set, else +1; byte j of mask[b] is 0xFF where
// bit j of b is set, else 0. Little-endian: byte j of a uint64 is its bits 8j..8j+7.
struct ExpandTables {
  uint64_t pm1[256];
  uint64_t mask[256];
};
constexpr ExpandTables make_expand_tables() {
  ExpandTables t{};
  for (unsigned b = 0; b < 256; ++b) {
    for (unsigned j = 0; j < 8; ++j) {
      const bool set = ((b >> j) & 1u) != 0;
      t.pm1[b] |= uint64_t{set ? 0xFFu : 0x01u} << (8 * j);
      t.mask[b] |= uint64_t{set ? 0xFFu : 0x00u} << (8 * j);
    }
  }
  return t;
}
inline constexpr ExpandTables kExpandTables = make_expand_tables();
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the expansion tables assume little-endian bytes");

// 64 bits to 64 int8: bit j of `valid` clear -> 0, else bit j of x set -> -1, clear -> +1.
inline void expand_word(uint64_t x, uint64_t valid, int8_t* out) {
  for (int i = 0; i < 8; ++i) {
    const uint64_t bytes = kExpandTables.pm1[(x >> (8 * i)) & 0xFF] & kExpandTables.mask[(valid >> (8 * i)) & 0xFF];
    std::memcpy(out + 8 * i, &bytes, sizeof bytes);
  }
}

// The A rows of word k for the block's pixels (rows past a.rows zero).
inline void expand_a(const AmxBgemmArgs& a, int k, int8_t (*rows)[64]) {
  const int tap = k / a.in_words, w = k % a.in_words;
  const int ky = tap / a.kernel_w, kx = tap % a.kernel_w;
  const int bits = a.in_channels - 64 * w < 64 ? a.in_channels - 64 * w : 64;
  const uint64_t valid = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  for (int m = 0; m < kAmxPixels; ++m) {
    if (m >= a.rows) {
      std::memset(rows[m], 0, 64);
      continue;
    }
    const int64_t iy = a.iy0[m] + ky, ix = a.ix0[m] + kx;
    if (iy >= 0 && iy < a.in_h && ix >= 0 && ix < a.in_w) {
      expand_word(a.image[(iy * a.in_w + ix) * a.in_words + w], valid, rows[m]);
    } else if (a.pad_mode == PadMode::kZero) {
      std::memset(rows[m], 0, 64);
    } else {
      expand_word(a.pad_mode == PadMode::kMinusOne ? ~uint64_t{0} : 0, valid, rows[m]);
    }
  }
}

}  // namespace amx_detail

// One channel block's B tiles: word k of lane n < lanes is weights[k * weight_stride + n] (the
// packed block of BinaryConv2d); out: [k_words][2][16][64], tile h holding lanes 16h..16h+15 in
// the VNNI layout, lanes past `lanes` zero.
inline void amx_expand_weights(const uint64_t* weights, int64_t weight_stride, int lanes, int k_words, int8_t* out) {
  for (int64_t k = 0; k < k_words; ++k) {
    int8_t* word_tiles = out + k * kAmxWordBytes;
    for (int n = 0; n < kBconvBlock; ++n) {
      int8_t* tile = word_tiles + (n / 16) * kAmxTileBytes;
      const int col = 4 * (n % 16);
      int8_t bytes[64] = {};
      if (n < lanes) amx_detail::expand_word(weights[k * weight_stride + n], ~uint64_t{0}, bytes);
      for (int r = 0; r < 16; ++r) std::memcpy(tile + r * 64 + col, bytes + 4 * r, 4);
    }
  }
}

template <class Unit>
void amx_bgemm_block(Unit& unit, const AmxBgemmArgs& a) {
  alignas(64) int8_t a_rows[kAmxKChunk][kAmxPixels][64];
  AmxTileConfig config;
  config.palette = 1;
  for (int t = 0; t < kAmxTiles; ++t) config.rows[t] = 16, config.colsb[t] = 64;
  unit.load_config(config);
  constexpr int64_t stride = kBconvBlock * sizeof(int32_t);
  for (int k0 = 0; k0 < a.k_words; k0 += kAmxKChunk) {
    const int chunk = a.k_words - k0 < kAmxKChunk ? a.k_words - k0 : kAmxKChunk;
    for (int j = 0; j < chunk; ++j) amx_detail::expand_a(a, k0 + j, a_rows[j]);
    for (int g = 0; g < a.blocks; ++g) {
      int32_t* sums = a.sums + static_cast<int64_t>(g) * kAmxPixels * kBconvBlock;
      if (k0 == 0) {
        unit.template zero<0>();
        unit.template zero<1>();
        unit.template zero<2>();
        unit.template zero<3>();
      } else {
        unit.template load<0>(sums, stride);
        unit.template load<1>(sums + 16, stride);
        unit.template load<2>(sums + 16 * kBconvBlock, stride);
        unit.template load<3>(sums + 16 * kBconvBlock + 16, stride);
      }
      const int8_t* b = a.b_tiles + (static_cast<int64_t>(g) * a.k_words + k0) * kAmxWordBytes;
      for (int j = 0; j < chunk; ++j, b += kAmxWordBytes) {
        unit.template load<4>(a_rows[j][0], 64);
        unit.template load<5>(a_rows[j][16], 64);
        unit.template load<6>(b, 64);
        unit.template load<7>(b + kAmxTileBytes, 64);
        unit.template dpbssd<0, 4, 6>();  // pixels 0..15, lanes 0..15
        unit.template dpbssd<1, 4, 7>();  // pixels 0..15, lanes 16..31
        unit.template dpbssd<2, 5, 6>();  // pixels 16..31, lanes 0..15
        unit.template dpbssd<3, 5, 7>();  // pixels 16..31, lanes 16..31
      }
      unit.template store<0>(sums, stride);
      unit.template store<1>(sums + 16, stride);
      unit.template store<2>(sums + 16 * kBconvBlock, stride);
      unit.template store<3>(sums + 16 * kBconvBlock + 16, stride);
    }
  }
  unit.release();
}

}  // namespace xnor
