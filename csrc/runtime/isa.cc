#include "runtime/isa.h"

#include <cstdlib>
#include <stdexcept>

namespace xnor {

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("unknown ISA path '" + name + "' (expected scalar, avx2 or avx512)");
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa_available(isa)) out.push_back(isa);
  }
  return out;
}

Isa default_isa() {
  if (const char* forced = std::getenv("XNORINFER_ISA"); forced != nullptr && *forced != '\0') {
    Isa isa;
    try {
      isa = parse_isa(forced);
    } catch (const std::invalid_argument&) {  // name the variable: the user set it, maybe long ago
      throw std::invalid_argument(std::string("environment variable XNORINFER_ISA=") + forced +
                                  " is not an ISA path (expected scalar, avx2 or avx512, or unset)");
    }
    if (!isa_available(isa)) {
      throw std::runtime_error(std::string("environment variable XNORINFER_ISA=") + forced +
                               " names a path this CPU does not support");
    }
    return isa;
  }
  return available_isas().back();
}

}  // namespace xnor
