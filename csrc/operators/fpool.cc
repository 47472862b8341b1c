#include "operators/fpool.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "microkernels/dispatch.h"

namespace xnor {
namespace {

void run_pool(FloatPoolFn fn, const float* in, int batch, const FloatPoolGeometry& g, float* out, TaskRunner* pool,
              const RangeFn* rows_written) {
  const size_t in_image = static_cast<size_t>(g.in_h) * g.in_w * g.channels;
  const size_t out_image = static_cast<size_t>(g.out_h) * g.out_w * g.channels;
  const size_t rows = static_cast<size_t>(batch) * g.out_h;
  if (rows_written != nullptr) {  // one output row at a time, each handed on while in cache
    parallel_for(pool, rows, 1, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const size_t img = r / g.out_h;
        const int row = static_cast<int>(r % g.out_h);
        fn(in + img * in_image, g, row, row + 1, out + img * out_image);
        (*rows_written)(r, r + 1);
      }
    });
    return;
  }
  parallel_for(pool, rows, 1, [&](size_t b, size_t e) {
    size_t r = b;
    while (r < e) {  // one call per image for the rows of this share
      const size_t img = r / g.out_h;
      const int row0 = static_cast<int>(r % g.out_h);
      const int row1 = static_cast<int>(std::min<size_t>(e - img * g.out_h, g.out_h));
      fn(in + img * in_image, g, row0, row1, out + img * out_image);
      r = img * g.out_h + row1;
    }
  });
}

}  // namespace

namespace {

// aten's pooling_output_shape (dilation 1), for sizes the caller checked to be non-negative.
int pooled_size(int size, int k, int s, int p, bool ceil_mode) {
  int out = (size + 2 * p - k + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (ceil_mode && (out - 1) * s >= size + p) --out;
  return out;
}

}  // namespace

void float_pool_geometry(FloatPoolGeometry& g, const char* op, bool ceil_mode) {
  const std::string name(op);
  if (g.channels <= 0 || g.in_h <= 0 || g.in_w <= 0) {
    throw std::invalid_argument(name + ": input must have positive height, width and channels");
  }
  if (g.kernel_h <= 0 || g.kernel_w <= 0 || g.stride_h <= 0 || g.stride_w <= 0) {
    throw std::invalid_argument(name + ": kernel and stride must be positive, got kernel (" +
                                std::to_string(g.kernel_h) + ", " + std::to_string(g.kernel_w) + "), stride (" +
                                std::to_string(g.stride_h) + ", " + std::to_string(g.stride_w) + ")");
  }
  if (g.pad_h < 0 || g.pad_w < 0 || 2 * g.pad_h > g.kernel_h || 2 * g.pad_w > g.kernel_w) {
    throw std::invalid_argument(name + ": padding must be between 0 and half the kernel, got (" +
                                std::to_string(g.pad_h) + ", " + std::to_string(g.pad_w) + ")");
  }
  if (g.in_h + 2 * g.pad_h < g.kernel_h || g.in_w + 2 * g.pad_w < g.kernel_w) {
    throw std::invalid_argument(name + ": input " + std::to_string(g.in_h) + "x" + std::to_string(g.in_w) +
                                " is smaller than the kernel " + std::to_string(g.kernel_h) + "x" +
                                std::to_string(g.kernel_w));
  }
  g.out_h = pooled_size(g.in_h, g.kernel_h, g.stride_h, g.pad_h, ceil_mode);
  g.out_w = pooled_size(g.in_w, g.kernel_w, g.stride_w, g.pad_w, ceil_mode);
}

void float_maxpool2d(const float* in, int batch, const FloatPoolGeometry& g, float* out, TaskRunner* pool, Isa isa,
                     const RangeFn* rows_written) {
  run_pool(float_kernels(isa).maxpool, in, batch, g, out, pool, rows_written);
}

void float_avgpool2d(const float* in, int batch, const FloatPoolGeometry& g, float* out, TaskRunner* pool, Isa isa,
                     const RangeFn* rows_written) {
  run_pool(float_kernels(isa).avgpool, in, batch, g, out, pool, rows_written);
}

void float_global_avgpool(const float* in, size_t batch, size_t pixels, size_t channels, float* out, TaskRunner* pool,
                          Isa isa) {
  const FloatGlobalAvgPoolFn fn = float_kernels(isa).global_avgpool;
  constexpr size_t kBlock = 64;  // channels per task
  const size_t blocks = (channels + kBlock - 1) / kBlock;
  parallel_for(pool, batch * blocks, 1, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; ++t) {
      const size_t img = t / blocks, c0 = (t % blocks) * kBlock;
      fn(in + img * pixels * channels, pixels, channels, c0, std::min(channels, c0 + kBlock), out + img * channels);
    }
  });
}

}  // namespace xnor
