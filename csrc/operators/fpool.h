// Float pooling operators on NHWC tensors: max-pool (padding ignored, like
// PyTorch's -inf), average pool (count_include_pad as PyTorch), and global
// average pool (adaptive average pool to 1x1). Work is split over output
// rows (or images x channel blocks); results do not depend on the ISA path or
// the thread count.
#pragma once

#include <cstddef>

#include "microkernels/float_kernels.h"
#include "microkernels/isa.h"
#include "operators/parallel.h"

namespace xnor {

// Fills out_h/out_w (PyTorch's floor mode, or with `ceil_mode` its ceil mode:
// the last window must start inside the input or the left padding) and checks
// the geometry: kernel and stride positive, 0 <= padding <= kernel / 2,
// non-empty output. Throws std::invalid_argument naming `op` otherwise. The
// kernels clip every window to the padded input, as PyTorch does.
void float_pool_geometry(FloatPoolGeometry& g, const char* op, bool ceil_mode = false);

// in: [batch][in_h][in_w][channels]; out: [batch][out_h][out_w][channels]. With `rows_written`,
// output rows (of batch * out_h) are computed one at a time and each is handed to it, on the
// thread that wrote it, right after (a fused consumer, e.g. a sign, reads it from cache).
void float_maxpool2d(const float* in, int batch, const FloatPoolGeometry& g, float* out, TaskRunner* pool, Isa isa,
                     const RangeFn* rows_written = nullptr);
void float_avgpool2d(const float* in, int batch, const FloatPoolGeometry& g, float* out, TaskRunner* pool, Isa isa,
                     const RangeFn* rows_written = nullptr);

// in: [batch][pixels][channels]; out: [batch][channels].
void float_global_avgpool(const float* in, size_t batch, size_t pixels, size_t channels, float* out, TaskRunner* pool,
                          Isa isa);

}  // namespace xnor
