// Kernels through the node factory, as the runtime builds them from a graph: a hand-written
// model (relu; sign + unpack; global average pool + linear) checked against plain loops.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"
#include "xnorinfer/xnorinfer.h"

namespace {

std::vector<uint8_t> floats(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(float));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// x (1, 2, 2, 3) NHWC -> relu -> r; sign -> unpack -> u; global_avgpool -> p -> linear -> z.
const char* kGraph = R"({"format":"xnorinfer.xbin","ir_version":1,"metadata":{},"inputs":["x"],
"outputs":["r","u","z"],"tensors":[
{"name":"x","dtype":"f32","shape":[1,2,2,3]},{"name":"r","dtype":"f32","shape":[1,2,2,3]},
{"name":"b","dtype":"bits","shape":[1,2,2,3]},{"name":"u","dtype":"f32","shape":[1,2,2,3]},
{"name":"p","dtype":"f32","shape":[1,3]},{"name":"z","dtype":"f32","shape":[1,2]}],
"ops":[
{"kind":"relu","name":"act","inputs":["x"],"outputs":["r"],"attrs":{},"params":{}},
{"kind":"sign","name":"binarize","inputs":["x"],"outputs":["b"],"attrs":{"sign_zero":"+1"},"params":{}},
{"kind":"unpack","name":"unpack","inputs":["b"],"outputs":["u"],"attrs":{},"params":{}},
{"kind":"global_avgpool","name":"pool","inputs":["x"],"outputs":["p"],"attrs":{},"params":{}},
{"kind":"linear","name":"fc","inputs":["p"],"outputs":["z"],"attrs":{},"params":{
 "weight":{"dtype":"float32","shape":[2,3],"section":1},"bias":{"dtype":"float32","shape":[2],"section":2}}}]})";

TEST(Nodes, KernelsMatchPlainLoops) {
  const std::vector<float> w = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f}, bias = {0.125f, -2.0f};
  const std::vector<uint8_t> bytes =
      xnor::test::assemble({{xnor::kXbinSectionJson, "graph", xnor::test::bytes_of(kGraph)},
                            {xnor::kXbinSectionData, "param1", floats(w)},
                            {xnor::kXbinSectionData, "param2", floats(bias)}});
  const xnorinfer::Model model = xnorinfer::Model::load(bytes.data(), bytes.size(), "hand-made");
  EXPECT_EQ(model.output_names(), (std::vector<std::string>{"r", "u", "z"}));
  // NCHW input (1, 3, 2, 2): channel c, pixel i holds these values.
  const std::vector<float> x = {1.5f, -2.0f, 0.0f, 3.25f, -0.5f, 0.75f, -1.0f, 2.0f, 4.0f, -3.0f, 0.5f, -0.25f};
  for (int threads : {1, 2}) {
    xnorinfer::Session s(model, threads);
    const auto out = s.run(x.data(), {1, 3, 2, 2});
    ASSERT_EQ(out.size(), 3u);
    for (int pix = 0; pix < 4; ++pix) {
      for (int c = 0; c < 3; ++c) {
        const float v = x[c * 4 + pix];
        EXPECT_EQ(out[0].data[pix * 3 + c], v > 0 ? v : 0.0f);  // NHWC
        EXPECT_EQ(out[1].data[pix * 3 + c], v < 0 ? -1.0f : 1.0f);
      }
    }
    for (int o = 0; o < 2; ++o) {
      double z = bias[o];
      for (int c = 0; c < 3; ++c) {
        const double mean = (double{x[c * 4]} + x[c * 4 + 1] + x[c * 4 + 2] + x[c * 4 + 3]) / 4;
        z += w[o * 3 + c] * mean;
      }
      EXPECT_NEAR(out[2].data[o], z, 1e-5);
    }
    EXPECT_EQ(out[2].shape, (std::vector<int64_t>{1, 2}));
  }
}

TEST(Nodes, FactoryRefusesBadAttributesAndShapes) {
  const std::vector<float> w(6, 1.0f), bias(2, 0.0f);
  auto load = [&](const std::string& json, const std::vector<float>& weight) {
    const std::vector<uint8_t> bytes =
        xnor::test::assemble({{xnor::kXbinSectionJson, "graph", xnor::test::bytes_of(json)},
                              {xnor::kXbinSectionData, "param1", floats(weight)},
                              {xnor::kXbinSectionData, "param2", floats(bias)}});
    return xnorinfer::Model::load(bytes.data(), bytes.size(), "hand-made");
  };
  EXPECT_NO_THROW(load(kGraph, w));
  // The weight's shape says 3 inputs per output; the tensor feeding it has 3: recorded z says 4.
  const std::string wrong_out = xnor::test::replace_once(kGraph, R"({"name":"z","dtype":"f32","shape":[1,2]})",
                                                         R"({"name":"z","dtype":"f32","shape":[1,4]})");
  try {
    load(wrong_out, w);
    FAIL();
  } catch (const xnorinfer::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("hand-made: "), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'fc' (linear)"), std::string::npos) << e.what();
  }
  const std::string bad_sign = xnor::test::replace_once(kGraph, R"("sign_zero":"+1")", R"("sign_zero":"sideways")");
  EXPECT_THROW(load(bad_sign, w), xnorinfer::ModelError);
}

}  // namespace
