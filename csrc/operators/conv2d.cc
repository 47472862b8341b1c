#include "operators/conv2d.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "microkernels/dispatch.h"
#include "operators/aligned_buffer.h"

namespace xnor {
namespace {

const FloatConvConfig& checked(const FloatConvConfig& c) {
  if (c.in_channels <= 0 || c.out_channels <= 0 || c.kernel_h <= 0 || c.kernel_w <= 0 || c.stride_h <= 0 ||
      c.stride_w <= 0 || c.pad_h < 0 || c.pad_w < 0 || c.dilation_h <= 0 || c.dilation_w <= 0) {
    throw std::invalid_argument("FloatConv2d: channels, kernel, stride and dilation must be positive and padding >= 0");
  }
  if (c.groups <= 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0) {
    throw std::invalid_argument("FloatConv2d: groups must divide in_channels and out_channels");
  }
  return c;
}

// Output pixels per task tile: a multiple of 12 (the AVX-512 tile height, and
// twice the AVX2 one) whose im2col rows take about 32 KiB.
size_t tile_rows(size_t k) {
  size_t rows = (32768 / sizeof(float)) / k;
  rows = rows / 12 * 12;
  return std::min<size_t>(std::max<size_t>(rows, 12), 192);
}

// im2col of one pixel whose window lies inside the image (no padding, one group, no horizontal
// dilation): `rows` runs of n floats, `src_stride` floats apart in the input, `n` apart in dst.
// Straight-line moves for the run lengths of the usual stems (a kernel row of 3 channels: 7x7 ->
// 21 floats, 5x5 -> 15, 3x3 -> 9), else a loop: a library call per run cost more than the copy.
template <size_t N>
inline void copy_window_fixed(float* __restrict dst, const float* __restrict src, size_t src_stride, int rows) {
  for (int r = 0; r < rows; ++r) std::memcpy(dst + r * N, src + r * src_stride, N * sizeof(float));
}
inline void copy_window(float* __restrict dst, const float* __restrict src, size_t src_stride, int rows, size_t n) {
  switch (n) {
    case 9: return copy_window_fixed<9>(dst, src, src_stride, rows);
    case 15: return copy_window_fixed<15>(dst, src, src_stride, rows);
    case 21: return copy_window_fixed<21>(dst, src, src_stride, rows);
    default:
      for (int r = 0; r < rows; ++r) std::copy(src + r * src_stride, src + r * src_stride + n, dst + r * n);
  }
}

}  // namespace

FloatConv2d::FloatConv2d(const FloatConvConfig& config, const float* weights, const float* bias)
    : config_(checked(config)),
      cin_g_(static_cast<size_t>(config.in_channels / config.groups)),
      cout_g_(static_cast<size_t>(config.out_channels / config.groups)),
      k_(static_cast<size_t>(config.kernel_h) * config.kernel_w * cin_g_) {
  weights_.reserve(static_cast<size_t>(config.groups));
  for (size_t g = 0; g < static_cast<size_t>(config.groups); ++g) {
    weights_.emplace_back(cout_g_, k_, weights + g * cout_g_ * k_, bias == nullptr ? nullptr : bias + g * cout_g_);
  }
}

size_t FloatConv2d::held_bytes() const {
  size_t bytes = 0;
  for (const PackedSgemmWeights& w : weights_) bytes += w.panels() * (w.k() + 1) * kSgemmPanelWidth * sizeof(float);
  return bytes;
}

bool FloatConv2d::is_gemm() const {
  const FloatConvConfig& c = config_;
  return c.kernel_h == 1 && c.kernel_w == 1 && c.stride_h == 1 && c.stride_w == 1 && c.pad_h == 0 && c.pad_w == 0;
}

bool FloatConv2d::is_strided_1x1() const {
  const FloatConvConfig& c = config_;
  return c.kernel_h == 1 && c.kernel_w == 1 && c.pad_h == 0 && c.pad_w == 0 && !is_gemm();
}

size_t FloatConv2d::workspace_bytes(int threads) const {
  WorkspaceCarver carver;
  const size_t tile_stride = WorkspaceCarver::line_multiple<float>(tile_rows(k_) * k_);
  carver.take<float>(is_gemm() || is_strided_1x1() ? 0 : static_cast<size_t>(std::max(threads, 1)) * tile_stride);
  return carver.bytes();
}

void FloatConv2d::run(const float* input, int batch, int in_h, int in_w, float* output, TaskRunner* pool,
                      Isa isa) const {
  const AlignedBytes workspace(workspace_bytes(threads_of(pool)));
  run(input, batch, in_h, in_w, output, pool, isa, workspace.data());
}

void FloatConv2d::run(const float* input, int batch, int in_h, int in_w, float* output, TaskRunner* pool, Isa isa,
                      void* workspace, const GemmEpilogue* epilogue, const OutputRowsDone* rows_done) const {
  const FloatConvConfig& c = config_;
  const int oh = out_h(in_h), ow = out_w(in_w);
  if (batch <= 0 || in_h <= 0 || in_w <= 0 || oh <= 0 || ow <= 0) {
    throw std::invalid_argument("FloatConv2d: input " + std::to_string(in_h) + "x" + std::to_string(in_w) + " (batch " +
                                std::to_string(batch) + ") gives an empty output for kernel " +
                                std::to_string(c.kernel_h) + "x" + std::to_string(c.kernel_w));
  }
  const FloatKernels& kern = float_kernels(isa);
  const size_t pixels = static_cast<size_t>(batch) * oh * ow;
  const size_t cout = static_cast<size_t>(c.out_channels);
  const size_t cin = static_cast<size_t>(c.in_channels);
  const size_t groups = weights_.size(), panels = weights_[0].panels();
  const size_t jobs = groups * panels;  // (group, panel) pairs of one tile of rows
  // Group g reads input channels [g * cin_g, +cin_g) and writes output channels [g * cout_g, +cout_g).
  // `in_place`: a holds every input channel (add the group's offset); else a is the group's im2col tile.
  auto run_job = [&](size_t job, size_t m, const float* a, size_t lda, bool in_place, float* out_rows) {
    const size_t g = job / panels, p = job % panels;
    weights_[g].run_panel(kern, p, m, a + (in_place ? g * cin_g_ : 0), lda, out_rows + g * cout_g_, cout, c.relu);
  };
  // The 1x1 paths below are GEMMs over output pixels: a share is a range of whole output pixels
  // (rows), cut evenly, and runs every (group, panel) job on them, so that (a) the split is the
  // pixel split of the op that wrote the input (every op splits NHWC tensors by pixel): a thread
  // reads what its own core just wrote; (b) the epilogue (a fused affine) gets whole rows, one call
  // per tile. The least rows worth a share: about kElementGrain values of work (kFloatMacsPerValue
  // multiply-adds per value), so a 7x7 layer of 256 -> 512 channels still splits.
  const size_t share_grain = element_grain_rows(std::max<size_t>(1, cin * cout / 8));
  // Rows [r, r + m) of every job, A rows `lda` floats apart from `a`, then their epilogue.
  auto run_rows = [&](size_t r, size_t m, const float* a, size_t lda) {
    for (size_t job = 0; job < jobs; ++job) run_job(job, m, a, lda, true, output + r * cout);
    if (epilogue != nullptr) (*epilogue)(r, m, 0, cout);
    if (rows_done != nullptr) rows_done->fn(rows_done->state, static_cast<int64_t>(r), static_cast<int64_t>(m));
  };

  // A 1x1 stride-1 unpadded convolution is a plain GEMM on the input rows, in tiles of at most
  // kGemmTileRows rows (A stays in L1/L2 across the panels); a share's tiles are of equal size.
  if (is_gemm()) {
    constexpr size_t kGemmTileRows = 96;
    parallel_for(pool, pixels, share_grain, [&](size_t b, size_t e) {
      const size_t tiles = (e - b + kGemmTileRows - 1) / kGemmTileRows;
      const size_t rows = (e - b + tiles - 1) / tiles;
      for (size_t r0 = b; r0 < e; r0 += rows) run_rows(r0, std::min(rows, e - r0), input + r0 * cin, cin);
    });
    return;
  }

  // A strided 1x1 unpadded convolution: output row y reads input row y * stride_h at every
  // stride_w-th pixel, i.e. a GEMM whose A rows are stride_w * cin floats apart (no copy). Shares
  // are ranges of whole output image rows.
  if (is_strided_1x1()) {
    const size_t out_rows = static_cast<size_t>(batch) * oh, uow = static_cast<size_t>(ow);
    const size_t lda = static_cast<size_t>(c.stride_w) * cin;
    parallel_for(pool, out_rows, std::max<size_t>(1, share_grain / uow), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const size_t img = r / static_cast<size_t>(oh), y = r % static_cast<size_t>(oh);
        run_rows(r * uow, uow, input + ((img * static_cast<size_t>(in_h) + y * c.stride_h) * in_w) * cin, lda);
      }
    });
    return;
  }

  const size_t rows = tile_rows(k_);
  const size_t tiles = (pixels + rows - 1) / rows;
  const size_t out_plane = static_cast<size_t>(oh) * ow;
  const size_t row_floats = static_cast<size_t>(c.kernel_w) * cin_g_;  // one kernel row of one pixel
  WorkspaceCarver carver(workspace);
  const size_t tile_stride = WorkspaceCarver::line_multiple<float>(rows * k_);
  float* const tiles_scratch = carver.take<float>(static_cast<size_t>(threads_of(pool)) * tile_stride);
  // parallel_for makes at most threads() calls of the body (one per share): each takes the next tile.
  // Tasks are (tile, group) pairs: the im2col of a group's channels, then its panels.
  std::atomic<int> next_slot{0};
  parallel_for(pool, tiles * groups, 1, [&](size_t b, size_t e) {
    float* const a = tiles_scratch + static_cast<size_t>(next_slot.fetch_add(1)) * tile_stride;
    for (size_t task = b; task < e; ++task) {
      const size_t t = task / groups, g = task % groups;
      const size_t r0 = t * rows, m = std::min(rows, pixels - r0);
      const size_t ch0 = g * cin_g_;
      // im2col: row r = output pixel r0 + r, columns (kh, kw, ci) as in OHWI, ci of group g. The
      // pixel's position steps along (no divisions per pixel); a window inside the image is
      // copy_window's plain runs (the stem's im2col: 0.76 -> 0.33 ms on this machine).
      size_t img = r0 / out_plane;
      int y = static_cast<int>((r0 % out_plane) / ow), x = static_cast<int>((r0 % out_plane) % ow);
      for (size_t r = 0; r < m; ++r) {
        const int iy0 = y * c.stride_h - c.pad_h, ix0 = x * c.stride_w - c.pad_w;
        const int kx_lo = std::max(0, -ix0), kx_hi = std::min(c.kernel_w, in_w - ix0);
        const float* src_img = input + img * static_cast<size_t>(in_h) * in_w * cin + ch0;
        float* dst = a + r * k_;
        if (groups == 1 && c.dilation_w == 1 && kx_lo == 0 && kx_hi == c.kernel_w && iy0 >= 0 &&
            iy0 + (c.kernel_h - 1) * c.dilation_h < in_h) {  // inside the image: c.kernel_h plain runs
          copy_window(dst, src_img + (static_cast<size_t>(iy0) * in_w + ix0) * cin,
                      static_cast<size_t>(c.dilation_h) * in_w * cin, c.kernel_h, row_floats);
        } else {
          for (int ky = 0; ky < c.kernel_h; ++ky, dst += row_floats) {
            const int iy = iy0 + ky * c.dilation_h;
            if ((c.dilation_w != 1 || groups > 1) && iy >= 0 && iy < in_h) {  // one pixel's channels per tap
              for (int kx = 0; kx < c.kernel_w; ++kx) {
                const int ix = ix0 + kx * c.dilation_w;
                float* d = dst + static_cast<size_t>(kx) * cin_g_;
                if (ix < 0 || ix >= in_w) {
                  std::fill(d, d + cin_g_, 0.0f);
                } else {
                  const float* from = src_img + (static_cast<size_t>(iy) * in_w + ix) * cin;
                  std::copy(from, from + cin_g_, d);
                }
              }
              continue;
            }
            if (iy < 0 || iy >= in_h || kx_lo >= kx_hi) {
              std::fill(dst, dst + row_floats, 0.0f);
              continue;
            }
            const size_t lead = static_cast<size_t>(kx_lo) * cin;
            const size_t body = static_cast<size_t>(kx_hi - kx_lo) * cin;
            std::fill(dst, dst + lead, 0.0f);
            const float* from = src_img + (static_cast<size_t>(iy) * in_w + (ix0 + kx_lo)) * cin;
            std::copy(from, from + body, dst + lead);
            std::fill(dst + lead + body, dst + row_floats, 0.0f);
          }
        }
        if (++x == ow) {
          x = 0;
          if (++y == oh) y = 0, ++img;
        }
      }
      for (size_t p = 0; p < panels; ++p) run_job(g * panels + p, m, a, k_, false, output + r0 * cout);
      if (epilogue != nullptr) (*epilogue)(r0, m, g* cout_g_, cout_g_);
      // One group's task writes every channel of its rows: they are complete.
      if (rows_done != nullptr && groups == 1) {
        rows_done->fn(rows_done->state, static_cast<int64_t>(r0), static_cast<int64_t>(m));
      }
    }
  });
  if (rows_done != nullptr && groups > 1) all_rows_done(*rows_done, static_cast<int64_t>(pixels), c.out_channels, pool);
}

namespace {

const FloatConvConfig& checked_depthwise(const FloatConvConfig& c) {
  checked(c);
  if (c.in_channels != c.out_channels) {
    throw std::invalid_argument("FloatDepthwiseConv2d: in_channels must equal out_channels");
  }
  return c;
}

int64_t depthwise_stride(int64_t channels) {
  return (channels + kDepthwiseChannelAlign - 1) / kDepthwiseChannelAlign * kDepthwiseChannelAlign;
}

}  // namespace

FloatDepthwiseConv2d::FloatDepthwiseConv2d(const FloatConvConfig& config, const float* weights, const float* bias)
    : config_(checked_depthwise(config)),
      w_stride_(depthwise_stride(config.in_channels)),
      weights_(static_cast<size_t>(int64_t{config.kernel_h} * config.kernel_w * w_stride_)),
      bias_(static_cast<size_t>(w_stride_)) {
  const int64_t channels = config.in_channels, taps = int64_t{config.kernel_h} * config.kernel_w;
  for (int64_t ch = 0; ch < channels; ++ch) {
    for (int64_t t = 0; t < taps; ++t) weights_.data()[t * w_stride_ + ch] = weights[ch * taps + t];
    if (bias != nullptr) bias_.data()[ch] = bias[ch];
  }
}

void FloatDepthwiseConv2d::run(const float* input, int64_t batch, int64_t in_h, int64_t in_w, float* output,
                               TaskRunner* pool, Isa isa) const {
  const FloatConvConfig& c = config_;
  const int oh = FloatConv2d::out_size(static_cast<int>(in_h), c.kernel_h, c.stride_h, c.pad_h, c.dilation_h);
  const int ow = FloatConv2d::out_size(static_cast<int>(in_w), c.kernel_w, c.stride_w, c.pad_w, c.dilation_w);
  if (batch <= 0 || in_h <= 0 || in_w <= 0 || oh <= 0 || ow <= 0) {
    throw std::invalid_argument("FloatDepthwiseConv2d: input " + std::to_string(in_h) + "x" + std::to_string(in_w) +
                                " (batch " + std::to_string(batch) + ") gives an empty output for kernel " +
                                std::to_string(c.kernel_h) + "x" + std::to_string(c.kernel_w));
  }
  const DepthwiseConvFn fn = float_conv_kernels(isa).depthwise;
  DepthwiseGeometry g{};
  g.in_h = in_h;
  g.in_w = in_w;
  g.channels = c.in_channels;
  g.out_h = oh;
  g.out_w = ow;
  g.kernel_h = c.kernel_h;
  g.kernel_w = c.kernel_w;
  g.stride_h = c.stride_h;
  g.stride_w = c.stride_w;
  g.pad_h = c.pad_h;
  g.pad_w = c.pad_w;
  g.dilation_h = c.dilation_h;
  g.dilation_w = c.dilation_w;
  g.w_stride = w_stride_;
  g.relu = c.relu;
  const int64_t in_image = in_h * in_w * g.channels, out_image = int64_t{oh} * ow * g.channels;
  // Rows of all images; a task gets about kElementGrain output values (memory-bound work).
  const size_t rows = static_cast<size_t>(batch) * static_cast<size_t>(oh);
  const size_t grain = element_grain_rows(static_cast<size_t>(ow) * static_cast<size_t>(g.channels));
  parallel_for(pool, rows, grain, [&](size_t b, size_t e) {
    for (size_t r = b; r < e;) {
      const int64_t img = static_cast<int64_t>(r) / oh, y0 = static_cast<int64_t>(r) % oh;
      const int64_t y1 = std::min<int64_t>(oh, y0 + static_cast<int64_t>(e - r));
      fn(input + img * in_image, weights_.data(), bias_.data(), g, y0, y1, output + img * out_image);
      r += static_cast<size_t>(y1 - y0);
    }
  });
}

}  // namespace xnor
