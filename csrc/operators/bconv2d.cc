#include "operators/bconv2d.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <stdexcept>
#include <string>

#include "microkernels/amx_detect.h"
#include "microkernels/dispatch.h"
#include "operators/aligned_buffer.h"
#include "operators/bconv2d_amx.h"

namespace xnor {
namespace {
constexpr int kTilesPerChunk = 16;       // single thread: 6-pixel tiles per task
constexpr size_t kMaxBgemmChoices = 64;  // XNORINFER_BGEMM=auto: input shapes remembered per layer
}  // namespace

BinaryConv2d::BinaryConv2d(const BconvConfig& c, const uint64_t* weights, OutputTransform t)
    : config_(c), transform_kind_(t.kind) {
  if (c.in_channels <= 0 || c.out_channels <= 0 || c.kernel_h <= 0 || c.kernel_w <= 0 || c.stride_h <= 0 ||
      c.stride_w <= 0 || c.pad_h < 0 || c.pad_w < 0) {
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
  // k_words and the bit count taps x in_channels in 64 bits: the kernels index k with int.
  if (static_cast<int64_t>(taps) * in_words_ > INT32_MAX) {
    throw std::invalid_argument("BinaryConv2d: kernel taps x input words exceeds 2^31");
  }
  const size_t tap_words = static_cast<size_t>(taps) * static_cast<size_t>(in_words_);  // per channel, as given
  k_words_ = static_cast<int>(tap_words);
  if (c.in_channels <= 32 && c.kernel_w >= 2) {
    // Tap grouping: a kernel row's taps g at a time (slot_bits each), the row's last word with
    // the remainder, from frames of g (and remainder) neighbouring pixels built per run.
    while (slot_bits_ / 2 >= c.in_channels) slot_bits_ /= 2;
    taps_per_word_ = std::min(64 / slot_bits_, c.kernel_w);
    const int rest = c.kernel_w % taps_per_word_;
    frame_taps_.push_back(taps_per_word_);
    if (rest != 0) frame_taps_.push_back(rest);
    for (int ky = 0; ky < c.kernel_h; ++ky) {
      for (int kx = 0; kx < c.kernel_w; kx += taps_per_word_) {
        grouped_words_.push_back({kx + taps_per_word_ <= c.kernel_w ? 0 : 1, ky, kx});
      }
    }
    k_words_ = static_cast<int>(grouped_words_.size());
  }
  const size_t k_words = static_cast<size_t>(k_words_);
  const int last_channels = c.out_channels - (blocks_ - 1) * kBconvBlock;
  last_lanes_ = last_channels < 8 ? last_channels : (last_channels + 7) / 8 * 8;

  // Word k of output channel o: the given [oc][taps][in_words] word, or with tap grouping the
  // taps of word k's group, each in its slot.
  auto weight_word = [&](int o, size_t k) -> uint64_t {
    const uint64_t* w = weights + static_cast<size_t>(o) * tap_words;
    if (frame_taps_.empty()) return w[k];
    const GroupedWord& g = grouped_words_[k];
    const int first = g.ky * c.kernel_w + g.kx;
    uint64_t word = 0;
    for (int i = 0; i < frame_taps_[static_cast<size_t>(g.frame)]; ++i) word |= w[first + i] << (i * slot_bits_);
    return word;
  };
  // Repack into [block][k][block_lanes(block)].
  const size_t words = (static_cast<size_t>(blocks_ - 1) * kBconvBlock + static_cast<size_t>(last_lanes_)) * k_words;
  weights_.assign((words + 7) / 8, WeightLine{});
  for (int o = 0; o < c.out_channels; ++o) {
    const int b = o / kBconvBlock, lane = o % kBconvBlock;
    const size_t lanes = static_cast<size_t>(block_lanes(b));
    uint64_t* packed = block_weights(b);
    for (size_t k = 0; k < k_words; ++k) packed[k * lanes + lane] = weight_word(o, k);
  }

  const bool needs_correction = c.pad_mode == PadMode::kZero && (c.pad_h > 0 || c.pad_w > 0);
  if (needs_correction) {
    tap_weight_sum_.assign(static_cast<size_t>(blocks_) * taps * kBconvBlock, 0);
    for (int o = 0; o < c.out_channels; ++o) {
      const int b = o / kBconvBlock, lane = o % kBconvBlock;
      for (int tap = 0; tap < taps; ++tap) {
        int negatives = 0;
        for (int w = 0; w < in_words_; ++w)
          negatives += __builtin_popcountll(
              weights[static_cast<size_t>(o) * tap_words + static_cast<size_t>(tap) * in_words_ + w]);
        tap_weight_sum_[(static_cast<size_t>(b) * taps + tap) * kBconvBlock + lane] = c.in_channels - 2 * negatives;
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

int BinaryConv2d::out_h(int in_h) const { return (in_h + 2 * config_.pad_h - config_.kernel_h) / config_.stride_h + 1; }
int BinaryConv2d::out_w(int in_w) const { return (in_w + 2 * config_.pad_w - config_.kernel_w) / config_.stride_w + 1; }
int64_t BinaryConv2d::out_pixel_elements() const {
  return transform_kind_ == OutputKind::kBits ? out_words() : config_.out_channels;
}
size_t BinaryConv2d::packed_bytes() const {
  return weights_.size() * sizeof(WeightLine) + tap_weight_sum_.size() * sizeof(int32_t) +
         epilogue_.size() * sizeof(BconvBlockEpilogue) + pad_row_.size() * sizeof(uint64_t);
}

BinaryConv2d::Scratch BinaryConv2d::carve(WorkspaceCarver& carver, int batch, int in_h, int in_w, int threads) const {
  const BconvConfig& c = config_;
  const size_t frame_words = static_cast<size_t>(frames()) * static_cast<size_t>(batch) *
                             static_cast<size_t>(in_h + 2 * c.pad_h) * static_cast<size_t>(in_w + 2 * c.pad_w) *
                             static_cast<size_t>(in_words_);
  Scratch s;
  s.frame = carver.take<uint64_t>(framed() ? frame_words : 0);
  s.k_offset = carver.take<int64_t>(static_cast<size_t>(k_words_));
  s.padded_taps =
      carver.take<int16_t>(tap_weight_sum_.empty() ? 0 : static_cast<size_t>(threads) * padded_taps_stride());
  return s;
}

size_t BinaryConv2d::padded_taps_stride() const {
  return WorkspaceCarver::line_multiple<int16_t>(static_cast<size_t>(kBgemmMr) * config_.kernel_h * config_.kernel_w);
}

size_t BinaryConv2d::workspace_bytes(int batch, int in_h, int in_w, int threads) const {
  WorkspaceCarver carver;
  carve(carver, batch, in_h, in_w, std::max(threads, 1));
  return carver.bytes();
}

void BinaryConv2d::build_grouped_frames(const uint64_t* input, int batch, int in_h, int in_w, uint64_t* frames_out,
                                        TaskRunner* pool) const {
  const BconvConfig& c = config_;
  const int ph = in_h + 2 * c.pad_h, pw = in_w + 2 * c.pad_w;
  const int64_t rows = static_cast<int64_t>(batch) * ph;  // of one frame
  // Bits past in_channels are dropped: a slot holds its pixel's channels only.
  const uint64_t channel_mask = (uint64_t{1} << c.in_channels) - 1;
  const uint64_t pad = pad_row_[0];
  const size_t grain = element_grain_rows(static_cast<size_t>(pw) * 2);
  parallel_for(pool, static_cast<size_t>(frames() * rows), grain, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const int f = static_cast<int>(static_cast<int64_t>(r) / rows);
      const int64_t frame_row = static_cast<int64_t>(r) % rows;
      const int64_t n = frame_row / ph;
      const int iy = static_cast<int>(frame_row % ph) - c.pad_h;
      const bool pad_row = iy < 0 || iy >= in_h;
      const uint64_t* src = pad_row ? nullptr : input + (n * in_h + iy) * in_w;
      uint64_t* dst = frames_out + static_cast<int64_t>(r) * pw;
      const int taps = frame_taps_[static_cast<size_t>(f)];
      const uint64_t group_mask = taps * slot_bits_ == 64 ? ~uint64_t{0} : (uint64_t{1} << (taps * slot_bits_)) - 1;
      // Right to left: word(x) = pixel(x) | word(x + 1) << slot, cut to `taps` slots (0 past the row).
      uint64_t word = 0;
      for (int x = pw - 1; x >= 0; --x) {
        const int ix = x - c.pad_w;
        const uint64_t pixel = pad_row || ix < 0 || ix >= in_w ? pad : (src[ix] & channel_mask);
        word = ((word << slot_bits_) | pixel) & group_mask;
        dst[x] = word;
      }
    }
  });
}

void BinaryConv2d::run(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool,
                       Isa isa) const {
  const int threads = threads_of(pool);
  const AlignedBytes workspace(workspace_bytes(batch, in_h, in_w, threads));
  run(input, batch, in_h, in_w, output, pool, isa, workspace.data());
}

void BinaryConv2d::run(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool, Isa isa,
                       void* workspace, const float* pixel_scale, const OutputRowsDone* rows_done) const {
  const BconvConfig& c = config_;
  if (pixel_scale != nullptr && transform_kind_ != OutputKind::kFloat) {
    throw std::invalid_argument("BinaryConv2d: a pixel scale needs float output");
  }
  if (batch <= 0 || in_h <= 0 || in_w <= 0 || in_h + 2 * c.pad_h < c.kernel_h || in_w + 2 * c.pad_w < c.kernel_w) {
    throw std::invalid_argument("BinaryConv2d: input " + std::to_string(in_h) + "x" + std::to_string(in_w) +
                                " is smaller than the kernel");
  }
  const BgemmEngine engine = choose_engine(input, batch, in_h, in_w, output, pool, isa, workspace, pixel_scale);
  last_engine_.store(engine, std::memory_order_relaxed);
  if (engine == BgemmEngine::kPopcount) {
    run_popcount(input, batch, in_h, in_w, output, pool, isa, workspace, pixel_scale, rows_done);
    return;
  }
  run_bconv2d_amx(*this, engine, input, batch, in_h, in_w, output, pool, pixel_scale);
  if (rows_done != nullptr) {
    all_rows_done(*rows_done, static_cast<int64_t>(batch) * out_h(in_h) * out_w(in_w), c.out_channels, pool);
  }
}

std::vector<BgemmChoice> BinaryConv2d::bgemm_choices() const {
  const std::shared_ptr<const std::vector<BgemmChoice>> choices = std::atomic_load(&bgemm_choices_);
  return choices == nullptr ? std::vector<BgemmChoice>{} : *choices;
}

BgemmEngine BinaryConv2d::choose_engine(const uint64_t* input, int batch, int in_h, int in_w, void* output,
                                        TaskRunner* pool, Isa isa, void* workspace, const float* pixel_scale) const {
  const BgemmEngine requested = bgemm_engine();
  if (requested == BgemmEngine::kPopcount) return requested;
  const bool fits = amx_fits(*this);
  if (requested == BgemmEngine::kAmx || requested == BgemmEngine::kAmxEmulated) {
    return fits ? requested : BgemmEngine::kPopcount;
  }
  const int threads = threads_of(pool);
  std::shared_ptr<const std::vector<BgemmChoice>> known = std::atomic_load(&bgemm_choices_);
  const BgemmEngine tile_engine = requested == BgemmEngine::kAuto ? BgemmEngine::kAmx : BgemmEngine::kAmxEmulated;
  auto same_key = [&](const BgemmChoice& k) {
    return k.batch == batch && k.in_h == in_h && k.in_w == in_w && k.threads == threads && k.isa == isa &&
           k.amx_engine == tile_engine;
  };
  auto find = [&](const std::shared_ptr<const std::vector<BgemmChoice>>& in) -> const BgemmChoice* {
    if (in == nullptr) return nullptr;
    for (const BgemmChoice& k : *in)
      if (same_key(k)) return &k;
    return nullptr;
  };
  if (const BgemmChoice* k = find(known)) return k->engine;
  BgemmChoice choice;
  choice.batch = batch, choice.in_h = in_h, choice.in_w = in_w, choice.threads = threads, choice.isa = isa;
  choice.amx_engine = tile_engine;
  if (!fits) {
    choice.not_measured = taps_per_word_ > 1 ? "its taps are grouped per word (at most 32 input channels), the tile "
                                               "kernel takes one tap per word"
                                             : "the sums (taps x in_channels) exceed the tiles' int32";
  } else if (tile_engine == BgemmEngine::kAmx && !amx_support().available) {
    choice.not_measured = "AMX is not usable here: " + amx_support().reason;
  } else {
    // Interleaved rounds, so that a change in the machine's load hits both engines alike; the
    // output is written by every run and rewritten by run()'s own.
    using Clock = std::chrono::steady_clock;
    auto seconds = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double>(b - a).count();
    };
    double best_popcount = 0, best_amx = 0;
    for (int r = 0; r < kAutoRounds; ++r) {
      const Clock::time_point t0 = Clock::now();
      run_popcount(input, batch, in_h, in_w, output, pool, isa, workspace, pixel_scale, nullptr);
      const Clock::time_point t1 = Clock::now();
      run_bconv2d_amx(*this, tile_engine, input, batch, in_h, in_w, output, pool, pixel_scale);
      const Clock::time_point t2 = Clock::now();
      best_popcount = r == 0 ? seconds(t0, t1) : std::min(best_popcount, seconds(t0, t1));
      best_amx = r == 0 ? seconds(t1, t2) : std::min(best_amx, seconds(t1, t2));
    }
    choice.popcount_seconds = best_popcount;
    choice.amx_seconds = best_amx;
    // A tie keeps popcount: the kernels every CPU runs.
    if (best_amx < best_popcount) choice.engine = tile_engine;
  }
  // Copy on write; a choice added meanwhile by another thread is kept (or re-measured later). At
  // most kMaxBgemmChoices shapes are remembered (the oldest goes), so a model fed ever new image
  // sizes does not grow without bound.
  for (;;) {
    if (const BgemmChoice* k = find(known)) return k->engine;  // another thread measured it meanwhile
    auto next = std::make_shared<std::vector<BgemmChoice>>(known != nullptr ? *known : std::vector<BgemmChoice>{});
    if (next->size() >= kMaxBgemmChoices) next->erase(next->begin());
    next->push_back(choice);
    std::shared_ptr<const std::vector<BgemmChoice>> desired = std::move(next);
    if (std::atomic_compare_exchange_strong(&bgemm_choices_, &known, desired)) break;
  }
  return choice.engine;
}

void BinaryConv2d::run_popcount(const uint64_t* input, int batch, int in_h, int in_w, void* output, TaskRunner* pool,
                                Isa isa, void* workspace, const float* pixel_scale,
                                const OutputRowsDone* rows_done) const {
  const BconvConfig& c = config_;
  const int oh = out_h(in_h), ow = out_w(in_w);
  // One image's pixels fit in int (checked_bytes bounds H x W); counts over them use 64 bits.
  const int64_t pixels = static_cast<int64_t>(oh) * ow;
  // Tasks: an image's tiles split evenly into chunks, and, when a pool has
  // more threads than there are chunks to share, the channel blocks into groups.
  const int64_t tiles = (pixels + kBgemmMr - 1) / kBgemmMr;
  const int64_t per_image = (min_tasks(pool) + batch - 1) / batch;
  const int64_t chunks = pool == nullptr ? (tiles + kTilesPerChunk - 1) / kTilesPerChunk : std::min(tiles, per_image);
  const int wanted_groups = static_cast<int>(std::min<int64_t>(blocks_, (per_image + chunks - 1) / chunks));
  const int blocks_per_group = (blocks_ + wanted_groups - 1) / wanted_groups;
  const int groups = (blocks_ + blocks_per_group - 1) / blocks_per_group;  // none empty
  const size_t tasks = static_cast<size_t>(batch) * static_cast<size_t>(chunks) * groups;
  const BgemmTileFn kernel = binary_kernels(isa).bgemm_tile;
  // A last block under 8 channels has rows narrower than a SIMD group: the scalar kernel runs it.
  const BgemmTileFn narrow_kernel = bgemm_tile_scalar;
  const int taps = c.kernel_h * c.kernel_w;
  const int k_words = k_words_;
  const int64_t k_bits = static_cast<int64_t>(taps) * c.in_channels;
  const int64_t out_pixel = out_pixel_elements();
  const bool correct_padding = !tap_weight_sum_.empty();

  WorkspaceCarver carver(workspace);
  const Scratch scratch = carve(carver, batch, in_h, in_w, threads_of(pool));

  // Copy the input into a frame of pad words once, so that gathering a tile
  // needs no bounds checks: every tap is a fixed offset from its pixel.
  const int ph = in_h + 2 * c.pad_h, pw = in_w + 2 * c.pad_w;
  const int64_t padded_image = static_cast<int64_t>(ph) * pw * in_words_;
  const uint64_t* frame = input;
  if (!frame_taps_.empty()) {
    build_grouped_frames(input, batch, in_h, in_w, scratch.frame, pool);
    frame = scratch.frame;
  } else if (scratch.frame != nullptr) {
    uint64_t* const padded = scratch.frame;
    // A memory-bound copy (a 58x58 frame of one word per pixel is 27 KB): split only when large,
    // as element-wise work is (each share then costs a wake-up and a wait of its own).
    const size_t frame_grain = element_grain_rows(static_cast<size_t>(pw) * static_cast<size_t>(in_words_) * 2);
    parallel_for(pool, static_cast<size_t>(batch) * ph, frame_grain, [&](size_t begin, size_t end) {
      for (size_t r = begin; r < end; ++r) {
        const int n = static_cast<int>(r / ph), y = static_cast<int>(r % ph);
        uint64_t* dst = padded + n * padded_image + static_cast<int64_t>(y) * pw * in_words_;
        const int iy = y - c.pad_h;
        const bool pad_row = iy < 0 || iy >= in_h;
        for (int x = 0; x < pw; ++x) {
          if (!pad_row && x == c.pad_w) {  // the row's real pixels are one contiguous run
            const uint64_t* src = input + (static_cast<int64_t>(n) * in_h + iy) * in_w * in_words_;
            std::copy(src, src + static_cast<int64_t>(in_w) * in_words_, dst + static_cast<int64_t>(x) * in_words_);
            x += in_w - 1;
            continue;
          }
          for (int w = 0; w < in_words_; ++w) dst[static_cast<int64_t>(x) * in_words_ + w] = pad_row_[w];
        }
      }
    });
    frame = padded;
  }
  // Word k = (tap, word) of every pixel sits at a fixed offset from the pixel; with tap grouping,
  // word k of its frame (frames follow each other, batch x padded_image words each).
  int64_t* const k_offset = scratch.k_offset;
  if (frame_taps_.empty()) {
    for (int ky = 0; ky < c.kernel_h; ++ky)
      for (int kx = 0; kx < c.kernel_w; ++kx)
        for (int w = 0; w < in_words_; ++w)
          k_offset[static_cast<size_t>((ky * c.kernel_w + kx) * in_words_ + w)] =
              (static_cast<int64_t>(ky) * pw + kx) * in_words_ + w;
  } else {
    for (size_t k = 0; k < grouped_words_.size(); ++k) {
      const GroupedWord& g = grouped_words_[k];
      k_offset[k] = static_cast<int64_t>(g.frame) * batch * padded_image + static_cast<int64_t>(g.ky) * pw + g.kx;
    }
  }

  // parallel_for makes at most threads() calls of the body (one per share): each takes the next slot.
  std::atomic<int> next_slot{0};
  parallel_for(pool, tasks, 1, [&](size_t begin, size_t end) {
    // This thread's padded-tap lists of one tile.
    int16_t* const padded_taps =
        correct_padding ? scratch.padded_taps + static_cast<size_t>(next_slot.fetch_add(1)) * padded_taps_stride()
                        : nullptr;
    int16_t padded_count[kBgemmMr] = {0};
    // Complete rows not yet handed to rows_done (a task covers every block when groups == 1).
    const bool per_tile_done = rows_done != nullptr && groups == 1;
    int64_t done_first = 0, done_count = 0;
    auto flush_done = [&] {
      if (done_count > 0) rows_done->fn(rows_done->state, done_first, done_count);
      done_count = 0;
    };

    for (size_t task = begin; task < end; ++task) {
      const int group = static_cast<int>(task % groups);
      const int64_t chunk = static_cast<int64_t>((task / groups) % static_cast<size_t>(chunks));
      const int n = static_cast<int>(task / (static_cast<size_t>(groups) * static_cast<size_t>(chunks)));
      const uint64_t* image = frame + n * padded_image;
      const int b0 = group * blocks_per_group, b1 = std::min(blocks_, b0 + blocks_per_group);
      const int64_t tile_begin = tiles * chunk / chunks;
      const int64_t tile_end = tiles * (chunk + 1) / chunks;
      const int64_t p_end = std::min(pixels, tile_end * kBgemmMr);
      for (int64_t p0 = tile_begin * kBgemmMr; p0 < p_end; p0 += kBgemmMr) {
        const int rows = static_cast<int>(std::min<int64_t>(kBgemmMr, p_end - p0));
        // Where each pixel's window starts in the framed input.
        const uint64_t* base[kBgemmMr];
        bool any_padded = false;
        int y = static_cast<int>(p0 / ow), x = static_cast<int>(p0 % ow);
        for (int m = 0; m < rows; ++m, ++x) {
          if (x == ow) x = 0, ++y;
          base[m] =
              image + (static_cast<int64_t>(y) * c.stride_h * pw + static_cast<int64_t>(x) * c.stride_w) * in_words_;
          padded_count[m] = 0;
          if (!correct_padding) continue;
          const int iy0 = y * c.stride_h - c.pad_h, ix0 = x * c.stride_w - c.pad_w;
          if (iy0 >= 0 && ix0 >= 0 && iy0 + c.kernel_h <= in_h && ix0 + c.kernel_w <= in_w) continue;
          int16_t count = 0;
          for (int ky = 0; ky < c.kernel_h; ++ky) {
            for (int kx = 0; kx < c.kernel_w; ++kx) {
              const int iy = iy0 + ky, ix = ix0 + kx;
              if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                padded_taps[static_cast<size_t>(m) * taps + count++] = static_cast<int16_t>(ky * c.kernel_w + kx);
            }
          }
          padded_count[m] = count;
          any_padded = true;
        }
        const int64_t out_first = (static_cast<int64_t>(n) * pixels + p0) * out_pixel;
        for (int b = b0; b < b1; ++b) {
          BgemmTileArgs a;
          a.pixel_base = base;
          a.k_offset = k_offset;
          a.k_words = k_words;
          a.weights = block_weights(b);
          a.weight_stride = block_lanes(b);
          a.rows = rows;
          a.k_bits = k_bits;
          a.tap_weight_sum =
              any_padded ? tap_weight_sum_.data() + static_cast<size_t>(b) * taps * kBconvBlock : nullptr;
          a.padded_taps = padded_taps;
          a.padded_count = padded_count;
          a.taps_stride = taps;
          a.epilogue = &epilogue_[b];
          a.kind = transform_kind_;
          a.pixel_scale = pixel_scale == nullptr ? nullptr : pixel_scale + n * pixels + p0;
          set_block_output(a, transform_kind_, output, out_first, b, out_pixel);
          (block_lanes(b) % 8 == 0 ? kernel : narrow_kernel)(a);
          if (transform_kind_ == OutputKind::kBits && blocks_ % 2 == 1 && b == blocks_ - 1) {
            // The last word's upper half has no block: its pad bits must be zero.
            uint32_t* upper = static_cast<uint32_t*>(a.output) + 1;
            for (int m = 0; m < rows; ++m) upper[m * a.out_pixel_stride] = 0;
          }
        }
        if (per_tile_done) {
          if (done_count == 0) done_first = static_cast<int64_t>(n) * pixels + p0;
          done_count += rows;
          if (done_count * c.out_channels >= kRowsDoneValues) flush_done();
        }
      }
      flush_done();  // the next task may start elsewhere
    }
  });
  // Channel groups split over threads: a row is complete only when every group has run.
  if (rows_done != nullptr && groups > 1) all_rows_done(*rows_done, batch * pixels, c.out_channels, pool);
}

}  // namespace xnor
