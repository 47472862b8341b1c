// Binary 2-D convolution operator (also the binary dense layer, as a 1x1
// convolution over an M x 1 image). Built once from bit-packed weights and an
// output transform; run() executes on bit-packed NHWC input over a thread pool
// with the microkernel of the requested ISA.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "microkernels/bconv2d_microkernel.h"
#include "microkernels/isa.h"
#include "operators/parallel.h"
#include "operators/rows_done.h"
#include "operators/workspace.h"

namespace xnor {

struct AmxTileWeights;  // operators/bconv2d_amx.h

struct BconvConfig {
  int in_channels = 0;
  int out_channels = 0;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;  // symmetric, as torch.nn.Conv2d(padding=...)
  PadMode pad_mode = PadMode::kZero;
};

// How the integer sum s of each output element becomes the output.
struct OutputTransform {
  OutputKind kind = OutputKind::kInt32;
  std::vector<float> multiplier, bias;  // kFloat: y = multiplier[c] * s + bias[c] (fused fma)
  // kBits: output bit (1 = -1) is (s < threshold[c]) XOR flip[c]. A channel
  // that is +1 iff s >= T has threshold T, flip 0; one that is +1 iff s <= T
  // (negative BN scale) has threshold T + 1, flip 1; a constant +1 channel
  // has threshold INT32_MIN, flip 0, a constant -1 channel INT32_MIN, flip 1.
  std::vector<int32_t> threshold;
  std::vector<uint8_t> flip;
};

// The engines of the binary GEMM (XNORINFER_BGEMM, operators/bconv2d_amx.h): the XOR + popcount
// microkernels, AMX-INT8 tiles, the tile kernel on the software tile unit, and the per-layer
// measured choice between popcount and either tile engine.
enum class BgemmEngine { kPopcount, kAmx, kAmxEmulated, kAuto, kAutoEmulated };

// "popcount", "amx", "amx-emulated", "auto" or "auto-emulated".
const char* engine_name(BgemmEngine engine);

// What XNORINFER_BGEMM=auto decided for one input shape and thread count of a layer: the engine,
// the best of the interleaved timed runs of each candidate (seconds; 0 for one not run) and, when
// only popcount was possible, why.
struct BgemmChoice {
  int batch = 0, in_h = 0, in_w = 0, threads = 0;
  Isa isa = Isa::kScalar;  // the popcount kernels' ISA path the times are for
  BgemmEngine engine = BgemmEngine::kPopcount;
  double popcount_seconds = 0, amx_seconds = 0;
  BgemmEngine amx_engine = BgemmEngine::kAmx;  // the tile engine measured: kAmx or kAmxEmulated
  std::string not_measured;                    // non-empty: why the tile engine was not a candidate
};

class BinaryConv2d {
 public:
  // weights: bit-packed [out_channels][kernel_h][kernel_w][in_words], pad bits zero.
  BinaryConv2d(const BconvConfig& config, const uint64_t* weights, OutputTransform transform);

  const BconvConfig& config() const { return config_; }
  OutputKind output_kind() const { return transform_kind_; }
  int in_words() const { return in_words_; }
  int out_words() const { return (config_.out_channels + 63) / 64; }
  int out_h(int in_h) const;
  int out_w(int in_w) const;
  // Elements per output pixel: out_channels for int32/float, out_words uint64 for bits.
  int64_t out_pixel_elements() const;
  // Bytes held for the repacked weights and the per-block constants (at most about twice
  // the packed weights given, plus a few KiB per block: a narrow block is not padded to 32).
  size_t packed_bytes() const;

  // Bytes of scratch run() needs for this input on `threads` threads: the pad-framed
  // input, the per-word tap offsets and one tile's padded-tap lists per thread.
  size_t workspace_bytes(int batch, int in_h, int in_w, int threads) const;
  // input: [batch][in_h][in_w][in_words] uint64. output: [batch][out_h][out_w][...]
  // of int32, float or uint64 by output_kind(). workspace: workspace_bytes(batch,
  // in_h, in_w, pool threads or 1) bytes, 64-byte aligned. Throws on a shape that
  // gives an empty output. pixel_scale (float output only, or null): [batch][out_h][out_w]
  // floats K, and each output is fma(multiplier[c], fl(s * K[pixel]), bias[c]) (XNOR-Net's beta).
  // rows_done (or null): called with every output row exactly once, after the row is complete.
  void run(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool, Isa isa,
           void* workspace, const float* pixel_scale = nullptr, const OutputRowsDone* rows_done = nullptr) const;
  // The same with a workspace allocated for this call (for callers without a memory plan).
  void run(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool, Isa isa) const;

  // Horizontally adjacent kernel taps packed into one word (1: one tap per word). Layers with at
  // most 32 input channels hold each pixel in a slot of slot_bits() (a power of two) and up to
  // 64 / slot_bits taps of a kernel row per word, so a 3x3 over 32 channels reduces over 6 words
  // instead of 9, over 16 channels 3 instead of 9 (docs/kernels.md, tap grouping).
  int taps_per_word() const { return taps_per_word_; }
  int slot_bits() const { return slot_bits_; }

  // The packed data, for other GEMM engines (operators/bconv2d_amx.cc): words per output pixel's
  // reduction (taps x in_words, or fewer with tap grouping), the channel blocks, block b's weight
  // rows ([k_words][lanes], lanes past the block's channels zero) and its epilogue constants.
  int k_words() const { return k_words_; }
  int weight_blocks() const { return blocks_; }
  int weight_block_lanes(int b) const { return block_lanes(b); }
  const uint64_t* weight_block(int b) const { return block_weights(b); }
  const BconvBlockEpilogue& block_epilogue(int b) const { return epilogue_[static_cast<size_t>(b)]; }
  // The AMX engine's weights as int8 tiles, built by its first run (8x the packed weights, not
  // counted in packed_bytes()); null before. Either call may race with the other: the cache is
  // swapped atomically, and two first runs both build equal tiles.
  std::shared_ptr<const AmxTileWeights> amx_tile_weights() const { return std::atomic_load(&amx_tile_weights_); }
  void set_amx_tile_weights(std::shared_ptr<const AmxTileWeights> w) const {
    std::atomic_store(&amx_tile_weights_, std::move(w));
  }
  // The engine the last run used (kPopcount before any run).
  BgemmEngine last_engine() const { return last_engine_.load(std::memory_order_relaxed); }
  // XNORINFER_BGEMM=auto's decisions so far, one per input shape and thread count, oldest first
  // (the last 64).
  std::vector<BgemmChoice> bgemm_choices() const;

 private:
  struct Scratch {
    // [frames][batch][in_h + 2 pad_h][in_w + 2 pad_w][in_words]; null without padding or grouping
    uint64_t* frame;
    int64_t* k_offset;     // [k_words]
    int16_t* padded_taps;  // [threads][padded_taps_stride()]; null unless zero padding is corrected
  };
  size_t padded_taps_stride() const;  // one thread's kBgemmMr x taps lists, whole cache lines
  // The engine of one run: XNORINFER_BGEMM, with auto resolved by the layer's choice for this
  // shape, measured on this call's buffers the first time (run()'s arguments, no rows_done).
  BgemmEngine choose_engine(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool,
                            Isa isa, void* workspace, const float* pixel_scale) const;
  // Tap grouping: the frames of frame_taps_ from the input, [frames][batch][padded rows][padded cols].
  void build_grouped_frames(const uint64_t* input, int batch, int in_h, int in_w, uint64_t* frames_out,
                            TaskRunner* pool) const;
  // run() on the XOR + popcount microkernels.
  void run_popcount(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool, Isa isa,
                    void* workspace, const float* pixel_scale, const OutputRowsDone* rows_done) const;
  Scratch carve(WorkspaceCarver& carver, int batch, int in_h, int in_w, int threads) const;
  // Frames built from the input in run(): one without grouping (when padded), else frame_taps_.size().
  int frames() const { return frame_taps_.empty() ? 1 : static_cast<int>(frame_taps_.size()); }
  bool framed() const { return !frame_taps_.empty() || config_.pad_h > 0 || config_.pad_w > 0; }

  struct alignas(64) WeightLine {
    uint64_t w[8];
  };
  // Lanes (channels, padded) of block b's weight rows: 32, except for a last block with fewer
  // channels: those rounded up to 8 for the SIMD kernels, or exactly them under 8 (scalar
  // kernel), so that a layer with one output channel does not hold 32 copies of its weights.
  int block_lanes(int b) const { return b + 1 < blocks_ ? kBconvBlock : last_lanes_; }
  // Block b's rows; every block but the last is full, so b's rows start after b full blocks.
  const uint64_t* block_weights(int b) const {
    return weights_.data()->w + static_cast<size_t>(b) * static_cast<size_t>(k_words_) * kBconvBlock;
  }
  uint64_t* block_weights(int b) {
    return weights_.data()->w + static_cast<size_t>(b) * static_cast<size_t>(k_words_) * kBconvBlock;
  }

  BconvConfig config_;
  OutputKind transform_kind_;
  int in_words_;
  int k_words_;  // taps * in_words, or kernel_h x words per kernel row with tap grouping
  int taps_per_word_ = 1;
  int slot_bits_ = 64;
  // Tap grouping: per frame, the taps each of its words holds (frame f's word at pixel (y, x) holds
  // pixels x .. x + frame_taps_[f] - 1 of row y, slot_bits_ each); per reduction word k, its frame
  // and its first tap (ky, kx). Empty without grouping (one frame of plain pixel words).
  struct GroupedWord {
    int frame, ky, kx;
  };
  std::vector<int> frame_taps_;
  std::vector<GroupedWord> grouped_words_;  // [k_words]
  int blocks_;
  int last_lanes_;                            // block_lanes(blocks_ - 1)
  std::vector<WeightLine> weights_;           // [blocks][k_words][block_lanes(b)], as 64-byte lines
  std::vector<int32_t> tap_weight_sum_;       // [blocks][taps][32], kZero with padding only
  std::vector<BconvBlockEpilogue> epilogue_;  // [blocks]
  std::vector<uint64_t> pad_row_;             // [in_words]
  mutable std::shared_ptr<const AmxTileWeights> amx_tile_weights_;  // see amx_tile_weights()
  // XNORINFER_BGEMM=auto's choices, replaced whole (copy on write) when one is added.
  mutable std::shared_ptr<const std::vector<BgemmChoice>> bgemm_choices_;
  mutable std::atomic<BgemmEngine> last_engine_{BgemmEngine::kPopcount};
};

}  // namespace xnor
