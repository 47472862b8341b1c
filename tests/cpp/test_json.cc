// The strict JSON reader (csrc/runtime/json.cc): valid and invalid documents, limits, numbers.
#include <gtest/gtest.h>

#include <string>

#include "runtime/json.h"

namespace xnor::json {
namespace {

TEST(Json, ParsesEveryKindOfValue) {
  const Value v = parse(R"( {"a": [1, -2, 3.5, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}} )");
  ASSERT_TRUE(v.is_object());
  const Value& a = *v.find("a");
  ASSERT_EQ(a.items().size(), 6u);
  EXPECT_EQ(a.items()[0].as_int(), 1);
  EXPECT_EQ(a.items()[1].as_int(), -2);
  EXPECT_TRUE(a.items()[2].is_number() && !a.items()[2].is_int());
  EXPECT_EQ(a.items()[2].as_double(), 3.5);
  EXPECT_TRUE(a.items()[3].as_bool());
  EXPECT_FALSE(a.items()[4].as_bool());
  EXPECT_TRUE(a.items()[5].is_null());
  EXPECT_EQ(v.find("b")->find("c")->as_string(), "d\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, KeepsMemberOrderAndDumpsCompactly) {
  const std::string text = R"({"z":1,"a":[0.5,"x"],"m":{}})";
  EXPECT_EQ(parse(text).dump(), text);
  EXPECT_EQ(parse("1e20").dump(), "1e+20");
  EXPECT_EQ(parse("2.0").dump(), "2.0");  // stays a double when read back
  EXPECT_TRUE(parse(parse("2.0").dump()).type() == Value::Type::kDouble);
}

TEST(Json, IntegersAreExactInt64) {
  EXPECT_EQ(parse("9223372036854775807").as_int(), INT64_MAX);
  EXPECT_EQ(parse("-9223372036854775808").as_int(), INT64_MIN);
  EXPECT_THROW(parse("9223372036854775808"), ParseError);
  EXPECT_THROW(parse("-9223372036854775809"), ParseError);
  EXPECT_EQ(parse("-0").as_int(), 0);
}

TEST(Json, DoublesInTheCLocale) {
  EXPECT_EQ(parse("0.1").as_double(), 0.1);
  EXPECT_EQ(parse("-1.5E3").as_double(), -1500.0);
  EXPECT_EQ(parse("1e-400").as_double(), 0.0);  // underflows to zero, as strtod and Python read it
  EXPECT_EQ(parse("4.9e-324").as_double(), 4.9e-324);
  EXPECT_THROW(parse("1e400"), ParseError);  // no finite value
  EXPECT_THROW(parse("-1e999"), ParseError);
}

TEST(Json, RefusesWhatRfc8259Refuses) {
  for (const char* bad : {"",
                          " ",
                          "01",
                          "1.",
                          ".5",
                          "+1",
                          "1e",
                          "1e+",
                          "-",
                          "NaN",
                          "Infinity",
                          "-Infinity",
                          "[1,]",
                          "{\"a\":1,}",
                          "{'a':1}",
                          "[1 2]",
                          "{\"a\" 1}",
                          "{1:2}",
                          "tru",
                          "nul",
                          "\"unterminated",
                          "\"tab\there\"",
                          "\"\\x41\"",
                          "\"\\u12\"",
                          "\"\\ud800\"",
                          "\"\\udc00\"",
                          "\"\\ud800\\u0041\"",
                          "[1] [2]",
                          "// comment\n1",
                          "\xef\xbb\xbf{}",
                          "0x10",
                          "1_000"}) {
    EXPECT_THROW(parse(bad), ParseError) << bad;
  }
}

TEST(Json, ChecksUtf8) {
  EXPECT_NO_THROW(parse("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
  for (const char* bad : {"\"\xc3\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
                          "\"\xff\"", "\"\x80\"", "\"\xf0\x9f\x98\""}) {
    EXPECT_THROW(parse(bad), ParseError) << bad;
  }
}

TEST(Json, RefusesDuplicateKeys) {
  EXPECT_THROW(parse(R"({"a": 1, "a": 2})"), ParseError);
  EXPECT_THROW(parse(R"({"x": {"b": 1, "c": 2, "b": 3}})"), ParseError);
  std::string many = "{";
  for (int i = 0; i < 1000; ++i) many += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  EXPECT_NO_THROW(parse(many.substr(0, many.size() - 1) + "}"));
  EXPECT_THROW(parse(many + "\"k500\":0}"), ParseError);
}

TEST(Json, BoundsDepthValuesAndSize) {
  Limits limits;
  limits.max_depth = 8;
  EXPECT_NO_THROW(parse("[[[[[[[[1]]]]]]]]", limits));
  EXPECT_THROW(parse("[[[[[[[[[1]]]]]]]]]", limits), ParseError);
  // The default depth limit keeps a hostile document off the stack.
  EXPECT_THROW(parse(std::string(100000, '[') + std::string(100000, ']')), ParseError);
  limits = Limits();
  limits.max_values = 4;
  EXPECT_NO_THROW(parse("[1,2,3]", limits));
  EXPECT_THROW(parse("[1,2,3,4]", limits), ParseError);
  limits = Limits();
  limits.max_bytes = 4;
  EXPECT_THROW(parse("[1,2]", limits), ParseError);
}

TEST(Json, MessagesGiveThePlace) {
  try {
    parse("[1, 2, x]");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 7"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xnor::json
