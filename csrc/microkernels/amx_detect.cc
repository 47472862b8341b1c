#include "microkernels/amx_detect.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#endif

namespace xnor {
namespace {

#if defined(__x86_64__) && defined(__linux__)
constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM (asm/prctl.h)
constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA

AmxSupport probe() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return {false, "CPUID leaf 7 is missing"};
  std::string missing;
  if (((edx >> 24) & 1u) == 0) missing += "AMX-TILE (CPUID.(EAX=7,ECX=0):EDX[24])";
  if (((edx >> 25) & 1u) == 0)
    missing += std::string(missing.empty() ? "" : " and ") + "AMX-INT8 (CPUID.(EAX=7,ECX=0):EDX[25])";
  if (!missing.empty()) return {false, "the CPU lacks " + missing};
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || ((ecx >> 27) & 1u) == 0)
    return {false, "the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE = 0)"};
  uint32_t xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if (((xcr0_lo >> 17) & 3u) != 3u)
    return {false, "the OS does not save the AMX tile state (XCR0 bits 17 XTILECFG and 18 XTILEDATA not both set)"};
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    const int err = errno;
    return {false, std::string("Linux refused the tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): ") +
                       std::strerror(err) + ")"};
  }
  return {true, ""};
}
#else
AmxSupport probe() { return {false, "AMX needs x86-64 Linux"}; }
#endif

}  // namespace

const AmxSupport& amx_support() {
  static const AmxSupport support = probe();
  return support;
}

}  // namespace xnor
