// libFuzzer target for the C++ .xbin loader: the container reader
// (csrc/runtime/xbin_reader.cc), the JSON reader (csrc/runtime/json.cc) and the
// graph checks and build (csrc/runtime/model.cc, graph.cc, the node factory).
// Arbitrary bytes go to XbinFile's in-memory constructor, which must either accept
// them, with every section inside the file, aligned and disjoint, or throw
// XbinError; an accepted container goes on to Model::load, which must build the
// model or throw XbinError. Bytes that are not an .xbin (no magic) also go to the
// JSON reader alone, whose output must read back to itself. Anything else (a
// sanitizer report, another exception, a broken invariant) is a crash. Built and
// run by tools/fuzz_loader.sh.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/model.h"
#include "runtime/xbin_reader.h"

namespace {

uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t get64(const uint8_t* p) { return uint64_t{get32(p)} | uint64_t{get32(p + 4)} << 32; }
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  put32(p, static_cast<uint32_t>(v));
  put32(p + 4, static_cast<uint32_t>(v >> 32));
}

// Recomputes what random mutations almost always break (section CRCs, table and header
// checksums, declared size), so that mutants reach the checks behind them: bounds,
// alignment, overlaps, padding. Mirrors the resealing of tools/fuzz_xbin.py.
void reseal(uint8_t* d, size_t n) {
  using xnor::kXbinEntryBytes;
  using xnor::kXbinHeaderBytes;
  if (n < kXbinHeaderBytes) return;
  const uint64_t count = get32(d + 12);
  const uint64_t fit = (n - kXbinHeaderBytes) / kXbinEntryBytes;
  for (uint64_t i = 0; i < std::min(count, fit); ++i) {
    uint8_t* e = d + kXbinHeaderBytes + i * kXbinEntryBytes;
    const uint64_t off = get64(e + 8), size = get64(e + 16);
    if (off <= n && size <= n - off) put32(e + 24, xnor::crc32(d + off, static_cast<size_t>(size)));
  }
  if (count <= fit) put32(d + 24, xnor::crc32(d + kXbinHeaderBytes, static_cast<size_t>(count * kXbinEntryBytes)));
  put64(d + 16, n);
  put32(d + 28, xnor::crc32(d, 28));
}

// An accepted file must satisfy what the runtime relies on; a violation is a reader bug.
void check_accepted(const xnor::XbinFile& f, uint64_t size) {
  const uint64_t table_end = xnor::kXbinHeaderBytes + f.section_count() * xnor::kXbinEntryBytes;
  if (f.file_size() != size || f.section_count() < 1 || table_end > size) std::abort();
  std::vector<const xnor::XbinSection*> order;
  for (size_t i = 0; i < f.section_count(); ++i) {
    const xnor::XbinSection& s = f.section(i);
    if ((i == 0) != (s.kind == xnor::kXbinSectionJson)) std::abort();
    if (s.offset % xnor::kXbinAlign != 0 || s.offset < table_end || s.offset > size || s.size > size - s.offset) {
      std::abort();
    }
    if (reinterpret_cast<uintptr_t>(f.section_data(i)) % xnor::kXbinAlign != 0) std::abort();
    // Touch every byte so that AddressSanitizer checks the section lies in the buffer.
    volatile uint32_t crc = xnor::crc32(f.section_data(i), static_cast<size_t>(s.size));
    (void)crc;
    if (s.size) order.push_back(&s);  // an empty section holds no bytes, so overlaps nothing
  }
  std::sort(order.begin(), order.end(),
            [](const xnor::XbinSection* a, const xnor::XbinSection* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->offset + order[i - 1]->size > order[i]->offset) std::abort();
  }
  if (f.json().size() != f.section(0).size) std::abort();
  try {
    f.section(f.section_count());
    std::abort();  // an index out of range must throw
  } catch (const xnor::XbinError&) {
  }
}

// A refusal's message becomes a Python str (pybind11 decodes it as UTF-8) and one CLI line:
// no control bytes, valid UTF-8. File bytes that are not UTF-8 are quoted escaped (\xNN).
void check_message(const char* what) {
  for (const char* p = what; *p; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c == 0x7f) std::abort();
  }
  try {
    xnor::json::parse(xnor::json::quote(what));  // the JSON reader checks UTF-8
  } catch (const xnor::json::ParseError&) {
    std::abort();
  }
}

// The JSON reader on its own: a document it accepts must print and read back unchanged.
void fuzz_json(const uint8_t* data, size_t size) {
  try {
    const xnor::json::Value v = xnor::json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
    const std::string text = v.dump();
    if (xnor::json::parse(text).dump() != text) std::abort();
  } catch (const xnor::json::ParseError& e) {
    check_message(e.what());
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if (seed % 4 != 0) reseal(data, size);  // 1 in 4 mutants keeps its broken checksums
  return size;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8 || std::memcmp(data, "XNORBIN", 8) != 0) fuzz_json(data, size);
  std::shared_ptr<const xnor::XbinFile> file;
  try {
    file = std::make_shared<const xnor::XbinFile>(data, size, "fuzz-input");
    check_accepted(*file, size);
  } catch (const xnor::XbinError& e) {
    // Refused: the expected outcome for almost every input. Container messages quote section
    // names, which are any bytes: those must come out escaped, the message printable ASCII.
    for (const char* p = e.what(); *p; ++p) {
      if (*p < 0x20 || *p > 0x7e) std::abort();
    }
    return 0;
  }
  try {
    const std::shared_ptr<const xnor::Model> model = xnor::Model::load(file);
    // What the runtime relies on in an accepted model.
    const xnor::Graph& g = *model->graph();
    if (g.steps().size() != model->desc().ops.size() || g.outputs().empty()) std::abort();
    if (g.inputs().empty()) std::abort();
    // Image preprocessing describes a 4-D first input only (none for another rank).
    const xnor::Shape in = g.input_nchw();
    if (model->input_spec().channels != (in.rank == 4 ? in.d[1] : 0)) std::abort();
  } catch (const xnor::XbinError& e) {
    check_message(e.what());
  }
  return 0;
}
