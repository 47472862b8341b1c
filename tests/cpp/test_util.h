// Helpers for the C++ tests: the shipped model's bytes and a small .xbin assembler (the layout
// of xnorinfer/xbin.py `assemble`), so that tests can build damaged or hand-made models.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "runtime/xbin_reader.h"

namespace xnor::test {

inline std::string source_path(const std::string& rel) { return std::string(XNORINFER_SOURCE_DIR) + "/" + rel; }
inline std::string default_model_path() { return source_path("xnorinfer/assets/default.xbin"); }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Section {
  uint32_t kind;
  std::string name;
  std::vector<uint8_t> data;
};

inline void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put64(uint8_t* p, uint64_t v) {
  put32(p, static_cast<uint32_t>(v));
  put32(p + 4, static_cast<uint32_t>(v >> 32));
}
inline uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
inline uint64_t align64(uint64_t n) { return (n + 63) / 64 * 64; }

// The container bytes of these sections (valid checksums).
inline std::vector<uint8_t> assemble(const std::vector<Section>& sections) {
  const uint64_t table_end = kXbinHeaderBytes + kXbinEntryBytes * sections.size();
  std::vector<uint8_t> out(table_end, 0);
  uint64_t offset = align64(table_end);
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    uint8_t* e = out.data() + kXbinHeaderBytes + i * kXbinEntryBytes;
    put32(e, s.kind);
    put64(e + 8, offset);
    put64(e + 16, s.data.size());
    put32(e + 24, crc32(s.data.data(), s.data.size()));
    std::memcpy(e + 32, s.name.data(), std::min<size_t>(s.name.size(), 31));
    out.resize(offset, 0);
    out.insert(out.end(), s.data.begin(), s.data.end());
    offset = align64(out.size());
  }
  std::memcpy(out.data(), "XNORBIN", 8);
  put32(out.data() + 8, kXbinVersion);
  put32(out.data() + 12, static_cast<uint32_t>(sections.size()));
  put64(out.data() + 16, out.size());
  put32(out.data() + 24, crc32(out.data() + kXbinHeaderBytes, table_end - kXbinHeaderBytes));
  put32(out.data() + 28, crc32(out.data(), 28));
  return out;
}

// The sections of a valid file.
inline std::vector<Section> sections_of(const std::vector<uint8_t>& bytes) {
  const XbinFile f(bytes.data(), bytes.size(), "sections_of");
  std::vector<Section> out;
  for (size_t i = 0; i < f.section_count(); ++i) {
    const XbinSection& s = f.section(i);
    out.push_back({s.kind, s.name, std::vector<uint8_t>(f.section_data(i), f.section_data(i) + s.size)});
  }
  return out;
}

inline std::string text_of(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
inline std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// `bytes` with the graph JSON replaced by `json` (checksums recomputed).
inline std::vector<uint8_t> with_json(const std::vector<uint8_t>& bytes, const std::string& json) {
  std::vector<Section> s = sections_of(bytes);
  s[0].data = bytes_of(json);
  return assemble(s);
}

// `text` with the first occurrence of `from` replaced by `to` (which must be there).
inline std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("replace_once: '" + from + "' not found");
  return text.replace(at, from.size(), to);
}

}  // namespace xnor::test
