// The .xbin loader (csrc/runtime/model.cc) on the shipped model and on damaged copies of it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/model.h"
#include "test_util.h"

namespace xnor {
namespace {

using test::assemble;
using test::default_model_path;
using test::read_bytes;
using test::replace_once;
using test::sections_of;
using test::text_of;
using test::with_json;

// The message of the XbinError that loading `bytes` throws ("" when it loads).
std::string refusal(const std::vector<uint8_t>& bytes) {
  try {
    Model::load(bytes.data(), bytes.size(), "damaged.xbin");
  } catch (const XbinError& e) {
    return e.what();
  }
  return "";
}

TEST(Loader, LoadsTheShippedModel) {
  const auto model = Model::load(default_model_path());
  const Graph& g = *model->graph();
  EXPECT_EQ(g.input_nchw().str(), "(1, 1, 28, 28)");
  EXPECT_EQ(g.steps().size(), model->desc().ops.size());
  ASSERT_EQ(model->labels().size(), 10u);
  EXPECT_EQ(model->labels()[3], "3");
  const InputSpec& spec = model->input_spec();
  EXPECT_EQ(spec.channels, 1);
  EXPECT_EQ(spec.height, 28);
  EXPECT_EQ(spec.width, 28);
  EXPECT_EQ(spec.mean, std::vector<double>{0.5});
  EXPECT_EQ(spec.std, std::vector<double>{0.5});
  ASSERT_NE(model->metadata().find("input_shape"), nullptr);
  // Same model from bytes: same description.
  const std::vector<uint8_t> bytes = read_bytes(default_model_path());
  const auto again = Model::load(bytes.data(), bytes.size(), "m");
  EXPECT_EQ(again->file().path(), "m");
  EXPECT_EQ(again->metadata().dump(), model->metadata().dump());
  EXPECT_EQ(again->desc().ops.size(), model->desc().ops.size());
}

TEST(Loader, RefusesTruncatedAndFlippedBytes) {
  const std::vector<uint8_t> bytes = read_bytes(default_model_path());
  for (size_t cut : {size_t{0}, size_t{10}, size_t{64}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string why = refusal(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    EXPECT_EQ(why.rfind("damaged.xbin: ", 0), 0u) << cut << ": " << why;
  }
  for (size_t pos = 0; pos < bytes.size(); pos += 997) {
    std::vector<uint8_t> flipped = bytes;
    flipped[pos] ^= 0x10;
    EXPECT_NE(refusal(flipped), "") << pos;
  }
}

TEST(Loader, ChecksTheGraphJson) {
  const std::vector<uint8_t> bytes = read_bytes(default_model_path());
  const std::string json = text_of(sections_of(bytes)[0].data);
  EXPECT_EQ(refusal(with_json(bytes, json)), "");  // reassembled unchanged: loads
  const struct {
    std::string damaged, expected;
  } cases[] = {
      {"[]", "graph JSON must be an object"},
      {json.substr(0, json.size() - 1), "is not valid JSON"},
      {replace_once(json, "{", "{\"format\":\"x\","), "duplicate key"},
      {replace_once(json, "\"ir_version\":1", "\"ir_version\":99"), "IR version 99 is newer"},
      {replace_once(json, "\"ir_version\":1", "\"ir_version\":1.0"), "'ir_version' is missing"},
      {replace_once(json, "\"kind\":\"", "\"kind\":\"warp_"), "unknown op kind"},
      {replace_once(json, "\"dtype\":\"uint64\"", "\"dtype\":\"float32\""), "dtype must be uint64"},
      {replace_once(json, "\"section\":1", "\"section\":99"), "section 99 is not a data section"},
      {replace_once(json, "\"section\":2", "\"section\":1"), "is used twice"},
      {replace_once(json, "\"dtype\":\"bits\"", "\"dtype\":\"f16\""), "dtype must be 'f32' or 'bits'"},
      {replace_once(json, "\"tensors\":", "\"tensors\":{},\"x\":"), "'tensors' must be a list"},
      {replace_once(json, "\"labels\":[", "\"labels\":[1,"), "labels must be a list of strings"},
      {replace_once(json, "\"std\":[0.5]", "\"std\":[0]"), "std has a zero entry"},
      {replace_once(json, "\"input_shape\":[1,1,28,28]", "\"input_shape\":[1,1,28,29]"),
       "does not match the graph input"},
  };
  for (const auto& c : cases) {
    const std::string why = refusal(with_json(bytes, c.damaged));
    EXPECT_EQ(why.rfind("damaged.xbin: ", 0), 0u) << why;
    EXPECT_NE(why.find(c.expected), std::string::npos) << "expected '" << c.expected << "' in: " << why;
  }
}

TEST(Loader, RefusesSwappedDataSections) {
  const std::vector<uint8_t> bytes = read_bytes(default_model_path());
  std::vector<test::Section> s = sections_of(bytes);
  ASSERT_GE(s.size(), 3u);
  std::swap(s[1].name, s[2].name);
  EXPECT_NE(refusal(assemble(s)).find("section table entries reordered"), std::string::npos);
}

TEST(Loader, NamesTheOpInGraphErrors) {
  const std::vector<uint8_t> bytes = read_bytes(default_model_path());
  const std::string json = text_of(sections_of(bytes)[0].data);
  // A name with a newline stays one line in the message.
  const std::string damaged = replace_once(json, "\"ops\":[{\"kind\":\"flatten\",\"name\":\"0\"",
                                           "\"ops\":[{\"kind\":\"warp\",\"name\":\"a\\nb\"");
  const std::string why = refusal(with_json(bytes, damaged));
  EXPECT_NE(why.find("op a\\x0ab (warp): unknown op kind"), std::string::npos) << why;
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
}

}  // namespace
}  // namespace xnor
