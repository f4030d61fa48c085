#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

namespace fs = std::filesystem;
using kiln::testing::ModelBuilder;
using ::onnx::TensorProto;

TEST(OnnxImport, SmallMlpImportsAndRuns) {
  ir::Network net = load_model_bytes(kiln::testing::small_mlp().bytes());
  ASSERT_EQ(net.inputs().size(), 1u);
  EXPECT_EQ(ir::shape_to_string(net.value(net.inputs()[0]).shape), "[N,4]");
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[0]).shape), "[N,3]");
  auto x = reference::make_tensor(DType::kFloat32, {2, 4}, {1, 2, 3, 4, -1, -2, -3, -4});
  auto y = reference::run(net, {{"x", x}});
  ASSERT_EQ(y.size(), 1u);
  // row 0: [1,2,3,4] @ w + b = [7.5+0.5, 0.2... computed by hand below]
  const float* v = y[0].data.as<float>();
  float w[4][3] = {{0.1f, -0.2f, 0.3f}, {0.4f, 0.5f, -0.6f}, {0.7f, 0.8f, 0.9f}, {-1.0f, 1.1f, 1.2f}};
  float b[3] = {0.5f, -0.5f, 0.25f};
  float xs[2][4] = {{1, 2, 3, 4}, {-1, -2, -3, -4}};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      double acc = b[c];
      for (int k = 0; k < 4; ++k) acc += double(xs[r][k]) * w[k][c];
      EXPECT_NEAR(v[r * 3 + c], std::max(acc, 0.0), 1e-6) << r << "," << c;
    }
}

TEST(OnnxImport, InputsThatAreInitializersBecomeWeights) {
  ModelBuilder m = kiln::testing::small_mlp();
  auto* extra = m.graph().add_input();
  extra->set_name("w");
  extra->mutable_type()->mutable_tensor_type()->set_elem_type(TensorProto::FLOAT);
  ir::Network net = load_model_bytes(m.bytes());
  EXPECT_EQ(net.inputs().size(), 1u);
  EXPECT_TRUE(net.value(*net.find_value("w")).weight.has_value());
}

TEST(OnnxImport, OldOpsetAttributesBecomeInputs) {
  ModelBuilder m(11);
  m.input("x", TensorProto::FLOAT, {"2", "1", "3"});
  auto& squeeze = m.node("Squeeze", {"x"}, {"s"});
  ModelBuilder::attr(squeeze, "axes", std::vector<int64_t>{1});
  auto& reduce = m.node("ReduceSum", {"s"}, {"y"});
  ModelBuilder::attr(reduce, "axes", std::vector<int64_t>{-1});
  ModelBuilder::attr(reduce, "keepdims", int64_t(0));
  m.output("y");
  ir::Network net = load_model_bytes(m.bytes());
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[0]).shape), "[2]");
  auto y = reference::run(net, {{"x", reference::make_tensor(DType::kFloat32, {2, 1, 3}, {1, 2, 3, 4, 5, 6})}});
  EXPECT_EQ(y[0].data.as<float>()[0], 6.0f);
  EXPECT_EQ(y[0].data.as<float>()[1], 15.0f);
}

TEST(OnnxImport, LegacySoftmaxFlattensFromAxis) {
  ModelBuilder m(11);
  m.input("x", TensorProto::FLOAT, {"2", "2", "2"});
  auto& sm = m.node("Softmax", {"x"}, {"y"});
  ModelBuilder::attr(sm, "axis", int64_t(1));
  m.output("y");
  ir::Network net = load_model_bytes(m.bytes());
  auto y = reference::run(net, {{"x", reference::make_tensor(DType::kFloat32, {2, 2, 2}, {0, 0, 0, 0, 1, 1, 1, 1})}});
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(y[0].data.as<float>()[i], 0.25, 1e-6);  // over 4 elements per batch
}

TEST(OnnxImport, ExternalDataInsideTheModelFolder) {
  fs::path dir = fs::temp_directory_path() / "kiln_external_ok";
  fs::create_directories(dir);
  std::vector<float> w = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  {
    std::ofstream out(dir / "weights.bin", std::ios::binary);
    out.write("padding!", 8);
    out.write(reinterpret_cast<const char*>(w.data()), std::streamsize(w.size() * 4));
  }
  ModelBuilder m = kiln::testing::small_mlp();
  TensorProto* t = m.graph().mutable_initializer(0);
  t->clear_raw_data();
  t->set_data_location(TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& v) {
    auto* e = t->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", "weights.bin");
  add("offset", "8");
  add("length", "48");
  {
    std::ofstream out(dir / "model.onnx", std::ios::binary);
    out << m.bytes();
  }
  ir::Network net = load_model(dir / "model.onnx");
  const ir::Value& wv = net.value(*net.find_value("w"));
  ASSERT_TRUE(wv.weight);
  EXPECT_EQ(wv.weight->data.as<float>()[11], 12.0f);
  fs::remove_all(dir);
}

TEST(OnnxImport, ConstantNodesBecomeWeights) {
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"3"});
  auto& c = m.node("Constant", {}, {"k"});
  auto* a = c.add_attribute();
  a->set_name("value_floats");
  a->set_type(::onnx::AttributeProto::FLOATS);
  for (float f : {1.0f, 2.0f, 3.0f}) a->add_floats(f);
  m.node("Mul", {"x", "k"}, {"y"});
  m.output("y");
  ir::Network net = load_model_bytes(m.bytes());
  auto y = reference::run(net, {{"x", reference::make_tensor(DType::kFloat32, {3}, {2, 2, 2})}});
  EXPECT_EQ(y[0].data.as<float>()[2], 6.0f);
}

// INT16/UINT16 travel in int32_data, UINT32/UINT64 in uint64_data, all of
// them in raw_data too; inputs and outputs keep their types.
TEST(OnnxImport, SixteenBitAndUnsignedTypesFromEveryField) {
  struct Case {
    int onnx;
    DType dtype;
  };
  for (Case k : {Case{TensorProto::INT16, DType::kInt16}, Case{TensorProto::UINT16, DType::kUInt16},
                 Case{TensorProto::UINT32, DType::kUInt32}, Case{TensorProto::UINT64, DType::kUInt64}}) {
    SCOPED_TRACE(dtype_name(k.dtype));
    ModelBuilder m;
    m.input("x", k.onnx, {"2"});
    TensorProto& typed = *m.graph().add_initializer();
    typed.set_name("typed");
    typed.set_data_type(k.onnx);
    typed.add_dims(2);
    TensorProto& raw = *m.graph().add_initializer();
    raw.set_name("raw");
    raw.set_data_type(k.onnx);
    raw.add_dims(2);
    const uint64_t big = k.dtype == DType::kUInt64 ? ~uint64_t(0) : k.dtype == DType::kUInt32 ? 0xfffffffeu : 0xfffd;
    if (k.dtype == DType::kUInt32 || k.dtype == DType::kUInt64) {
      typed.add_uint64_data(big);
      typed.add_uint64_data(3);
    } else {
      typed.add_int32_data(k.dtype == DType::kInt16 ? -3 : int32_t(big));
      typed.add_int32_data(3);
    }
    std::string bytes(2 * dtype_size(k.dtype), '\0');
    std::memcpy(bytes.data(), &big, dtype_size(k.dtype));  // little-endian: the low bytes first
    bytes[dtype_size(k.dtype)] = 3;
    raw.set_raw_data(bytes);
    m.node("Add", {"x", "typed"}, {"y"});
    m.node("Add", {"x", "raw"}, {"z"});
    m.output("y", k.onnx);
    m.output("z", k.onnx);
    ir::Network net = load_model_bytes(m.bytes());
    EXPECT_EQ(net.value(*net.find_value("x")).dtype, k.dtype);
    ir::TensorData zero;
    zero.dtype = k.dtype;
    zero.dims = {2};
    zero.data = Buffer::from_bytes(std::vector<std::byte>(2 * dtype_size(k.dtype)));
    auto out = reference::run(net, {{"x", zero}});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].dtype, k.dtype);
    EXPECT_EQ(ir::read_ints(out[0]), ir::read_ints(out[1]));
    EXPECT_EQ(ir::read_ints(out[0])[1], 3);
    EXPECT_EQ(std::memcmp(out[1].data.data(), bytes.data(), bytes.size()), 0);
  }
}

// The 4- and 2-bit types come packed two or four to a byte, low bits first,
// in raw_data and in int32_data (a packed byte a value); a float8 value's
// bits are an int32_data value. kiln holds each element in a byte of its own.
TEST(OnnxImport, NarrowTypesUnpackFromRawAndInt32Data) {
  struct Case {
    int onnx;
    int64_t n;
    std::vector<int32_t> bytes;
    std::vector<double> values;
  };
  const Case cases[] = {
      {TensorProto::INT4, 3, {0x87, 0x0f}, {7, -8, -1}},
      {TensorProto::UINT4, 3, {0x87, 0x0f}, {7, 8, 15}},
      {TensorProto::INT2, 5, {0xe4, 0x02}, {0, 1, -2, -1, -2}},
      {TensorProto::UINT2, 5, {0xe4, 0x02}, {0, 1, 2, 3, 2}},
      {TensorProto::FLOAT4E2M1, 3, {0x7f, 0x01}, {-6, 6, 0.5}},
      {TensorProto::FLOAT8E4M3FN, 3, {0x38, 0xbc, 0x7e}, {1, -1.5, 448}},
      {TensorProto::FLOAT8E5M2FNUZ, 2, {0x40, 0x7f}, {1, 57344}},
      {TensorProto::FLOAT8E8M0, 3, {0x7f, 0x00, 0xfe}, {1, std::ldexp(1.0, -127), std::ldexp(1.0, 127)}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.onnx);
    ModelBuilder m;
    for (const char* name : {"typed", "raw"}) {
      TensorProto& t = *m.graph().add_initializer();
      t.set_name(name);
      t.set_data_type(k.onnx);
      t.add_dims(k.n);
      if (std::string_view(name) == "raw") t.set_raw_data(std::string(k.bytes.begin(), k.bytes.end()));
      else
        for (int32_t b : k.bytes) t.add_int32_data(b);
      ModelBuilder::attr(m.node("Cast", {name}, {std::string(name) + "_f"}), "to", int64_t(TensorProto::FLOAT));
      m.output(std::string(name) + "_f", TensorProto::FLOAT);
    }
    ir::Network net = load_model_bytes(m.bytes());
    EXPECT_EQ(net.value(*net.find_value("raw")).weight->data.size(), size_t(k.n));
    auto out = reference::run(net, {});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(ir::read_doubles(out[0]), k.values);
    EXPECT_EQ(ir::read_doubles(out[1]), k.values);
  }
  ModelBuilder short_raw;
  TensorProto& t = *short_raw.graph().add_initializer();
  t.set_name("w");
  t.set_data_type(TensorProto::INT4);
  t.add_dims(3);
  t.set_raw_data(std::string(1, '\x11'));
  short_raw.node("Identity", {"w"}, {"y"});
  short_raw.output("y", TensorProto::INT4);
  try {
    load_model_bytes(short_raw.bytes());
    ADD_FAILURE() << "a 3-element int4 tensor of 1 byte loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 elements of int4 packed need 2"), std::string::npos) << e.what();
  }
}

TEST(OnnxImport, SummaryListsUnsupportedOps) {
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"3"});
  m.node("Relu", {"x"}, {"a"});
  m.node("ZipMap", {"a"}, {"b"}).set_domain("ai.onnx.ml");
  m.output("b");
  fs::path p = fs::temp_directory_path() / "kiln_summary.onnx";
  {
    std::ofstream out(p, std::ios::binary);
    out << m.bytes();
  }
  ModelSummary s = summarize_model(p);
  EXPECT_EQ(s.opset, 13);
  EXPECT_EQ(s.op_histogram.at("Relu"), 1);
  EXPECT_EQ(s.unsupported_ops, std::vector<std::string>{"ai.onnx.ml::ZipMap"});
  fs::remove(p);
}

// Ops the builder makes share names with ONNX ops of other meanings: a model's
// FusedMatMul is unsupported, never taken as kiln's, and ONNX's Attention
// (opset 23 on) is read with ONNX's semantics (onnx_decompositions_test.cpp),
// not as kiln's fused op.
TEST(OnnxImport, BuilderOpsAreNotImported) {
  for (const char* op : {"FusedMatMul", "FusedElementwise", "ConvChannelsLast"}) {
    ModelBuilder m;
    m.input("x", TensorProto::FLOAT, {"3"});
    m.node(op, {"x", "x", "x"}, {"y"});
    m.output("y");
    try {
      load_model_bytes(m.bytes());
      FAIL() << op << " was imported";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(str("unsupported ops: ", op, " (1)")), std::string::npos) << e.what();
    }
  }
  ModelBuilder m(23);
  m.input("x", TensorProto::FLOAT, {"1", "2", "3", "4"});
  m.node("Attention", {"x", "x", "x"}, {"y"});
  m.output("y");
  ir::Network net = load_model_bytes(m.bytes());
  for (const ir::Node& node : net.nodes()) EXPECT_NE(node.op, ir::OpKind::kAttention) << node.name;
  EXPECT_EQ(onnx_op_types(ir::OpKind::kResize), (std::vector<std::string>{"Resize", "Upsample"}));
  EXPECT_EQ(onnx_op_types(ir::OpKind::kAttention), std::vector<std::string>{});
}

}  // namespace
}  // namespace kiln::onnx
