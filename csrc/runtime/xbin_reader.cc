#include "runtime/xbin_reader.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace xnor {
namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t le64(const uint8_t* p) { return uint64_t{le32(p)} | uint64_t{le32(p + 4)} << 32; }

constexpr uint8_t kMagic[8] = {'X', 'N', 'O', 'R', 'B', 'I', 'N', 0};
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 40;   // 1 TiB: anything bigger is not a model
constexpr uint64_t kMaxJsonBytes = uint64_t{64} << 20;  // 64 MiB of graph description

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

std::string printable(std::string_view bytes) {
  std::string out;
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrcTable[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

void XbinFile::fail(const std::string& what) const { throw XbinError(path_ + ": " + what); }

XbinFile::XbinFile(const std::string& path) : path_(path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) fail(std::string("cannot open: ") + std::strerror(errno));
  if (std::fseek(f.get(), 0, SEEK_END) != 0) fail("cannot seek (not a regular file?)");
  const long end = std::ftell(f.get());
  if (end < 0) fail("cannot determine the file size");
  size_ = static_cast<uint64_t>(end);
  std::rewind(f.get());
  // The header alone first: a file that is not an .xbin (or not this one) is refused
  // before its size in memory is allocated and read.
  uint8_t header[kXbinHeaderBytes] = {};
  if (size_ >= kXbinHeaderBytes && std::fread(header, 1, sizeof header, f.get()) != sizeof header) {
    fail("short read");
  }
  start(header);
  const size_t rest = static_cast<size_t>(size_) - sizeof header;
  if (std::fread(bytes_.get() + sizeof header, 1, rest, f.get()) != rest) fail("short read");
  validate();
}

XbinFile::XbinFile(const uint8_t* data, uint64_t size, std::string name) : path_(std::move(name)), size_(size) {
  start(data);
  const size_t rest = static_cast<size_t>(size_) - kXbinHeaderBytes;
  std::memcpy(bytes_.get() + kXbinHeaderBytes, data + kXbinHeaderBytes, rest);
  validate();
}

void XbinFile::start(const uint8_t* header) {
  if (size_ < kXbinHeaderBytes) {
    fail("file is " + std::to_string(size_) + " bytes, smaller than the " + std::to_string(kXbinHeaderBytes) +
         "-byte header (truncated or not an .xbin file)");
  }
  if (size_ > kMaxFileBytes) fail("file is larger than 1 TiB");
  check_header(header);
  const size_t alloc = (size_ + kXbinAlign - 1) / kXbinAlign * kXbinAlign;
  bytes_.reset(static_cast<uint8_t*>(::operator new(alloc, std::align_val_t{kXbinAlign})));
  std::memset(bytes_.get() + size_, 0, alloc - size_);
  std::memcpy(bytes_.get(), header, kXbinHeaderBytes);
}

void XbinFile::check_header(const uint8_t* b) {
  if (std::memcmp(b, kMagic, sizeof(kMagic)) != 0) fail("bad magic: not an .xbin file");
  version_ = le32(b + 8);
  if (version_ > kXbinVersion) {
    fail("format version " + std::to_string(version_) + " is newer than this xnorinfer supports (" +
         std::to_string(kXbinVersion) + ")");
  }
  if (version_ == 0) fail("format version 0 is invalid");
  if (crc32(b, 28) != le32(b + 28)) fail("header checksum mismatch (corrupted header)");
  for (size_t i = 32; i < kXbinHeaderBytes; ++i) {
    if (b[i] != 0) fail("reserved header byte " + std::to_string(i) + " is not zero (corrupted header)");
  }
  const uint64_t declared_size = le64(b + 16);
  if (declared_size != size_) {
    fail("header declares " + std::to_string(declared_size) + " bytes but the file has " + std::to_string(size_) +
         (declared_size > size_ ? " (truncated)" : " (trailing bytes)"));
  }
}

void XbinFile::validate() {
  const uint8_t* b = bytes_.get();
  check_header(b);
  const uint64_t count = le32(b + 12);
  if (count < 1) fail("no sections (the graph JSON section is required)");
  if (count > (size_ - kXbinHeaderBytes) / kXbinEntryBytes) {
    fail("section table of " + std::to_string(count) + " entries does not fit in the file");
  }
  const uint64_t table_end = kXbinHeaderBytes + count * kXbinEntryBytes;
  if (crc32(b + kXbinHeaderBytes, static_cast<size_t>(count * kXbinEntryBytes)) != le32(b + 24)) {
    fail("section table checksum mismatch (corrupted section table)");
  }
  sections_.resize(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* e = b + kXbinHeaderBytes + i * kXbinEntryBytes;
    XbinSection& s = sections_[static_cast<size_t>(i)];
    s.kind = le32(e);
    s.offset = le64(e + 8);
    s.size = le64(e + 16);
    const uint32_t crc = le32(e + 24);
    const char* name = reinterpret_cast<const char*>(e + 32);
    s.name.assign(name, strnlen(name, kXbinNameBytes));
    const std::string where = "section " + std::to_string(i) + " ('" + printable(s.name) + "')";
    if (s.kind != kXbinSectionJson && s.kind != kXbinSectionData)
      fail(where + ": unknown kind " + std::to_string(s.kind));
    if ((i == 0) != (s.kind == kXbinSectionJson)) fail(where + ": section 0, and only it, must be the graph JSON");
    if (s.offset % kXbinAlign != 0) fail(where + ": offset " + std::to_string(s.offset) + " is not 64-byte aligned");
    if (s.offset < table_end || s.offset > size_ || s.size > size_ - s.offset) {
      fail(where + ": bytes [" + std::to_string(s.offset) + ", +" + std::to_string(s.size) +
           ") lie outside the file's data area [" + std::to_string(table_end) + ", " + std::to_string(size_) + ")");
    }
    if (s.kind == kXbinSectionJson && (s.size == 0 || s.size > kMaxJsonBytes)) {
      fail(where + ": graph JSON size " + std::to_string(s.size) + " is out of range");
    }
    if (le32(e + 4) != 0 || le32(e + 28) != 0) fail(where + ": reserved fields are not zero");
    if (crc32(b + s.offset, static_cast<size_t>(s.size)) != crc) fail(where + ": checksum mismatch (corrupted data)");
  }
  // Empty sections hold no bytes, so they overlap nothing and end no padding run. (Sorted in
  // with the others, the overlap check depended on how the sort ordered equal offsets, and
  // this reader and xnorinfer/xbin.py disagreed on some files with over 16 sections.)
  std::vector<const XbinSection*> order;
  for (const XbinSection& s : sections_) {
    if (s.size) order.push_back(&s);
  }
  std::sort(order.begin(), order.end(),
            [](const XbinSection* a, const XbinSection* c) { return a->offset < c->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->offset + order[i - 1]->size > order[i]->offset) {
      fail("sections '" + printable(order[i - 1]->name) + "' and '" + printable(order[i]->name) + "' overlap");
    }
  }
  // No checksum covers the padding: every byte outside the header, table and sections must be zero.
  uint64_t pos = table_end;
  for (size_t i = 0; i <= order.size(); ++i) {
    const uint64_t end = i < order.size() ? order[i]->offset : size_;
    for (uint64_t p = pos; p < end; ++p) {
      if (b[p] != 0) fail("padding byte " + std::to_string(p) + " is not zero (corrupted file)");
    }
    if (i < order.size()) pos = order[i]->offset + order[i]->size;
  }
}

const XbinSection& XbinFile::section(size_t i) const {
  if (i >= sections_.size()) fail("section index " + std::to_string(i) + " out of range");
  return sections_[i];
}

std::string XbinFile::json() const {
  const XbinSection& s = section(0);
  return std::string(reinterpret_cast<const char*>(bytes_.get() + s.offset), static_cast<size_t>(s.size));
}

}  // namespace xnor
