// Scratch memory a kernel's run() takes from its caller, so that inference
// allocates nothing: the session places every op's workspace in its memory plan.
// A kernel lays its arrays out with a WorkspaceCarver twice, the same way: once
// without memory to size the block (workspace_bytes), once on the real block in run().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace xnor {

constexpr size_t kWorkspaceAlign = 64;

class WorkspaceCarver {
 public:
  // base: a kWorkspaceAlign-aligned block of at least bytes() bytes, or null to only count.
  explicit WorkspaceCarver(void* base = nullptr) : base_(static_cast<uint8_t*>(base)) {}

  // The next `count` elements of T, kWorkspaceAlign-aligned; null when only counting.
  template <typename T>
  T* take(size_t count) {
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += (count * sizeof(T) + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
    return p;
  }
  size_t bytes() const { return used_; }

 private:
  uint8_t* base_;
  size_t used_ = 0;
};

// An owned workspace for callers without a memory plan (kernel tests through the bindings).
class OwnedWorkspace {
 public:
  explicit OwnedWorkspace(size_t bytes)
      : data_(bytes ? static_cast<uint8_t*>(::operator new(bytes, std::align_val_t{kWorkspaceAlign})) : nullptr) {}
  void* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t{kWorkspaceAlign}); }
  };
  std::unique_ptr<uint8_t, Free> data_;
};

}  // namespace xnor
