// Instruction-set paths and their run-time selection.
#pragma once

#include <string>
#include <vector>

namespace xnor {

// Ordered from most portable to fastest; a machine that has one has all below it.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
// Parses "scalar" | "avx2" | "avx512"; throws std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
// Paths this CPU (and OS) can execute, by CPUID.
std::vector<Isa> available_isas();
bool isa_available(Isa isa);
// The best available path, or the one forced by XNORINFER_ISA. Throws
// std::runtime_error when the forced path does not exist on this CPU.
Isa default_isa();

}  // namespace xnor
