// String tensors in plans: string weights (each element's length, then its
// bytes, in the weights section) and string tensor attributes round-trip,
// and string data whose lengths or counts do not fit is a kParseError.
#include <gtest/gtest.h>

#include <cstring>

#include "kiln/builder.h"
#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "small_plan.h"

namespace kiln::plan {
namespace {

using ir::Dim;
using ir::OpKind;
using testing::bytes_of;
using Strings = std::vector<std::string>;

// y = x ++ s (a string weight); z = LabelEncoder(y) by a string keys_tensor.
ir::Network string_network() {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kString, {Dim(3)});
  ir::ValueId s = net.add_weight("suffix", reference::make_string_tensor({3}, {"-a", "", "-日本"}));
  ir::ValueId y = net.add_op1(OpKind::kStringConcat, {x, s}, {}, "concat");
  ir::Attributes a;
  a.set("keys_tensor", reference::make_string_tensor({2}, {"p-a", "q"}));
  a.set("values_int64s", std::vector<int64_t>{1, 2});
  net.add_output(y);
  net.add_output(net.add_op1(OpKind::kLabelEncoder, {y}, a, "encode"));
  net.finalize();
  return net;
}

struct Sections {
  std::string meta, weights;
};

Sections split(const std::string& file) {
  uint64_t meta_size, weights_size;
  std::memcpy(&meta_size, file.data() + 16, 8);
  std::memcpy(&weights_size, file.data() + 24, 8);
  return {file.substr(48, meta_size), file.substr(file.size() - weights_size)};
}

TEST(PlanStrings, StringWeightsAndAttributesRoundTrip) {
  Plan p = builder::build(string_network(), {}, "strings");
  std::string bytes = serialize(p);
  Plan back = deserialize(bytes_of(bytes));
  EXPECT_EQ(dump_network(back.network), dump_network(p.network));
  EXPECT_EQ(serialize(back), bytes);
  const ir::Value& w = back.network.value(*back.network.find_value("suffix"));
  ASSERT_TRUE(w.weight);
  EXPECT_EQ(w.weight->strings, (Strings{"-a", "", "-日本"}));
  std::map<std::string, reference::Tensor> feeds{{"x", reference::make_string_tensor({3}, {"p", "q", "r"})}};
  auto out = reference::run(back.network, feeds);
  EXPECT_EQ(out[0].strings, (Strings{"p-a", "q", "r-日本"}));
  EXPECT_EQ(ir::read_ints(out[1]), (std::vector<int64_t>{1, 2, -1}));
}

// The weight's bytes: u64 3, then "-a" (u64 2 + 2 bytes), "" (u64 0), "-日本" (u64 7 + 7 bytes).
TEST(PlanStrings, MalformedStringDataIsAParseError) {
  std::string file = serialize(builder::build(string_network(), {}, "strings"));
  Sections s = split(file);
  ByteWriter encoded;
  for (const char* e : {"-a", "", "-日本"}) encoded.put_string(e);
  size_t at = s.weights.find(encoded.bytes());
  ASSERT_NE(at, std::string::npos);

  auto expect_parse_error = [&](const std::string& weights, const std::string& needle) {
    try {
      deserialize(bytes_of(frame(s.meta, weights)));
      ADD_FAILURE() << "a plan with bad string data loaded (" << needle << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  std::string past_end = s.weights;
  uint64_t huge = uint64_t(1) << 62;
  std::memcpy(past_end.data() + at + 8 + 2 + 8 + 0, &huge, 8);  // the third string's length
  expect_parse_error(past_end, "weight 'suffix'");
  std::string short_length = s.weights;
  uint64_t two = 2;
  std::memcpy(short_length.data() + at + 8 + 2 + 8, &two, 8);  // leaves 5 bytes after the last string
  expect_parse_error(short_length, "bytes after its 3 strings");

  // A weight whose dims ask for more strings than its bytes can hold: refused before anything is reserved.
  std::string meta = s.meta;
  ByteWriter dims;
  dims.put<uint8_t>(uint8_t(DType::kString));
  dims.put<uint64_t>(1);
  dims.put<int64_t>(3);
  size_t header = meta.find(dims.bytes());
  ASSERT_NE(header, std::string::npos);
  int64_t many = int64_t(1) << 40;
  std::memcpy(meta.data() + header + 9, &many, 8);
  try {
    deserialize(bytes_of(frame(meta, s.weights)));
    ADD_FAILURE() << "2^40 strings loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    EXPECT_NE(std::string(e.what()).find("needs 1099511627776 strings"), std::string::npos) << e.what();
  }
}

// The string attribute (keys_tensor) is inline in the metadata: a length past the end of it is refused too.
TEST(PlanStrings, MalformedStringAttributeIsAParseError) {
  std::string file = serialize(builder::build(string_network(), {}, "strings"));
  Sections s = split(file);
  ByteWriter encoded;
  for (const char* e : {"p-a", "q"}) encoded.put_string(e);
  size_t at = s.meta.find(encoded.bytes());
  ASSERT_NE(at, std::string::npos);
  uint64_t past = 1000;
  std::memcpy(s.meta.data() + at, &past, 8);
  try {
    deserialize(bytes_of(frame(s.meta, s.weights)));
    ADD_FAILURE() << "a string attribute past its end loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    EXPECT_NE(std::string(e.what()).find("a tensor attribute"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::plan
