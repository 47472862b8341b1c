#include "runtime/nodes/binary_output.h"

#include "runtime/nodes/node_util.h"

namespace xnor::nodes {

void check_pad_bits(const OpArgs& a, const uint64_t* w, int64_t rows, int64_t words, int64_t bits) {
  if (bits % 64 == 0) return;
  const uint64_t mask = ~uint64_t{0} << (bits % 64);
  for (int64_t r = 0; r < rows; ++r) {
    if (w[r * words + words - 1] & mask) a.fail("packed weight has non-zero pad bits beyond the real channels");
  }
}

OutputTransform make_transform(const OpArgs& a, int64_t out_channels) {
  OutputTransform t;
  const std::string output = a.string("output", "");
  const std::vector<int64_t> shape{out_channels};
  if (output == "bits") {
    if (a.param("multiplier") || a.param("bias")) a.fail("output 'bits' takes threshold/flip, not multiplier/bias");
    t.kind = OutputKind::kBits;
    const ParamView* th = a.param("threshold", shape);
    if (!th) a.fail("missing parameter 'threshold'");
    const int32_t* td = static_cast<const int32_t*>(th->data);
    t.threshold.assign(td, td + out_channels);
    const ParamView* fl = a.param("flip", shape);
    if (fl) {
      const uint8_t* fd = static_cast<const uint8_t*>(fl->data);
      for (int64_t i = 0; i < out_channels; ++i)
        if (fd[i] > 1) a.fail("flip values must be 0 or 1");
      t.flip.assign(fd, fd + out_channels);
    } else {
      t.flip.assign(static_cast<size_t>(out_channels), 0);
    }
  } else if (output == "float") {
    if (a.param("threshold") || a.param("flip")) a.fail("output 'float' takes multiplier/bias, not threshold/flip");
    t.kind = OutputKind::kFloat;
    const ParamView* m = a.param("multiplier", shape);
    if (!m) a.fail("missing parameter 'multiplier'");
    const ParamView* b = a.param("bias", shape);
    if (!b) a.fail("missing parameter 'bias'");
    t.multiplier = copy_f32(m);
    t.bias = copy_f32(b);
  } else {
    a.fail("output must be 'bits' or 'float', got '" + output + "'");
  }
  return t;
}

}  // namespace xnor::nodes
