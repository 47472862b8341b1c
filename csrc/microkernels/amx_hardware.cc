// The binary GEMM block (amx_bgemm.h) on the CPU's AMX unit. This file alone is compiled with
// -mamx-tile -mamx-int8 (CMakeLists.txt); it is reached only after amx_support() (amx_detect.h)
// found AMX-TILE, AMX-INT8, the OS state and Linux's permission for the tile data. (The inline
// helpers of amx_bgemm.h it shares with amx_emulated.cc compile to the same baseline code here:
// -mamx-tile / -mamx-int8 enable only the tile instructions, which only AmxHardware spells.)
#include "microkernels/amx_bgemm.h"

#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_INT8__)
#include <immintrin.h>

namespace xnor {
namespace {

// GCC's tile intrinsics paste the tile number into the instruction text, so each one must be
// spelled with a literal number: the templates pick that spelling at compile time.
struct AmxHardware {
  // GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes and _tile_loadd that it reads no
  // memory at all: the empty asm statements before them make the whole configuration, and every
  // byte written to a tile's source, land in memory first.
  void load_config(const AmxTileConfig& config) {
    __asm__ volatile("" : : "m"(config) : "memory");
    _tile_loadconfig(&config);
  }
  void release() { _tile_release(); }

#define XNOR_AMX_TILE_CASES(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)
  template <int T>
  void zero() {
    static_assert(T >= 0 && T < kAmxTiles, "tile number");
#define XNOR_AMX_ZERO(t) \
  if constexpr (T == t) _tile_zero(t);
    XNOR_AMX_TILE_CASES(XNOR_AMX_ZERO)
#undef XNOR_AMX_ZERO
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    static_assert(T >= 0 && T < kAmxTiles, "tile number");
    __asm__ volatile("" : : : "memory");
#define XNOR_AMX_LOAD(t) \
  if constexpr (T == t) _tile_loadd(t, base, stride);
    XNOR_AMX_TILE_CASES(XNOR_AMX_LOAD)
#undef XNOR_AMX_LOAD
  }
  template <int T>
  void store(void* base, int64_t stride) {
    static_assert(T >= 0 && T < kAmxTiles, "tile number");
#define XNOR_AMX_STORE(t) \
  if constexpr (T == t) _tile_stored(t, base, stride);
    XNOR_AMX_TILE_CASES(XNOR_AMX_STORE)
#undef XNOR_AMX_STORE
  }
#undef XNOR_AMX_TILE_CASES
  // The (C, A, B) triples amx_bgemm_block uses.
  template <int C, int A, int B>
  void dpbssd() {
    if constexpr (C == 0 && A == 4 && B == 6) {
      _tile_dpbssd(0, 4, 6);
    } else if constexpr (C == 1 && A == 4 && B == 7) {
      _tile_dpbssd(1, 4, 7);
    } else if constexpr (C == 2 && A == 5 && B == 6) {
      _tile_dpbssd(2, 5, 6);
    } else if constexpr (C == 3 && A == 5 && B == 7) {
      _tile_dpbssd(3, 5, 7);
    } else {
      static_assert(C < 0, "add this (C, A, B) triple to AmxHardware::dpbssd");
    }
  }
};

}  // namespace

void amx_bgemm_hardware(const AmxBgemmArgs& args) {
  AmxHardware unit;
  amx_bgemm_block(unit, args);
}

}  // namespace xnor

#else

namespace xnor {

void amx_bgemm_hardware(const AmxBgemmArgs&) {
  throw std::runtime_error("xnorinfer was built without AMX code (the compiler lacks -mamx-tile -mamx-int8)");
}

}  // namespace xnor

#endif
