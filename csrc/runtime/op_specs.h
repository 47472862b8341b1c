// What the loader accepts per op kind: required and optional attributes and
// parameters, and each parameter's dtype. The C++ twin of xnorinfer/ir.py
// OP_SPECS and xnorinfer/xbin.py param_dtype; tests/test_xbin.py checks that
// the two agree (through _core.op_specs()).
#pragma once

#include <string_view>

namespace xnor {

constexpr int kIrVersion = 1;  // xnorinfer/ir.py IR_VERSION

struct OpSpec {
  std::string_view kind;
  // Names separated by single spaces.
  std::string_view required_attrs, optional_attrs, required_params, optional_params;
};

inline constexpr OpSpec kOpSpecs[] = {
    {"conv2d", "stride padding", "relu", "weight", "bias"},
    {"linear", "", "relu", "weight", "bias"},
    {"affine", "", "", "scale shift", ""},
    {"prelu", "", "", "slope", "pre_shift post_shift"},
    {"relu", "", "", "", ""},
    {"hardtanh", "min_val max_val", "", "", ""},
    {"sigmoid", "", "", "", ""},
    {"maxpool2d", "kernel stride padding", "", "", ""},
    {"avgpool2d", "kernel stride padding", "count_include_pad", "", ""},
    {"global_avgpool", "", "", "", ""},
    {"add", "", "", "", ""},
    {"mul", "", "", "", ""},
    {"concat", "", "", "", ""},
    {"flatten", "", "", "", ""},
    {"softmax", "", "", "", ""},
    {"log_softmax", "", "", "", ""},
    {"sign", "", "sign_zero", "", "threshold"},
    {"bconv2d", "stride padding pad_mode output in_channels", "", "weight", "threshold flip multiplier bias"},
    {"blinear", "output in_features", "", "weight", "threshold flip multiplier bias"},
    {"bmaxpool2d", "kernel stride padding", "", "", ""},
    {"bconcat", "", "", "", ""},
    {"bflatten", "", "", "", ""},
    {"unpack", "", "", "", ""},
};

inline const OpSpec* find_op_spec(std::string_view kind) {
  for (const OpSpec& s : kOpSpecs) {
    if (s.kind == kind) return &s;
  }
  return nullptr;
}

// Binary weights are packed uint64, thresholds int32, flips uint8; everything else float32.
inline std::string_view param_dtype(std::string_view kind, std::string_view param) {
  if (kind == "bconv2d" || kind == "blinear") {
    if (param == "weight") return "uint64";
    if (param == "threshold") return "int32";
    if (param == "flip") return "uint8";
  }
  return "float32";
}

}  // namespace xnor
