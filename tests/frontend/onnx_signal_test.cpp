// Importing the signal ops: DFT-17's axis attribute (default 1) as DFT-20's
// axis input, the generators' output_datatype from ONNX's type codes, and the
// forms refused, naming the node and what was expected.
#include <gtest/gtest.h>

#include <map>

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

// DFT of x [2, 4, 1]: rows 1, 2, 3, 4 and 10, 20, 30, 40.
ModelBuilder dft(int opset, std::optional<int64_t> axis_attribute) {
  ModelBuilder m(opset);
  m.input("x", TensorProto::FLOAT, {"2", "4", "1"});
  auto& n = m.node("DFT", {"x"}, {"y"});
  if (axis_attribute) ModelBuilder::attr(n, "axis", *axis_attribute);
  m.output("y");
  return m;
}

std::vector<double> run_x(const ModelBuilder& m) {
  std::map<std::string, reference::Tensor> in{
      {"x", reference::make_tensor(DType::kFloat32, {2, 4, 1}, {1, 2, 3, 4, 10, 20, 30, 40})}};
  return ir::read_doubles(reference::run(load_model_bytes(m.bytes()), in).at(0));
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << "element " << i;
}

TEST(OnnxSignal, DftAxisAttributeBecomesTheInput) {
  const std::vector<double> along_1 = {10, 0, -2, 2, -2, 0, -2, -2, 100, 0, -20, 20, -20, 0, -20, -20};
  expect_near(run_x(dft(17, std::nullopt)), along_1);  // DFT-17's default axis, 1
  expect_near(run_x(dft(17, 1)), along_1);
  expect_near(run_x(dft(20, std::nullopt)), along_1);  // DFT-20's default axis, -2
  expect_near(run_x(dft(19, 0)), {11, 0, 22, 0, 33, 0, 44, 0, -9, 0, -18, 0, -27, 0, -36, 0});
  expect_load_error(dft(20, 1), ErrorCode::kInvalidModel, {"(DFT, opset 20)", "'axis' is an input from opset 20 on, not an attribute"});
}

ModelBuilder hann(int64_t output_datatype) {
  ModelBuilder m(17);
  m.int_initializer("size", {}, {4});
  m.input("unused", TensorProto::FLOAT, {"1"});
  auto& n = m.node("HannWindow", {"size"}, {"w"});
  ModelBuilder::attr(n, "output_datatype", output_datatype);
  m.output("w", int(output_datatype));
  return m;
}

TEST(OnnxSignal, OutputDatatypeIsReadAsAKilnDtype) {
  ir::Network net = load_model_bytes(hann(TensorProto::DOUBLE).bytes());
  EXPECT_EQ(net.value(net.outputs()[0]).dtype, DType::kFloat64);
  net = load_model_bytes(hann(TensorProto::INT32).bytes());
  EXPECT_EQ(net.value(net.outputs()[0]).dtype, DType::kInt32);
  net = load_model_bytes(hann(TensorProto::UINT16).bytes());
  EXPECT_EQ(net.value(net.outputs()[0]).dtype, DType::kUInt16);
  expect_load_error(hann(TensorProto::FLOAT6E2M3), ErrorCode::kUnsupported,
                    {"(HannWindow, opset 17)", "output_datatype FLOAT6E2M3, a type kiln does not have"});
}

}  // namespace
}  // namespace kiln::onnx
