// The binary GEMM block (amx_bgemm.h) on the emulated tile unit: the correctness tool that runs on
// every machine (XNORINFER_BGEMM=amx-emulated). Its speed is of no interest.
#include "microkernels/amx_bgemm.h"

namespace xnor {

void amx_bgemm_emulated(const AmxBgemmArgs& args) {
  AmxEmulated unit;
  amx_bgemm_block(unit, args);
}

}  // namespace xnor
