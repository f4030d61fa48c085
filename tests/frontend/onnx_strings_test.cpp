// ONNX string tensors (string_data) and the ai.onnx.ml domain: what the
// importer reads, and the malformed forms it refuses with the reason.
#include <gtest/gtest.h>

#include "importer.h"
#include "kiln/error.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "load_error.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

using kiln::testing::ModelBuilder;
using kiln::testing::expect_load_error;
using ::onnx::TensorProto;
using Strings = std::vector<std::string>;

TensorProto& string_initializer(ModelBuilder& m, const std::string& name, const std::vector<int64_t>& dims, const Strings& values) {
  TensorProto& t = *m.graph().add_initializer();
  t.set_name(name);
  t.set_data_type(TensorProto::STRING);
  for (int64_t d : dims) t.add_dims(d);
  for (const std::string& s : values) t.add_string_data(s);
  return t;
}

// x [2] of strings, concatenated with a string initializer s.
ModelBuilder concat_model(const Strings& suffix = {"!", "?"}) {
  ModelBuilder m(20);
  m.input("x", TensorProto::STRING, {"2"});
  string_initializer(m, "s", {2}, suffix);
  m.node("StringConcat", {"x", "s"}, {"y"});
  m.output("y", TensorProto::STRING);
  return m;
}

TEST(OnnxStrings, StringInputsAndInitializersAreRead) {
  ir::Network net = load_model_bytes(concat_model().bytes());
  EXPECT_EQ(net.value(net.inputs()[0]).dtype, DType::kString);
  const ir::Value& s = net.value(*net.find_value("s"));
  ASSERT_TRUE(s.weight);
  EXPECT_EQ(s.weight->strings, (Strings{"!", "?"}));
  EXPECT_EQ(s.weight->data.size(), 0u);
  EXPECT_EQ(net.parameter_bytes(), 2);
  auto y = reference::run(net, {{"x", reference::make_string_tensor({2}, {"a", "b"})}});
  EXPECT_EQ(y[0].strings, (Strings{"a!", "b?"}));
}

TEST(OnnxStrings, MalformedStringTensorsAreRefused) {
  ModelBuilder fewer = concat_model({"!"});  // one string for dims [2]
  expect_load_error(fewer, ErrorCode::kInvalidModel, {"tensor 's' has 1 string_data values but its dims [2] need 2"});

  ModelBuilder raw = concat_model();
  raw.graph().mutable_initializer(0)->set_raw_data("!?");
  expect_load_error(raw, ErrorCode::kInvalidModel, {"string tensor 's' has raw_data"});

  ModelBuilder huge = concat_model();
  huge.graph().mutable_initializer(0)->set_dims(0, int64_t(1) << 40);
  expect_load_error(huge, ErrorCode::kInvalidModel, {"need 1099511627776"});
}

TEST(OnnxStrings, CastToStringsReadsOnnxTypeCode) {
  ModelBuilder m(13);
  m.input("x", TensorProto::FLOAT, {"2"});
  ModelBuilder::attr(m.node("Cast", {"x"}, {"y"}), "to", int64_t(TensorProto::STRING));
  m.output("y", TensorProto::STRING);
  ir::Network net = load_model_bytes(m.bytes());
  auto y = reference::run(net, {{"x", reference::make_tensor(DType::kFloat32, {2}, {0.25, 3})}});
  EXPECT_EQ(y[0].strings, (Strings{"0.25", "3.0"}));
}

// x [3] of strings through ai.onnx.ml's LabelEncoder.
ModelBuilder label_encoder_model(int ml_opset, bool default_domain_too) {
  ModelBuilder m(20);
  m.model().clear_opset_import();
  if (default_domain_too) m.model().add_opset_import()->set_version(20);
  auto* ml = m.model().add_opset_import();
  ml->set_domain("ai.onnx.ml");
  ml->set_version(ml_opset);
  m.input("x", TensorProto::STRING, {"3"});
  ::onnx::NodeProto& n = m.node("LabelEncoder", {"x"}, {"y"});
  n.set_domain("ai.onnx.ml");
  m.output("y", TensorProto::INT64);
  return m;
}

void strings_attr(::onnx::NodeProto& n, const std::string& name, const Strings& values) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::STRINGS);
  for (auto& s : values) a->add_strings(s);
}

TEST(OnnxStrings, LabelEncoderOfEveryVersion) {
  // Version 1: classes_strings, a string's index; a model of ai.onnx.ml ops only.
  ModelBuilder v1 = label_encoder_model(1, false);
  strings_attr(*v1.graph().mutable_node(0), "classes_strings", {"a", "b", "c"});
  ModelBuilder::attr(*v1.graph().mutable_node(0), "default_int64", int64_t(-5));
  ir::Network net = load_model_bytes(v1.bytes());
  EXPECT_EQ(ir::read_ints(reference::run(net, {{"x", reference::make_string_tensor({3}, {"c", "z", "a"})}})[0]), (std::vector<int64_t>{2, -5, 0}));

  ModelBuilder v2 = label_encoder_model(2, true);
  strings_attr(*v2.graph().mutable_node(0), "keys_strings", {"a", "b"});
  ModelBuilder::attr(*v2.graph().mutable_node(0), "values_int64s", std::vector<int64_t>{7, 8});
  net = load_model_bytes(v2.bytes());
  EXPECT_EQ(ir::read_ints(reference::run(net, {{"x", reference::make_string_tensor({3}, {"b", "z", "a"})}})[0]), (std::vector<int64_t>{8, -1, 7}));

  // Version 4's tensor attributes, refused in a version 2 model.
  ModelBuilder v4 = label_encoder_model(2, true);
  auto* keys = v4.graph().mutable_node(0)->add_attribute();
  keys->set_name("keys_tensor");
  keys->set_type(::onnx::AttributeProto::TENSOR);
  keys->mutable_t()->set_data_type(TensorProto::STRING);
  keys->mutable_t()->add_dims(1);
  keys->mutable_t()->add_string_data("a");
  ModelBuilder::attr(*v4.graph().mutable_node(0), "values_int64s", std::vector<int64_t>{1});
  expect_load_error(v4, ErrorCode::kInvalidModel, {"'keys_tensor' belongs to LabelEncoder from ai.onnx.ml opset 4 on"});
  v4.model().mutable_opset_import(1)->set_version(4);
  net = load_model_bytes(v4.bytes());
  EXPECT_EQ(ir::read_ints(reference::run(net, {{"x", reference::make_string_tensor({3}, {"a", "b", "a"})}})[0]), (std::vector<int64_t>{1, -1, 1}));
}

TEST(OnnxStrings, TheMlOpsetIsChecked) {
  ModelBuilder none = label_encoder_model(2, true);
  none.model().mutable_opset_import()->RemoveLast();
  expect_load_error(none, ErrorCode::kInvalidModel, {"imports no ai.onnx.ml opset"});
  ModelBuilder newer = label_encoder_model(kMaxMlOpset + 1, true);
  expect_load_error(newer, ErrorCode::kUnsupported, {"ai.onnx.ml opset newer than 5"});
  ModelBuilder other = label_encoder_model(2, true);
  other.graph().mutable_node(0)->set_op_type("ZipMap");
  expect_load_error(other, ErrorCode::kUnsupported, {"unsupported ops: ai.onnx.ml::ZipMap (1)"});
}

}  // namespace
}  // namespace kiln::onnx
