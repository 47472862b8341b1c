// Run-time tensor shapes and storage sizes: rank 1 to kMaxRank, row-major, the last axis the
// channels (images are NHWC, features (N, F)); float32 values or bit-packed channels (uint64
// words along the last axis). Axis 0 is the batch unless the graph runs per image (graph.h).
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace xnor {

enum class DType { kF32, kBits };

constexpr int64_t kMaxDim = int64_t{1} << 30;          // any one dimension
constexpr int64_t kMaxTensorBytes = int64_t{1} << 38;  // 256 GiB: any one activation
constexpr int64_t kMaxImagePixels = INT32_MAX;         // H x W of one image: kernels index pixels with int

constexpr int kMaxRank = 6;

struct Shape {
  int rank = 0;
  int64_t d[kMaxRank] = {0, 0, 0, 0, 0, 0};

  static Shape nhwc(int64_t n, int64_t h, int64_t w, int64_t c) { return Shape{4, {n, h, w, c}}; }
  static Shape nf(int64_t n, int64_t f) { return Shape{2, {n, f}}; }
  int64_t channels() const { return d[rank - 1]; }
  int64_t rows() const {
    int64_t r = 1;
    for (int i = 0; i + 1 < rank; ++i) r *= d[i];
    return r;
  }
  int64_t elements() const { return rows() * channels(); }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + ")";
  }
};

inline int64_t words_of(int64_t channels) { return (channels + 63) / 64; }

// Values per row in storage: channels (f32) or words (bits).
inline int64_t row_elements(const Shape& s, DType t) {
  return t == DType::kF32 ? s.channels() : words_of(s.channels());
}

// Checks every dimension is in [1, kMaxDim], an image's H x W is at most
// kMaxImagePixels and the storage is below kMaxTensorBytes (all in 64 bits);
// returns the storage bytes. Throws std::invalid_argument.
inline int64_t checked_bytes(const Shape& s, DType t, const std::string& what) {
  if (s.rank < 1 || s.rank > kMaxRank) {
    throw std::invalid_argument(what + ": rank must be 1 to " + std::to_string(kMaxRank));
  }
  for (int i = 0; i < s.rank; ++i) {
    if (s.d[i] < 1 || s.d[i] > kMaxDim) {
      throw std::invalid_argument(what + ": shape " + s.str() + " has an empty or oversized dimension");
    }
  }
  if (s.rank == 4 && s.d[1] * s.d[2] > kMaxImagePixels) {
    throw std::invalid_argument(what + ": shape " + s.str() + " is too large (more than 2^31 - 1 pixels per image)");
  }
  int64_t bytes = row_elements(s, t) * (t == DType::kF32 ? 4 : 8);
  for (int i = 0; i + 1 < s.rank; ++i) {
    if (bytes > kMaxTensorBytes / s.d[i]) throw std::invalid_argument(what + ": shape " + s.str() + " is too large");
    bytes *= s.d[i];
  }
  return bytes;
}

}  // namespace xnor
