// Can this process run AMX-INT8 tile instructions? CPUID says whether the CPU has AMX-TILE and
// AMX-INT8, XCR0 whether the OS saves the tile state, and on Linux the process must also ask for
// the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) before its first tile
// instruction, or that instruction kills it (docs.kernel.org: arch/x86/xstate).
#pragma once

#include <string>

namespace xnor {

struct AmxSupport {
  bool available = false;
  std::string reason;  // what is missing when not available; empty when available
};

// Probed once per process (a function-local static: thread-safe); the permission request is part
// of the probe, so a true `available` means tile instructions may run on every thread.
const AmxSupport& amx_support();

}  // namespace xnor
