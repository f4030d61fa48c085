// String tensors on the reference interpreter: the text ops, Cast to and from
// strings, the movement ops, Equal and Where on strings, .npy files of strings,
// and the ops that take numbers refusing strings by name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/npy.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;
using Strings = std::vector<std::string>;

ir::Shape shape_of(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

// Runs one node over the given named inputs; returns its outputs.
std::vector<Tensor> run_node(OpKind op, const std::vector<std::pair<std::string, Tensor>>& inputs, ir::Attributes attrs = {},
                             int outputs = 1, const std::vector<std::pair<std::string, Tensor>>& weights = {}) {
  ir::Network net;
  std::vector<ir::ValueId> ids;
  std::map<std::string, Tensor> feeds;
  for (auto& [name, t] : inputs) {
    ids.push_back(net.add_input(name, t.dtype, shape_of(t.dims)));
    feeds[name] = t;
  }
  for (auto& [name, t] : weights) ids.push_back(net.add_weight(name, t));
  for (ir::ValueId v : net.add_op(op, ids, std::move(attrs), outputs, "node")) net.add_output(v);
  net.finalize();
  return run(net, feeds);
}

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

TEST(ReferenceStrings, StringConcatBroadcasts) {
  Tensor y = run_node(OpKind::kStringConcat, {{"a", reference::make_string_tensor({2, 2}, {"a", "b", "", "é"})}, {"b", reference::make_string_tensor({2}, {"!", "?"})}})[0];
  EXPECT_EQ(y.dtype, DType::kString);
  EXPECT_EQ(y.dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(y.strings, (Strings{"a!", "b?", "!", "é?"}));
}

TEST(ReferenceStrings, StringSplitByDelimiterWhitespaceAndMaxsplit) {
  auto y = run_node(OpKind::kStringSplit, {{"x", reference::make_string_tensor({3}, {"a.b.c", "", "x."})}}, attrs({{"delimiter", std::string(".")}}), 2);
  EXPECT_EQ(y[0].dims, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(y[0].strings, (Strings{"a", "b", "c", "", "", "", "x", "", ""}));
  EXPECT_EQ(ir::read_ints(y[1]), (std::vector<int64_t>{3, 1, 2}));

  y = run_node(OpKind::kStringSplit, {{"x", reference::make_string_tensor({2}, {"  one  two three ", "\tfour\n"})}}, attrs({{"maxsplit", int64_t(1)}}), 2);
  EXPECT_EQ(y[0].dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(y[0].strings, (Strings{"one", "two three ", "four", ""}));  // Python's str.split(None, 1)
  EXPECT_EQ(ir::read_ints(y[1]), (std::vector<int64_t>{2, 1}));

  y = run_node(OpKind::kStringSplit, {{"x", reference::make_string_tensor({0}, {})}}, {}, 2);
  EXPECT_EQ(y[0].dims, (std::vector<int64_t>{0, 0}));
}

TEST(ReferenceStrings, StringNormalizerRemovesStopwordsThenChangesCase) {
  Tensor y = run_node(OpKind::kStringNormalizer, {{"x", reference::make_string_tensor({1, 4}, {"Mon", "tue", "MON", "wed"})}},
                      attrs({{"case_change_action", std::string("UPPER")}, {"stopwords", Strings{"mon"}}}))[0];
  EXPECT_EQ(y.dims, (std::vector<int64_t>{1, 2}));  // not case-sensitive by default
  EXPECT_EQ(y.strings, (Strings{"TUE", "WED"}));
  y = run_node(OpKind::kStringNormalizer, {{"x", reference::make_string_tensor({2}, {"Mon", "mon"})}},
               attrs({{"is_case_sensitive", int64_t(1)}, {"stopwords", Strings{"mon"}}, {"case_change_action", std::string("LOWER")}}))[0];
  EXPECT_EQ(y.strings, Strings{"mon"});
  y = run_node(OpKind::kStringNormalizer, {{"x", reference::make_string_tensor({2}, {"a", "a"})}}, attrs({{"stopwords", Strings{"a"}}}))[0];
  EXPECT_EQ(y.dims, std::vector<int64_t>{1});  // all removed: one empty string
  EXPECT_EQ(y.strings, Strings{""});
}

TEST(ReferenceStrings, RegexFullMatchMatchesWholeStrings) {
  Tensor y = run_node(OpKind::kRegexFullMatch, {{"x", reference::make_string_tensor({3}, {"www.site.com", "www.site.com/x", "site.com"})}},
                      attrs({{"pattern", std::string(R"(www\.[\w.-]+\.\bcom\b)")}}))[0];
  EXPECT_EQ(y.dtype, DType::kBool);
  EXPECT_EQ(ir::read_ints(y), (std::vector<int64_t>{1, 0, 0}));
  try {
    run_node(OpKind::kRegexFullMatch, {{"x", reference::make_string_tensor({1}, {"a"})}}, attrs({{"pattern", std::string("(?P<n>a)")}}));
    FAIL() << "an RE2-only pattern ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("(?P<n>a)"), std::string::npos) << e.what();
  }
}

TEST(ReferenceStrings, CastBetweenStringsAndNumbers) {
  Tensor f = make_tensor(DType::kFloat32, {6}, {0.039187793, 1.0, -2.5, 1e-5, NAN, -INFINITY});
  Tensor s = run_node(OpKind::kCast, {{"x", f}}, attrs({{"to", int64_t(DType::kString)}}))[0];
  EXPECT_EQ(s.strings, (Strings{"0.039187793", "1.0", "-2.5", "1e-05", "NaN", "-INF"}));
  Tensor i = make_tensor(DType::kInt64, {2}, {-7, 123456789012});
  EXPECT_EQ(run_node(OpKind::kCast, {{"x", i}}, attrs({{"to", int64_t(DType::kString)}}))[0].strings, (Strings{"-7", "123456789012"}));

  Tensor back = run_node(OpKind::kCast, {{"x", reference::make_string_tensor({5}, {"0.5", "1e3", "-INF", "nan", "+inf"})}},
                         attrs({{"to", int64_t(DType::kFloat32)}}))[0];
  std::vector<double> v = ir::read_doubles(back);
  EXPECT_EQ(v[0], 0.5);
  EXPECT_EQ(v[1], 1000);
  EXPECT_EQ(v[2], -INFINITY);
  EXPECT_TRUE(std::isnan(v[3]));
  EXPECT_EQ(v[4], INFINITY);
  Tensor ints = run_node(OpKind::kCast, {{"x", reference::make_string_tensor({3}, {"9007199254740993", "-12", "100.7"})}},
                         attrs({{"to", int64_t(DType::kInt64)}}))[0];
  EXPECT_EQ(ir::read_ints(ints), (std::vector<int64_t>{9007199254740993, -12, 100}));  // exact past 2^53; a fraction truncated
  try {
    run_node(OpKind::kCast, {{"x", reference::make_string_tensor({2}, {"1", "one"})}}, attrs({{"to", int64_t(DType::kFloat32)}}));
    FAIL() << "'one' was read as a number";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("element 1 'one' is not a number"), std::string::npos) << e.what();
  }
}

TEST(ReferenceStrings, EqualAndWhereOnStrings) {
  Tensor eq = run_node(OpKind::kEqual, {{"a", reference::make_string_tensor({2, 2}, {"x", "y", "z", "x"})}, {"b", reference::make_string_tensor({1}, {"x"})}})[0];
  EXPECT_EQ(ir::read_ints(eq), (std::vector<int64_t>{1, 0, 0, 1}));
  Tensor cond = make_tensor(DType::kBool, {3}, {1, 0, 1});
  Tensor w = run_node(OpKind::kWhere, {{"c", cond}, {"x", reference::make_string_tensor({3}, {"a", "b", "c"})}, {"y", reference::make_string_tensor({}, {"-"})}})[0];
  EXPECT_EQ(w.strings, (Strings{"a", "-", "c"}));
}

TEST(ReferenceStrings, MovementOpsCopyStrings) {
  Tensor x = reference::make_string_tensor({2, 3}, {"a", "b", "c", "d", "e", "f"});
  EXPECT_EQ(run_node(OpKind::kTranspose, {{"x", x}})[0].strings, (Strings{"a", "d", "b", "e", "c", "f"}));
  EXPECT_EQ(run_node(OpKind::kIdentity, {{"x", x}})[0].strings, x.strings);
  Tensor cat = run_node(OpKind::kConcat, {{"x", x}, {"y", reference::make_string_tensor({2, 1}, {"!", "?"})}}, attrs({{"axis", int64_t(1)}}))[0];
  EXPECT_EQ(cat.strings, (Strings{"a", "b", "c", "!", "d", "e", "f", "?"}));
  Tensor g = run_node(OpKind::kGather, {{"x", x}}, attrs({{"axis", int64_t(1)}}), 1,
                      {{"i", make_tensor(DType::kInt64, {2}, {2, -3})}})[0];
  EXPECT_EQ(g.strings, (Strings{"c", "a", "f", "d"}));
  Tensor r = run_node(OpKind::kReshape, {{"x", x}}, {}, 1, {{"s", make_tensor(DType::kInt64, {1}, {6})}})[0];
  EXPECT_EQ(r.dims, std::vector<int64_t>{6});
  EXPECT_EQ(r.strings, x.strings);
  Tensor sl = run_node(OpKind::kSlice, {{"x", x}}, {}, 1,
                       {{"s", make_tensor(DType::kInt64, {1}, {1})}, {"e", make_tensor(DType::kInt64, {1}, {3})},
                        {"a", make_tensor(DType::kInt64, {1}, {1})}})[0];
  EXPECT_EQ(sl.strings, (Strings{"b", "c", "e", "f"}));
}

TEST(ReferenceStrings, NumericOpsRefuseStringsNamingTheInput) {
  ir::Network net;
  ir::ValueId a = net.add_input("words", DType::kString, {Dim(2)});
  net.add_output(net.add_op1(OpKind::kAdd, {a, a}, {}, "add"));
  try {
    net.finalize();
    FAIL() << "Add took strings";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTypeError);
    EXPECT_NE(std::string(e.what()).find("node 'add' (Add): input 0 ('words') is a string tensor"), std::string::npos) << e.what();
  }
}

TEST(ReferenceStrings, InputsOfTheWrongCountAreRefused) {
  ir::Network net;
  ir::ValueId a = net.add_input("x", DType::kString, {Dim(2)});
  net.add_output(net.add_op1(OpKind::kIdentity, {a}));
  net.finalize();
  EXPECT_THROW(run(net, {{"x", reference::make_string_tensor({2}, {"one"})}}), Error);
}

TEST(ReferenceStrings, NpyStringArraysRoundTrip) {
  auto dir = std::filesystem::temp_directory_path() / str("kiln_npy_strings_", ::getpid());
  std::filesystem::create_directories(dir);
  Tensor t = reference::make_string_tensor({2, 2}, {"a", "", "héllo", "日本"});
  io::write_npy(dir / "s.npy", t);
  Tensor back = io::read_npy(dir / "s.npy");
  EXPECT_EQ(back.dtype, DType::kString);
  EXPECT_EQ(back.dims, t.dims);
  EXPECT_EQ(back.strings, t.strings);

  // numpy's 'S' (bytes) arrays read too; object arrays are refused with the reason.
  std::string header = "{'descr': '|S3', 'fortran_order': False, 'shape': (2,), }";
  header.append(size_t(64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string npy = std::string("\x93NUMPY\x01\x00", 8) + char(header.size()) + '\0' + header + std::string("ab\0xyz", 6);
  EXPECT_EQ(io::parse_npy(npy).strings, (Strings{"ab", "xyz"}));
  std::string object = npy;
  object.replace(object.find("|S3"), 3, "|O ");
  try {
    io::parse_npy(object);
    FAIL() << "an object array was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("pickled"), std::string::npos) << e.what();
  }
  std::string short_data = npy.substr(0, npy.size() - 1);  // one byte short of 2 x 3
  EXPECT_THROW(io::parse_npy(short_data), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::reference
