// Hand-off of complete output rows from an operator to the work fused after it (the session's
// chain of element-wise steps: residual add, PReLU, affine, sign), on the thread that wrote them.
#pragma once

#include <algorithm>
#include <cstdint>

#include "operators/parallel.h"

namespace xnor {

// Called by an operator with each run of output rows (pixels over all images, [first, first +
// count)) once every channel of them is written, on the thread that wrote them, while they are
// still in cache. Every row is handed over exactly once.
struct OutputRowsDone {
  void (*fn)(const void* state, int64_t first, int64_t count);
  const void* state;
};

// Output values a thread writes before it hands the rows over (16 KiB of floats: still in L1).
constexpr int64_t kRowsDoneValues = 4096;

// done over all `rows` rows, split over the pool: for an operator that cannot hand rows over as
// it completes them (channels split over threads, another engine).
inline void all_rows_done(const OutputRowsDone& done, int64_t rows, int64_t row_values, TaskRunner* pool) {
  const int64_t block = std::max<int64_t>(1, kRowsDoneValues / std::max<int64_t>(1, row_values));
  parallel_for(pool, static_cast<size_t>(rows), element_grain_rows(static_cast<size_t>(row_values)),
               [&](size_t b, size_t e) {
                 for (int64_t r = static_cast<int64_t>(b); r < static_cast<int64_t>(e); r += block) {
                   done.fn(done.state, r, std::min<int64_t>(block, static_cast<int64_t>(e) - r));
                 }
               });
}

}  // namespace xnor
