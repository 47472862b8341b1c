// 64-byte aligned, move-only owned buffers: a zeroed float array (weight panels) and an
// uninitialised byte block (session arenas, workspaces for callers without a memory plan).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

namespace xnor {

class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(size_t n)
      : data_(n ? static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t{64})) : nullptr), size_(n) {
    if (n) std::memset(data_.get(), 0, n * sizeof(float));
  }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t n)
      : data_(n ? static_cast<uint8_t*>(::operator new(n, std::align_val_t{64})) : nullptr), size_(n) {}
  uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

}  // namespace xnor
