// What bconv2d and blinear share: their output transform (packed bits by threshold/flip, or
// float by multiplier/bias) and the check of packed weights' pad bits.
#pragma once

#include <cstdint>

#include "operators/bconv2d.h"
#include "runtime/op_registry.h"
#include "runtime/op_schema.h"

namespace xnor::nodes {

// The attributes and parameters of both binary ops, beyond their own (pad_mode, in_channels ...).
constexpr ParamSchema kBinaryOutputParams[] = {{"weight", ParamDType::kUint64, true},
                                               {"threshold", ParamDType::kInt32, false},
                                               {"flip", ParamDType::kUint8, false},
                                               {"multiplier", ParamDType::kFloat32, false},
                                               {"bias", ParamDType::kFloat32, false}};

// The transform named by attribute "output" from its parameters, each of shape (out_channels,).
OutputTransform make_transform(const OpArgs& a, int64_t out_channels);

// Checks that bits past `bits` in each row of `words`-word rows are zero.
void check_pad_bits(const OpArgs& a, const uint64_t* w, int64_t rows, int64_t words, int64_t bits);

}  // namespace xnor::nodes
