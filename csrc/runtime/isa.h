// Choosing an instruction-set path at run time: by name, or the best one this CPU has unless
// XNORINFER_ISA forces one. The paths themselves: microkernels/isa.h.
#pragma once

#include <string>
#include <vector>

#include "microkernels/isa.h"

namespace xnor {

// Parses "scalar" | "avx2" | "avx512"; throws std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
// Paths this CPU (and OS) can execute, by CPUID.
std::vector<Isa> available_isas();
// The best available path, or the one forced by XNORINFER_ISA. Throws
// std::runtime_error when the forced path does not exist on this CPU.
Isa default_isa();

}  // namespace xnor
