// Instruction-set paths and what each needs from the CPU. The kernels of a path are compiled with
// that path's flags (CMakeLists.txt); running them on a CPU without those features would fault, so
// the dispatch tables (dispatch.h) refuse a path isa_available() denies.
#pragma once

namespace xnor {

// Ordered from most portable to fastest; a machine that has one has all below it.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
// True when this CPU (and OS) can execute the path, by CPUID.
bool isa_available(Isa isa);

}  // namespace xnor
