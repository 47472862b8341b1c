// The public C++ API (include/xnorinfer/xnorinfer.h) on the shipped model.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "test_util.h"
#include "xnorinfer/xnorinfer.h"

namespace {

using xnor::test::default_model_path;

std::vector<float> pattern(size_t n, unsigned seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
  }
  return v;
}

TEST(Api, DescribesTheModel) {
  const xnorinfer::Model model = xnorinfer::Model::load(default_model_path());
  EXPECT_EQ(model.path(), default_model_path());
  EXPECT_EQ(model.input_shape(), (std::vector<int64_t>{1, 1, 28, 28}));
  EXPECT_FALSE(model.input_name().empty());
  ASSERT_EQ(model.output_names().size(), 1u);
  EXPECT_EQ(model.output_shapes(), (std::vector<std::vector<int64_t>>{{1, 10}}));
  ASSERT_EQ(model.labels().size(), 10u);
  EXPECT_FALSE(model.outputs_are_probabilities());
  const xnorinfer::Preprocessing& p = model.preprocessing();
  EXPECT_EQ(p.channels, 1);
  EXPECT_EQ(p.height, 28);
  EXPECT_EQ(p.width, 28);
  EXPECT_EQ(p.mean, std::vector<double>{0.5});
  EXPECT_EQ(p.std, std::vector<double>{0.5});
  EXPECT_EQ(p.resize, 0);
  const xnor::json::Value meta = xnor::json::parse(model.metadata_json());
  ASSERT_NE(meta.find("labels"), nullptr);
  EXPECT_EQ(meta.find("input_shape")->dump(), "[1,1,28,28]");
}

TEST(Api, RunsTheSameAcrossThreadsBatchesAndLoaders) {
  const xnorinfer::Model model = xnorinfer::Model::load(default_model_path());
  const std::vector<uint8_t> bytes = xnor::test::read_bytes(default_model_path());
  const xnorinfer::Model from_bytes = xnorinfer::Model::load(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(from_bytes.path(), "mem");
  const std::vector<float> x = pattern(3 * 28 * 28, 7);
  xnorinfer::Session one(model, 1);
  const std::vector<xnorinfer::Tensor> want = one.run(x.data(), {3, 1, 28, 28});
  ASSERT_EQ(want.size(), 1u);
  EXPECT_EQ(want[0].shape, (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(want[0].name, model.output_names()[0]);
  for (int threads : {2, 3, 4}) {
    xnorinfer::Session s(threads % 2 ? from_bytes : model, threads);
    EXPECT_EQ(s.threads(), threads);
    const auto got = s.run(x.data(), {3, 1, 28, 28});
    ASSERT_EQ(got[0].data.size(), want[0].data.size());
    EXPECT_EQ(std::memcmp(got[0].data.data(), want[0].data.data(), want[0].data.size() * sizeof(float)), 0)
        << threads << " threads";
  }
  // Each image alone gives its row of the batch.
  for (int i = 0; i < 3; ++i) {
    const auto row = one.run(x.data() + i * 28 * 28, {1, 1, 28, 28});
    EXPECT_EQ(std::memcmp(row[0].data.data(), want[0].data.data() + i * 10, 10 * sizeof(float)), 0) << i;
  }
}

TEST(Api, ErrorsAreTypedAndNamed) {
  try {
    xnorinfer::Model::load("/nonexistent/model.xbin");
    FAIL();
  } catch (const xnorinfer::ModelError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("/nonexistent/model.xbin: cannot open", 0), 0u) << e.what();
  }
  const std::vector<uint8_t> junk(100, 7);
  EXPECT_THROW(xnorinfer::Model::load(junk.data(), junk.size()), xnorinfer::ModelError);
  EXPECT_THROW(xnorinfer::Model::load(junk.data(), junk.size()), std::runtime_error);
  const xnorinfer::Model model = xnorinfer::Model::load(default_model_path());
  EXPECT_THROW(xnorinfer::Session(model, 0), xnorinfer::InvalidArgument);
  EXPECT_THROW(xnorinfer::Session(model, 1, 1024), xnorinfer::MemoryLimitError);  // 1 KiB cannot hold the plan
  xnorinfer::Session s(model, 1);
  const std::vector<float> x(2 * 28 * 28, 0.0f);
  EXPECT_THROW(s.run(x.data(), {1, 2, 28, 28}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run(x.data(), {1, 28, 28}), std::invalid_argument);
  EXPECT_THROW(s.run(nullptr, {1, 1, 28, 28}), xnorinfer::InvalidArgument);
}

}  // namespace

namespace {

// Two inputs of different ranks: "img" NCHW (N, 3, 2, 2) held NHWC -> relu -> r; "seq" (N, 2, 4)
// in its own order -> seq + seq -> s.
const char* kTwoInputs = R"({"format":"xnorinfer.xbin","ir_version":1,"metadata":{},"inputs":["img","seq"],
"outputs":["r","s"],"tensors":[
{"name":"img","dtype":"f32","shape":[1,2,2,3]},{"name":"seq","dtype":"f32","shape":[1,2,4]},
{"name":"r","dtype":"f32","shape":[1,2,2,3]},{"name":"s","dtype":"f32","shape":[1,2,4]}],
"ops":[
{"kind":"relu","name":"act","inputs":["img"],"outputs":["r"],"attrs":{},"params":{}},
{"kind":"binary","name":"twice","inputs":["seq","seq"],"outputs":["s"],"attrs":{"op":"add"},"params":{}}]})";

xnorinfer::Model two_input_model() {
  const std::vector<uint8_t> bytes =
      xnor::test::assemble({{xnor::kXbinSectionJson, "graph", xnor::test::bytes_of(kTwoInputs)}});
  return xnorinfer::Model::load(bytes.data(), bytes.size(), "two-inputs");
}

}  // namespace

TEST(Api, RunsAModelWithSeveralInputsOfAnyRank) {
  const xnorinfer::Model model = two_input_model();
  EXPECT_EQ(model.input_names(), (std::vector<std::string>{"img", "seq"}));
  EXPECT_EQ(model.input_shapes(), (std::vector<std::vector<int64_t>>{{1, 3, 2, 2}, {1, 2, 4}}));
  EXPECT_EQ(model.input_name(), "img");
  const int64_t n = 3;
  const std::vector<float> img = pattern(n * 12, 1), seq = pattern(n * 8, 2);
  for (int threads : {1, 2}) {
    xnorinfer::Session s(model, threads);
    const auto out = s.run({{img.data(), {n, 3, 2, 2}}, {seq.data(), {n, 2, 4}}});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].shape, (std::vector<int64_t>{n, 2, 2, 3}));
    EXPECT_EQ(out[1].shape, (std::vector<int64_t>{n, 2, 4}));
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t pix = 0; pix < 4; ++pix) {
        for (int64_t c = 0; c < 3; ++c) {
          const float v = img[static_cast<size_t>(b * 12 + c * 4 + pix)];
          EXPECT_EQ(out[0].data[static_cast<size_t>(b * 12 + pix * 3 + c)], v > 0 ? v : 0.0f);  // NHWC
        }
      }
    }
    for (size_t i = 0; i < seq.size(); ++i) EXPECT_EQ(out[1].data[i], seq[i] + seq[i]);
    // Each image alone gives the same rows as the batch.
    const auto one = s.run({{img.data() + 12, {1, 3, 2, 2}}, {seq.data() + 8, {1, 2, 4}}});
    EXPECT_EQ(std::vector<float>(one[1].data.begin(), one[1].data.end()),
              std::vector<float>(out[1].data.begin() + 8, out[1].data.begin() + 16));
  }
}

TEST(Api, RefusesInputsThatDoNotFitASeveralInputModel) {
  const xnorinfer::Model model = two_input_model();
  xnorinfer::Session s(model, 1);
  const std::vector<float> img(24), seq(16);
  // the one-input call, a missing input, a batch that differs, a wrong rank or size, a null pointer
  EXPECT_THROW(s.run(img.data(), {1, 3, 2, 2}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run({{img.data(), {1, 3, 2, 2}}}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run({{img.data(), {2, 3, 2, 2}}, {seq.data(), {1, 2, 4}}}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run({{img.data(), {1, 3, 2, 2}}, {seq.data(), {1, 8}}}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run({{img.data(), {1, 3, 2, 2}}, {seq.data(), {1, 2, 5}}}), xnorinfer::InvalidArgument);
  EXPECT_THROW(s.run({{img.data(), {1, 3, 2, 2}}, {nullptr, {1, 2, 4}}}), xnorinfer::InvalidArgument);
  try {
    s.run({{img.data(), {1, 3, 2, 2}}, {seq.data(), {1, 2, 5}}});
  } catch (const xnorinfer::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'seq'"), std::string::npos) << e.what();
  }
}
