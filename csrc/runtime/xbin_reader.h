// The .xbin container reader (docs/xbin-format.md): checks the 64-byte header
// (so that a file that is not a model is never read whole), reads the file (or
// copies a model already in memory) into one 64-byte aligned buffer and
// validates the binary layer before anything
// uses it: magic, version, header and table checksums, section bounds,
// alignment, overlaps and per-section CRC-32. The JSON graph section is
// parsed and checked by csrc/runtime/model.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xnor {

// Any malformed, truncated or hostile file. The message names the file.
class XbinError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr uint32_t kXbinVersion = 1;
constexpr size_t kXbinHeaderBytes = 64;
constexpr size_t kXbinEntryBytes = 64;
constexpr size_t kXbinAlign = 64;
constexpr size_t kXbinNameBytes = 32;
constexpr uint32_t kXbinSectionJson = 1;
constexpr uint32_t kXbinSectionData = 2;

// File bytes (a section name, a tensor or op name) as a message quotes them. A message must stay
// one line of valid UTF-8 (the CLI prints one line; pybind11 decodes it into a Python str, and fails
// on invalid UTF-8), so bytes outside printable ASCII, and backslashes, are written as \xNN.
std::string printable(std::string_view bytes);

// zlib-compatible CRC-32 (polynomial 0xEDB88320), continuing from `crc`.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

struct XbinSection {
  uint32_t kind = 0;
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;
};

class XbinFile {
 public:
  // Reads and validates `path`; throws XbinError naming the file and the problem.
  explicit XbinFile(const std::string& path);
  // Validates a copy of the `size` bytes at `data` (a model already in memory, no
  // temp file); `name` stands for the file in messages. Same checks as the path.
  XbinFile(const uint8_t* data, uint64_t size, std::string name);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint32_t version() const { return version_; }
  size_t section_count() const { return sections_.size(); }
  // i < section_count(); throws XbinError otherwise.
  const XbinSection& section(size_t i) const;
  // The bytes of section i (64-byte aligned; valid while this object lives).
  const uint8_t* section_data(size_t i) const { return bytes_.get() + section(i).offset; }
  // The graph JSON text (section 0).
  std::string json() const;

 private:
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t{kXbinAlign}); }
  };
  [[noreturn]] void fail(const std::string& what) const;
  // Shared by both constructors once size_ is known: the size limits, then the header
  // (the first 64 bytes, read alone), then the aligned buffer with the header copied in.
  void start(const uint8_t* header);
  // Magic, version, header checksum, reserved bytes and the declared size (sets version_).
  void check_header(const uint8_t* header);
  void validate();

  std::string path_;
  std::unique_ptr<uint8_t, Free> bytes_;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  std::vector<XbinSection> sections_;
};

}  // namespace xnor
