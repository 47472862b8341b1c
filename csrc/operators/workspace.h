// Scratch memory a kernel's run() takes from its caller, so that inference
// allocates nothing: the session places every op's workspace in its memory plan.
// A kernel lays its arrays out with a WorkspaceCarver twice, the same way: once
// without memory to size the block (workspace_bytes), once on the real block in run().
// Callers without a memory plan pass an AlignedBytes (operators/aligned_buffer.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

constexpr size_t kWorkspaceAlign = 64;

class WorkspaceCarver {
 public:
  // base: a kWorkspaceAlign-aligned block of at least bytes() bytes, or null to only count.
  explicit WorkspaceCarver(void* base = nullptr) : base_(static_cast<uint8_t*>(base)) {}

  // The next `count` elements of T, kWorkspaceAlign-aligned; null when only counting or count is 0.
  template <typename T>
  T* take(size_t count) {
    T* p = base_ != nullptr && count > 0 ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += (count * sizeof(T) + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
    return p;
  }
  size_t bytes() const { return used_; }

  // `count` rounded up to whole cache lines of T: the stride of per-thread slices, so that
  // two threads never write the same line.
  template <typename T>
  static size_t line_multiple(size_t count) {
    const size_t per_line = kWorkspaceAlign / sizeof(T);
    return (count + per_line - 1) / per_line * per_line;
  }

 private:
  uint8_t* base_;
  size_t used_ = 0;
};

}  // namespace xnor
