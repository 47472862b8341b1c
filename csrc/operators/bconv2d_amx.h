// The binary GEMM engine choice and the AMX driver of BinaryConv2d (and so of BinaryLinear).
//
// XNORINFER_BGEMM selects the engine of every binary convolution / dense layer run:
//   popcount      (default, or unset) the XOR + popcount microkernels of the ISA path
//   amx           AMX-INT8 tiles; std::runtime_error naming what is missing on a CPU without AMX
//   amx-emulated  the same tile kernel on the software tile unit (a correctness tool, slow)
//   auto          per layer, input shape and thread count: popcount and amx timed on the first
//                 run (interleaved, best of kAutoRounds each), the faster kept; popcount without
//                 measuring where AMX is not usable or the layer does not fit it
//   auto-emulated the same choice between popcount and amx-emulated (tests the mechanism)
// Every engine gives the bytes of the popcount kernels. The default stays popcount until the
// AMX path is measured on AMX hardware (docs/kernels.md).
#pragma once

#include <cstdint>

#include "operators/aligned_buffer.h"
#include "operators/bconv2d.h"

namespace xnor {

// A layer's B tiles for the AMX engines: [blocks][k_words][2][16][64] int8 (amx_bgemm.h).
struct AmxTileWeights {
  AlignedBytes tiles;
  int64_t block_bytes = 0;  // one channel block's tiles
};

// Reads XNORINFER_BGEMM on each call (so a process may switch it); std::invalid_argument on a
// value other than the five above.
BgemmEngine bgemm_engine();

// Timed runs of each candidate engine when auto measures a layer (the best of them counts).
constexpr int kAutoRounds = 3;

// False when the AMX engines cannot hold the layer's sums in their int32 accumulators
// (kernel taps x in_channels >= 2^31): such a layer keeps the popcount engine.
bool amx_fits(const BinaryConv2d& conv);

// BinaryConv2d::run on the tile unit of `engine` (kAmx or kAmxEmulated), the same arguments.
void run_bconv2d_amx(const BinaryConv2d& conv, BgemmEngine engine, const uint64_t* input, int batch, int in_h, int in_w,
                     void* output, TaskRunner* pool, const float* pixel_scale);

}  // namespace xnor
