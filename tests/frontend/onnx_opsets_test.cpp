// ONNX opsets up to kMaxOpset: which versions of each op kiln reads, and the
// translation of every op change from opset 18 on (the forms kiln refuses are
// refused naming the node, the op, the opset and the form).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <fstream>
#include <map>
#include <sstream>

#include "importer.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "load_error.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

using kiln::testing::ModelBuilder;
using kiln::testing::expect_load_error;
using ::onnx::TensorProto;
using Tensors = std::map<std::string, reference::Tensor>;

std::vector<reference::Tensor> run(const ModelBuilder& m, const Tensors& inputs) {
  return reference::run(load_model_bytes(m.bytes()), inputs);
}

std::vector<double> values(const reference::Tensor& t) { return ir::read_doubles(t); }

reference::Tensor floats(std::vector<int64_t> dims, std::vector<double> v) {
  return reference::make_tensor(DType::kFloat32, std::move(dims), std::move(v));
}

// ---- which versions -------------------------------------------------------------

// The op history of the onnx package the build found (tests/frontend/onnx_op_history.py).
struct OnnxHistory {
  int opset = 0;
  std::string version;
  std::map<std::string, std::vector<int>> ops;
};

OnnxHistory read_history() {
  std::ifstream in(KILN_ONNX_OP_HISTORY);
  OnnxHistory h;
  in >> h.opset >> h.version;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string name;
    if (!(words >> name)) continue;
    for (int v; words >> v;) h.ops[name].push_back(v);
  }
  return h;
}

std::vector<int> up_to(const std::vector<int>& versions, int opset) {
  std::vector<int> out;
  std::copy_if(versions.begin(), versions.end(), std::back_inserter(out), [&](int v) { return v <= opset; });
  return out;
}

// Every version of every op kiln reads is one ONNX defines, and ONNX defines
// no version up to kMaxOpset that kiln has not gone through: raising kMaxOpset
// with a newer onnx package installed lists here the ops that changed.
TEST(OnnxOpVersions, MatchTheOnnxPackage) {
  OnnxHistory onnx = read_history();
  ASSERT_GT(onnx.opset, 0) << "no op history in " << KILN_ONNX_OP_HISTORY;
  int checked = std::min(onnx.opset, kMaxOpset);
  for (auto& [type, versions] : onnx_op_versions()) {
    ASSERT_TRUE(onnx.ops.count(std::string(type))) << type << " is not an op of onnx " << onnx.version;
    EXPECT_EQ(versions, up_to(versions, kMaxOpset)) << type << ": a version newer than kMaxOpset";
    EXPECT_EQ(up_to(versions, checked), up_to(onnx.ops[std::string(type)], checked))
        << type << ": the versions kiln translates differ from those onnx " << onnx.version << " defines up to opset " << checked;
  }
  if (onnx.opset < kMaxOpset)
    std::cout << "onnx " << onnx.version << " knows opsets up to " << onnx.opset << ": versions from " << onnx.opset + 1
              << " to " << kMaxOpset << " are not checked with it\n";
}

// The ai.onnx.ml ops kiln reads have every version the onnx package defines up to kMaxMlOpset, and no other.
TEST(OnnxMlOpVersions, MatchTheOnnxPackage) {
  OnnxHistory onnx = read_history();
  for (auto& [type, versions] : onnx_ml_op_versions()) {
    std::string key = str(kMlDomain, "::", type);
    ASSERT_TRUE(onnx.ops.count(key)) << type << " is not an ai.onnx.ml op of onnx " << onnx.version;
    EXPECT_EQ(versions, up_to(onnx.ops[key], kMaxMlOpset)) << type;
    EXPECT_TRUE(is_supported_domain_op(std::string(kMlDomain), std::string(type))) << type;
    EXPECT_EQ(ir::op_from_name(type).has_value(), true) << type << " has no op kind of its name";
  }
  EXPECT_EQ(onnx_ml_op_version("LabelEncoder", 3), 2);
  EXPECT_EQ(onnx_ml_op_version("TreeEnsemble", 4), 0);
  EXPECT_FALSE(is_supported_domain_op("ai.onnx.ml", "ZipMap"));
  EXPECT_FALSE(is_supported_domain_op("com.example", "LabelEncoder"));
}

// The table is the importer's list of ONNX ops: every model op kind's ONNX
// names are in it, and everything in it is translated.
TEST(OnnxOpVersions, CoverEveryImportedOp) {
  std::vector<std::string> imported = {"Constant", "Attention", "RMSNormalization", "RotaryEmbedding",
                                       "Mish", "Swish", "SwiGLU", "CenterCropPad", "DynamicQuantizeLinear",
                                       "MeanVarianceNormalization"};
  for (int i = 0; i < ir::op_count(); ++i)
    for (const std::string& type : onnx_op_types(ir::OpKind(i))) {
      size_t domain_end = type.find("::");
      if (domain_end != std::string::npos) {  // ai.onnx.ml::Op: OnnxMlOpVersions checks those
        EXPECT_TRUE(is_supported_domain_op(type.substr(0, domain_end), type.substr(domain_end + 2))) << type;
        continue;
      }
      EXPECT_TRUE(is_supported_op(type)) << type;
      imported.push_back(type);
    }
  for (auto& [type, versions] : onnx_op_versions())
    EXPECT_NE(std::find(imported.begin(), imported.end(), type), imported.end()) << type << " has versions but no translation";
  EXPECT_EQ(onnx_op_version("Split", 17), 13);
  EXPECT_EQ(onnx_op_version("Split", 28), 18);
  EXPECT_EQ(onnx_op_version("Gelu", 19), 0);
}

TEST(OnnxOpsets, TheNewestIsReadAndANewerOneRefused) {
  ModelBuilder m = kiln::testing::small_mlp();
  m.model().mutable_opset_import(0)->set_version(kMaxOpset);
  EXPECT_NO_THROW(load_model_bytes(m.bytes()));
  EXPECT_EQ(max_supported_opset(), kMaxOpset);
  m.model().mutable_opset_import(0)->set_version(kMaxOpset + 1);
  expect_load_error(m, ErrorCode::kUnsupported, {str("opset ", kMaxOpset + 1), str("1 to ", kMaxOpset)});
}

// Before opset 7 a model is read where its ops are as they still are at 7
// (Elu-6, Not-1); Add-6's legacy broadcasting changed at 7 and is refused.
TEST(OnnxOpsets, OpsetsBeforeSevenReadWhereTheirOpsAreUnchanged) {
  ModelBuilder m(6);
  m.input("x", TensorProto::FLOAT, {"3"});
  m.node("Elu", {"x"}, {"y"});
  m.output("y");
  auto y = run(m, {{"x", reference::make_tensor(DType::kFloat32, {3}, {-1, 0, 2})}});
  EXPECT_NEAR(ir::read_doubles(y.at(0))[0], std::exp(-1.0) - 1, 1e-6);
  EXPECT_EQ(ir::read_doubles(y.at(0))[2], 2);
  ModelBuilder old(1);
  old.input("b", TensorProto::BOOL, {"2"});
  old.node("Not", {"b"}, {"c"});
  old.output("c");
  EXPECT_EQ(ir::read_ints(run(old, {{"b", reference::make_tensor(DType::kBool, {2}, {1, 0})}}).at(0)), (std::vector<int64_t>{0, 1}));
  ModelBuilder legacy(6);
  legacy.input("a", TensorProto::FLOAT, {"3"});
  legacy.node("Add", {"a", "a"}, {"s"});
  legacy.output("s");
  expect_load_error(legacy, ErrorCode::kUnsupported, {"opset 6", "Add-6 (node 'Add_0') changed at opset 7", "re-export"});
}

TEST(OnnxOpsets, AnOpItsOpsetLacksIsInvalid) {
  ModelBuilder m(18);
  m.input("x", TensorProto::FLOAT, {"3"});
  m.node("Gelu", {"x"}, {"y"});
  m.output("y");
  expect_load_error(m, ErrorCode::kInvalidModel, {"node 'Gelu_0' (Gelu, opset 18)", "ONNX opset 18 has no Gelu", "from opset 20"});
}

// ONNX Runtime writes LayerNormalization into default-domain models before
// opset 17 (its own registration there): read as LayerNormalization-17.
TEST(OnnxOpsets, LayerNormalizationBeforeOpset17ReadsAsItsFirstDefinition) {
  auto model = [](int opset) {
    ModelBuilder m(opset);
    m.input("x", TensorProto::FLOAT, {"2", "4"});
    m.input("scale", TensorProto::FLOAT, {"4"});
    ModelBuilder::attr(m.node("LayerNormalization", {"x", "scale"}, {"y"}), "epsilon", 0.01f);
    m.output("y");
    return m;
  };
  Tensors inputs{{"x", floats({2, 4}, {1, 2, 3, 5, -1, 0, 4, 2})}, {"scale", floats({4}, {1, 0.5, 2, 1})}};
  std::vector<double> want = values(run(model(17), inputs)[0]);
  for (int opset : {7, 13, 16}) EXPECT_EQ(values(run(model(opset), inputs)[0]), want) << "opset " << opset;
  // Mean of row 0 is 2.75: (1 - 2.75) / sqrt(variance 2.1875 + 0.01) * 1.
  EXPECT_NEAR(want[0], -1.75 / std::sqrt(2.1875 + 0.01), 1e-6);
}

TEST(OnnxOpsets, ErrorsNameTheVersionRead) {
  ModelBuilder m(28);
  m.input("x", TensorProto::FLOAT, {"3"});
  ModelBuilder::attr(m.node("Relu", {"x"}, {"y"}), "alpha", 0.5f);
  m.output("y");
  expect_load_error(m, ErrorCode::kUnsupported, {"node 'Relu_0'", "attribute 'alpha'", "Relu-14 in a model of opset 28"});
}

// ---- opset 18 -------------------------------------------------------------------

// Split-18: num_outputs parts, the last one smaller.
TEST(OnnxOpsets, Split18NumOutputs) {
  ModelBuilder m(18);
  m.input("x", TensorProto::FLOAT, {"5"});
  ModelBuilder::attr(m.node("Split", {"x"}, {"a", "b", "c"}), "num_outputs", int64_t(3));
  for (const char* o : {"a", "b", "c"}) m.output(o);
  auto out = run(m, {{"x", floats({5}, {1, 2, 3, 4, 5})}});
  EXPECT_EQ(values(out[0]), (std::vector<double>{1, 2}));
  EXPECT_EQ(values(out[1]), (std::vector<double>{3, 4}));
  EXPECT_EQ(values(out[2]), (std::vector<double>{5}));

  ModelBuilder old(13);
  old.input("x", TensorProto::FLOAT, {"4"});
  ModelBuilder::attr(old.node("Split", {"x"}, {"a", "b"}), "num_outputs", int64_t(2));
  old.output("a");
  old.output("b");
  expect_load_error(old, ErrorCode::kInvalidModel, {"(Split, opset 13)", "'num_outputs' belongs to Split from opset 18"});

  ModelBuilder neither(18);
  neither.input("x", TensorProto::FLOAT, {"4"});
  neither.node("Split", {"x"}, {"a", "b"});
  neither.output("a");
  neither.output("b");
  expect_load_error(neither, ErrorCode::kInvalidModel, {"either the 'split' input or the 'num_outputs' attribute"});
}

// Reduce*-18 take their axes as an input (noop_with_empty_axes for none); an
// attribute of the older versions still works in their opsets.
TEST(OnnxOpsets, Reduce18AxesInput) {
  for (int opset : {17, 18}) {
    ModelBuilder m(opset);
    m.input("x", TensorProto::FLOAT, {"2", "3"});
    auto& n = opset < 18 ? m.node("ReduceMean", {"x"}, {"y"}) : m.node("ReduceMean", {"x", "axes"}, {"y"});
    if (opset < 18) ModelBuilder::attr(n, "axes", std::vector<int64_t>{1});
    else m.int_initializer("axes", {1}, {1});
    ModelBuilder::attr(n, "keepdims", int64_t(0));
    m.output("y");
    EXPECT_EQ(values(run(m, {{"x", floats({2, 3}, {1, 2, 3, 4, 5, 6})}})[0]), (std::vector<double>{2, 5})) << opset;
  }
  ModelBuilder mixed(18);  // an opset-17 form in an opset-18 model
  mixed.input("x", TensorProto::FLOAT, {"2", "3"});
  ModelBuilder::attr(mixed.node("ReduceMax", {"x"}, {"y"}), "axes", std::vector<int64_t>{1});
  mixed.output("y");
  expect_load_error(mixed, ErrorCode::kInvalidModel, {"(ReduceMax, opset 18)", "'axes' is an input from opset 18 on"});

  ModelBuilder noop(18);
  noop.input("x", TensorProto::FLOAT, {"2"});
  ModelBuilder::attr(noop.node("ReduceSumSquare", {"x"}, {"y"}), "noop_with_empty_axes", int64_t(1));
  noop.output("y");
  EXPECT_EQ(values(run(noop, {{"x", floats({2}, {3, -2})}})[0]), (std::vector<double>{9, 4}));
}

// ReduceMax-20 and ReduceMin-20 take bools; over nothing they are false and true.
TEST(OnnxOpsets, Reduce20Bools) {
  for (const char* op : {"ReduceMax", "ReduceMin"}) {
    ModelBuilder m(20);
    m.input("x", TensorProto::BOOL, {"2", "0"});
    m.int_initializer("axes", {1}, {1});
    ModelBuilder::attr(m.node(op, {"x", "axes"}, {"y"}), "keepdims", int64_t(0));
    m.output("y", TensorProto::BOOL);
    auto y = run(m, {{"x", reference::make_tensor(DType::kBool, {2, 0}, {})}});
    double empty = std::string(op) == "ReduceMax" ? 0 : 1;
    EXPECT_EQ(values(y[0]), (std::vector<double>{empty, empty})) << op;
  }
}

// Pad-18 pads the axes of its `axes` input; Pad-19 adds mode wrap.
TEST(OnnxOpsets, Pad18AxesAndPad19Wrap) {
  ModelBuilder m(19);
  m.input("x", TensorProto::FLOAT, {"2", "3"});
  m.int_initializer("pads", {2}, {1, 2});
  m.int_initializer("axes", {1}, {-1});
  ModelBuilder::attr(m.node("Pad", {"x", "pads", "", "axes"}, {"y"}), "mode", std::string("wrap"));
  m.output("y");
  auto y = run(m, {{"x", floats({2, 3}, {1, 2, 3, 4, 5, 6})}});
  EXPECT_EQ(y[0].dims, (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(values(y[0]), (std::vector<double>{3, 1, 2, 3, 1, 2, 6, 4, 5, 6, 4, 5}));
}

// ScatterND and ScatterElements gained reduction add and mul in version 16 and
// max and min in 18; a reduction its version lacks is refused naming both.
TEST(OnnxOpsets, ScatterReductionsFollowTheirVersions) {
  auto model = [](int opset, const char* op, const std::string& reduction) {
    ModelBuilder m(opset);
    m.input("x", TensorProto::FLOAT, {"3"});
    m.int_initializer("i", {2, 1}, {2, 2});
    m.initializer("u", {2}, {10, 20});
    ModelBuilder::attr(m.node(op, {"x", "i", "u"}, {"y"}), "reduction", reduction);
    m.output("y");
    return m;
  };
  EXPECT_EQ(values(run(model(18, "ScatterND", "max"), {{"x", floats({3}, {1, 2, 3})}})[0]), (std::vector<double>{1, 2, 20}));
  EXPECT_EQ(values(run(model(16, "ScatterND", "add"), {{"x", floats({3}, {1, 2, 3})}})[0]), (std::vector<double>{1, 2, 33}));
  expect_load_error(model(16, "ScatterND", "min"), ErrorCode::kInvalidModel,
                    {"node 'ScatterND_0' (ScatterND, opset 16)", "reduction 'min' is defined from ScatterND-18 on"});
  expect_load_error(model(13, "ScatterND", "mul"), ErrorCode::kInvalidModel, {"ScatterND-16 on; the model's is ScatterND-13"});
}

// Resize-18's antialias stretches the linear filter by 1/scale when downscaling:
// at half size each output averages four inputs with weights 1/8, 3/8, 3/8, 1/8
// (edges clamped); without it, the two nearest inputs.
TEST(OnnxOpsets, Resize18AntialiasStretchesTheFilter) {
  for (int64_t antialias : {0, 1}) {
    ModelBuilder m(18);
    m.input("x", TensorProto::FLOAT, {"1", "1", "1", "8"});
    m.initializer("scales", {4}, {1, 1, 1, 0.5f});
    auto& r = m.node("Resize", {"x", "", "scales"}, {"y"});
    ModelBuilder::attr(r, "mode", std::string("linear"));
    ModelBuilder::attr(r, "antialias", antialias);
    m.output("y");
    auto y = run(m, {{"x", reference::make_tensor(DType::kFloat32, {1, 1, 1, 8}, {0, 1, 2, 3, 4, 5, 6, 7})}});
    std::vector<double> want = antialias ? std::vector<double>{0.625, 2.5, 4.5, 6.375} : std::vector<double>{0.5, 2.5, 4.5, 6.5};
    EXPECT_EQ(ir::read_doubles(y.at(0)), want) << antialias;
  }
}

// GroupNormalization-18 scales per group: each group's scale and bias cover its channels.
TEST(OnnxOpsets, GroupNormalization18ScalesPerGroup) {
  ModelBuilder m(18);
  m.input("x", TensorProto::FLOAT, {"1", "4", "2"});
  m.initializer("scale", {2}, {2, -1});
  m.initializer("bias", {2}, {0.5f, 1});
  auto& n = m.node("GroupNormalization", {"x", "scale", "bias"}, {"y"});
  ModelBuilder::attr(n, "num_groups", int64_t(2));
  ModelBuilder::attr(n, "epsilon", 0.0f);
  m.output("y");
  std::vector<double> x = {1, 2, 3, 4, 10, 20, 30, 50};
  auto y = values(run(m, {{"x", floats({1, 4, 2}, x)}})[0]);
  for (int g = 0; g < 2; ++g) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += x[size_t(g * 4 + i)] / 4;
    for (int i = 0; i < 4; ++i) var += (x[size_t(g * 4 + i)] - mean) * (x[size_t(g * 4 + i)] - mean) / 4;
    double scale = g ? -1 : 2, bias = g ? 1 : 0.5;
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(y[size_t(g * 4 + i)], (x[size_t(g * 4 + i)] - mean) / std::sqrt(var) * scale + bias, 1e-5) << g << "," << i;
  }
}

// ---- opsets 19 to 28 ------------------------------------------------------------

// saturate (Cast-19) and round_mode (Cast-24) rule float8 and float8e8m0
// targets only (round_mode from opset 24 on); a cast to a type kiln lacks names it.
TEST(OnnxOpsets, CastAttributesOfFloat8AndTypesKilnLacks) {
  ModelBuilder m(24);
  m.input("x", TensorProto::FLOAT, {"2"});
  auto& c = m.node("Cast", {"x"}, {"y"});
  ModelBuilder::attr(c, "to", int64_t(TensorProto::INT32));
  ModelBuilder::attr(c, "saturate", int64_t(0));
  ModelBuilder::attr(c, "round_mode", std::string("nearest"));
  m.output("y", TensorProto::INT32);
  EXPECT_EQ(values(run(m, {{"x", floats({2}, {2.7, -1.5})}})[0]), (std::vector<double>{2, -1}));

  auto e8m0 = [](int opset, const char* round_mode) {
    ModelBuilder m(opset);
    m.input("x", TensorProto::FLOAT, {"2"});
    auto& c = m.node("Cast", {"x"}, {"y"});
    ModelBuilder::attr(c, "to", int64_t(TensorProto::FLOAT8E8M0));
    ModelBuilder::attr(c, "round_mode", std::string(round_mode));
    m.output("y", TensorProto::FLOAT8E8M0);
    return m;
  };
  reference::Tensor y = run(e8m0(24, "nearest"), {{"x", floats({2}, {1.5, 1.25})}})[0];
  EXPECT_EQ(y.dtype, DType::kFloat8E8M0);
  EXPECT_EQ(values(y), (std::vector<double>{2, 1}));
  expect_load_error(e8m0(23, "up"), ErrorCode::kInvalidModel, {"node 'Cast_0' (Cast, opset 23)", "'round_mode' belongs to Cast from opset 24 on"});
  expect_load_error(e8m0(24, "even"), ErrorCode::kInvalidModel, {"round_mode 'even' is not one of 'up', 'down' and 'nearest'"});

  ModelBuilder f6(25);
  f6.input("x", TensorProto::FLOAT, {"2"});
  ModelBuilder::attr(f6.node("Cast", {"x"}, {"y"}), "to", int64_t(TensorProto::FLOAT6E2M3));
  f6.output("y", TensorProto::FLOAT6E2M3);
  expect_load_error(f6, ErrorCode::kUnsupported, {"node 'Cast_0' (Cast, opset 25)", "cast to FLOAT6E2M3", "a type kiln does not have"});

  ModelBuilder in(21);
  in.input("q", TensorProto::FLOAT6E2M3, {"2"});
  in.node("Identity", {"q"}, {"y"});
  in.output("y");
  expect_load_error(in, ErrorCode::kUnsupported, {"input 'q' has dtype FLOAT6E2M3", "float32"});

  ModelBuilder k(23);
  auto& constant = k.node("Constant", {}, {"y"});
  auto* value = constant.add_attribute();
  value->set_name("value");
  value->set_type(::onnx::AttributeProto::TENSOR);
  value->mutable_t()->set_data_type(TensorProto::FLOAT6E2M3);
  value->mutable_t()->add_dims(2);
  value->mutable_t()->set_raw_data(std::string(2, '\0'));
  k.output("y");
  expect_load_error(k, ErrorCode::kUnsupported, {"node 'Constant_0' (Constant, opset 23): attribute 'value'", "FLOAT6E2M3"});
}

// BitCast-26 reads `to` as Cast does: a kiln type of the input's width, or an
// error naming the type kiln lacks or the widths that differ.
TEST(OnnxOpsets, BitCast26TargetTypes) {
  auto model = [](int64_t to) {
    ModelBuilder m(26);
    m.input("x", TensorProto::FLOAT, {"2"});
    ModelBuilder::attr(m.node("BitCast", {"x"}, {"y"}), "to", to);
    m.output("y", int(to));
    return m;
  };
  EXPECT_EQ(values(run(model(TensorProto::INT32), {{"x", floats({2}, {1.0, -2.0})}})[0]),
            (std::vector<double>{1065353216, -1073741824}));
  EXPECT_EQ(values(run(model(TensorProto::UINT32), {{"x", floats({2}, {1.0, -2.0})}})[0]),
            (std::vector<double>{1065353216, 3221225472.0}));
  expect_load_error(model(TensorProto::FLOAT6E2M3), ErrorCode::kUnsupported,
                    {"node 'BitCast_0' (BitCast, opset 26)", "bitcast to FLOAT6E2M3", "a type kiln does not have"});
  expect_load_error(model(TensorProto::FLOAT16), ErrorCode::kTypeError, {"float32 (32 bits) cannot be read as float16 (16 bits)"});
}

TEST(OnnxOpsets, Gelu20Approximations) {
  for (const char* approximate : {"none", "tanh"}) {
    ModelBuilder m(20);
    m.input("x", TensorProto::FLOAT, {"1"});
    ModelBuilder::attr(m.node("Gelu", {"x"}, {"y"}), "approximate", std::string(approximate));
    m.output("y");
    double x = 1.5, exact = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    double tanh = 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(values(run(m, {{"x", floats({1}, {x})}})[0])[0], std::string(approximate) == "tanh" ? tanh : exact, 1e-6);
  }
  ModelBuilder bad(20);
  bad.input("x", TensorProto::FLOAT, {"1"});
  ModelBuilder::attr(bad.node("Gelu", {"x"}, {"y"}), "approximate", std::string("sigmoid"));
  bad.output("y");
  expect_load_error(bad, ErrorCode::kInvalidModel, {"approximate 'sigmoid'"});
}

// Range-27's stash_type: float16 ranges computed in float or double (kiln: double).
TEST(OnnxOpsets, Range27StashType) {
  for (int64_t stash : {int64_t(TensorProto::FLOAT), int64_t(TensorProto::FLOAT16)}) {
    ModelBuilder m(27);
    m.input("start", TensorProto::FLOAT, {});
    m.initializer("limit", {}, {2});
    m.initializer("delta", {}, {0.5f});
    ModelBuilder::attr(m.node("Range", {"start", "limit", "delta"}, {"y"}), "stash_type", stash);
    m.output("y");
    if (stash == TensorProto::FLOAT)
      EXPECT_EQ(values(run(m, {{"start", floats({}, {0})}})[0]), (std::vector<double>{0, 0.5, 1, 1.5}));
    else
      expect_load_error(m, ErrorCode::kInvalidModel, {"(Range, opset 27)", "stash_type 10"});
  }
}

// SpaceToDepth-28's mode: CRD orders each output channel block by block within
// an input channel; DCR is SpaceToDepth as before.
TEST(OnnxOpsets, SpaceToDepth28Modes) {
  std::vector<double> x(32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i);
  for (const char* mode : {"DCR", "CRD"}) {
    ModelBuilder m(28);
    m.input("x", TensorProto::FLOAT, {"1", "2", "4", "4"});
    auto& n = m.node("SpaceToDepth", {"x"}, {"y"});
    ModelBuilder::attr(n, "blocksize", int64_t(2));
    ModelBuilder::attr(n, "mode", std::string(mode));
    m.output("y");
    auto y = run(m, {{"x", floats({1, 2, 4, 4}, x)}});
    ASSERT_EQ(y[0].dims, (std::vector<int64_t>{1, 8, 2, 2}));
    std::vector<double> got = values(y[0]);
    bool crd = std::string(mode) == "CRD";
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t by = 0; by < 2; ++by)
        for (int64_t bx = 0; bx < 2; ++bx)
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t w = 0; w < 2; ++w) {
              int64_t out_c = crd ? c * 4 + by * 2 + bx : (by * 2 + bx) * 2 + c;
              EXPECT_EQ(got[size_t((out_c * 2 + h) * 2 + w)], x[size_t((c * 4 + h * 2 + by) * 4 + w * 2 + bx)]) << mode;
            }
  }
}

}  // namespace
}  // namespace kiln::onnx
