// Intel AMX tile unit: the tile configuration (LDTILECFG's 64-byte operand) and AmxEmulated, a
// software tile unit that implements the operations the binary GEMM uses as Intel's pseudo-code
// defines them (Intel SDM / intrinsics guide: LDTILECFG, TILEZERO, TILELOADD, TDPBSSD, TILESTORED,
// TILERELEASE). The same kernel template (amx_bgemm.h) runs on it and on the hardware
// (amx_hardware.cc), so every machine checks the tile kernel bit for bit, AMX or not.
//
// Where the hardware faults (#GP on a bad configuration, #UD on a tile used unconfigured or on
// shapes TDPBSSD does not accept), the emulator throws std::logic_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace xnor {

constexpr int kAmxTiles = 8;      // palette 1: tmm0..tmm7
constexpr int kAmxMaxRows = 16;   // palette 1: rows per tile
constexpr int kAmxMaxColsb = 64;  // palette 1: bytes per row

// LDTILECFG's memory operand. Every byte not named is reserved and must be zero.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 0;    // byte 0: 1 = palette 1; 0 = the INIT state
  uint8_t start_row = 0;  // byte 1: restart row of an interrupted load/store; 0
  uint8_t reserved0[14] = {};
  uint16_t colsb[kAmxTiles] = {};  // bytes 16..31: bytes per row of tmm0..tmm7
  uint8_t reserved1[16] = {};      // bytes 32..47
  uint8_t rows[kAmxTiles] = {};    // bytes 48..55: rows of tmm0..tmm7
  uint8_t reserved2[8] = {};       // bytes 56..63
};
static_assert(sizeof(AmxTileConfig) == 64, "LDTILECFG reads 64 bytes");
static_assert(offsetof(AmxTileConfig, colsb) == 16 && offsetof(AmxTileConfig, rows) == 48,
              "the tile configuration layout of the Intel SDM");

class AmxEmulated {
 public:
  // LDTILECFG. Palette 0 returns to the INIT state; palette 1 checks each tile's shape.
  void load_config(const AmxTileConfig& config) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(&config);
    for (int i = 2; i < 16; ++i) fault_if(bytes[i] != 0, "LDTILECFG: reserved byte set (#GP)");
    for (int i = 32; i < 48; ++i) fault_if(bytes[i] != 0, "LDTILECFG: reserved byte set (#GP)");
    for (int i = 56; i < 64; ++i) fault_if(bytes[i] != 0, "LDTILECFG: reserved byte set (#GP)");
    fault_if(config.palette > 1, "LDTILECFG: palette other than 0 or 1 (#GP)");
    if (config.palette == 0) {
      release();
      return;
    }
    for (int t = 0; t < kAmxTiles; ++t) {
      fault_if(config.rows[t] > kAmxMaxRows || config.colsb[t] > kAmxMaxColsb,
               "LDTILECFG: tile larger than palette 1 allows (#GP)");
      fault_if((config.rows[t] == 0) != (config.colsb[t] == 0), "LDTILECFG: tile with rows or colsb zero (#GP)");
    }
    config_ = config;
    config_.start_row = 0;
    configured_ = true;
    std::memset(tiles_, 0, sizeof tiles_);
  }
  // TILERELEASE: the INIT state (no configuration, tiles zero).
  void release() {
    config_ = AmxTileConfig{};
    configured_ = false;
    std::memset(tiles_, 0, sizeof tiles_);
  }

  void zero(int t) {
    check_tile(t, "TILEZERO");
    std::memset(tiles_[t], 0, sizeof tiles_[t]);
  }
  // TILELOADD: rows(t) rows of colsb(t) bytes from base + r * stride; the rest of the tile zero.
  void load(int t, const void* base, int64_t stride) {
    check_tile(t, "TILELOADD");
    std::memset(tiles_[t], 0, sizeof tiles_[t]);
    const auto* p = static_cast<const uint8_t*>(base);
    for (int r = 0; r < config_.rows[t]; ++r) std::memcpy(tiles_[t][r], p + r * stride, config_.colsb[t]);
  }
  // TILESTORED: rows(t) rows of colsb(t) bytes to base + r * stride.
  void store(int t, void* base, int64_t stride) const {
    check_tile(t, "TILESTORED");
    auto* p = static_cast<uint8_t*>(base);
    for (int r = 0; r < config_.rows[t]; ++r) std::memcpy(p + r * stride, tiles_[t][r], config_.colsb[t]);
  }
  // TDPBSSD c, a, b: for m < rows(c), k < colsb(a) / 4, n < colsb(c) / 4:
  //   c.dword[m][n] += sum_{i<4} int8 a[m][4k + i] * int8 b[k][4n + i]
  // (dword sums wrap, as the hardware's do); the bytes beyond colsb(c) and the rows beyond
  // rows(c) become zero.
  void dpbssd(int c, int a, int b) {
    check_tile(c, "TDPBSSD");
    check_tile(a, "TDPBSSD");
    check_tile(b, "TDPBSSD");
    fault_if(c == a || c == b || a == b, "TDPBSSD: the three tiles must differ (#UD)");
    const int rows_c = config_.rows[c], colsb_c = config_.colsb[c], colsb_a = config_.colsb[a];
    fault_if(colsb_a % 4 != 0 || colsb_c % 4 != 0, "TDPBSSD: colsb not a multiple of 4 (#UD)");
    fault_if(config_.rows[b] != colsb_a / 4, "TDPBSSD: rows(B) != colsb(A) / 4 (#UD)");
    fault_if(config_.colsb[b] != colsb_c, "TDPBSSD: colsb(B) != colsb(C) (#UD)");
    fault_if(config_.rows[a] != rows_c, "TDPBSSD: rows(A) != rows(C) (#UD)");
    for (int m = 0; m < rows_c; ++m) {
      uint32_t tmp[kAmxMaxColsb / 4];
      std::memcpy(tmp, tiles_[c][m], sizeof tmp);
      for (int k = 0; k < colsb_a / 4; ++k) {
        for (int n = 0; n < colsb_c / 4; ++n) {
          int32_t dot = 0;
          for (int i = 0; i < 4; ++i)
            dot += static_cast<int32_t>(static_cast<int8_t>(tiles_[a][m][4 * k + i])) *
                   static_cast<int32_t>(static_cast<int8_t>(tiles_[b][k][4 * n + i]));
          tmp[n] += static_cast<uint32_t>(dot);
        }
      }
      std::memset(tiles_[c][m], 0, sizeof tiles_[c][m]);
      std::memcpy(tiles_[c][m], tmp, static_cast<size_t>(colsb_c));
    }
    for (int m = rows_c; m < kAmxMaxRows; ++m) std::memset(tiles_[c][m], 0, sizeof tiles_[c][m]);
  }

  // The kernel template's interface (amx_bgemm.h): tile numbers as template arguments, as the
  // hardware's instructions encode them.
  template <int T>
  void zero() {
    zero(T);
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    load(T, base, stride);
  }
  template <int T>
  void store(void* base, int64_t stride) const {
    store(T, base, stride);
  }
  template <int C, int A, int B>
  void dpbssd() {
    dpbssd(C, A, B);
  }

 private:
  static void fault_if(bool bad, const char* what) {
    if (bad) throw std::logic_error(std::string("AMX emulator: ") + what);
  }
  void check_tile(int t, const char* op) const {
    fault_if(t < 0 || t >= kAmxTiles, "tile number out of range (#UD)");
    if (!configured_ || config_.rows[t] == 0)
      throw std::logic_error(std::string("AMX emulator: ") + op + " on tile tmm" + std::to_string(t) +
                             " that the configuration does not enable (#UD)");
  }

  AmxTileConfig config_;
  bool configured_ = false;
  uint8_t tiles_[kAmxTiles][kAmxMaxRows][kAmxMaxColsb] = {};
};

}  // namespace xnor
